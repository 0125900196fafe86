#!/usr/bin/env node
// A tiny static server for web/dist, for development and for the e2e test's
// "static" mode, before (or without) the phasecast binary serving the page itself.
//
//   node scripts/serve-static.mjs [--port 8080] [--server 127.0.0.1:8787]
//
// then open http://127.0.0.1:8080/?server=127.0.0.1:8787: the page opens /ws on that
// phasecast directly (`?server=`). /health is proxied to it too, because phasecast
// sends no CORS headers, so the page cannot read a cross-origin /health.
import { createServer, request } from "node:http";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

/**
 * Serves `/` and `/index.html`, `/app.js`, `/app.css` from `dir`, and proxies
 * `/health` to `server` (host:port) when given. Resolves to `{ port, close }`.
 */
export async function serveStatic({ dir, port = 0, host = "127.0.0.1", server } = {}) {
  const root = dir ?? resolve(dirname(fileURLToPath(import.meta.url)), "../dist");
  const http = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/health" && server) {
      const [h, p] = server.split(/:(?=\d+$)/);
      const up = request({ host: h, port: Number(p ?? 80), path: "/health", timeout: 3000 }, (r) => {
        res.writeHead(r.statusCode ?? 502, { "content-type": r.headers["content-type"] ?? "application/json" });
        r.pipe(res);
      });
      up.on("error", () => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end("phasecast unreachable");
      });
      up.on("timeout", () => up.destroy());
      up.end();
      return;
    }
    const name = path === "/" ? "index.html" : path.slice(1);
    const type = TYPES[name];
    if (!type || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    try {
      const body = await readFile(join(root, name));
      res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "no-cache" });
      res.end(req.method === "HEAD" ? undefined : body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not built: run npm run build");
    }
  });
  await new Promise((ok, fail) => {
    http.once("error", fail);
    http.listen(port, host, ok);
  });
  return {
    port: http.address().port,
    close: () =>
      new Promise((ok) => {
        http.closeAllConnections?.();
        http.close(() => ok());
      }),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
  };
  const server = opt("--server", "127.0.0.1:8787");
  const { port } = await serveStatic({ port: Number(opt("--port", "8080")), server });
  console.log(`serving web/dist on http://127.0.0.1:${port}/?server=${server}`);
}
