/**
 * phasecast's live dashboard. Subscribes to `/ws` on its own origin with the
 * TypeScript client (which applies deltas, verifies checksums, resyncs and reconnects
 * with resume), applies frames as they arrive, and draws on requestAnimationFrame.
 *
 * Query parameters: `format=json|protobuf`, `delta=false`, `stream=NAME`, `max_hz=N`,
 * `key=KEY` (subscriber key), and for development `server=HOST:PORT` (use another
 * phasecast for /ws and /health).
 *
 * For tests: `window.__phasecast` (read-only: seq, step, format, connected,
 * phasesChecksum, …) and `data-seq` / `data-format` / `data-connected` on `#app`.
 */
import {
  Subscriber,
  type Format,
  type State,
  type SubscriberOptions,
  type WebSocketConstructor,
} from "@phasecast/client";
import "./app.css";
import { drawEnergy, drawPhases, drawSpins, orderParameter, readPalette, Surface } from "./draw.js";
import { endpoints, parseFormat, readSettings, settingsUrl, type Settings } from "./settings.js";
import { CounterWindow, History, ValueWindow } from "./windows.js";

/** What tests read instead of pixels. */
export interface PhasecastHook {
  /** Seq of the state shown (0 before the first). */
  readonly seq: number;
  /** Its step. */
  readonly step: number;
  /** Encoding of the frames arriving now ("" before the first frame of a connection). */
  readonly format: Format | "";
  /** Whether the WebSocket is open. */
  readonly connected: boolean;
  /** Sum of the phases shown. */
  readonly phasesChecksum: number;
  /** Oscillators in the state shown. */
  readonly oscillators: number;
  /** Frames received since the page loaded. */
  readonly frames: number;
  /** Whether deltas are asked for. */
  readonly delta: boolean;
  /** Stream followed. */
  readonly stream: string;
  /** Successful reconnects since the page loaded. */
  readonly reconnects: number;
  /** Banner state: connecting, connected, idle, offline. */
  readonly banner: BannerState;
}

declare global {
  interface Window {
    readonly __phasecast: PhasecastHook;
  }
}

type BannerState = "connecting" | "connected" | "idle" | "offline";

const ENERGY_SPAN_MS = 10_000;
const STATS_WINDOW_MS = 1_000;
const IDLE_AFTER_MS = 2_000;
const HEALTH_EVERY_MS = 5_000;
const RECONNECT = { initialMs: 250, maxMs: 4_000 } as const;

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
  orderR: $("order-r"),
  orderPsi: $("order-psi"),
  spinM: $("spin-m"),
  spinUp: $("spin-up"),
  spinDown: $("spin-down"),
  energyNow: $("energy-now"),
  mode: $("stat-mode"),
  statStream: $("stat-stream"),
  seq: $("stat-seq"),
  step: $("stat-step"),
  fps: $("stat-fps"),
  bps: $("stat-bps"),
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
  energy: new Surface($<HTMLCanvasElement>("energy-canvas")),
};
const palette = readPalette(root);

// --- state --------------------------------------------------------------------------

let settings: Settings = readSettings(location.search);
let sub: Subscriber | undefined;
let unlisten: (() => void)[] = [];
let generation = 0;

let current: State | undefined;
let seq = 0;
let wireFormat: Format | undefined;
let serverDefaultFormat: Format | undefined;
let connected = false;
let banner: BannerState = "connecting";
let lastClose: { code: number; reason: string } | undefined;
let retry: { attempt: number; at: number } | undefined;
/** performance.now() of the last state, and of the last open, of this subscription. */
let lastUpdateAt = 0;
let openedAt = 0;
let dirty = true;
/** Counters of subscribers replaced by a control change. */
const past = { frames: 0, resyncs: 0, reconnects: 0, ignored: 0, decode: 0 };

const rates = new CounterWindow<"frames" | "bytes" | "full" | "delta">(STATS_WINDOW_MS);
const latencies = new ValueWindow(STATS_WINDOW_MS);
const energy = new History(32_768);

