/**
 * A real `phasecast serve` for the tests, on 127.0.0.1 and a free port: started from
 * `PHASECAST_BIN`, ready once `GET /health` answers, stopped (TERM, then KILL) at the
 * end, and killed whatever way the test process ends. Loopback only, bounded in time.
 *
 * Without `PHASECAST_BIN` the tests that need it skip with a message, unless
 * `PHASECAST_REQUIRE_TOOLS=1`, where they fail.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

/** The binary, when the environment names one. */
export const BIN = process.env["PHASECAST_BIN"] || undefined;
/** Whether missing tools are failures rather than skips. */
export const REQUIRE_TOOLS = process.env["PHASECAST_REQUIRE_TOOLS"] === "1";

/**
 * `false` when `tool` is there; else why the tests that need it skip. With
 * `PHASECAST_REQUIRE_TOOLS=1` a missing tool is also a failing test of its own.
 */
export function toolSkip(tool: string, problem: string | undefined): string | false {
  if (problem === undefined) return false;
  if (REQUIRE_TOOLS) {
    test(`${tool} is available (PHASECAST_REQUIRE_TOOLS=1)`, () => {
      throw new Error(problem);
    });
  }
  return `skipped: ${problem}`;
}

/** `false` when the real server can be used; else why the tests skip (see {@link toolSkip}). */
export function serverSkip(): string | false {
  let problem: string | undefined;
  if (BIN === undefined) problem = "PHASECAST_BIN is not set (the phasecast binary, e.g. target/release/phasecast)";
  else if (!existsSync(BIN)) problem = `PHASECAST_BIN=${BIN} does not exist`;
  return toolSkip("phasecast", problem);
}

/** A TCP port nothing listens on now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const address = srv.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Children still running: killed however the test process ends. */
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export class Phasecast {
  readonly port: number;
  readonly args: readonly string[];
  log = "";
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(port: number, args: readonly string[]) {
    this.port = port;
    this.args = args;
  }

  /** Starts `phasecast serve --host 127.0.0.1 --port PORT ...args` and waits for /health. */
  static async start(args: readonly string[] = []): Promise<Phasecast> {
    // Another process may take the free port first: then another port.
    for (let tries = 1; ; tries++) {
      const server = new Phasecast(await freePort(), args);
      try {
        await server.start(tries < 5 ? 0 : 20_000);
        return server;
      } catch (err) {
        if (tries >= 5 || !/in use|could not listen/i.test(server.log)) throw err;
      }
    }
  }

  /** `ws://127.0.0.1:PORT/ws`. */
  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** `http://127.0.0.1:PORT`. */
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * (Re)starts on the same port; waits at most 20 s for /health. While the port is
   * taken (for a moment after the previous server on it ended) it tries again for
   * `busyMs`.
   */
  async start(busyMs = 20_000): Promise<void> {
    const deadline = Date.now() + 20_000;
    const busyUntil = Date.now() + busyMs;
    for (;;) {
      this.#spawn();
      try {
        await this.#waitHealthy(deadline);
        return;
      } catch (err) {
        await this.stop();
        if (/in use|could not listen/i.test(this.log) && Date.now() < Math.min(deadline, busyUntil)) {
          await sleep(200);
          continue;
        }
        throw new Error(`${(err as Error).message}\n--- phasecast output ---\n${this.log.slice(-4000)}`);
      }
    }
  }

  /** Stops the server: SIGTERM (it closes subscribers with 1001), SIGKILL after 8 s. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const patience = new AbortController();
    const done = await Promise.race([
      this.#exited.then(() => true),
      sleep(8_000, undefined, { signal: patience.signal }).then(
        () => false,
        () => true,
      ),
    ]);
    patience.abort();
    if (!done) {
      child.kill("SIGKILL");
      await this.#exited;
    }
  }

  #spawn(): void {
    this.log = "";
    const child = spawn(BIN!, ["serve", "--host", "127.0.0.1", "--port", String(this.port), ...this.args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env["RUST_LOG"] ?? "warn" },
    });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", () => resolve()));
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.once("error", (err) => {
      this.log += `spawn error: ${err.message}\n`;
    });
    live.add(child);
    child.once("exit", () => live.delete(child));
  }

  async #waitHealthy(deadline: number): Promise<void> {
    const child = this.#child!;
    const spawned = Date.now();
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`phasecast exited during start (${child.exitCode ?? child.signalCode})`);
      }
      const health = await fetch(`${this.http}/health`, { signal: AbortSignal.timeout(1000) }).then(
        async (r) => (r.ok ? ((await r.json()) as { uptime_seconds?: number }) : undefined),
        () => undefined,
      );
      // Ours, not another server that holds the port: it is as young as our child.
      const ours = health !== undefined && (health.uptime_seconds ?? 0) <= (Date.now() - spawned) / 1000 + 1;
      if (ours && child.exitCode === null) return;
      await sleep(100);
    }
    throw new Error(`phasecast did not answer /health on port ${this.port} within 20 s`);
  }
}
