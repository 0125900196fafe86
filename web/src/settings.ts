/**
 * What the page subscribes to, read from and written back to the page URL:
 * `?format=json|protobuf&delta=false&stream=NAME&max_hz=N&key=KEY&server=HOST:PORT`.
 *
 * `server` is for development only: it points the page at another phasecast
 * (host and port; the scheme follows the page's) for `/ws` and `/health`, so the page
 * can be served by any static server. Normally the page talks to its own origin.
 */
import type { Format } from "@phasecast/client";

export interface Settings {
  /** Requested frame encoding; `undefined` leaves it to the server (`PCC_WIRE_FORMAT`). */
  format: Format | undefined;
  /** `false`: full frames only (`?delta=false`). */
  delta: boolean;
  /** Stream name; `undefined` is the server's `default` stream. */
  stream: string | undefined;
  /** `host[:port]` of the server, from `?server=`, or `undefined` for the page's own. */
  server: string | undefined;
  /** At most this many frames a second (`?max_hz=`), or `undefined` for every state. */
  maxHz: number | undefined;
  /** Subscriber key (`?key=`), when the server has `PCC_SUBSCRIBE_KEY`. */
  key: string | undefined;
}

const STREAM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

export function parseFormat(value: string | null | undefined): Format | undefined {
  if (value === "json") return "json";
  if (value === "protobuf" || value === "proto") return "protobuf";
  return undefined;
}

export function readSettings(search: string): Settings {
  const q = new URLSearchParams(search);
  const delta = q.get("delta");
  const stream = q.get("stream");
  const server = q.get("server");
  const maxHz = Number(q.get("max_hz") ?? NaN);
  const key = q.get("key");
  return {
    format: parseFormat(q.get("format")),
    delta: !(delta === "false" || delta === "0" || delta === "off"),
    stream: stream !== null && STREAM_NAME.test(stream) ? stream : undefined,
    server: server !== null && HOST.test(server) ? server : undefined,
    maxHz: Number.isFinite(maxHz) && maxHz > 0 ? maxHz : undefined,
    key: key !== null && key !== "" ? key : undefined,
  };
}

/** The page URL for these settings (other query parameters are kept). */
export function settingsUrl(current: string, s: Settings): string {
  const url = new URL(current);
  const q = url.searchParams;
  for (const name of ["format", "delta", "stream", "max_hz", "key", "server"]) q.delete(name);
  if (s.format !== undefined) q.set("format", s.format);
  if (!s.delta) q.set("delta", "false");
  if (s.stream !== undefined && s.stream !== "default") q.set("stream", s.stream);
  if (s.maxHz !== undefined) q.set("max_hz", String(s.maxHz));
  if (s.key !== undefined) q.set("key", s.key);
  if (s.server !== undefined) q.set("server", s.server);
  return url.href;
}

/** `ws(s)://HOST/ws` and `http(s)://HOST/health` for the page's location. */
export function endpoints(location: { protocol: string; host: string }, s: Settings): { ws: string; health: string } {
  const secure = location.protocol === "https:";
  const host = s.server ?? location.host;
  return {
    ws: `${secure ? "wss" : "ws"}://${host}/ws`,
    health: `${secure ? "https" : "http"}://${host}/health`,
  };
}
