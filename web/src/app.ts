/**
 * phasecast's live dashboard. Subscribes to `/ws` on its own origin with the
 * TypeScript client (which applies deltas, verifies checksums, resyncs and reconnects
 * with resume), applies frames as they arrive, and draws on requestAnimationFrame.
 *
 * Two subscriptions, each shaped by the server for what it drives:
 *
 * - summaries (`fields=summary,timestamp`, every state unless `chart_hz`): r, ψ,
 *   magnetisation, energy and the phase histogram, computed by the server from the
 *   producer's state; with `chart_hz` each frame's envelope (min–max over the states
 *   between frames) is drawn as a band, so a one-step spike still shows;
 * - arrays (`fields=phases,spins&epsilon=0.001&max_hz=30` by default): the unit circle
 *   and the spin grid.
 *
 * A server without shaping (no `precision_classes` in /health, or refusing `fields`)
 * gets one whole-frame subscription, and the page computes r and m itself.
 *
 * Query parameters: `format=json|protobuf`, `delta=false`, `stream=NAME`, `max_hz=N`
 * (a cap on every subscription), `epsilon=E`, `arrays_hz=N|full`, `chart_hz=N|full`,
 * `key=KEY` (subscriber key), and for development `server=HOST:PORT` (use another
 * phasecast for /ws and /health).
 *
 * For tests: `window.__phasecast` (read-only: seq, step, format, connected,
 * phasesChecksum, summaryFrames, arrayFrames, r, …) and `data-seq` / `data-format` /
 * `data-connected` / `data-mode` on `#app`.
 */
import {
  subscriptionUrl,
  Subscriber,
  type Envelope,
  type Format,
  type State,
  type SubscriberOptions,
  type Summary,
  type UpdateInfo,
  type WebSocketConstructor,
} from "@phasecast/client";
import "./app.css";
import { drawHistogram, drawPhases, drawSeries, drawSpins, readPalette, summarize, Surface, type Readings } from "./draw.js";
import {
  chooseEpsilon,
  effectiveHz,
  endpoints,
  parseFormat,
  parseRate,
  PREFERRED_EPSILON,
  readSettings,
  settingsUrl,
  type Settings,
} from "./settings.js";
import { CounterWindow, History, ValueWindow } from "./windows.js";

/** What tests read instead of pixels. */
export interface PhasecastHook {
  /** Seq of the phases and spins shown (0 before the first). */
  readonly seq: number;
  /** Their step. */
  readonly step: number;
  /** Encoding of the frames arriving now ("" before the first frame of a connection). */
  readonly format: Format | "";
  /** Whether every subscription's WebSocket is open. */
  readonly connected: boolean;
  /** Sum of the phases shown. */
  readonly phasesChecksum: number;
  /** Oscillators in the state shown. */
  readonly oscillators: number;
  /** Frames received since the page loaded, all subscriptions. */
  readonly frames: number;
  /** Whether deltas are asked for. */
  readonly delta: boolean;
  /** Stream followed. */
  readonly stream: string;
  /** Successful reconnects of the phases-and-spins subscription since the page loaded. */
  readonly reconnects: number;
  /** Banner state: connecting, connected, idle, offline. */
  readonly banner: BannerState;
  /** `shaped`: a summary and an arrays subscription; `whole`: one whole-frame subscription. */
  readonly mode: Mode;
  /** Frames of the summary subscription since the page loaded (0 in `whole` mode). */
  readonly summaryFrames: number;
  /** Frames of the subscription that brings the phases and spins (the whole one in `whole` mode). */
  readonly arrayFrames: number;
  /** Seq of the summary shown (the server's, or the state's in `whole` mode). */
  readonly summarySeq: number;
  /** Kuramoto r shown (NaN before the first). */
  readonly r: number;
  /** Its angle ψ shown. */
  readonly psi: number;
  /** Magnetisation shown (NaN before the first). */
  readonly magnetization: number;
  /** Energy shown (NaN before the first). */
  readonly energy: number;
  /** Histogram bins of the summary shown. */
  readonly histogramBins: number;
  /** Precision class the arrays subscription asks for (`null`: the server's default, `whole` mode). */
  readonly epsilon: number | null;
  /** `max_hz` of the arrays subscription (`null`: every state). */
  readonly arraysHz: number | null;
  /** `max_hz` of the summary subscription (`null`: every state). */
  readonly chartHz: number | null;
  /** Whether a chart has drawn an envelope band (min–max wider than its line). */
  readonly envelopeSeen: boolean;
  /** Greatest energy the energy chart covers now (its band's top: envelope maxima). */
  readonly energyBandMax: number;
  /** Envelopes received (frames of the summary subscription that carried one). */
  readonly envelopes: number;
  /** The note by the phases drawing (its precision and rate). */
  readonly note: string;
}

declare global {
  interface Window {
    readonly __phasecast: PhasecastHook;
  }
}

type BannerState = "connecting" | "connected" | "idle" | "offline";
type Mode = "shaped" | "whole";
/** What a subscription drives: the charts, the drawings, or (`whole`) both. */
type Role = "summary" | "arrays" | "whole";

