/**
 * `Subscriber`: follows one phasecast stream over `/ws` and always holds either a
 * verified state or none.
 *
 * ```ts
 * const sub = new Subscriber({ url: "ws://localhost:8787/ws", format: "protobuf" });
 * sub.onUpdate((state, { seq }) => draw(state));
 * // or: for await (const state of sub) draw(state);
 * ```
 *
 * What it does, per docs/protocol.md and docs/clients.md:
 *
 * - Connection states `connecting` → `connected` → (`reconnecting` → `connected`)* →
 *   `closed`, each transition a `status` event with its reason.
 * - Permanent refusals (HTTP 400/401/403/404, an answer that is not a WebSocket,
 *   close 1002/1003/1007/1009/1010) close it at once with a {@link ConnectError}.
 *   Transient ones are retried with capped, jittered back-off: the first connect a
 *   bounded number of tries, later ones without limit (unless `maxReconnects`).
 * - A full frame replaces the state held. A delta is applied to a copy of it when its
 *   `base_seq` is the seq held, and kept only when the checksum matches.
 * - On a delta for another base, a checksum mismatch or an undecodable frame it drops
 *   the state (`state` becomes `undefined`), sends a resync request once, and ignores
 *   deltas until the next full frame. No unverified state is ever exposed.
 * - It reconnects with `?resume=SEQ&epoch=EPOCH` of the state it holds, so the first
 *   frame can be a delta (with the same `epsilon` and `fields`).
 * - With `fields` it holds the projected state (the parts not taken empty, 0 or
 *   absent); each update brings the frame's `summary` and `envelope`. A frame
 *   without a body (`fields` without phases and spins) stands alone: it is taken
 *   as a full frame of a state with no phases and no spins, with no epoch, and is
 *   never a reason to resync or to resume.
 *
 * @module
 */

import { backoffDelay, type BackoffOptions } from "./backoff.js";
import {
  applyDelta,
  ApplyError,
  decodeFrame,
  encodeResync,
  messageFormat,
  messageSize,
  type MessageData,
} from "./codec.js";
import { Connection, redactUrl } from "./connection.js";
import { ConnectError } from "./errors.js";
import { Emitter } from "./events.js";
import type { Envelope, Format, Frame, State, Summary } from "./model.js";
import { mergeEnvelopes } from "./summary.js";
import { subscriptionUrl, withResume } from "./url.js";
import { isNode, resolveWebSocket, type WebSocketConstructor } from "./websocket.js";

/** Where the subscriber key goes: an `X-API-Key` header, or `?key=` in the URL. */
export type KeyTransport = "header" | "query";

/** A `console`-like logger: retries at `warn`, connects at `info`, frames at `debug`. */
export interface Logger {
  debug(message: string, ...args: unknown[]): void;
  info(message: string, ...args: unknown[]): void;
  warn(message: string, ...args: unknown[]): void;
  error(message: string, ...args: unknown[]): void;
}