const streamName = (): string => settings.stream ?? "default";

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
    return connected;
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
    return past.frames + (sub?.stats.framesReceived ?? 0);
  },
  get delta() {
    return settings.delta;
  },
  get stream() {
    return streamName();
  },
  get reconnects() {
    return past.reconnects + Math.max(0, (sub?.stats.connections ?? 0) - 1);
  },
  get banner() {
    return banner;
  },
});
Object.defineProperty(window, "__phasecast", { value: hook, enumerable: false, configurable: false, writable: false });

// --- subscription ---------------------------------------------------------------------

/**
 * The browser's WebSocket, noting the encoding of each message before the client
 * handles it (text: JSON, binary: protobuf), for this subscription only.
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

function subscribe(): void {
  if (sub) {
    const st = sub.stats;
    past.frames += st.framesReceived;
    past.resyncs += st.resyncs;
    past.reconnects += Math.max(0, st.connections - 1);
    past.ignored += st.ignoredDeltas;
    past.decode += st.decodeErrors;
    for (const off of unlisten) off();
    unlisten = [];
    sub.close();
  }
  const gen = ++generation;
  wireFormat = undefined;
  connected = false;
  retry = undefined;
  lastClose = undefined;
  lastUpdateAt = 0;
  openedAt = 0;
  rates.clear();
  latencies.clear();
  root.dataset.connected = "false";
  root.dataset.format = "";

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
  if (settings.maxHz !== undefined) options.maxHz = settings.maxHz;
  if (settings.key !== undefined) options.key = settings.key;
  const s = new Subscriber(options);
  sub = s;
  const shown = new URL(ws);
  if (settings.format !== undefined) shown.searchParams.set("format", settings.format);
  if (!settings.delta) shown.searchParams.set("delta", "false");
  if (settings.stream !== undefined) shown.searchParams.set("stream", settings.stream);
  if (settings.maxHz !== undefined) shown.searchParams.set("max_hz", String(settings.maxHz));
  ui.url.textContent = shown.href;
  unlisten.push(
    s.onUpdate((state, info) => {
      current = state;
      seq = info.seq;
      const now = performance.now();
      lastUpdateAt = now;
      if (info.latency !== undefined) latencies.add(now, info.latency * 1000);
      energy.add(now, state.energy);
      dirty = true;
      root.dataset.seq = String(seq);
      if (root.dataset.format !== wireFormat) root.dataset.format = wireFormat ?? "";
      if (banner !== "connected") renderBanner();
    }),
    s.on("open", () => {
      connected = true;
      openedAt = performance.now();
      retry = undefined;
      root.dataset.connected = "true";
      renderBanner();
      renderControls();
    }),
    s.on("close", (code, reason) => {
      connected = false;
      lastClose = { code, reason };
      root.dataset.connected = "false";
      renderBanner();
    }),
    s.on("reconnect", (attempt, delayMs) => {
      retry = { attempt, at: performance.now() + delayMs };
      renderBanner();
    }),
  );
  renderControls();
  renderBanner();
}

function change(next: Partial<Settings>): void {
  const before = streamName();
  settings = { ...settings, ...next };
  if (settings.stream === "default") settings.stream = undefined;
  const streamChanged = streamName() !== before;
  if (streamChanged) {
    energy.clear();
    current = undefined;
    seq = 0;
    dirty = true;
  }
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

function renderControls(): void {
  const shown = settings.format ?? wireFormat ?? serverDefaultFormat;
  for (const button of ui.formatButtons) {
    button.setAttribute("aria-checked", String(button.dataset.value === shown));
  }
  ui.delta.checked = settings.delta;
  ensureStreamOption(streamName());
  ui.stream.value = streamName();
}

function ensureStreamOption(name: string): HTMLOptionElement {
  for (const option of ui.stream.options) if (option.value === name) return option;
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name;
  ui.stream.append(option);
  return option;
}

// --- /health: the stream list and the server line ---------------------------------------

interface Health {
  version?: string;
  wire_format?: string;
  uptime_seconds?: number;
  subscribers?: number;
  streams?: { name: string; oscillators?: number; subscribers?: number }[];
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

async function refreshHealth(): Promise<void> {
  const { health } = endpoints(location, settings);
  let h: Health;
  try {
    h = await getJson(health);
  } catch {
    // With ?server= a cross-origin /health needs CORS, which phasecast does not send:
    // try the page's own origin (a dev server that proxies /health).
    try {
      if (settings.server === undefined) throw new Error("unreachable");
      h = await getJson("/health");
    } catch {
      ui.server.classList.add("stale");
      return;
    }
  }
  ui.server.classList.remove("stale");
  serverDefaultFormat = parseFormat(h.wire_format);
  const streams = Array.isArray(h.streams) ? h.streams : [];
  const names = new Set(streams.map((s) => s.name));
  names.add(streamName());
  for (const option of [...ui.stream.options]) if (!names.has(option.value)) option.remove();
  for (const s of [...streams].sort((a, b) => a.name.localeCompare(b.name))) {
    const option = ensureStreamOption(s.name);
    option.textContent = s.oscillators !== undefined ? `${s.name} (${fmtInt(s.oscillators)} osc)` : s.name;
  }
  const me = streams.find((s) => s.name === streamName());
  ui.server.textContent =
    `phasecast ${h.version ?? "?"} · default format ${h.wire_format ?? "?"}` +
    ` · ${fmtInt(me?.subscribers ?? h.subscribers ?? 0)} subscriber${(me?.subscribers ?? 0) === 1 ? "" : "s"} on this stream` +
    ` · ${streams.length} stream${streams.length === 1 ? "" : "s"} · up ${fmtDuration(h.uptime_seconds ?? 0)}`;
  renderControls();
}

// --- banner and stats ---------------------------------------------------------------------

function renderBanner(): void {
  const now = performance.now();
  // Not connected and no close yet: the first attempt of this subscription (the page
  // just opened, or a control changed); after a close: unreachable until it reopens.
  const state: BannerState = connected
    ? now - Math.max(lastUpdateAt, openedAt) > IDLE_AFTER_MS
      ? "idle"
      : "connected"
    : lastClose !== undefined
      ? "offline"
      : "connecting";
  banner = state;
  ui.banner.dataset.state = state;
  const host = settings.server ?? location.host;
  const mode = `${streamName()} · ${wireFormat ?? settings.format ?? "server default"} · ${settings.delta ? "deltas" : "full frames only"}`;
  let text: string;
  let detail: string;
  switch (state) {
    case "connected":
      text = "connected";
      detail = `${mode} · ${host}`;
      break;
    case "idle":
      if (lastUpdateAt >= openedAt) {
        text = `connected — no new state for ${fmtSeconds((now - lastUpdateAt) / 1000)}`;
        detail = `the producer may be idle · ${mode} · ${host}`;
      } else {
        text = "connected — waiting for the first state";
        detail = `is a producer publishing to ${streamName()}? · ${mode} · ${host}`;
      }
      break;
    case "connecting":
      text = "connecting…";
      detail = `${host}/ws`;
      break;
    case "offline": {
      text = "server unreachable — retrying…";
      const parts: string[] = [];
      if (retry) {
        const wait = Math.max(0, (retry.at - now) / 1000);
        parts.push(wait > 0.05 ? `attempt ${retry.attempt}, next in ${wait.toFixed(1)} s` : `attempt ${retry.attempt}`);
      }
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
  const st = sub?.stats;
  if (st) rates.add(now, { frames: st.framesReceived, bytes: st.bytesReceived, full: st.fullFrames, delta: st.deltaFrames });
  const ch = rates.change();
  ui.statStream.textContent = streamName();
  ui.seq.textContent = seq > 0 ? fmtInt(seq) : "–";
  ui.step.textContent = current ? fmtInt(current.step) : "–";
  if (ch && ch.seconds > 0.2) {
    ui.fps.textContent = fmtRate(ch.delta.frames / ch.seconds);
    ui.bps.textContent = fmtBytes(ch.delta.bytes / ch.seconds);
    const kinds = ch.delta.full + ch.delta.delta;
    const fullShare = kinds > 0 ? ch.delta.full / kinds : 0;
    ui.mixFull.style.width = kinds > 0 ? `${(fullShare * 100).toFixed(1)}%` : "0%";
    ui.mixFull.parentElement?.classList.toggle("empty", kinds === 0);
    ui.size.textContent = ch.delta.frames > 0 ? fmtSize(ch.delta.bytes / ch.delta.frames) : "–";
    ui.mix.textContent =
      kinds > 0
        ? `${fmtInt(ch.delta.full)} full (${Math.round(fullShare * 100)}%) · ${fmtInt(ch.delta.delta)} delta (${100 - Math.round(fullShare * 100)}%)`
        : "no frames";
  } else {
    ui.fps.textContent = "–";
    ui.bps.textContent = "–";
    ui.mix.textContent = "–";
    ui.size.textContent = "–";
    ui.mixFull.parentElement?.classList.add("empty");
  }
  ui.uptime.textContent = connected && openedAt > 0 ? fmtDuration((now - openedAt) / 1000) : "–";
  ui.ignored.textContent = fmtInt(past.ignored + (st?.ignoredDeltas ?? 0));
  ui.decode.textContent = fmtInt(past.decode + (st?.decodeErrors ?? 0));
  const lat = latencies.percentiles(now, [0.5, 0.95]);
  ui.p50.textContent = lat.count > 0 ? fmtMs(lat.values[0]!) : current && current.timestamp === undefined ? "no timestamp" : "–";
  ui.p95.textContent = lat.count > 0 ? fmtMs(lat.values[1]!) : "–";
  ui.resyncs.textContent = fmtInt(past.resyncs + (st?.resyncs ?? 0));
  ui.reconnects.textContent = fmtInt(hook.reconnects);
  ui.frames.textContent = fmtInt(hook.frames);
  if (current) {
    const n = current.phases.length;
    const ns = current.spins.length;
    ui.osc.textContent = ns === n || ns === 0 ? fmtInt(n) : `${fmtInt(n)} (${fmtInt(ns)} spins)`;
    const order = orderParameter(current.phases);
    ui.orderR.textContent = order.r.toFixed(3);
    ui.orderPsi.textContent = `${order.psi.toFixed(3)} rad (${((order.psi * 180) / Math.PI).toFixed(1)}°)`;
    let up = 0;
    for (const s of current.spins) if (s === 1) up++;
    ui.spinUp.textContent = fmtInt(up);
    ui.spinDown.textContent = fmtInt(ns - up);
    ui.spinM.textContent = ns > 0 ? signed((2 * up - ns) / ns, 3) : "–";
    ui.energyNow.textContent = signed(current.energy, 4);
  }
  renderBanner();
}

// --- drawing --------------------------------------------------------------------------------

let drawnSpins: Int8Array | undefined;

function sameSpins(a: Int8Array | undefined, b: Int8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

function frame(): void {
  const { phases, spins, energy: energySurface } = surfaces;
  if (dirty || phases.resized) {
    drawPhases(phases, current?.phases, current?.spins, current ? orderParameter(current.phases) : undefined, palette);
  }
  // Spins change rarely: redraw them only when they did.
  if ((dirty && !sameSpins(drawnSpins, current?.spins)) || spins.resized) {
    drawSpins(spins, current?.spins, palette);
    drawnSpins = current ? current.spins.slice() : undefined;
  }
  dirty = false;
  drawEnergy(energySurface, energy, performance.now(), ENERGY_SPAN_MS, palette);
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

// --- start ---------------------------------------------------------------------------------------

subscribe();
void refreshHealth();
setInterval(() => void refreshHealth(), HEALTH_EVERY_MS);
setInterval(renderStats, 250);
requestAnimationFrame(frame);
