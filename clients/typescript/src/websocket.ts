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

/**
 * The WebSocket implementation to use: the one given, else the global one (browsers,
 * Node >= 22, Deno, Bun), else the `ws` package, loaded on demand (Node 20).
 *
 * @param preferPackage load `ws` first even where a global exists (Node-only tools
 *   that want `pause()`).
 * @throws {Error} when none is available.
 */
export async function resolveWebSocket(
  given?: WebSocketConstructor,
  preferPackage = false,
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

/** `http(s)://` becomes `ws(s)://`; `ws(s)://` is kept. */
export function toWebSocketUrl(url: URL): URL {
  const out = new URL(url.href);
  if (out.protocol === "http:") out.protocol = "ws:";
  else if (out.protocol === "https:") out.protocol = "wss:";
  return out;
}
