/**
 * One WebSocket connection attempt and, once it opens, the connection: the shared
 * part of the subscriber (`/ws`) and the producer socket (`/ingest`).
 *
 * It turns every way a connection can fail or end into one {@link ConnectError},
 * classified as docs/clients.md says:
 *
 * | outcome | permanent? |
 * |---|---|
 * | HTTP 400, 401, 403, 404 answering the upgrade | yes (the server's `error`, `field`) |
 * | any other answer that is not 101, 429 or 5xx (200: a page, not the WebSocket) | yes |
 * | HTTP 429 (with `Retry-After`), 5xx | no |
 * | refused, reset, unreachable, DNS failure, no handshake within the timeout | no |
 * | a TLS certificate the platform does not trust | yes |
 * | close 1002, 1003, 1007, 1009, 1010 | yes |
 * | any other close (1001, 1006, 1008, 1011–1014, …) | no |
 *
 * The HTTP status of a refused upgrade is visible only with the `ws` package (its
 * `unexpected-response` event, which also gives the body and `Retry-After`).
 * Browsers hide it from scripts: there a refusal is a failed connection like any other.
 *
 * @module
 */

import type { MessageData } from "./codec.js";
import { ConnectError } from "./errors.js";
import {
  isNode,
  isWsPackage,
  openWebSocket,
  OPEN,
  type WebSocketConstructor,
  type WebSocketEventLike,
  type WebSocketLike,
} from "./websocket.js";

/** Close codes after which reconnecting cannot help (docs/clients.md). */
export const PERMANENT_CLOSE_CODES: ReadonlySet<number> = new Set([1002, 1003, 1007, 1009, 1010]);

/** HTTP statuses answering an upgrade that are the request's fault. */
const PERMANENT_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404]);

/** Node/OpenSSL error codes of a certificate that is not trusted: retrying cannot help. */
const TLS_CERT_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REVOKED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Most of a refusal body that is kept. */
const MAX_BODY_BYTES = 16 * 1024;

/** `url` with the value of a `key` parameter hidden (for messages and events). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.searchParams.has("key")) u.searchParams.set("key", "***");
    return u.href;
  } catch {
    return url;
  }
}

/**
 * Seconds from a `Retry-After` header: a number of seconds or an HTTP date.
 * `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/** The server's reason from an error body: `{"ok":false,"error":…,"field":…}`, or its text. */
export function parseErrorBody(text: string): { error: string | undefined; field: string | undefined } {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null) {
      const obj = value as Record<string, unknown>;
      const error = typeof obj["error"] === "string" ? obj["error"] : undefined;
      const field = typeof obj["field"] === "string" ? obj["field"] : undefined;
      if (error !== undefined) return { error, field };
    }
  } catch {
    // not JSON: the text itself
  }
  const trimmed = text.trim();
  return { error: trimmed === "" ? undefined : trimmed.slice(0, 500), field: undefined };
}

/** The error for an HTTP answer to an upgrade. */
export function refusalError(
  url: string,
  status: number,
  body: string,
  retryAfter: number | undefined,
): ConnectError {
  const shown = redactUrl(url);
  const isError = status >= 400;
  const { error, field } = isError ? parseErrorBody(body) : { error: undefined, field: undefined };
  const permanent = PERMANENT_STATUSES.has(status) || !(status === 429 || status >= 500);
  let message: string;
  if (isError) {
    message = `${shown}: HTTP ${status}${error === undefined ? "" : `: ${error}`}`;
    if (status === 429 && retryAfter !== undefined) message += ` (retry after ${retryAfter} s)`;
  } else {
    message =
      `${shown}: HTTP ${status}: not a phasecast WebSocket endpoint ` +
      "(the server did not switch protocols; is the path /ws?)";
  }
  return new ConnectError(message, {
    kind: "refused",
    url: shown,
    permanent,
    status,
    error,
    field,
    retryAfter,
  });
}

/** The error for a connection that closed (or failed) after opening. */
export function closeError(url: string, code: number, reason: string, cause?: unknown): ConnectError {
  const shown = redactUrl(url);
  const permanent = PERMANENT_CLOSE_CODES.has(code);
  const what = code === 1006 ? "connection lost (1006, no close frame)" : `closed by the server: ${code}`;
  return new ConnectError(`${shown}: ${what}${reason ? ` ${reason}` : ""}`, {
    kind: "closed",
    url: shown,
    permanent,
    code,
    reason,
    cause,
  });
}

/** The error for a connection that failed before opening, without an HTTP answer. */
function networkError(url: string, cause: unknown): ConnectError {
  const shown = redactUrl(url);
  const code = (cause as { code?: unknown } | undefined)?.code;
  const permanent = typeof code === "string" && TLS_CERT_CODES.has(code);
  const detail = cause instanceof Error && cause.message ? `: ${cause.message}` : "";
  const hint = isNode()
    ? ""
    : " (a browser does not tell why: the server may have refused the key, the path or a parameter; see its answer in the network panel)";
  return new ConnectError(`${shown}: could not connect${detail}${hint}`, {
    kind: "network",
    url: shown,
    permanent,
    cause,
  });
}

