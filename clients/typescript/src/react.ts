/**
 * `@phasecast/client/react`: the {@link usePccStream} hook.
 *
 * ```tsx
 * import { usePccStream } from "@phasecast/client/react";
 *
 * function Energy() {
 *   const { state, seq, status } = usePccStream("ws://localhost:8787/ws", { format: "protobuf" });
 *   return <p>{status}: seq {seq ?? "-"}, energy {state?.energy ?? "-"}</p>;
 * }
 * ```
 *
 * The component re-renders at most once per animation frame, however fast frames
 * arrive: every event only marks the view stale, and one `requestAnimationFrame`
 * callback takes a new snapshot (the newest state, its seq, the status, the stats).
 * A 200 Hz stream thus costs a 60 Hz display 60 renders a second, not 200. In a
 * background tab, where browsers stop animation frames, the view waits until the tab
 * shows again; the subscriber keeps following the stream meanwhile.
 *
 * React (18 or later) is a peer dependency of this entry point only.
 *
 * @module
 */

import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { Envelope, Frame, State, Summary } from "./model.js";
import { mergeEnvelopes } from "./summary.js";
import {
  Subscriber,
  type ConnectionStatus,
  type SubscriberOptions,
  type SubscriberStats,
} from "./subscriber.js";

/** Options of {@link usePccStream}: the {@link SubscriberOptions} without `url`, and `enabled`. */
export interface UsePccStreamOptions extends Omit<SubscriberOptions, "url" | "signal"> {
  /** `false` closes the connection (and opens none): status `closed`. Default `true`. */
  readonly enabled?: boolean | undefined;
}

/** What {@link usePccStream} returns: one consistent snapshot, taken at an animation frame. */
export interface PccStreamView {
  /**
   * The newest verified state received on this connection key, or `undefined`
   * before the first. It stays while a resync is pending or the connection is down
   * (`subscriber.state` is `undefined` then).
   */
  readonly state: State | undefined;
  /** Its seq. */
  readonly seq: number | undefined;
  /** The stream's epoch of that state, when the server sends one. */
  readonly epoch: string | undefined;
  /** The kind of frame that brought it. */
  readonly kind: Frame["kind"] | undefined;
  /** `Date.now()/1000 - state.timestamp` when it arrived, for states with a timestamp. */
  readonly latency: number | undefined;
  /** That state's summary, with `fields` taking `summary`. */
  readonly summary: Summary | undefined;
  /**
   * The range of each summary quantity since the previous snapshot (with `maxHz` and
   * `summary`): the envelopes of every update between two animation frames merged,
   * so a spike the view skipped still shows. `undefined` without envelopes.
   */
  readonly envelope: Envelope | undefined;
  /** The connection status (`closed` when `url` is empty or `enabled` is false). */
  readonly status: ConnectionStatus;
  /**
   * For `closed`: the permanent error (wrong key, path, …); for `reconnecting`: why
   * the connection was lost. `undefined` otherwise.
   */
  readonly error: Error | undefined;
  /** The subscriber's counters. */
  readonly stats: SubscriberStats;
  /** The subscriber itself (for `resync()`, `pause()`); `undefined` when there is none. */
  readonly subscriber: Subscriber | undefined;
}

