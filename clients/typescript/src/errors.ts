/**
 * Errors raised while turning bytes into frames.
 *
 * @module
 */

import type { Format } from "./model.js";

/**
 * Bytes that are not a valid frame: not JSON / not protobuf, a required field
 * missing or of the wrong type, index gaps that do not match their list. A
 * subscriber that gets one drops its state and asks for a full frame.
 */
export class DecodeError extends Error {
  override readonly name = "DecodeError";

  constructor(
    /** The encoding the bytes were decoded as. */
    readonly format: Format,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`malformed ${format} frame: ${message}`, options);
  }
}

/** How a connection attempt or an open connection ended. */
export type ConnectErrorKind =
  /** The server answered the upgrade with an HTTP status instead of 101. */
  | "refused"
  /** The WebSocket closed (after opening, or with a close frame during the handshake). */
  | "closed"
  /** The TCP/TLS connection failed: refused, reset, unreachable, DNS. */
  | "network"
  /** No completed handshake within the connect timeout. */
  | "timeout";

/** What a {@link ConnectError} is made of. */
export interface ConnectErrorInit {
  readonly kind: ConnectErrorKind;
  readonly url: string;
  readonly permanent: boolean;
  readonly status?: number | undefined;
  readonly error?: string | undefined;
  readonly field?: string | undefined;
  readonly retryAfter?: number | undefined;
  readonly code?: number | undefined;
  readonly reason?: string | undefined;
  readonly tries?: number | undefined;
  readonly cause?: unknown;
}

/**
 * A WebSocket connection that could not be made or did not last, for a subscriber
 * (`/ws`) or a producer (`/ingest`).
 *
 * `permanent` errors (HTTP 400/401/403/404 or any answer that is not 101/429/5xx;
 * close codes 1002, 1003, 1007, 1009, 1010) are not retried: the subscriber closes
 * and raises them at once. Transient ones (HTTP 429/5xx, network failures,
 * timeouts, other close codes) are retried with back-off.
 *
 * In browsers the HTTP status of a refused upgrade is not visible to scripts: a
 * refusal looks like any failed connection (`kind: "network"`, no `status`).
 */
export class ConnectError extends Error {
  override readonly name = "ConnectError";
  /** What happened. */
  readonly kind: ConnectErrorKind;
  /** The URL, with a `key` parameter's value hidden. */
  readonly url: string;
  /** Retrying cannot help (a wrong key, path or parameter; a protocol error). */
  readonly permanent: boolean;
  /** The HTTP status that answered the upgrade (`kind: "refused"`). */
  readonly status: number | undefined;
  /** The server's reason: the `error` of its JSON body (or the body's text). */
  readonly error: string | undefined;
  /** The parameter or field the server names (`field` of its JSON body), e.g. `format`. */
  readonly field: string | undefined;
  /** Seconds to wait before trying again (`Retry-After`, with 429). */
  readonly retryAfter: number | undefined;
  /** The WebSocket close code (`kind: "closed"`; 1006 when there was no close frame). */
  readonly code: number | undefined;
  /** The close reason the server sent. */
  readonly reason: string | undefined;
  /** Connection attempts made, when the client gave up after several. */
  readonly tries: number | undefined;

  constructor(message: string, init: ConnectErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.url = init.url;
    this.permanent = init.permanent;
    this.status = init.status;
    this.error = init.error;
    this.field = init.field;
    this.retryAfter = init.retryAfter;
    this.code = init.code;
    this.reason = init.reason;
    this.tries = init.tries;
  }
}