const CHART_SPAN_MS = 10_000;
const STATS_WINDOW_MS = 1_000;
const IDLE_AFTER_MS = 2_000;
const HEALTH_EVERY_MS = 5_000;
const RECONNECT = { initialMs: 250, maxMs: 4_000 } as const;
/** Histogram bins computed in the page when the server does not say (`summary_bins`). */
const DEFAULT_BINS = 16;
/**
 * Failed first tries of a shaped subscription, while /health answers, after which the
 * page takes the server for one that refuses `fields` (a browser cannot see the 400)
 * and falls back to one whole-frame subscription.
 */
const REFUSED_AFTER_TRIES = 3;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

const root = $("app");
const ui = {
  banner: $("banner"),
  bannerText: $("banner-text"),
  bannerDetail: $("banner-detail"),
  formatButtons: [...document.querySelectorAll<HTMLButtonElement>(".segmented button[data-value]")],
  delta: $<HTMLInputElement>("delta"),
  stream: $<HTMLSelectElement>("stream"),
  epsilon: $<HTMLSelectElement>("epsilon"),
  arraysHz: $<HTMLSelectElement>("arrays-hz"),
  chartHz: $<HTMLSelectElement>("chart-hz"),
  arraysNote: $("arrays-note"),
  spinsNote: $("spins-note"),
  chartNote: $("chart-note"),
  orderR: $("order-r"),
  orderPsi: $("order-psi"),
  spinM: $("spin-m"),
  spinUp: $("spin-up"),
  spinDown: $("spin-down"),
  chartR: $("chart-r"),
  chartM: $("chart-m"),
  energyNow: $("energy-now"),
  histBins: $("hist-bins"),
  mode: $("stat-mode"),
  statStream: $("stat-stream"),
  seq: $("stat-seq"),
  step: $("stat-step"),
  fps: $("stat-fps"),
  bps: $("stat-bps"),
  subs: $("stat-subs"),
  mix: $("stat-mix"),
  mixFull: $("mix-full"),
  p50: $("stat-p50"),
  p95: $("stat-p95"),
  resyncs: $("stat-resyncs"),
  reconnects: $("stat-reconnects"),
  osc: $("stat-osc"),
  frames: $("stat-frames"),
  size: $("stat-size"),
  uptime: $("stat-uptime"),
  ignored: $("stat-ignored"),
  decode: $("stat-decode"),
  server: $("stat-server"),
  url: $("stat-url"),
};
const surfaces = {
  phases: new Surface($<HTMLCanvasElement>("phases-canvas")),
  spins: new Surface($<HTMLCanvasElement>("spins-canvas")),
  r: new Surface($<HTMLCanvasElement>("r-canvas")),
  m: new Surface($<HTMLCanvasElement>("m-canvas")),
  energy: new Surface($<HTMLCanvasElement>("energy-canvas")),
  histogram: new Surface($<HTMLCanvasElement>("hist-canvas")),
};
const palette = readPalette(root);

// --- state --------------------------------------------------------------------------

let settings: Settings = readSettings(location.search);

/** What /health says the server can shape; `undefined` until it answered. */
interface Shaping {
  /** `precision_classes`, or `undefined` for a server without shaping. */
  classes: number[] | undefined;
  defaultEpsilon: number | undefined;
  bins: number | undefined;
}
let shaping: Shaping | undefined;
/** The last /health read answered. */
let healthOk = false;
/** The server refused the shaped subscriptions: whole frames until the page reloads. */
let refused = false;

/** One subscription and what the banner needs of its connection. */
interface Feed {
  readonly role: Role;
  readonly sub: Subscriber;
  readonly url: string;
  connected: boolean;
  everOpened: boolean;
  /** Failed tries before the first open, counted while /health answered. */
  failsWhileHealthy: number;
  openedAt: number;
  lastUpdateAt: number;
  lastClose: { code: number; reason: string } | undefined;
  retry: { attempt: number; at: number } | undefined;
  readonly unlisten: (() => void)[];
}
let feeds: Feed[] = [];
let mode: Mode = "shaped";
let generation = 0;
/** What the current subscriptions asked for (shown in the notes and the hook). */
let asked: { epsilon: number | undefined; arraysHz: number | undefined; chartHz: number | undefined } = {
  epsilon: undefined,
  arraysHz: undefined,
  chartHz: undefined,
};

/** The phases and spins shown. */
let current: State | undefined;
let seq = 0;
/** The summary shown: the server's, or computed here from `current` in whole mode. */
let readings: Readings | undefined;
let summarySeq = 0;
/** In whole mode: `current` changed and `readings` are not of it yet. */
let readingsStale = false;
let envelopes = 0;
let envelopeSeen = false;
/** States covered by the latest envelope. */
let envelopeStates = 0;

let wireFormat: Format | undefined;
let serverDefaultFormat: Format | undefined;
let banner: BannerState = "connecting";
let dirty = true;
/** Counters of subscribers replaced by a control change. */
const past = { frames: 0, summaryFrames: 0, arrayFrames: 0, resyncs: 0, reconnects: 0, ignored: 0, decode: 0 };

const rates = new CounterWindow<"frames" | "bytes" | "sFrames" | "sBytes" | "aFrames" | "aBytes" | "full" | "delta">(STATS_WINDOW_MS);
const latencies = new ValueWindow(STATS_WINDOW_MS);
const charts = { r: new History(32_768), m: new History(32_768), energy: new History(32_768) };