/** Options of a {@link Subscriber}. Only `url` is required. */
export interface SubscriberOptions {
  /**
   * The server's `/ws` endpoint, e.g. `ws://localhost:8787/ws`. `http(s)://` is
   * accepted; an empty path or `/` becomes `/ws`. Query parameters are kept (the
   * options below replace those of the same name).
   */
  readonly url: string | URL;
  /** Frame encoding (`?format=`). Default: the server's (`PCC_WIRE_FORMAT`). */
  readonly format?: Format | undefined;
  /** `false` asks for full frames only (`?delta=false`). Default: the server's (deltas). */
  readonly delta?: boolean | undefined;
  /** At most this many frames a second (`?max_hz=`). */
  readonly maxHz?: number | undefined;
  /**
   * The precision class (`?epsilon=`): every phase held stays within this many
   * radians of the producer's. One of the server's classes (`/health` lists them as
   * `precision_classes`); another is refused with 400 naming `epsilon`. Default: the
   * server's (`PCC_DELTA_EPSILON`).
   */
  readonly epsilon?: number | undefined;
  /**
   * The parts of each state to take (`?fields=`): some of `phases`, `spins`,
   * `energy`, `timestamp`, `summary`. The state held has the others empty (no
   * phases, no spins, energy 0, no timestamp); `summary` brings the server's
   * {@link Summary} with every update (and, with `maxHz`, an {@link Envelope}).
   * Without phases and spins each frame stands alone. An unknown name throws a
   * `TypeError`. Default: the whole state, no summary.
   */
  readonly fields?: readonly string[] | undefined;
  /** The stream to follow (`?stream=`). Default: the server's `default`. */
  readonly stream?: string | undefined;
  /**
   * Subscriber key (`PCC_SUBSCRIBE_KEY`). Sent as the `X-API-Key` header in Node;
   * browsers cannot send WebSocket headers, so there it goes in the URL as `?key=`.
   */
  readonly key?: string | undefined;
  /** Override where the key goes (default: `header` in Node, `query` elsewhere). */
  readonly keyIn?: KeyTransport | undefined;
  /** More query parameters, URL-encoded; the named options win over these. */
  readonly params?: Readonly<Record<string, string | number | boolean>> | undefined;
  /**
   * WebSocket implementation. Default: in Node the `ws` package (a dependency; it
   * sends headers and shows the HTTP status of a refusal), else the global one.
   */
  readonly WebSocket?: WebSocketConstructor | undefined;
  /** Retry delays (default 250 ms doubling to 10 s, ±50 % jitter), or `false` never to retry. */
  readonly reconnect?: BackoffOptions | false | undefined;
  /** Tries for the first connection before giving up with the last error. Default 5. */
  readonly firstConnectTries?: number | undefined;
  /** Each try's TCP connect plus WebSocket handshake must finish within this. Default 4000 ms. */
  readonly connectTimeoutMs?: number | undefined;
  /**
   * Once connected, at most this many reconnect tries in a row (a connection that
   * delivers a frame restarts the count). Default: no limit.
   */
  readonly maxReconnects?: number | undefined;
  /** Resume from the state held on reconnect (`?resume=SEQ&epoch=EPOCH`). Default `true`. */
  readonly resume?: boolean | undefined;
  /** Load the `ws` package even where a global WebSocket exists. Default: in Node. */
  readonly preferWsPackage?: boolean | undefined;
  /** Log through this (`console` will do). Default: silent. */
  readonly logger?: Logger | undefined;
  /** Called with every event, before the listeners registered with `on`. */
  readonly onEvent?: ((event: SubscriberEvent) => void) | undefined;
  /** Closes the subscriber when aborted. */
  readonly signal?: AbortSignal | undefined;
}

/** What `onUpdate` listeners get besides the state. */
export interface UpdateInfo {
  /** Seq of the state. */
  readonly seq: number;
  /** The kind of frame that produced it. */
  readonly kind: Frame["kind"];
  /** The stream's epoch, from the latest full frame; `undefined` when the server sends none. */
  readonly epoch: string | undefined;
  /** `Date.now()/1000 - state.timestamp` on arrival, when the state has a timestamp. */
  readonly latency: number | undefined;
  /** The state's summary, when the subscription takes `summary` (`fields`). */
  readonly summary: Summary | undefined;
  /**
   * The range of each summary quantity over the states since the previous update
   * (with `maxHz` and `summary`): a spike between two updates still shows.
   */
  readonly envelope: Envelope | undefined;
}

/** Why a state was dropped. */
export type ResyncReason =
  /** A frame that could not be decoded. */
  | "decode"
  /** A delta while no state is held (and no resync pending). */
  | "no_state"
  /** `resync()` was called. */
  | "manual"
  /** A delta for another base than the seq held. */
  | "base_seq"
  /** A delta naming an index the state does not have. */
  | "index"
  /** A dense list whose length is not the number of phases. */
  | "shape"
  /** A JSON spin value that is not +1 or -1. */
  | "spin"
  /** The checksum after applying did not match. */
  | "checksum";

/** The connection states: `connecting` → `connected` → (`reconnecting` → `connected`)* → `closed`. */
export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "closed";

/** A transition between {@link ConnectionStatus}es, with its reason. */
export interface StatusChange {
  /** The new status. */
  readonly status: ConnectionStatus;
  /** The status before. */
  readonly previous: ConnectionStatus;
  /** The URL of the connection (a `key` parameter hidden). */
  readonly url: string;
  /**
   * Why: for `reconnecting` the error that ended the connection (close code and
   * reason, network error); for `closed` the permanent error, or `undefined` when
   * `close()` was called. A {@link ConnectError} for connection problems.
   */
  readonly error: Error | undefined;
}

