/**
 * What the page subscribes to, read from and written back to the page URL:
 * `?format=json|protobuf&delta=false&stream=NAME&max_hz=N&epsilon=E&arrays_hz=N&chart_hz=N&key=KEY&server=HOST:PORT`.
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
  /** At most this many frames a second on every subscription (`?max_hz=`), or `undefined`. */
  maxHz: number | undefined;
  /**
   * Precision class of the phases drawn (`?epsilon=`), radians; `undefined` picks
   * 0.001 when the server offers it, else the server's default.
   */
  epsilon: number | undefined;
  /** Rate of the phases and spins (`?arrays_hz=`): a number, or `"full"` for every state. */
  arraysHz: number | "full";
  /** Rate of the charts' summaries (`?chart_hz=`): a number, or `"full"` (the default). */
  chartHz: number | "full";
  /** Subscriber key (`?key=`), when the server has `PCC_SUBSCRIBE_KEY`. */
  key: string | undefined;
}

/** The arrays' rate when the URL names none. */
export const DEFAULT_ARRAYS_HZ = 30;
/** The arrays' precision class when the URL names none and the server offers it. */
export const PREFERRED_EPSILON = 0.001;

const STREAM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

export function parseFormat(value: string | null | undefined): Format | undefined {
  if (value === "json") return "json";
  if (value === "protobuf" || value === "proto") return "protobuf";
  return undefined;
}

/** A positive rate, `"full"` (also `0`, `none`), or `fallback` for anything else. */
export function parseRate(value: string | null | undefined, fallback: number | "full"): number | "full" {
  if (value === null || value === undefined || value === "") return fallback;
  if (value === "full" || value === "none" || value === "0") return "full";
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

function parseEpsilon(value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
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
    epsilon: parseEpsilon(q.get("epsilon")),
    arraysHz: parseRate(q.get("arrays_hz"), DEFAULT_ARRAYS_HZ),
    chartHz: parseRate(q.get("chart_hz"), "full"),
    key: key !== null && key !== "" ? key : undefined,
  };
}

/** The page URL for these settings (other query parameters are kept; defaults are left out). */
export function settingsUrl(current: string, s: Settings): string {
  const url = new URL(current);
  const q = url.searchParams;
  const names = ["format", "delta", "stream", "max_hz", "epsilon", "arrays_hz", "chart_hz", "key", "server"];
  for (const name of names) q.delete(name);
  if (s.format !== undefined) q.set("format", s.format);
  if (!s.delta) q.set("delta", "false");
  if (s.stream !== undefined && s.stream !== "default") q.set("stream", s.stream);
  if (s.maxHz !== undefined) q.set("max_hz", String(s.maxHz));
  if (s.epsilon !== undefined) q.set("epsilon", String(s.epsilon));
  if (s.arraysHz !== DEFAULT_ARRAYS_HZ) q.set("arrays_hz", String(s.arraysHz));
  if (s.chartHz !== "full") q.set("chart_hz", String(s.chartHz));
  if (s.key !== undefined) q.set("key", s.key);
  if (s.server !== undefined) q.set("server", s.server);
  return url.href;
}

/**
 * The precision class the arrays subscription asks for: the URL's when the server
 * offers it, else 0.001 when offered, else the server's default.
 */
export function chooseEpsilon(wanted: number | undefined, classes: readonly number[], serverDefault: number | undefined): number | undefined {
  if (wanted !== undefined && classes.includes(wanted)) return wanted;
  if (classes.includes(PREFERRED_EPSILON)) return PREFERRED_EPSILON;
  return serverDefault;
}

/** A rate as `max_hz`: the lower of the control's and the page-wide `max_hz`. */
export function effectiveHz(rate: number | "full", maxHz: number | undefined): number | undefined {
  if (rate === "full") return maxHz;
  return maxHz === undefined ? rate : Math.min(rate, maxHz);
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