const streamName = (): string => settings.stream ?? "default";
const feedOf = (...roles: Role[]): Feed | undefined => feeds.find((f) => roles.includes(f.role));
/** The subscription that brings the phases and spins. */
const arraysFeed = (): Feed | undefined => feedOf("arrays", "whole");
const summaryFeed = (): Feed | undefined => feedOf("summary");
const allConnected = (): boolean => feeds.length > 0 && feeds.every((f) => f.connected);
const framesOf = (f: Feed | undefined): number => f?.sub.stats.framesReceived ?? 0;
const sumStats = (key: "framesReceived" | "resyncs" | "ignoredDeltas" | "decodeErrors"): number =>
  feeds.reduce((n, f) => n + f.sub.stats[key], 0);

const hook: PhasecastHook = Object.freeze({
  get seq() {
    return seq;
  },
  get step() {
    return current?.step ?? 0;
  },
  get format() {
    return wireFormat ?? "";
  },
  get connected() {
    return allConnected();
  },
  get phasesChecksum() {
    let sum = 0;
    for (const x of current?.phases ?? []) sum += x;
    return sum;
  },
  get oscillators() {
    return current?.phases.length ?? 0;
  },
  get frames() {
    return past.frames + sumStats("framesReceived");
  },
  get delta() {
    return settings.delta;
  },
  get stream() {
    return streamName();
  },
  get reconnects() {
    return past.reconnects + Math.max(0, (arraysFeed()?.sub.stats.connections ?? 0) - 1);
  },
  get banner() {
    return banner;
  },
  get mode() {
    return mode;
  },
  get summaryFrames() {
    return past.summaryFrames + framesOf(summaryFeed());
  },
  get arrayFrames() {
    return past.arrayFrames + framesOf(arraysFeed());
  },
  get summarySeq() {
    return summarySeq;
  },
  get r() {
    return readings?.r ?? NaN;
  },
  get psi() {
    return readings?.psi ?? NaN;
  },
  get magnetization() {
    return readings?.magnetization ?? NaN;
  },
  get energy() {
    return readings?.energy ?? NaN;
  },
  get histogramBins() {
    return readings?.histogram.length ?? 0;
  },
  get epsilon() {
    return asked.epsilon ?? null;
  },
  get arraysHz() {
    return asked.arraysHz ?? null;
  },
  get chartHz() {
    return asked.chartHz ?? null;
  },
  get envelopeSeen() {
    return envelopeSeen;
  },
  get energyBandMax() {
    let max = -Infinity;
    charts.energy.forEach(performance.now() - CHART_SPAN_MS, (_t, _v, _lo, hi) => {
      if (hi > max) max = hi;
    });
    return max;
  },
  get envelopes() {
    return envelopes;
  },
  get note() {
    return ui.arraysNote.textContent ?? "";
  },
});
Object.defineProperty(window, "__phasecast", { value: hook, enumerable: false, configurable: false, writable: false });

// --- subscriptions ---------------------------------------------------------------------

/**
 * The browser's WebSocket, noting the encoding of each message before the client
 * handles it (text: JSON, binary: protobuf), for these subscriptions only.
 */
function tappedWebSocket(gen: number): WebSocketConstructor {
  class Tapped extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("message", (event) => {
        if (gen === generation) wireFormat = typeof event.data === "string" ? "json" : "protobuf";
      });
    }
  }
  return Tapped as unknown as WebSocketConstructor;
}

/** Which mode the server allows: shaped unless /health (or a refusal) says otherwise. */
function wantedMode(): Mode {
  if (refused) return "whole";
  return shaping !== undefined && shaping.classes === undefined ? "whole" : "shaped";
}

/** The precision class the arrays subscription asks for (before /health: 0.001 or the URL's). */
function wantedEpsilon(): number | undefined {
  if (shaping?.classes === undefined) return settings.epsilon ?? PREFERRED_EPSILON;
  return chooseEpsilon(settings.epsilon, shaping.classes, shaping.defaultEpsilon);
}

/** Closes the subscriptions, keeping their counters for the totals. */
function closeFeeds(): void {
  for (const f of feeds) {
    const st = f.sub.stats;
    past.frames += st.framesReceived;
    if (f.role === "summary") past.summaryFrames += st.framesReceived;
    else past.arrayFrames += st.framesReceived;
    past.resyncs += st.resyncs;
    if (f.role !== "summary") past.reconnects += Math.max(0, st.connections - 1);
    past.ignored += st.ignoredDeltas;
    past.decode += st.decodeErrors;
    for (const off of f.unlisten) off();
    f.sub.close();
  }
  feeds = [];
}

/** (Re)opens the subscriptions for the current settings and mode. */
function subscribe(): void {
  closeFeeds();
  const gen = ++generation;
  mode = wantedMode();
  wireFormat = undefined;
  rates.clear();
  latencies.clear();
  root.dataset.connected = "false";
  root.dataset.format = "";
  root.dataset.mode = mode;

  if (mode === "shaped") {
    asked = {
      epsilon: wantedEpsilon(),
      arraysHz: effectiveHz(settings.arraysHz, settings.maxHz),
      chartHz: effectiveHz(settings.chartHz, settings.maxHz),
    };
    // The timestamp rides with the summaries: latency is measured at the full rate.
    openFeed(gen, "summary", { fields: ["summary", "timestamp"], maxHz: asked.chartHz });
    openFeed(gen, "arrays", { fields: ["phases", "spins"], epsilon: asked.epsilon, maxHz: asked.arraysHz });
  } else {
    asked = { epsilon: undefined, arraysHz: settings.maxHz, chartHz: settings.maxHz };
    openFeed(gen, "whole", { maxHz: settings.maxHz });
  }
  ui.url.replaceChildren(
    ...feeds.map((f) => {
      const code = document.createElement("code");
      code.textContent = f.url;
      code.title = f.url;
      return code;
    }),
  );
  renderNotes();
  renderControls();
  renderBanner();
}