/** Counters for a dashboard. A snapshot: read `subscriber.stats` again for new values. */
export interface SubscriberStats {
  /** Messages received (every frame, also those ignored). */
  readonly framesReceived: number;
  /** Their size: binary length, or text length (JSON frames are ASCII). */
  readonly bytesReceived: number;
  /** Full frames decoded. */
  readonly fullFrames: number;
  /** Delta frames decoded (applied or not). */
  readonly deltaFrames: number;
  /** Deltas ignored while waiting for a full frame. */
  readonly ignoredDeltas: number;
  /** Messages that could not be decoded. */
  readonly decodeErrors: number;
  /** Times the state was dropped and a resync requested. */
  readonly resyncs: number;
  /** Connections opened (the first one included). */
  readonly connections: number;
  /** Retries scheduled (after a failed try or a lost connection). */
  readonly reconnects: number;
  /** `Date.now()` when the last frame arrived. */
  readonly lastFrameAt: number | undefined;
  /**
   * Latency of the last state accepted, in seconds (`Date.now()/1000 - timestamp` on
   * arrival); `undefined` when that state has no timestamp.
   */
  readonly lastLatency: number | undefined;
}

/** Events of a {@link Subscriber}, with their listener arguments. */
export interface SubscriberEvents {
  /** A new verified state. */
  update: [state: State, info: UpdateInfo];
  /** The state was dropped and a full frame requested. */
  resync: [reason: ResyncReason, error: Error | undefined];
  /** The connection status changed (every transition). */
  status: [change: StatusChange];
  /** The same transitions, one event per target status. */
  connected: [change: StatusChange];
  reconnecting: [change: StatusChange];
  closed: [change: StatusChange];
  /** A connection opened. */
  open: [];
  /** An open connection closed (a retry follows unless the subscriber closes). */
  close: [code: number, reason: string];
  /** A retry is scheduled in `delayMs`, after `error` (first connect tries included). */
  reconnect: [attempt: number, delayMs: number, error: Error];
  /** A connection error (a retry follows), or the permanent error that closes the subscriber. */
  error: [error: Error];
  /** The subscriber is closed (`close()`, or a permanent error). */
  end: [];
}

/** One event as `onEvent` gets it: its name and its listener arguments. */
export type SubscriberEvent = {
  [K in keyof SubscriberEvents]: { readonly type: K; readonly args: SubscriberEvents[K] };
}[keyof SubscriberEvents];

type MutableStats = { -readonly [K in keyof SubscriberStats]: SubscriberStats[K] };

/** A promise that is never reported as unhandled (callers may not await it). */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * Follows a stream. Connects on construction; call {@link Subscriber.close} to stop.
 * `await Subscriber.connect(options)` (or `await sub.ready()`) to know the first
 * connection succeeded.
 */
