/**
 * `Producer`: publishes states to a phasecast server, one at a time over HTTP
 * (`POST /pcc_state`, `POST /streams/{name}/state`) or as a stream over the producer
 * WebSocket (`/ingest?stream=NAME`).
 *
 * ```ts
 * const producer = new Producer({ url: "http://localhost:8080", stream: "lab1" });
 * const { seq } = await producer.publish({ step: 1, phases: [0.1, 0.2], energy: -1 });
 * const ingest = await producer.connect();
 * ingest.onReject((r) => console.warn(r.error, r.field));
 * ingest.send({ step: 2, phases: [0.1, 0.3], energy: -1.1 });
 * ```
 *
 * @module
 */

import { contentType, encodeState } from "./codec.js";
import { Emitter } from "./events.js";
import type { Format, StateInput } from "./model.js";
import {
  OPEN,
  resolveWebSocket,
  toWebSocketUrl,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./websocket.js";

/** Options of a {@link Producer}. Only `url` is required. */
export interface ProducerOptions {
  /** The server's base URL, e.g. `http://localhost:8080` (a path prefix is kept). */
  readonly url: string | URL;
  /** The stream to publish to. Default: the server's `default` (`POST /pcc_state`). */
  readonly stream?: string;
  /** Body encoding. Default `json`. */
  readonly format?: Format;
  /** API key, sent as `X-API-Key`. */
  readonly key?: string;
  /** `fetch` implementation. Default: the global one (browsers, Node >= 18). */
  readonly fetch?: typeof fetch;
  /** WebSocket implementation for {@link Producer.connect}. */
  readonly WebSocket?: WebSocketConstructor;
}

/** The server's answer to an accepted state. */
export interface PublishResult {
  readonly ok: true;
  /** The seq the server gave the state. */
  readonly seq: number;
  readonly step: number;
  /** Subscribers of the stream. */
  readonly clients: number;
  readonly processing_time_ms: number;
}

/** A state the server did not accept over HTTP. */
export class PublishError extends Error {
  override readonly name = "PublishError";

  constructor(
    /** HTTP status: 400 malformed, 401 key, 413 too big, 422 invalid, 429 rate, 503 streams. */
    readonly status: number,
    /** The server's `error` text. */
    readonly error: string,
    /** The offending field (422), e.g. `phases[3]`. */
    readonly field: string | undefined,
    /** Seconds to wait (`Retry-After`, with 429). */
    readonly retryAfter: number | undefined,
  ) {
    super(`HTTP ${status}: ${error}${field === undefined ? "" : ` (${field})`}`);
  }
}

/** A state the server rejected on the producer WebSocket. */
export interface IngestRejection {
  readonly ok: false;
  readonly error: string;
  readonly field?: string;
  readonly step?: number;
}

/** Events of an {@link IngestStream}. */
export interface IngestEvents {
  /** The server rejected a state (invalid, or `"rate limited"`). */
  reject: [rejection: IngestRejection];
  /** The socket closed; an `IngestStream` does not reconnect. */
  close: [code: number, reason: string];
  /** A transport error. */
  error: [error: Error];
}

/** Publishes states. Stateless: one instance may be used from many places. */
export class Producer {
  readonly #options: ProducerOptions;
  readonly #base: URL;

  constructor(options: ProducerOptions) {
    this.#options = options;
    const base = new URL(options.url);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.#base = base;
  }

  /** The URL states are POSTed to. */
  get publishUrl(): string {
    const stream = this.#options.stream;
    const path = stream === undefined ? "pcc_state" : `streams/${encodeURIComponent(stream)}/state`;
    return new URL(path, this.#base).href;
  }

  /** The producer WebSocket URL (`/ingest?stream=`). */
  get ingestUrl(): string {
    const url = toWebSocketUrl(new URL("ingest", this.#base));
    if (this.#options.stream !== undefined) url.searchParams.set("stream", this.#options.stream);
    return url.href;
  }

  /**
   * POSTs one state.
   *
   * @returns the server's answer (`seq` etc.).
   * @throws {PublishError} when the server answers with an error status.
   * @throws {RangeError} when the state cannot be encoded.
   */
  async publish(state: StateInput, init: { signal?: AbortSignal } = {}): Promise<PublishResult> {
    const format = this.#options.format ?? "json";
    const doFetch = this.#options.fetch ?? globalThis.fetch;
    const headers: Record<string, string> = { "Content-Type": contentType(format) };
    if (this.#options.key !== undefined) headers["X-API-Key"] = this.#options.key;
    const body = encodeState(state, format);
    const response = await doFetch(this.publishUrl, {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : (body as Uint8Array<ArrayBuffer>),
      ...(init.signal === undefined ? {} : { signal: init.signal }),
    });
    const text = await response.text();
    let parsed: Record<string, unknown> | undefined;
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value === "object" && value !== null) parsed = value as Record<string, unknown>;
    } catch {
      parsed = undefined;
    }
    if (response.ok && parsed?.["ok"] === true) return parsed as unknown as PublishResult;
    const error = typeof parsed?.["error"] === "string" ? parsed["error"] : text || response.statusText;
    const field = typeof parsed?.["field"] === "string" ? parsed["field"] : undefined;
    const retry = Number(response.headers.get("Retry-After") ?? NaN);
    throw new PublishError(response.status, error, field, Number.isFinite(retry) ? retry : undefined);
  }

  /**
   * Opens the producer WebSocket. Resolves once it is open.
   *
   * The key goes as an `X-API-Key` header where the WebSocket implementation can
   * send headers (the `ws` package); browsers cannot.
   */
  async connect(): Promise<IngestStream> {
    const Impl = await resolveWebSocket(this.#options.WebSocket);
    const key = this.#options.key;
    const socket =
      key === undefined ? new Impl(this.ingestUrl) : new Impl(this.ingestUrl, [], { headers: { "X-API-Key": key } });
    socket.binaryType = "arraybuffer";
    const stream = new IngestStream(socket, this.#options.format ?? "json");
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve());
      socket.addEventListener("close", (event) =>
        reject(new Error(`ingest connection closed before opening (${event.code ?? 1006})`)),
      );
    });
    return stream;
  }
}

/**
 * An open producer WebSocket. The server answers only rejected states; listen with
 * {@link IngestStream.onReject}.
 */
export class IngestStream {
  readonly #socket: WebSocketLike;
  readonly #format: Format;
  readonly #events = new Emitter<IngestEvents>();

  constructor(socket: WebSocketLike, format: Format) {
    this.#socket = socket;
    this.#format = format;
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      let value: unknown;
      try {
        value = JSON.parse(event.data);
      } catch {
        return;
      }
      if (typeof value === "object" && value !== null && (value as { ok?: unknown }).ok === false) {
        this.#events.emit("reject", value as IngestRejection);
      }
    });
    socket.addEventListener("close", (event) => this.#events.emit("close", event.code ?? 1006, event.reason ?? ""));
    socket.addEventListener("error", (event) =>
      this.#events.emit("error", event.error instanceof Error ? event.error : new Error(event.message ?? "WebSocket error")),
    );
  }

  /** Whether the socket is open. */
  get open(): boolean {
    return this.#socket.readyState === OPEN;
  }

  /** Bytes queued in the socket: a producer far ahead of the network can slow down. */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }

  /**
   * Sends one state (JSON text or protobuf binary message).
   *
   * @throws {Error} when the socket is not open; {RangeError} when the state cannot
   *   be encoded.
   */
  send(state: StateInput): void {
    if (!this.open) throw new Error("ingest socket is not open");
    this.#socket.send(encodeState(state, this.#format));
  }

  /** Calls `listener` for every state the server rejects; returns a function to stop. */
  onReject(listener: (rejection: IngestRejection) => void): () => void {
    return this.#events.on("reject", listener);
  }

  /** Listens to `reject`, `close` or `error`. */
  on<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /** Closes the socket. */
  close(): void {
    this.#socket.close(1000, "producer closed");
  }
}