type Shape = Pick<SubscriberOptions, "fields" | "epsilon" | "maxHz">;

function openFeed(gen: number, role: Role, shape: Shape): void {
  const { ws } = endpoints(location, settings);
  const options: { -readonly [K in keyof SubscriberOptions]: SubscriberOptions[K] } = {
    url: ws,
    delta: settings.delta,
    reconnect: RECONNECT,
    // A dashboard left open keeps trying while the server is down or restarting.
    firstConnectTries: Infinity,
    WebSocket: tappedWebSocket(gen),
  };
  if (settings.format !== undefined) options.format = settings.format;
  if (settings.stream !== undefined) options.stream = settings.stream;
  if (settings.key !== undefined) options.key = settings.key;
  if (shape.fields !== undefined) options.fields = shape.fields;
  if (shape.epsilon !== undefined) options.epsilon = shape.epsilon;
  if (shape.maxHz !== undefined) options.maxHz = shape.maxHz;
  // The URL shown: the subscription's, without the key.
  const shown = subscriptionUrl(ws, {
    format: settings.format,
    delta: settings.delta ? undefined : false,
    stream: settings.stream,
    fields: shape.fields,
    epsilon: shape.epsilon,
    maxHz: shape.maxHz,
  });
  const sub = new Subscriber(options);
  const feed: Feed = {
    role,
    sub,
    url: shown.href,
    connected: false,
    everOpened: false,
    failsWhileHealthy: 0,
    openedAt: 0,
    lastUpdateAt: 0,
    lastClose: undefined,
    retry: undefined,
    unlisten: [],
  };
  feeds.push(feed);
  feed.unlisten.push(
    sub.onUpdate((state, info) => onUpdate(feed, state, info)),
    sub.on("open", () => {
      feed.connected = true;
      feed.everOpened = true;
      feed.openedAt = performance.now();
      feed.retry = undefined;
      root.dataset.connected = String(allConnected());
      renderBanner();
      renderControls();
    }),
    sub.on("close", (code, reason) => {
      feed.connected = false;
      feed.lastClose = { code, reason };
      root.dataset.connected = "false";
      renderBanner();
    }),
    sub.on("reconnect", (attempt, delayMs) => {
      feed.retry = { attempt, at: performance.now() + delayMs };
      if (healthOk && !feed.everOpened) feed.failsWhileHealthy++;
      if (role !== "whole" && feed.failsWhileHealthy >= REFUSED_AFTER_TRIES) fallBack();
      else renderBanner();
    }),
    // A refusal the client can see (an HTTP 400 where the status is readable).
    sub.on("closed", (change) => {
      if (role !== "whole" && change.error !== undefined && !feed.everOpened) fallBack();
    }),
  );
}

/** The server answers /health but will not open the shaped subscriptions: whole frames. */
function fallBack(): void {
  if (refused) return;
  refused = true;
  queueMicrotask(() => {
    resetView();
    subscribe();
  });
}

function onUpdate(feed: Feed, state: State, info: UpdateInfo): void {
  const now = performance.now();
  feed.lastUpdateAt = now;
  if (info.latency !== undefined) latencies.add(now, info.latency * 1000);
  if (feed.role === "summary") {
    if (info.summary) onSummary(now, info.seq, info.summary, info.envelope);
  } else {
    current = state;
    seq = info.seq;
    root.dataset.seq = String(seq);
    if (feed.role === "whole") {
      // The exact energy of every state; r and m are computed at most once per
      // drawing (see `frame`), so a large state costs no more at 1 kHz than at 60 Hz.
      charts.energy.add(now, state.energy);
      readingsStale = true;
      summarySeq = info.seq;
    }
  }
  dirty = true;
  if (root.dataset.format !== wireFormat) root.dataset.format = wireFormat ?? "";
  if (banner !== "connected") renderBanner();
}

/**
 * A server summary. With an envelope (the subscription has `max_hz`), each chart point
 * is the mean over the states since the previous frame, with their min–max as a band.
 */
function onSummary(now: number, at: number, summary: Summary, envelope: Envelope | undefined): void {
  readings = summary;
  summarySeq = at;
  if (envelope) {
    envelopes++;
    envelopeStates = envelope.states;
    charts.r.add(now, envelope.r.mean, envelope.r.min, envelope.r.max);
    charts.m.add(now, envelope.magnetization.mean, envelope.magnetization.min, envelope.magnetization.max);
    charts.energy.add(now, envelope.energy.mean, envelope.energy.min, envelope.energy.max);
  } else {
    charts.r.add(now, summary.r);
    charts.m.add(now, summary.magnetization);
    charts.energy.add(now, summary.energy);
  }
}