const NO_STATS: SubscriberStats = {
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

function emptyView(status: ConnectionStatus, error?: Error): PccStreamView {
  return {
    state: undefined,
    seq: undefined,
    epoch: undefined,
    kind: undefined,
    latency: undefined,
    summary: undefined,
    envelope: undefined,
    status,
    error,
    stats: NO_STATS,
    subscriber: undefined,
  };
}

interface Latest {
  state: State;
  seq: number;
  epoch: string | undefined;
  kind: Frame["kind"];
  latency: number | undefined;
  summary: Summary | undefined;
  /** The envelopes of the updates since the last snapshot, merged. */
  envelope: Envelope | undefined;
}

/**
 * The view of one subscriber for React: events mark it stale, one animation frame
 * makes the new snapshot and tells React (`useSyncExternalStore`).
 */
class StreamStore {
  #view: PccStreamView;
  readonly #listeners = new Set<() => void>();
  #sub: Subscriber | undefined;
  #latest: Latest | undefined;
  /** `#latest` came after the last snapshot. */
  #unshown = false;
  #error: Error | undefined;
  #cancelFrame: (() => void) | undefined;

  constructor(initial: PccStreamView) {
    this.#view = initial;
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  readonly getSnapshot = (): PccStreamView => this.#view;

  /** Follows `sub` until the returned function is called. */
  attach(sub: Subscriber): () => void {
    this.#sub = sub;
    this.#latest = undefined;
    this.#unshown = false;
    this.#error = undefined;
    const stops = [
      sub.onUpdate((state, info) => {
        // Envelopes not yet shown are merged: a render shows every state's range.
        const pending = this.#unshown ? this.#latest?.envelope : undefined;
        const envelope =
          pending !== undefined && info.envelope !== undefined ? mergeEnvelopes(pending, info.envelope) : info.envelope;
        this.#latest = {
          state,
          seq: info.seq,
          epoch: info.epoch,
          kind: info.kind,
          latency: info.latency,
          summary: info.summary,
          envelope,
        };
        this.#unshown = true;
        this.#schedule();
      }),
      sub.on("status", (change) => {
        this.#error = change.error;
        this.#schedule();
      }),
      sub.on("resync", () => this.#schedule()),
    ];
    this.#schedule();
    return () => {
      for (const stop of stops) stop();
      this.#cancel();
      if (this.#sub === sub) this.#sub = undefined;
    };
  }

  /** No subscriber (no URL, disabled, or a URL the subscriber refused). */
  idle(error?: Error): void {
    this.#cancel();
    this.#sub = undefined;
    const current = this.#view;
    if (current.status === "closed" && current.error === error && current.subscriber === undefined) return;
    this.#publish(emptyView("closed", error));
  }

  #schedule(): void {
    if (this.#cancelFrame !== undefined) return;
    const g = globalThis as {
      requestAnimationFrame?: (cb: (time: number) => void) => number;
      cancelAnimationFrame?: (id: number) => void;
    };
    if (typeof g.requestAnimationFrame === "function") {
      const id = g.requestAnimationFrame(this.#flush);
      this.#cancelFrame = () => g.cancelAnimationFrame?.(id);
    } else {
      // No animation frames (server rendering, tests, workers): about 60 Hz.
      const timer = setTimeout(this.#flush, 16);
      this.#cancelFrame = () => clearTimeout(timer);
    }
  }

  #cancel(): void {
    const cancel = this.#cancelFrame;
    this.#cancelFrame = undefined;
    cancel?.();
  }

  readonly #flush = (): void => {
    this.#cancelFrame = undefined;
    const sub = this.#sub;
    if (sub === undefined) return;
    const latest = this.#latest;
    this.#unshown = false;
    const status = sub.status;
    this.#publish({
      state: latest?.state,
      seq: latest?.seq,
      epoch: latest?.epoch,
      kind: latest?.kind,
      latency: latest?.latency,
      summary: latest?.summary,
      envelope: latest?.envelope,
      status,
      error: status === "connected" ? undefined : (sub.error ?? this.#error),
      stats: sub.stats,
      subscriber: sub,
    });
  };

  #publish(view: PccStreamView): void {
    this.#view = view;
    for (const listener of [...this.#listeners]) listener();
  }
}

/** The options that make a new connection when they change. */
function connectionKey(url: string | null, options: UsePccStreamOptions): string {
  return JSON.stringify([
    url,
    options.enabled ?? true,
    options.format,
    options.delta,
    options.maxHz,
    options.epsilon,
    options.fields,
    options.stream,
    options.key,
    options.keyIn,
    options.params,
    options.reconnect,
    options.firstConnectTries,
    options.connectTimeoutMs,
    options.maxReconnects,
    options.resume,
    options.preferWsPackage,
  ]);
}

/**
 * Follows a phasecast stream from a React component.
 *
 * Opens a {@link Subscriber} on mount and closes it on unmount (and when `url` or
 * an option that shapes the connection changes: `format`, `stream`, `key`, …;
 * `WebSocket`, `logger` and `onEvent` are read when the connection is made). The
 * component re-renders at most once per animation frame, however fast frames
 * arrive.
 *
 * @param url the `/ws` URL (`ws://host:8787/ws`); `null`/`undefined`/`""`: no connection.
 */
export function usePccStream(
  url: string | URL | null | undefined,
  options: UsePccStreamOptions = {},
): PccStreamView {
  const urlText = url === null || url === undefined || String(url) === "" ? null : String(url);
  const active = urlText !== null && options.enabled !== false;
  const [store] = useState(() => new StreamStore(emptyView(active ? "connecting" : "closed")));
  const optionsRef = useRef(options);
  useEffect(() => {
    optionsRef.current = options;
  });
  const key = connectionKey(urlText, options);
  useEffect(() => {
    if (!active || urlText === null) {
      store.idle();
      return undefined;
    }
    const { enabled: _enabled, ...rest } = optionsRef.current;
    let sub: Subscriber;
    try {
      sub = new Subscriber({ ...rest, url: urlText });
    } catch (err) {
      store.idle(err as Error);
      return undefined;
    }
    const detach = store.attach(sub);
    return () => {
      detach();
      sub.close();
    };
    // `key` stands for urlText, active and every option that shapes the connection.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [store, key]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}
