/**
 * The little of the WebSocket API this library needs, so that the browser's
 * `WebSocket`, Node >= 22's global one and the `ws` package all fit.
 *
 * @module
 */

/** The events this library listens to; `data`, `code` and `reason` as in the WHATWG API. */
export interface WebSocketEventLike {
  readonly type: string;
  readonly data?: unknown;
  readonly code?: number;
  readonly reason?: string;
  readonly message?: string;
  readonly error?: unknown;
}

/** A WebSocket instance (WHATWG shape; `pause`/`resume` exist on the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  readonly bufferedAmount: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: WebSocketEventLike) => void): void;
  /** `ws` only: stop reading from the socket (the server then sees a slow reader). */
  pause?(): void;
  /** `ws` only: read from the socket again. */
  resume?(): void;
  /** `ws` only: drop the connection at once (no close handshake). */
  terminate?(): void;
  /** `ws` only: answer a ping (with automatic pongs turned off). */
  pong?(data?: unknown): void;
  /** `ws` only (a Node EventEmitter): `unexpected-response` gives the HTTP answer. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on?(event: string, listener: (...args: any[]) => void): unknown;
}

/**
 * A WebSocket constructor. The third argument is passed only when headers are to be
 * sent (`ws` reads `{ headers }` there; browsers ignore it).
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  // `ws` takes its ClientOptions here; any object type must be accepted.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  options?: any,
) => WebSocketLike;

/** `WebSocket.OPEN`: the same number in every implementation. */
export const OPEN = 1;

/** Whether this runs in Node (or a runtime that says it is Node, like Bun). */
export function isNode(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: unknown } } }).process;
  return typeof proc?.versions?.node === "string";
}

/** Whether `Impl` is the `ws` package's class (it can send headers, pause, terminate). */
export function isWsPackage(Impl: WebSocketConstructor): boolean {
  const proto = (Impl as { prototype?: { terminate?: unknown; on?: unknown } }).prototype;
  return typeof proto?.terminate === "function" && typeof proto.on === "function";
}

/**
 * The WebSocket implementation to use: the one given; else, in Node, the `ws` package
 * (a dependency of this package: it sends the key as a header, shows the HTTP status
 * of a refused upgrade and can pause the socket), falling back to Node's global
 * WebSocket; elsewhere (browsers, Deno) the global one.
 *
 * @param preferPackage load `ws` first even where a global exists (default: in Node).
 * @throws {Error} when none is available.
 */
export async function resolveWebSocket(
  given?: WebSocketConstructor,
  preferPackage = isNode(),
): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global && !preferPackage) return global;
  // A non-literal specifier keeps bundlers (esbuild, Vite) from pulling `ws` into a
  // browser build; in a browser this line is never reached.
  const specifier = "ws";
  try {
    const mod = (await import(/* @vite-ignore */ specifier)) as {
      WebSocket?: WebSocketConstructor;
      default?: WebSocketConstructor;
    };
    const found = mod.WebSocket ?? mod.default;
    if (found) return found;
  } catch (err) {
    if (global) return global;
    throw new Error(
      "no WebSocket implementation: pass one as the `WebSocket` option, or `npm install ws` (Node < 22)",
      { cause: err },
    );
  }
  if (global) return global;
  throw new Error("the `ws` package has no WebSocket export");
}

/**
 * Opens a WebSocket, with `headers` where the implementation can send them: the `ws`
 * package takes `{ headers }` as its third argument, Node's global (undici) one as
 * its second; browsers cannot send any (callers put the key in the URL there).
 */
export function openWebSocket(
  Impl: WebSocketConstructor,
  url: string,
  headers: Record<string, string> | undefined,
  manualPongs = false,
): WebSocketLike {
  if (manualPongs && isWsPackage(Impl)) {
    // `ws` answers pings as it parses them unless told not to (autoPong, ws >= 8.16).
    return new Impl(url, [], { headers: headers ?? {}, autoPong: false });
  }
  if (headers === undefined || Object.keys(headers).length === 0) return new Impl(url);
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!isWsPackage(Impl) && Impl === global && isNode()) {
    // undici's WebSocketInit: { protocols, headers }.
    return new (Impl as unknown as new (url: string, init: object) => WebSocketLike)(url, { headers });
  }
  return new Impl(url, [], { headers });
}

/** `http(s)://` becomes `ws(s)://`; `ws(s)://` is kept. */
export function toWebSocketUrl(url: URL): URL {
  const out = new URL(url.href);
  if (out.protocol === "http:") out.protocol = "ws:";
  else if (out.protocol === "https:") out.protocol = "wss:";
  return out;
}