/** Forgets what is shown (another stream, or another mode). */
function resetView(): void {
  for (const history of Object.values(charts)) history.clear();
  current = undefined;
  readings = undefined;
  seq = 0;
  summarySeq = 0;
  envelopeStates = 0;
  dirty = true;
}

function change(next: Partial<Settings>): void {
  const before = streamName();
  settings = { ...settings, ...next };
  if (settings.stream === "default") settings.stream = undefined;
  if (streamName() !== before) resetView();
  history.replaceState(null, "", settingsUrl(location.href, settings));
  subscribe();
}

// --- controls ---------------------------------------------------------------------------

for (const button of ui.formatButtons) {
  button.addEventListener("click", () => {
    const format = parseFormat(button.dataset.value);
    if (format && format !== (settings.format ?? wireFormat)) change({ format });
    else if (format) {
      settings.format = format; // pin the server's default choice in the URL
      history.replaceState(null, "", settingsUrl(location.href, settings));
      renderControls();
    }
  });
}
ui.delta.addEventListener("change", () => change({ delta: ui.delta.checked }));
ui.stream.addEventListener("change", () => change({ stream: ui.stream.value }));
ui.epsilon.addEventListener("change", () => {
  const epsilon = ui.epsilon.value === "" ? NaN : Number(ui.epsilon.value);
  if (Number.isFinite(epsilon)) change({ epsilon });
});
ui.arraysHz.addEventListener("change", () => change({ arraysHz: parseRate(ui.arraysHz.value, settings.arraysHz) }));
ui.chartHz.addEventListener("change", () => change({ chartHz: parseRate(ui.chartHz.value, settings.chartHz) }));

function renderControls(): void {
  const shown = settings.format ?? wireFormat ?? serverDefaultFormat;
  for (const button of ui.formatButtons) {
    button.setAttribute("aria-checked", String(button.dataset.value === shown));
  }
  ui.delta.checked = settings.delta;
  ensureOption(ui.stream, streamName(), streamName());
  ui.stream.value = streamName();
  renderEpsilonOptions();
  selectRate(ui.arraysHz, settings.arraysHz);
  selectRate(ui.chartHz, settings.chartHz);
  // Whole frames have one precision and one rate: the shaping controls do nothing.
  const whole = mode === "whole";
  for (const select of [ui.epsilon, ui.arraysHz, ui.chartHz]) select.disabled = whole;
}

/** The precision classes the server offers (or, before /health, the one asked for). */
function renderEpsilonOptions(): void {
  const classes = shaping?.classes ?? [];
  const chosen = mode === "shaped" ? asked.epsilon : undefined;
  const values = [...new Set([...classes, ...(chosen !== undefined ? [chosen] : [])])].sort((a, b) => a - b);
  const keep = new Set(values.length > 0 ? values.map(String) : [""]);
  for (const option of [...ui.epsilon.options]) if (!keep.has(option.value)) option.remove();
  for (const e of values) ensureOption(ui.epsilon, String(e), fmtEpsilon(e).replace(" rad", ""));
  // Options in ascending order (a class can arrive after the one asked for).
  const sorted = [...ui.epsilon.options].sort((a, b) => Number(a.value) - Number(b.value));
  if (sorted.some((o, k) => ui.epsilon.options[k] !== o)) ui.epsilon.append(...sorted);
  if (values.length === 0) ensureOption(ui.epsilon, "", "default");
  ui.epsilon.value = chosen !== undefined ? String(chosen) : "";
}

function selectRate(select: HTMLSelectElement, rate: number | "full"): void {
  ensureOption(select, String(rate), rate === "full" ? "full" : `${fmtHz(rate)} Hz`);
  select.value = String(rate);
}

function ensureOption(select: HTMLSelectElement, value: string, label: string): HTMLOptionElement {
  for (const option of select.options) if (option.value === value) return option;
  const option = document.createElement("option");
  option.value = value;
  option.textContent = label;
  select.append(option);
  return option;
}

/** The notes by the drawings and the charts: what precision and rate they show. */
function renderNotes(): void {
  let arrays: string;
  let spins: string;
  let chart: string;
  const hz = (rate: number | undefined): string => (rate === undefined ? "every state" : `${fmtHz(rate)} Hz`);
  if (mode === "shaped") {
    const eps = asked.epsilon;
    arrays = `phases ${eps === undefined ? "at the server's default precision" : eps === 0 ? "exact" : `at ${fmtEpsilon(eps)}`}, ${hz(asked.arraysHz)}`;
    spins = `spins exact, ${hz(asked.arraysHz)}`;
    chart =
      asked.chartHz === undefined
        ? "server summaries of every state"
        : `server summaries at ${hz(asked.chartHz)}; band: min–max of the states between frames` +
          (envelopeStates > 0 ? ` (${fmtInt(envelopeStates)} each)` : "");
  } else {
    const how = refused ? "the server refused shaped subscriptions" : "this server sends no summaries";
    arrays = `whole frames, ${hz(asked.arraysHz)} (${how})`;
    spins = `spins exact, ${hz(asked.arraysHz)}`;
    chart = "r and magnetisation computed in the page from whole frames";
  }
  if (ui.arraysNote.textContent !== arrays) ui.arraysNote.textContent = arrays;
  if (ui.spinsNote.textContent !== spins) ui.spinsNote.textContent = spins;
  if (ui.chartNote.textContent !== chart) ui.chartNote.textContent = chart;
}

