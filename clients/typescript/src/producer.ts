/**
 * `Producer`: publishes states to a phasecast server, one at a time over HTTP
 * (`POST /pcc_state`, `POST /streams/{name}/state`) or as a stream over the producer
 * WebSocket (`/ingest?stream=NAME`).
 *
 * ```ts
 * const producer = new Producer({ url: "http://localhost:8787", stream: "lab1" });
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
import { Connection, parseErrorBody, parseRetryAfter } from "./connection.js";
import type { ConnectError } from "./errors.js";
import { isNode, isWsPackage, resolveWebSocket, toWebSocketUrl, type WebSocketConstructor } from "./websocket.js";

/** Options of a {@link Producer}. Only `url` is required. */
export interface ProducerOptions {
  /** The server's base URL, e.g. `http://localhost:8787` (a path prefix is kept). */
  readonly url: string | URL;
  /** The stream to publish to. Default: the server's `default` (`POST /pcc_state`). */
  readonly stream?: string | undefined;
  /** Body encoding. Default `json`. */
  readonly format?: Format | undefined;
  /** Producer API key (`MCP_API_KEY`), always sent as the `X-API-Key` header. */
  readonly key?: string | undefined;
  /** `fetch` implementation. Default: the global one (browsers, Node >= 18). */
  readonly fetch?: typeof fetch | undefined;
  /** WebSocket implementation for {@link Producer.connect}. */
  readonly WebSocket?: WebSocketConstructor | undefined;
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
    /** The step of the state that was refused. */
    readonly step?: number,
  ) {
    super(
      `HTTP ${status}: ${error}${field === undefined ? "" : ` (${field})`}` +
        (retryAfter === undefined ? "" : ` (retry after ${retryAfter} s)`),
    );
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
  /** The server or the network ended the connection (before `close`). */
  error: [error: ConnectError];
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
   * POSTs one state. Uses `fetch`, which keeps one HTTP/1.1 connection alive across
   * calls (no connection per state).
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
    if (response.ok) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (typeof parsed === "object" && parsed !== null && (parsed as { ok?: unknown }).ok === true) {
        return parsed as PublishResult;
      }
    }
    const { error, field } = parseErrorBody(text);
    throw new PublishError(
      response.status,
      error ?? response.statusText,
      field,
      parseRetryAfter(response.headers.get("Retry-After")),
      state.step,
    );
  }

  /**
   * Opens the producer WebSocket (`/ingest`). Resolves once it is open.
   *
   * The key goes as the `X-API-Key` header, which needs a WebSocket that can send
   * headers: Node's (the `ws` package, or Node's global one). A browser cannot, and
   * the server does not take the producer key in a URL: publish with
   * {@link Producer.publish} there.
   *
   * @throws {ConnectError} when the upgrade is refused (401 wrong key, 429 rate
   *   limited, with `retryAfter`; 503 producer limit reached: `status` and the
   *   server's `error`) or the connection fails or times out. There is no retry.
   */
  async connect(options: { timeoutMs?: number | undefined } = {}): Promise<IngestStream> {
    const Impl = await resolveWebSocket(this.#options.WebSocket);
    const key = this.#options.key;
    if (key !== undefined && !isNode() && !isWsPackage(Impl)) {
      throw new Error(
        "a browser cannot send the X-API-Key header on a WebSocket, and the server does not take the producer key in the URL: use publish() (HTTP POST) instead",
      );
    }
    const format = this.#options.format ?? "json";
    return new Promise<IngestStream>((resolve, reject) => {
      let stream: IngestStream | undefined;
      const conn: Connection = new Connection(
        {
          WebSocket: Impl,
          url: this.ingestUrl,
          headers: key === undefined ? undefined : { "X-API-Key": key },
          timeoutMs: options.timeoutMs ?? 4000,
        },
        {
          open: () => {
            stream = new IngestStream(conn, format);
            resolve(stream);
          },
          message: (data) => stream?.[RECEIVE](data),
          end: (error, opened) => {
            if (opened) stream?.[END](error);
            else reject(error);
          },
        },
      );
    });
  }
}

const RECEIVE = Symbol("receive");
const END = Symbol("end");

/**
 * An open producer WebSocket. The server answers only rejected states; listen with
 * {@link IngestStream.onReject}.
 */
export class IngestStream {
  readonly #conn: Connection;
  readonly #format: Format;
  readonly #events = new Emitter<IngestEvents>();
  #error: ConnectError | undefined;
  #ended = false;

  /** @internal Made by {@link Producer.connect}. */
  constructor(conn: Connection, format: Format) {
    this.#conn = conn;
    this.#format = format;
  }

  /** @internal A message from the server: a rejection. */
  [RECEIVE](data: unknown): void {
    if (typeof data !== "string") return;
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof value === "object" && value !== null && (value as { ok?: unknown }).ok === false) {
      this.#events.emit("reject", value as IngestRejection);
    }
  }

  /** @internal The connection ended (not by `close()`). */
  [END](error: ConnectError): void {
    this.#ended = true;
    this.#error = error;
    this.#events.emit("error", error);
    this.#events.emit("close", error.code ?? 1006, error.reason ?? "");
  }

  /** Whether the socket is open. */
  get open(): boolean {
    return !this.#ended && this.#conn.isOpen;
  }

  /** Why the connection ended, when the server or the network ended it. */
  get error(): ConnectError | undefined {
    return this.#error;
  }

  /** Bytes queued in the socket: a producer far ahead of the network can slow down. */
  get bufferedAmount(): number {
    return this.#conn.socket.bufferedAmount;
  }

  /**
   * Sends one state (JSON text or protobuf binary message).
   *
   * @throws {Error} when the socket is not open; {RangeError} when the state cannot
   *   be encoded.
   */
  send(state: StateInput): void {
    if (!this.open) throw new Error("ingest socket is not open");
    this.#conn.socket.send(encodeState(state, this.#format));
  }

  /** Calls `listener` for every state the server rejects; returns a function to stop. */
  onReject(listener: (rejection: IngestRejection) => void): () => void {
    return this.#events.on("reject", listener);
  }

  /** Listens to `reject`, `close` or `error`. */
  on<K extends keyof IngestEvents>(event: K, listener: (...args: IngestEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /** Closes the socket; `close` is emitted with 1000. */
  close(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#conn.close(1000, "producer closed");
    this.#events.emit("close", 1000, "producer closed");
  }
}