export class Subscriber implements AsyncIterable<State> {
  readonly #options: SubscriberOptions;
  readonly #baseUrl: URL;
  readonly #headers: Record<string, string> | undefined;
  readonly #events = new Emitter<SubscriberEvents>();
  readonly #stats: MutableStats = {
    framesReceived: 0,
    bytesReceived: 0,
    fullFrames: 0,
    deltaFrames: 0,
    ignoredDeltas: 0,
    decodeErrors: 0,
    resyncs: 0,
    connections: 0,
    reconnects: 0,
    lastFrameAt: undefined,
    lastLatency: undefined,
  };
  readonly #ready = deferred<void>();
  readonly #closed = deferred<Error | undefined>();

  #status: ConnectionStatus = "connecting";
  #state: State | undefined;
  #seq: number | undefined;
  #epoch: string | undefined;
  #summary: Summary | undefined;
  #envelope: Envelope | undefined;
  /** The state held came from a frame without a body: nothing to resume from. */
  #standalone = false;
  /** The subscription's frames have no body (`fields` without phases and spins). */
  readonly #bodyless: boolean;
  /** A resync was sent on this connection; deltas are ignored until a full frame. */
  #resyncPending = false;
  /** The encoding of the last frame, for the resync message. */
  #wireFormat: Format;

  #Impl: WebSocketConstructor | undefined;
  #conn: Connection | undefined;
  /** Frames (and, with `ws`, the pings between them) that wait while paused. */
  #queue: { conn: Connection; data?: MessageData; ping?: unknown }[] = [];
  #paused = false;
  /** Draining what waited during a pause: only the newest state is handed on. */
  #withholding = false;
  #withheld: [State, UpdateInfo] | undefined;
  /** Back-off exponent: retries since the last connection that delivered a frame. */
  #attempt = 0;
  /** Tries of the first connection (until one opens). */
  #tries = 0;
  #everConnected = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ended = false;
  #fatal: Error | undefined;

  /**
   * @throws {TypeError} for a URL that does not parse, is not ws/wss/http/https, or
   *   carries `resume`/`epoch` (the client sets those itself), and for `fields` with
   *   an unknown name or none; {RangeError} for a negative `epsilon`.
   */
  constructor(options: SubscriberOptions) {
    this.#options = options;
    const keyIn = options.keyIn ?? (isNode() ? "header" : "query");
    const key = options.key;
    this.#baseUrl = subscriptionUrl(options.url, {
      format: options.format,
      delta: options.delta,
      maxHz: options.maxHz,
      epsilon: options.epsilon,
      fields: options.fields,
      stream: options.stream,
      params: options.params,
      queryKey: key !== undefined && keyIn === "query" ? key : undefined,
      dropUrlKey: key !== undefined,
    });
    this.#headers = key !== undefined && keyIn === "header" ? { "X-API-Key": key } : undefined;
    const fields = this.#baseUrl.searchParams.get("fields");
    this.#bodyless = fields !== null && !fields.split(",").some((f) => f === "phases" || f === "spins");
    this.#wireFormat = options.format ?? "json";
    const signal = options.signal;
    if (signal?.aborted) {
      queueMicrotask(() => this.close());
    } else {
      signal?.addEventListener("abort", () => this.close(), { once: true });
      queueMicrotask(() => void this.#start());
    }
  }

  /**
   * Creates a subscriber and waits for its first connection.
   *
   * @throws {ConnectError} when the server refuses (at once for a permanent refusal;
   *   after `firstConnectTries` tries for transient failures). The subscriber is
   *   closed then.
   */
  static async connect(options: SubscriberOptions): Promise<Subscriber> {
    const sub = new Subscriber(options);
    await sub.ready();
    return sub;
  }

  /**
   * Resolves once the first connection is open; rejects with the error that closed
   * the subscriber before that (a {@link ConnectError}, or an `Error` for `close()`).
   */
  ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Resolves when the subscriber is closed: with the permanent error, or `undefined` after `close()`. */
  closed(): Promise<Error | undefined> {
    return this.#closed.promise;
  }

  /** The connection status. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** The verified state held, or `undefined` (before the first frame, after a drop). */
  get state(): State | undefined {
    return this.#state;
  }

  /** Seq of the state held, or `undefined` when none is held. */
  get seq(): number | undefined {
    return this.#seq;
  }

  /** The stream's epoch for the state held (from its full frame), when the server sends one. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** The summary of the state held, when the subscription takes `summary`. */
  get summary(): Summary | undefined {
    return this.#summary;
  }

  /** The envelope that came with the state held (with `maxHz` and `summary`). */
  get envelope(): Envelope | undefined {
    return this.#envelope;
  }

  /** A snapshot of the counters. */
  get stats(): SubscriberStats {
    return { ...this.#stats };
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.#status === "connected";
  }

  /** Whether the subscriber is closed (`close()`, or a permanent error). */
  get ended(): boolean {
    return this.#ended;
  }

  /** The permanent error that closed the subscriber, if one did. */
  get error(): Error | undefined {
    return this.#fatal;
  }

  /**
   * The URL the next connection opens (with `resume`/`epoch` when a state is held
   * that came with a body; frames without one stand alone).
   */
  connectUrl(): string {
    const resume = this.#options.resume !== false && !this.#standalone;
    return withResume(this.#baseUrl, resume ? this.#seq : undefined, resume ? this.#epoch : undefined);
  }

  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof SubscriberEvents>(
    event: K,
    listener: (...args: SubscriberEvents[K]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  /** Calls `listener` with every new verified state; returns a function that stops it. */
  onUpdate(listener: (state: State, info: UpdateInfo) => void): () => void {
    return this.#events.on("update", listener);
  }

  /**
   * Stops handling frames until {@link resume}: frames that arrive meanwhile wait in
   * order, and on resume they are all applied but only the newest state is handed to
   * `update` listeners. With the `ws` package the socket itself stops being read, so
   * the server sees a slow reader and skips frames for it (it then sends one delta
   * from the state held to the newest). Browsers cannot pause a socket: frames just
   * wait.
   */
  pause(): void {
    this.#paused = true;
    this.#conn?.socket.pause?.();
  }

  /** Handles the frames that waited, then reads the socket again. */
  resume(): void {
    this.#paused = false;
    this.#drain();
    if (!this.#paused) this.#conn?.socket.resume?.();
  }

  /** Drops the state held and asks the server for a full frame. */
  resync(): void {
    this.#drop("manual", undefined, true);
  }

  /** Closes the connection for good. Async iterators end; `ready()` rejects if not yet connected. */
  close(): void {
    this.#shutdown(undefined);
  }

  /**
   * Iterates over the states: the state held first (if any), then each new one. A
   * consumer slower than the stream gets the newest state each time, not a backlog.
   * Ends when the subscriber is closed; throws when it closed on a permanent error.
   */
  [Symbol.asyncIterator](): AsyncIterator<State> {
    let pending: State | undefined = this.#state;
    let waiter: ((result: IteratorResult<State>) => void) | undefined;
    let failer: ((error: Error) => void) | undefined;
    let done = false;
    const stopUpdate = this.on("update", (state) => {
      if (waiter) {
        const w = waiter;
        waiter = failer = undefined;
        w({ value: state, done: false });
      } else {
        pending = state;
      }
    });
    const finish = (): void => {
      done = true;
      stopUpdate();
      stopEnd();
      if (waiter) {
        const w = waiter;
        const f = failer;
        waiter = failer = undefined;
        if (this.#fatal && f) f(this.#fatal);
        else w({ value: undefined, done: true });
      }
    };
    const stopEnd = this.on("end", finish);
    if (this.#ended) finish();
    return {
      next: (): Promise<IteratorResult<State>> => {
        if (pending !== undefined) {
          const value = pending;
          pending = undefined;
          return Promise.resolve({ value, done: false });
        }
        if (done) {
          return this.#fatal ? Promise.reject(this.#fatal) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiter = resolve;
          failer = reject;
        });
      },
      return: (): Promise<IteratorResult<State>> => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  // --- events -----------------------------------------------------------------

  #emit<K extends keyof SubscriberEvents>(event: K, ...args: SubscriberEvents[K]): void {
    const onEvent = this.#options.onEvent;
    if (onEvent) {
      try {
        onEvent({ type: event, args } as SubscriberEvent);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
    this.#events.emit(event, ...args);
  }

  #log(level: keyof Logger, message: string): void {
    this.#options.logger?.[level](`phasecast: ${message}`);
  }

  #setStatus(status: ConnectionStatus, url: string, error: Error | undefined): void {
    // `closed` is final (a listener may have closed the subscriber meanwhile).
    if (this.#status === status || this.#status === "closed") return;
    const change: StatusChange = { status, previous: this.#status, url: redactUrl(url), error };
    this.#status = status;
    this.#emit("status", change);
    if (status !== "connecting") this.#emit(status, change);
  }

  // --- connection -------------------------------------------------------------

  async #start(): Promise<void> {
    if (this.#ended) return;
    try {
      this.#Impl = await resolveWebSocket(this.#options.WebSocket, this.#options.preferWsPackage);
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    this.#connect();
  }

  #connect(): void {
    if (this.#ended || this.#Impl === undefined) return;
    const url = this.connectUrl();
    let conn: Connection | undefined;
    try {
      conn = new Connection(
        {
          WebSocket: this.#Impl,
          url,
          headers: this.#headers,
          timeoutMs: this.#options.connectTimeoutMs ?? 4000,
        },
        {
          open: () => this.#onOpen(conn!),
          message: (data) => this.#onMessage(conn!, data),
          end: (error, opened) => this.#onEnd(conn!, error, opened),
          ping: (data) => this.#onPing(conn!, data),
        },
      );
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    if (!this.#everConnected) this.#tries++;
    this.#conn = conn;
    this.#resyncPending = false;
    this.#log("debug", `connecting to ${redactUrl(url)}`);
  }

  #onOpen(conn: Connection): void {
    if (conn !== this.#conn) return;
    this.#stats.connections++;
    this.#everConnected = true;
    if (this.#paused) conn.socket.pause?.();
    this.#log("info", `connected to ${redactUrl(conn.url)}`);
    this.#emit("open");
    if (conn !== this.#conn) return; // a listener closed it
    this.#setStatus("connected", conn.url, undefined);
    this.#ready.resolve();
  }

  #onMessage(conn: Connection, data: MessageData): void {
    if (conn !== this.#conn) return;
    if (this.#paused || this.#queue.length > 0) this.#queue.push({ conn, data });
    else this.#handle(data);
  }

  /**
   * A ping (with `ws`), answered once the frames before it have been handled: the
   * server's pings tell it how far this subscriber's code has got, so one paused
   * behind a queue of frames is sent fewer, newer ones (ARCHITECTURE.md, "Slow
   * subscribers").
   */
  #onPing(conn: Connection, data: unknown): void {
    if (conn !== this.#conn) return;
    if (this.#paused || this.#queue.length > 0) this.#queue.push({ conn, ping: data });
    else conn.socket.pong?.(data);
  }

  #onEnd(conn: Connection, error: ConnectError, opened: boolean): void {
    if (conn !== this.#conn) return;
    this.#conn = undefined;
    // Frames still waiting are from a connection that is gone: the reconnect
    // resumes from the state held, so they would only be stale.
    this.#queue = this.#queue.filter((m) => m.conn !== conn);
    if (opened) this.#emit("close", error.code ?? 1006, error.reason ?? "");
    if (error.permanent || this.#options.reconnect === false) {
      this.#fail(error);
      return;
    }
    if (!this.#everConnected) {
      const tries = Math.max(1, this.#options.firstConnectTries ?? 5);
      if (this.#tries >= tries) {
        this.#fail(withTries(error, this.#tries));
        return;
      }
    } else if (this.#attempt >= (this.#options.maxReconnects ?? Infinity)) {
      this.#fail(withTries(error, this.#attempt));
      return;
    }
    this.#emit("error", error);
    this.#retry(error, conn.url);
  }

  #retry(error: ConnectError, url: string): void {
    let delay = backoffDelay(this.#attempt, this.#options.reconnect || {});
    if (error.retryAfter !== undefined) delay = Math.max(delay, error.retryAfter * 1000);
    this.#attempt++;
    this.#stats.reconnects++;
    if (this.#everConnected) this.#setStatus("reconnecting", url, error);
    this.#log("warn", `${error.message}; retry #${this.#attempt} in ${Math.round(delay)} ms`);
    this.#emit("reconnect", this.#attempt, delay, error);
    if (this.#ended) return; // a listener closed it
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
  }

  #fail(error: Error): void {
    if (this.#ended) return;
    this.#fatal = error;
    this.#log("error", error.message);
    this.#emit("error", error);
    this.#shutdown(error);
  }

  #shutdown(error: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#queue = [];
    conn?.close(1000, "client closed");
    this.#setStatus("closed", conn?.url ?? this.connectUrl(), error);
    this.#ready.reject(error ?? new Error("the subscriber was closed before it connected"));
    this.#closed.resolve(error);
    this.#emit("end");
  }

  #drain(): void {
    // Frames that waited while paused are all applied (each delta builds on the one
    // before), but only the newest state is handed on: a reader that paused is
    // slower than the stream, and the state it wants next is the newest (latest wins).
    this.#withholding = this.#queue.filter((m) => m.data !== undefined).length > 1;
    while (!this.#paused && this.#queue.length > 0) {
      const { conn, data, ping } = this.#queue.shift()!;
      if (data !== undefined) this.#handle(data);
      else conn.socket.pong?.(ping);
    }
    this.#withholding = false;
    const newest = this.#withheld;
    this.#withheld = undefined;
    if (newest !== undefined) this.#emit("update", ...newest);
  }

  // --- frames -----------------------------------------------------------------

  #handle(data: MessageData): void {
    const stats = this.#stats;
    stats.framesReceived++;
    stats.bytesReceived += messageSize(data);
    stats.lastFrameAt = Date.now();
    this.#wireFormat = messageFormat(data);
    let frame: Frame;
    try {
      frame = decodeFrame(data);
    } catch (err) {
      stats.decodeErrors++;
      if (this.#bodyless) {
        // Each frame stands alone: the next one is as good as a full frame, so there
        // is nothing to resync. The state held stays (it was verified on its own).
        this.#log("warn", `frame dropped: ${(err as Error).message}`);
        return;
      }
      this.#drop("decode", err as Error);
      return;
    }
    if (frame.kind === "full") {
      stats.fullFrames++;
      this.#standalone = frame.standalone === true;
      this.#accept(frame.state, frame.seq, "full", frame.epoch, frame);
      return;
    }
    stats.deltaFrames++;
    const held = this.#state;
    if (held === undefined || this.#seq === undefined) {
      if (this.#resyncPending) stats.ignoredDeltas++;
      else this.#drop("no_state", undefined);
      return;
    }
    let next: State;
    try {
      next = applyDelta(held, this.#seq, frame);
    } catch (err) {
      const reason = err instanceof ApplyError ? err.reason : "decode";
      this.#drop(reason, err as Error);
      return;
    }
    this.#standalone = false;
    this.#accept(next, frame.seq, "delta", this.#epoch, frame);
  }

  #accept(state: State, seq: number, kind: Frame["kind"], epoch: string | undefined, frame: Frame): void {
    this.#state = state;
    this.#seq = seq;
    this.#epoch = epoch;
    this.#summary = frame.summary;
    this.#envelope = frame.envelope;
    this.#resyncPending = false;
    this.#attempt = 0;
    const latency = state.timestamp === undefined ? undefined : Date.now() / 1000 - state.timestamp;
    this.#stats.lastLatency = latency;
    this.#options.logger?.debug(`phasecast: ${kind} frame, seq ${seq}`);
    let envelope = frame.envelope;
    const skipped = this.#withheld?.[1].envelope;
    if (this.#withholding && skipped !== undefined && envelope !== undefined) {
      // Only the newest of the frames that waited is handed on: its envelope covers
      // theirs too, so a spike in one of them still shows.
      envelope = mergeEnvelopes(skipped, envelope);
      this.#envelope = envelope;
    }
    const info: UpdateInfo = { seq, kind, epoch, latency, summary: frame.summary, envelope };
    if (this.#withholding) this.#withheld = [state, info];
    else this.#emit("update", state, info);
  }

  /**
   * Drops the state and asks for a full frame, once per wait: frames that fail while
   * a resync is pending are only counted.
   */
  #drop(reason: ResyncReason, error: Error | undefined, force = false): void {
    this.#state = undefined;
    this.#seq = undefined;
    this.#epoch = undefined;
    this.#summary = undefined;
    this.#envelope = undefined;
    this.#standalone = false;
    if (this.#resyncPending && !force) {
      if (reason !== "decode") this.#stats.ignoredDeltas++;
      return;
    }
    this.#resyncPending = true;
    this.#stats.resyncs++;
    // When the connection is going, the reconnect brings a full frame.
    this.#conn?.send(encodeResync(this.#wireFormat));
    this.#log("warn", `state dropped (${reason})${error ? `: ${error.message}` : ""}; resync requested`);
    this.#emit("resync", reason, error);
  }
}

/** `error` again, saying how many tries were made. */
function withTries(error: ConnectError, tries: number): ConnectError {
  return new ConnectError(`${error.message} (gave up after ${tries} ${tries === 1 ? "try" : "tries"})`, {
    kind: error.kind,
    url: error.url,
    permanent: error.permanent,
    status: error.status,
    error: error.error,
    field: error.field,
    retryAfter: error.retryAfter,
    code: error.code,
    reason: error.reason,
    tries,
    cause: error,
  });
}