// --- /health: the stream list, the precision classes and the server line ----------------

interface Health {
  version?: string;
  wire_format?: string;
  uptime_seconds?: number;
  subscribers?: number;
  streams?: { name: string; oscillators?: number; subscribers?: number }[];
  precision_classes?: unknown;
  default_epsilon?: unknown;
  summary_bins?: unknown;
}

async function getJson(url: string): Promise<Health> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 3_000);
  try {
    const res = await fetch(url, { cache: "no-store", signal: controller.signal });
    if (!res.ok) throw new Error(`${url}: ${res.status}`);
    return (await res.json()) as Health;
  } finally {
    clearTimeout(timer);
  }
}

/** What /health says of shaping; no `precision_classes` list: a server without it. */
function shapingOf(h: Health): Shaping {
  const finite = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
  const classes = Array.isArray(h.precision_classes) ? h.precision_classes.filter(finite) : [];
  return {
    classes: classes.length > 0 ? classes : undefined,
    defaultEpsilon: finite(h.default_epsilon) ? h.default_epsilon : undefined,
    bins: finite(h.summary_bins) && h.summary_bins > 0 ? h.summary_bins : undefined,
  };
}

async function refreshHealth(): Promise<void> {
  const { health } = endpoints(location, settings);
  let h: Health;
  try {
    h = await getJson(health);
  } catch {
    // A cross-origin /health needs CORS, which older servers do not send: try the
    // page's own origin (a dev server that proxies /health).
    try {
      if (settings.server === undefined) throw new Error("unreachable");
      h = await getJson("/health");
    } catch {
      healthOk = false;
      ui.server.classList.add("stale");
      return;
    }
  }
  healthOk = true;
  ui.server.classList.remove("stale");
  serverDefaultFormat = parseFormat(h.wire_format);
  applyShaping(shapingOf(h));
  const streams = Array.isArray(h.streams) ? h.streams : [];
  const names = new Set(streams.map((s) => s.name));
  names.add(streamName());
  for (const option of [...ui.stream.options]) if (!names.has(option.value)) option.remove();
  for (const s of [...streams].sort((a, b) => a.name.localeCompare(b.name))) {
    const option = ensureOption(ui.stream, s.name, s.name);
    option.textContent = s.oscillators !== undefined ? `${s.name} (${fmtInt(s.oscillators)} osc)` : s.name;
  }
  const me = streams.find((s) => s.name === streamName());
  ui.server.textContent =
    `phasecast ${h.version ?? "?"} · default format ${h.wire_format ?? "?"}` +
    ` · ${fmtInt(me?.subscribers ?? h.subscribers ?? 0)} subscriber${(me?.subscribers ?? 0) === 1 ? "" : "s"} on this stream` +
    ` · ${streams.length} stream${streams.length === 1 ? "" : "s"} · up ${fmtDuration(h.uptime_seconds ?? 0)}`;
  renderControls();
}

/**
 * Takes what /health says of shaping; resubscribes when it changes what the page
 * should ask for (the first answer, a server replaced by an older or newer one).
 */
function applyShaping(next: Shaping): void {
  shaping = next;
  const epsilonChanged = mode === "shaped" && wantedEpsilon() !== asked.epsilon;
  if (feeds.length === 0) return; // not subscribed yet: `start` does it
  if (wantedMode() !== mode) {
    resetView();
    subscribe();
  } else if (epsilonChanged) {
    subscribe();
  }
}

// --- banner and stats ---------------------------------------------------------------------

function renderBanner(): void {
  const now = performance.now();
  // Not every subscription open and no close yet: the first attempt (the page just
  // opened, or a control changed); after a close: unreachable until all reopen.
  const closed = feeds.find((f) => !f.connected && f.lastClose !== undefined);
  const lastUpdateAt = Math.max(0, ...feeds.map((f) => f.lastUpdateAt));
  const openedAt = Math.max(0, ...feeds.map((f) => f.openedAt));
  const state: BannerState = allConnected()
    ? now - Math.max(lastUpdateAt, openedAt) > IDLE_AFTER_MS
      ? "idle"
      : "connected"
    : closed !== undefined
      ? "offline"
      : "connecting";
  banner = state;
  ui.banner.dataset.state = state;
  const host = settings.server ?? location.host;
  const shape = mode === "shaped" ? "summaries + arrays" : "whole frames";
  const what = `${streamName()} · ${wireFormat ?? settings.format ?? "server default"} · ${settings.delta ? "deltas" : "full frames only"} · ${shape}`;
  let text: string;
  let detail: string;
  switch (state) {
    case "connected":
      text = "connected";
      detail = `${what} · ${host}`;
      break;
    case "idle":
      if (lastUpdateAt >= openedAt) {
        text = `connected — no new state for ${fmtSeconds((now - lastUpdateAt) / 1000)}`;
        detail = `the producer may be idle · ${what} · ${host}`;
      } else {
        text = "connected — waiting for the first state";
        detail = `is a producer publishing to ${streamName()}? · ${what} · ${host}`;
      }
      break;
    case "connecting":
      text = "connecting…";
      detail = `${host}/ws`;
      break;
    case "offline": {
      text = "server unreachable — retrying…";
      const parts: string[] = [];
      const retry = closed?.retry;
      if (retry) {
        const wait = Math.max(0, (retry.at - now) / 1000);
        parts.push(wait > 0.05 ? `attempt ${retry.attempt}, next in ${wait.toFixed(1)} s` : `attempt ${retry.attempt}`);
      }
      const lastClose = closed?.lastClose;
      if (lastClose) parts.push(`closed ${lastClose.code}${lastClose.reason ? ` (${lastClose.reason})` : ""}`);
      parts.push(host);
      detail = parts.join(" · ");
      break;
    }
  }
  if (ui.bannerText.textContent !== text) ui.bannerText.textContent = text;
  if (ui.bannerDetail.textContent !== detail) ui.bannerDetail.textContent = detail;
  ui.mode.textContent = `${wireFormat ?? settings.format ?? serverDefaultFormat ?? "—"} · ${settings.delta ? "delta" : "full only"}`;
}