/** What a {@link Connection} reports. Exactly one of `end` is called, unless `close()` is. */
export interface ConnectionHandlers {
  /** The handshake completed. */
  open(): void;
  /** A message arrived (text: string; binary: ArrayBuffer). */
  message(data: MessageData): void;
  /** The attempt failed, or the open connection ended. */
  end(error: ConnectError, opened: boolean): void;
  /**
   * A ping arrived, to be answered with `socket.pong(data)`. Given only by callers
   * that answer pings themselves; honoured with the `ws` package (elsewhere the
   * implementation answers them).
   */
  ping?(data: unknown): void;
}

/** How to open a {@link Connection}. */
export interface ConnectionOptions {
  readonly WebSocket: WebSocketConstructor;
  readonly url: string;
  /** Sent with the upgrade where the implementation can (`ws`, Node's global). */
  readonly headers?: Record<string, string> | undefined;
  /** The TCP connect and WebSocket handshake together must finish within this. */
  readonly timeoutMs: number;
}

/**
 * One WebSocket: opened in the constructor (which throws when the implementation
 * does), then reported through {@link ConnectionHandlers}.
 */
export class Connection {
  readonly socket: WebSocketLike;
  readonly url: string;
  readonly #handlers: ConnectionHandlers;
  #opened = false;
  #done = false;
  #lastError: unknown;
  #refusal: { status: number; body: string; retryAfter: number | undefined } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ConnectionOptions, handlers: ConnectionHandlers) {
    this.url = options.url;
    this.#handlers = handlers;
    const ws = isWsPackage(options.WebSocket);
    const manualPongs = ws && handlers.ping !== undefined;
    const socket = openWebSocket(options.WebSocket, options.url, options.headers, manualPongs);
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    if (ws && typeof socket.on === "function") {
      socket.on("unexpected-response", (_req: unknown, res: IncomingLike) => this.#unexpected(res));
      if (manualPongs) {
        socket.on("ping", (data: unknown) => {
          if (!this.#done) handlers.ping!(data);
        });
      }
    }
    socket.addEventListener("open", () => {
      if (this.#done) return;
      this.#opened = true;
      this.#clearTimer();
      handlers.open();
    });
    socket.addEventListener("message", (event) => {
      if (this.#done) return;
      handlers.message(event.data as MessageData);
    });
    socket.addEventListener("error", (event) => {
      this.#lastError = toError(event);
    });
    socket.addEventListener("close", (event) => {
      if (this.#done) return;
      if (this.#refusal) this.#finishRefusal();
      else if (this.#opened) this.#end(closeError(this.url, event.code ?? 1006, event.reason ?? "", this.#lastError));
      else this.#end(networkError(this.url, this.#lastError));
    });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#done || this.#opened) return;
      if (this.#refusal) {
        this.#finishRefusal();
      } else {
        const shown = redactUrl(this.url);
        this.#end(
          new ConnectError(`${shown}: no WebSocket handshake within ${options.timeoutMs} ms`, {
            kind: "timeout",
            url: shown,
            permanent: false,
            cause: this.#lastError,
          }),
        );
      }
      this.#abort();
    }, options.timeoutMs);
  }

  /** Whether the handshake completed. */
  get opened(): boolean {
    return this.#opened;
  }

  /** Whether the socket is open now (and this connection not ended). */
  get isOpen(): boolean {
    return !this.#done && this.socket.readyState === OPEN;
  }

  /** Sends a message when open; returns whether it was handed to the socket. */
  send(data: string | Uint8Array): boolean {
    if (!this.isOpen) return false;
    try {
      this.socket.send(data);
      return true;
    } catch {
      return false;
    }
  }

  /** Ends the connection from this side; `end` is not reported. */
  close(code = 1000, reason = "client closed"): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    try {
      this.socket.resume?.();
      if (this.#opened) this.socket.close(code, reason);
      else this.#abort();
    } catch {
      // already closing
    }
  }

  #unexpected(res: IncomingLike): void {
    if (this.#done || this.#refusal) return;
    const header = res.headers?.["retry-after"];
    const refusal = {
      status: res.statusCode ?? 0,
      body: "",
      retryAfter: parseRetryAfter(Array.isArray(header) ? header[0] : header),
    };
    this.#refusal = refusal;
    const chunks: Uint8Array[] = [];
    let size = 0;
    const finish = (): void => {
      refusal.body = new TextDecoder().decode(concat(chunks, size));
      this.#finishRefusal();
      this.#abort();
    };
    res.on("data", (chunk: Uint8Array) => {
      if (size >= MAX_BODY_BYTES) return;
      const part = chunk.subarray(0, MAX_BODY_BYTES - size);
      chunks.push(part);
      size += part.length;
    });
    res.on("end", finish);
    res.on("error", finish);
    res.on("aborted", finish);
  }

  #finishRefusal(): void {
    const r = this.#refusal;
    if (!r || this.#done) return;
    this.#end(refusalError(this.url, r.status, r.body, r.retryAfter));
  }

  #end(error: ConnectError): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    this.#handlers.end(error, this.#opened);
  }

  /** Drops the socket without a close handshake (before it opened, or stuck). */
  #abort(): void {
    try {
      if (this.socket.terminate) this.socket.terminate();
      else this.socket.close();
    } catch {
      // already closed
    }
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** The little of Node's `IncomingMessage` used here. */
interface IncomingLike {
  readonly statusCode?: number;
  readonly headers?: Record<string, string | string[] | undefined>;
  on(event: string, listener: (chunk: Uint8Array) => void): unknown;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function toError(event: WebSocketEventLike): Error {
  if (event.error instanceof Error) return event.error;
  return new Error(event.message ?? "WebSocket error");
}