function renderStats(): void {
  const now = performance.now();
  const a = arraysFeed()?.sub.stats;
  const s = summaryFeed()?.sub.stats;
  if (feeds.length > 0) {
    rates.add(now, {
      frames: (a?.framesReceived ?? 0) + (s?.framesReceived ?? 0),
      bytes: (a?.bytesReceived ?? 0) + (s?.bytesReceived ?? 0),
      aFrames: a?.framesReceived ?? 0,
      aBytes: a?.bytesReceived ?? 0,
      sFrames: s?.framesReceived ?? 0,
      sBytes: s?.bytesReceived ?? 0,
      full: a?.fullFrames ?? 0,
      delta: a?.deltaFrames ?? 0,
    });
  }
  const ch = rates.change();
  ui.statStream.textContent = streamName();
  ui.seq.textContent = seq > 0 ? fmtInt(seq) : "–";
  ui.step.textContent = current ? fmtInt(current.step) : "–";
  if (ch && ch.seconds > 0.2) {
    const d = ch.delta;
    ui.fps.textContent = fmtRate(d.frames / ch.seconds);
    ui.bps.textContent = fmtBytes(d.bytes / ch.seconds);
    const line = (name: string, frames: number, bytes: number): string =>
      `${name} ${fmtRate(frames / ch.seconds)}/s · ${fmtBytes(bytes / ch.seconds)}`;
    setLines(
      ui.subs,
      mode === "shaped"
        ? [line("summaries", d.sFrames, d.sBytes), line("arrays", d.aFrames, d.aBytes)]
        : [line("whole frames", d.aFrames, d.aBytes)],
    );
    const kinds = d.full + d.delta;
    const fullShare = kinds > 0 ? d.full / kinds : 0;
    ui.mixFull.style.width = kinds > 0 ? `${(fullShare * 100).toFixed(1)}%` : "0%";
    ui.mixFull.parentElement?.classList.toggle("empty", kinds === 0);
    ui.size.textContent = d.frames > 0 ? fmtSize(d.bytes / d.frames) : "–";
    ui.mix.textContent =
      kinds > 0
        ? `${fmtInt(d.full)} full (${Math.round(fullShare * 100)}%) · ${fmtInt(d.delta)} delta (${100 - Math.round(fullShare * 100)}%)`
        : "no frames";
  } else {
    ui.fps.textContent = "–";
    ui.bps.textContent = "–";
    ui.subs.textContent = "–";
    ui.mix.textContent = "–";
    ui.size.textContent = "–";
    ui.mixFull.parentElement?.classList.add("empty");
  }
  const openedAt = Math.max(0, ...feeds.map((f) => f.openedAt));
  ui.uptime.textContent = allConnected() && openedAt > 0 ? fmtDuration((now - openedAt) / 1000) : "–";
  ui.ignored.textContent = fmtInt(past.ignored + sumStats("ignoredDeltas"));
  ui.decode.textContent = fmtInt(past.decode + sumStats("decodeErrors"));
  const lat = latencies.percentiles(now, [0.5, 0.95]);
  const timestamped = mode === "shaped" ? readings !== undefined : current?.timestamp !== undefined;
  ui.p50.textContent = lat.count > 0 ? fmtMs(lat.values[0]!) : current && !timestamped ? "no timestamp" : "–";
  ui.p95.textContent = lat.count > 0 ? fmtMs(lat.values[1]!) : "–";
  ui.resyncs.textContent = fmtInt(past.resyncs + sumStats("resyncs"));
  ui.reconnects.textContent = fmtInt(hook.reconnects);
  ui.frames.textContent = fmtInt(hook.frames);
  if (current) {
    const n = current.phases.length;
    const ns = current.spins.length;
    ui.osc.textContent = ns === n || ns === 0 ? fmtInt(n) : `${fmtInt(n)} (${fmtInt(ns)} spins)`;
    let up = 0;
    for (const spin of current.spins) if (spin === 1) up++;
    ui.spinUp.textContent = fmtInt(up);
    ui.spinDown.textContent = fmtInt(ns - up);
  }
  renderReadings();
  renderNotes();
  renderBanner();
}

/** `el` as one line per text (spans), touching the DOM only when a line changed. */
function setLines(el: HTMLElement, lines: string[]): void {
  const spans = [...el.children];
  if (spans.length === lines.length && spans.every((s, k) => s.textContent === lines[k])) return;
  el.replaceChildren(
    ...lines.map((text) => {
      const span = document.createElement("span");
      span.textContent = text;
      return span;
    }),
  );
}

/** r, ψ, magnetisation and energy of the summary shown. */
function renderReadings(): void {
  if (!readings) return;
  const { r, psi, magnetization, energy } = readings;
  ui.orderR.textContent = r.toFixed(3);
  ui.chartR.textContent = r.toFixed(3);
  ui.orderPsi.textContent = `${psi.toFixed(3)} rad (${((psi * 180) / Math.PI).toFixed(1)}°)`;
  // In whole mode a state without spins has no magnetisation (the server's summary says 0).
  const noSpins = mode === "whole" && (current?.spins.length ?? 0) === 0;
  ui.spinM.textContent = noSpins ? "–" : signed(magnetization, 3);
  ui.chartM.textContent = ui.spinM.textContent;
  ui.energyNow.textContent = signed(energy, 4);
  const bins = readings.histogram.length;
  ui.histBins.textContent = bins > 0 ? `${bins} bins` : "";
}

// --- drawing --------------------------------------------------------------------------------

let drawnSpins: Int8Array | undefined;

function sameSpins(a: Int8Array | undefined, b: Int8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** In whole mode: the readings of the state shown, computed here (once per drawing). */
function updateLocalReadings(now: number): void {
  if (!readingsStale || !current) return;
  readingsStale = false;
  readings = summarize(current.phases, current.spins, current.energy, shaping?.bins ?? DEFAULT_BINS);
  charts.r.add(now, readings.r);
  charts.m.add(now, readings.magnetization);
}

function frame(): void {
  const now = performance.now();
  updateLocalReadings(now);
  const { phases, spins } = surfaces;
  if (dirty || phases.resized) {
    drawPhases(phases, current?.phases, current?.spins, readings, palette);
  }
  // Spins change rarely: redraw them only when they did.
  if ((dirty && !sameSpins(drawnSpins, current?.spins)) || spins.resized) {
    drawSpins(spins, current?.spins, palette);
    drawnSpins = current ? current.spins.slice() : undefined;
  }
  if (dirty || surfaces.histogram.resized) drawHistogram(surfaces.histogram, readings?.histogram, palette);
  dirty = false;
  const banded = [
    drawSeries(surfaces.r, charts.r, now, CHART_SPAN_MS, { color: palette.arrow, left: 60, domain: [0, 1], minSpan: 0.05 }, palette),
    drawSeries(surfaces.m, charts.m, now, CHART_SPAN_MS, { color: palette.mag, left: 60, domain: [-1, 1], minSpan: 0.1 }, palette),
    drawSeries(surfaces.energy, charts.energy, now, CHART_SPAN_MS, { color: palette.line, left: 60 }, palette),
  ];
  if (banded.some(Boolean)) envelopeSeen = true;
  requestAnimationFrame(frame);
}

// --- formatting -------------------------------------------------------------------------------

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}
function fmtRate(n: number): string {
  return n >= 100 ? fmtInt(n) : n.toFixed(1);
}
function fmtBytes(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB/s`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB/s`;
  return `${Math.round(n)} B/s`;
}
function fmtSize(n: number): string {
  return n >= 1e4 ? `${(n / 1e3).toFixed(1)} kB` : `${Math.round(n)} B`;
}
/** Latency: Date.now() has 1 ms resolution, so |x| < 1 ms reads "< 1 ms". */
function fmtMs(ms: number): string {
  const a = Math.abs(ms);
  if (a < 1) return "< 1 ms";
  return `${a < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}
function fmtSeconds(s: number): string {
  return s < 60 ? `${s.toFixed(0)} s` : fmtDuration(s);
}
function fmtDuration(s: number): string {
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
function signed(x: number, digits: number): string {
  return `${x < 0 ? "−" : x > 0 ? "+" : ""}${Math.abs(x).toFixed(digits)}`;
}

/** Radians as the notes write them: 10⁻³ rad for a power of ten, else the number. */
function fmtEpsilon(e: number): string {
  if (e === 0) return "exact (0)";
  const k = Math.round(Math.log10(e));
  if (Math.abs(e - 10 ** k) < 1e-12 * 10 ** k) {
    const sup = "⁰¹²³⁴⁵⁶⁷⁸⁹";
    const digits = String(Math.abs(k))
      .split("")
      .map((d) => sup[Number(d)])
      .join("");
    return `10${k < 0 ? "⁻" : ""}${digits} rad`;
  }
  return `${e} rad`;
}
function fmtHz(hz: number): string {
  return Number.isInteger(hz) ? String(hz) : String(Number(hz.toPrecision(3)));
}

// --- start ---------------------------------------------------------------------------------------

/**
 * Reads /health first (at most 3 s) to know whether the server shapes subscriptions;
 * when it does not answer, subscribes shaped and lets the next answer correct it.
 */
async function start(): Promise<void> {
  renderControls();
  renderBanner();
  await refreshHealth();
  subscribe();
  setInterval(() => void refreshHealth(), HEALTH_EVERY_MS);
  setInterval(renderStats, 250);
  requestAnimationFrame(frame);
}

void start();
