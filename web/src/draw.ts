/** Canvas 2D drawings: phases on the unit circle, the spin grid, time charts, the phase histogram. */
import type { History } from "./windows.js";

export interface Palette {
  text: string;
  muted: string;
  faint: string;
  up: string;
  down: string;
  arrow: string;
  line: string;
  mag: string;
  card: string;
}

export function readPalette(el: Element): Palette {
  const css = getComputedStyle(el);
  const v = (name: string, fallback: string): string => css.getPropertyValue(name).trim() || fallback;
  return {
    text: v("--text", "#e6eaf3"),
    muted: v("--muted", "#8f9bb8"),
    faint: v("--faint", "#2a3554"),
    up: v("--up", "#f5a524"),
    down: v("--down", "#38bdf8"),
    arrow: v("--arrow", "#4ade80"),
    line: v("--line", "#a78bfa"),
    mag: v("--mag", "#f472b6"),
    card: v("--card", "#131a2e"),
  };
}

/** A canvas that follows its CSS box (ResizeObserver) at the device pixel ratio. */
export class Surface {
  readonly canvas: HTMLCanvasElement;
  readonly ctx: CanvasRenderingContext2D;
  width = 0;
  height = 0;
  /** Set when the size changed, so the owner redraws. */
  resized = true;

  constructor(canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    const ctx = canvas.getContext("2d");
    if (!ctx) throw new Error("no 2D canvas");
    this.ctx = ctx;
    this.#measure();
    new ResizeObserver(() => this.#measure()).observe(canvas);
  }

  /** Clears and sets up CSS-pixel coordinates; false when the canvas has no area. */
  begin(): boolean {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.width * dpr));
    const h = Math.max(1, Math.round(this.height * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.ctx.clearRect(0, 0, this.width, this.height);
    this.resized = false;
    return this.width > 2 && this.height > 2;
  }

  #measure(): void {
    const r = this.canvas.getBoundingClientRect();
    if (r.width !== this.width || r.height !== this.height) {
      this.width = r.width;
      this.height = r.height;
      this.resized = true;
    }
  }
}

function centeredText(ctx: CanvasRenderingContext2D, text: string, x: number, y: number, color: string): void {
  ctx.fillStyle = color;
  ctx.font = "14px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x, y);
}

/** The Kuramoto order parameter: r e^{iψ} = (1/N) Σ e^{iθ_j}. */
export function orderParameter(phases: ArrayLike<number>): { r: number; psi: number } {
  const n = phases.length;
  if (n === 0) return { r: 0, psi: 0 };
  let c = 0;
  let s = 0;
  for (let j = 0; j < n; j++) {
    const theta = phases[j]!;
    c += Math.cos(theta);
    s += Math.sin(theta);
  }
  c /= n;
  s /= n;
  return { r: Math.hypot(c, s), psi: Math.atan2(s, c) };
}

/** What the page charts of one state: the server's summary, or the same computed here. */
export interface Readings {
  r: number;
  psi: number;
  magnetization: number;
  energy: number;
  histogram: ArrayLike<number>;
}

/**
 * The summary of a whole state, computed in the page (for a server that sends no
 * summaries): the same quantities as the server's, `bins` histogram bins.
 */
export function summarize(phases: ArrayLike<number>, spins: ArrayLike<number>, energy: number, bins: number): Readings {
  const { r, psi } = orderParameter(phases);
  let sum = 0;
  for (let k = 0; k < spins.length; k++) sum += spins[k]!;
  const histogram = new Uint32Array(bins);
  const TAU = 2 * Math.PI;
  for (let j = 0; j < phases.length; j++) {
    let b = Math.floor(((((phases[j]! % TAU) + TAU) % TAU) / TAU) * bins);
    if (b >= bins) b = 0;
    histogram[b]!++;
  }
  return { r, psi, magnetization: spins.length > 0 ? sum / spins.length : 0, energy, histogram };
}

/** Up to this many oscillators are drawn as points; more as a density ring. */
const POINTS_UP_TO = 2048;
const BINS = 360;

export function drawPhases(
  surface: Surface,
  phases: Float64Array | undefined,
  spins: Int8Array | undefined,
  order: { r: number; psi: number } | undefined,
  p: Palette,
): void {
  if (!surface.begin()) return;
  const ctx = surface.ctx;
  const w = surface.width;
  const h = surface.height;
  const cx = w / 2;
  const cy = h / 2;
  const R = Math.max(10, Math.min(w, h) / 2 - 28);

  // Axes, the unit circle, r = 0.5, and angle labels.
  ctx.lineWidth = 1;
  ctx.strokeStyle = p.faint;
  ctx.beginPath();
  ctx.moveTo(cx - R - 10, cy);
  ctx.lineTo(cx + R + 10, cy);
  ctx.moveTo(cx, cy - R - 10);
  ctx.lineTo(cx, cy + R + 10);
  ctx.stroke();
  ctx.setLineDash([3, 5]);
  ctx.beginPath();
  ctx.arc(cx, cy, R / 2, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.lineWidth = 2;
  ctx.strokeStyle = p.muted;
  ctx.globalAlpha = 0.55;
  ctx.beginPath();
  ctx.arc(cx, cy, R, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.fillStyle = p.muted;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillText("0", cx + R + 14, cy);
  ctx.textAlign = "right";
  ctx.fillText("π", cx - R - 14, cy);
  ctx.textAlign = "center";
  ctx.fillText("π/2", cx, cy - R - 18);
  ctx.fillText("3π/2", cx, cy + R + 18);
  ctx.textAlign = "left";
  ctx.fillText("r = 1", cx + R * Math.SQRT1_2 + 6, cy - R * Math.SQRT1_2 - 6);

  if (!phases || phases.length === 0) {
    centeredText(ctx, "waiting for states…", cx, cy + R / 4, p.muted);
    return;
  }

  const n = phases.length;
  const withSpins = spins !== undefined && spins.length === n;
  if (n <= POINTS_UP_TO) {
    // Oscillators: one point each, coloured by spin (grouped by colour: one fill each).
    const rad = n <= 64 ? 5.5 : n <= 512 ? 4 : 2.5;
    const groups: [number, string][] = withSpins ? [[1, p.up], [-1, p.down]] : [[0, p.up]];
    ctx.lineWidth = 1.25;
    ctx.strokeStyle = p.card;
    for (const [sign, color] of groups) {
      ctx.beginPath();
      for (let j = 0; j < n; j++) {
        if (withSpins && spins[j] !== sign) continue;
        const theta = phases[j]!;
        const x = cx + R * Math.cos(theta);
        const y = cy - R * Math.sin(theta);
        ctx.moveTo(x + rad, y);
        ctx.arc(x, y, rad, 0, 2 * Math.PI);
      }
      ctx.globalAlpha = 0.9;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
      if (rad >= 3) ctx.stroke();
    }
  } else {
    // Too many points to tell apart: how many oscillators sit at each angle, as bars
    // outside the circle (spin +1 then -1 stacked), at a cost that does not grow with n.
    const up = new Float64Array(BINS);
    const down = new Float64Array(BINS);
    const TAU = 2 * Math.PI;
    for (let j = 0; j < n; j++) {
      const theta = phases[j]!;
      let b = Math.floor(((((theta % TAU) + TAU) % TAU) / TAU) * BINS);
      if (b >= BINS) b = 0;
      if (withSpins && spins[j] === -1) down[b]!++;
      else up[b]!++;
    }
    let max = 1;
    for (let b = 0; b < BINS; b++) max = Math.max(max, up[b]! + down[b]!);
    const room = Math.min(24, R * 0.25);
    ctx.lineWidth = Math.max(1.5, (TAU * R) / BINS);
    for (const [counts, color, under] of [[up, p.up, undefined], [down, p.down, up]] as const) {
      ctx.beginPath();
      for (let b = 0; b < BINS; b++) {
        const c = counts[b]!;
        if (c === 0) continue;
        const a = ((b + 0.5) / BINS) * TAU;
        const r0 = R + 2 + ((under?.[b] ?? 0) / max) * room;
        const r1 = r0 + Math.max(1.5, (c / max) * room);
        ctx.moveTo(cx + r0 * Math.cos(a), cy - r0 * Math.sin(a));
        ctx.lineTo(cx + r1 * Math.cos(a), cy - r1 * Math.sin(a));
      }
      ctx.strokeStyle = color;
      ctx.stroke();
    }
    ctx.lineWidth = 1;
  }

  // The order parameter: an arrow of length r at angle ψ.
  if (order) {
    const tipX = cx + order.r * R * Math.cos(order.psi);
    const tipY = cy - order.r * R * Math.sin(order.psi);
    ctx.strokeStyle = p.arrow;
    ctx.fillStyle = p.arrow;
    ctx.globalAlpha = 0.35;
    ctx.setLineDash([2, 4]);
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(tipX, tipY);
    ctx.lineTo(cx + R * Math.cos(order.psi), cy - R * Math.sin(order.psi));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
    ctx.lineWidth = 3;
    ctx.lineCap = "round";
    const len = order.r * R;
    const head = Math.min(14, Math.max(0, len * 0.5));
    const back = Math.max(0, len - head * 0.8);
    ctx.beginPath();
    ctx.moveTo(cx, cy);
    ctx.lineTo(cx + back * Math.cos(order.psi), cy - back * Math.sin(order.psi));
    ctx.stroke();
    if (head > 1) {
      const a = order.psi;
      const spread = 0.42;
      ctx.beginPath();
      ctx.moveTo(tipX, tipY);
      ctx.lineTo(tipX - head * Math.cos(a - spread), tipY + head * Math.sin(a - spread));
      ctx.lineTo(tipX - head * Math.cos(a + spread), tipY + head * Math.sin(a + spread));
      ctx.closePath();
      ctx.fill();
    }
    ctx.beginPath();
    ctx.arc(cx, cy, 3.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.lineCap = "butt";
  }
}

let spinImage: { canvas: HTMLCanvasElement; data: ImageData } | undefined;

function rgb(color: string): [number, number, number] {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return [128, 128, 128];
  const v = parseInt(m[1]!, 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

export function drawSpins(surface: Surface, spins: Int8Array | undefined, p: Palette): void {
  if (!surface.begin()) return;
  const ctx = surface.ctx;
  const w = surface.width;
  const h = surface.height;
  if (!spins || spins.length === 0) {
    centeredText(ctx, spins ? "this state has no spins" : "waiting for states…", w / 2, h / 2, p.muted);
    return;
  }
  const n = spins.length;
  // Columns so that the cells are square and as large as the box allows.
  let cols = Math.max(1, Math.min(n, Math.round(Math.sqrt((n * w) / h))));
  let rows = Math.ceil(n / cols);
  const fits = (c: number): number => Math.min(w / c, h / Math.ceil(n / c));
  for (const c of [cols - 1, cols + 1]) {
    if (c >= 1 && c <= n && fits(c) > fits(cols)) cols = c;
  }
  rows = Math.ceil(n / cols);
  const cell = Math.min(w / cols, h / rows);
  const gridW = cell * cols;
  const gridH = cell * rows;
  const x0 = (w - gridW) / 2;
  const y0 = (h - gridH) / 2;

  if (n <= 1024) {
    const gap = cell >= 12 ? 2 : cell >= 4 ? 1 : 0;
    const round = cell >= 16 ? 3 : 0;
    for (const [sign, color] of [[1, p.up], [-1, p.down]] as const) {
      ctx.beginPath();
      for (let k = 0; k < n; k++) {
        if (spins[k] !== sign) continue;
        const x = x0 + (k % cols) * cell;
        const y = y0 + Math.floor(k / cols) * cell;
        if (round > 0) ctx.roundRect(x + gap / 2, y + gap / 2, cell - gap, cell - gap, round);
        else ctx.rect(x + gap / 2, y + gap / 2, cell - gap, cell - gap);
      }
      ctx.fillStyle = color;
      ctx.fill();
    }
    // Empty places in the last row.
    ctx.strokeStyle = p.faint;
    ctx.lineWidth = 1;
    for (let k = n; k < rows * cols; k++) {
      const x = x0 + (k % cols) * cell;
      const y = y0 + Math.floor(k / cols) * cell;
      ctx.strokeRect(x + gap / 2 + 0.5, y + gap / 2 + 0.5, cell - gap - 1, cell - gap - 1);
    }
    return;
  }

  // Many spins: one pixel per spin in an image, scaled up without smoothing, with
  // the gaps between cells drawn over it when the cells are large enough.
  if (!spinImage || spinImage.data.width !== cols || spinImage.data.height !== rows) {
    const canvas = document.createElement("canvas");
    canvas.width = cols;
    canvas.height = rows;
    spinImage = { canvas, data: new ImageData(cols, rows) };
  }
  const px = spinImage.data.data;
  const up = rgb(p.up);
  const down = rgb(p.down);
  px.fill(0);
  for (let k = 0; k < n; k++) {
    const c = spins[k] === 1 ? up : down;
    px[4 * k] = c[0];
    px[4 * k + 1] = c[1];
    px[4 * k + 2] = c[2];
    px[4 * k + 3] = 255;
  }
  spinImage.canvas.getContext("2d")!.putImageData(spinImage.data, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(spinImage.canvas, x0, y0, gridW, gridH);
  if (cell >= 4) {
    ctx.strokeStyle = p.card;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 0; c <= cols; c++) {
      const x = Math.round(x0 + c * cell) + 0.5;
      ctx.moveTo(x, y0);
      ctx.lineTo(x, y0 + gridH);
    }
    for (let r = 0; r <= rows; r++) {
      const y = Math.round(y0 + r * cell) + 0.5;
      ctx.moveTo(x0, y);
      ctx.lineTo(x0 + gridW, y);
    }
    ctx.stroke();
  }
}

/** Digits after the point for labels of values spread over `range`. */
function digitsFor(range: number): number {
  if (!(range > 0) || !Number.isFinite(range)) return 3;
  return Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(range))));
}

/** A pause longer than this between states breaks a chart's line. */
const GAP_MS = 1_000;

/** How one chart looks. */
export interface SeriesStyle {
  /** Line colour (the band is the same colour, fainter). */
  color: string;
  /** Room for the value labels on the left, CSS pixels. */
  left: number;
  /** Values outside this never happen (r in [0, 1]): the axis stays inside it. */
  domain?: readonly [number, number];
  /**
   * The axis spans at least this much, so that a converged value is a flat line,
   * not its last float bits blown up (default: as little as the values need).
   */
  minSpan?: number;
}

interface Segment {
  t0: number;
  t1: number;
  /** The line: [x, y]. */
  points: [number, number][];
  /** The band: [x, y of the greatest, y of the least]. */
  band: [number, number, number][];
}

/**
 * A time chart of the last `spanMs`: the value as a line, and where points carry a
 * range (an envelope), that range as a band around it. Returns whether a band wider
 * than the line was drawn.
 */
export function drawSeries(surface: Surface, history: History, now: number, spanMs: number, style: SeriesStyle, p: Palette): boolean {
  if (!surface.begin()) return false;
  const ctx = surface.ctx;
  const w = surface.width;
  const h = surface.height;
  const left = style.left;
  const right = 8;
  const top = 6;
  const bottom = 20;
  const pw = Math.max(1, w - left - right);
  const ph = Math.max(1, h - top - bottom);
  const since = now - spanMs;

  let lo = Infinity;
  let hi = -Infinity;
  let count = 0;
  history.forEach(since, (_t, _v, a, b) => {
    if (a < lo) lo = a;
    if (b > hi) hi = b;
    count++;
  });

  drawTimeAxis(ctx, left, top, pw, ph, h, spanMs, p);

  if (!(hi >= lo)) {
    centeredText(ctx, "waiting for states…", left + pw / 2, top + ph / 2, p.muted);
    return false;
  }
  if (style.minSpan !== undefined && hi - lo < style.minSpan) {
    const mid = (lo + hi) / 2;
    lo = mid - style.minSpan / 2;
    hi = mid + style.minSpan / 2;
    if (style.domain) {
      // Slide the span inside the domain rather than cut it.
      const shift = Math.max(0, style.domain[0] - lo) - Math.max(0, hi - style.domain[1]);
      lo += shift;
      hi += shift;
    }
  }
  const span = hi - lo;
  const pad = span > 0 ? span * 0.08 : Math.max(1e-9, Math.abs(hi) * 1e-3 || 1);
  let y0 = lo - pad;
  let y1 = hi + pad;
  if (style.domain) {
    y0 = Math.max(y0, style.domain[0]);
    y1 = Math.min(y1, style.domain[1]);
    if (!(y1 > y0)) [y0, y1] = [lo - pad, hi + pad];
  }
  const Y = (v: number): number => top + ph - ((v - y0) / (y1 - y0)) * ph;
  const X = (t: number): number => left + ((t - since) / spanMs) * pw;

  drawValueAxis(ctx, left, pw, lo, hi, Y, p);

  const segments = collectSegments(history, since, count > pw * 2, X, Y);
  if (segments.length === 0) return false;

  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, pw, ph);
  ctx.clip();
  // Shade the gaps: no state arrived for a while (server down, producer idle).
  ctx.fillStyle = "rgba(239, 68, 68, 0.10)";
  for (let k = 0; k < segments.length; k++) {
    const end = segments[k]!.t1;
    const next = k + 1 < segments.length ? segments[k + 1]!.t0 : now;
    if (next - end > GAP_MS) ctx.fillRect(X(end), top, X(next) - X(end), ph);
  }
  const banded = drawBands(ctx, segments, style.color);
  const grad = ctx.createLinearGradient(0, top, 0, top + ph);
  grad.addColorStop(0, withAlpha(style.color, banded ? 0.12 : 0.35));
  grad.addColorStop(1, withAlpha(style.color, 0));
  ctx.strokeStyle = style.color;
  ctx.lineWidth = 1.75;
  ctx.lineJoin = "round";
  for (const { points } of segments) {
    if (points.length === 0) continue;
    ctx.beginPath();
    ctx.moveTo(points[0]![0], top + ph);
    for (const [x, y] of points) ctx.lineTo(x, y);
    ctx.lineTo(points[points.length - 1]![0], top + ph);
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();
    ctx.beginPath();
    ctx.moveTo(points[0]![0], points[0]![1]);
    for (const [x, y] of points) ctx.lineTo(x, y);
    ctx.stroke();
  }
  const lastPoints = segments[segments.length - 1]!.points;
  const [lx, ly] = lastPoints[lastPoints.length - 1]!;
  ctx.fillStyle = style.color;
  ctx.beginPath();
  ctx.arc(lx, ly, 3, 0, 2 * Math.PI);
  ctx.fill();
  ctx.restore();
  return banded;
}

/** The energy sparkline: a chart in the energy colour. */
export function drawEnergy(surface: Surface, history: History, now: number, spanMs: number, p: Palette): boolean {
  return drawSeries(surface, history, now, spanMs, { color: p.line, left: 74 }, p);
}

function drawTimeAxis(
  ctx: CanvasRenderingContext2D,
  left: number,
  top: number,
  pw: number,
  ph: number,
  h: number,
  spanMs: number,
  p: Palette,
): void {
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = p.muted;
  ctx.textBaseline = "alphabetic";
  const seconds = spanMs / 1000;
  // Fewer labels on a narrow chart.
  const parts = pw < 260 ? 2 : 4;
  for (let s = 0; s <= seconds; s += seconds / parts) {
    const x = left + pw - (s / seconds) * pw;
    ctx.textAlign = s === 0 ? "right" : s === seconds ? "left" : "center";
    ctx.fillText(s === 0 ? "now" : `−${s.toFixed(s % 1 === 0 ? 0 : 1)} s`, x, h - 4);
    ctx.strokeStyle = p.faint;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, top);
    ctx.lineTo(Math.round(x) + 0.5, top + ph);
    ctx.stroke();
  }
}

/**
 * Value axis: min, mid, max. A spread too fine for a few decimals (a converged
 * simulation) is labelled as offsets from the middle value.
 */
function drawValueAxis(
  ctx: CanvasRenderingContext2D,
  left: number,
  pw: number,
  lo: number,
  hi: number,
  Y: (v: number) => number,
  p: Palette,
): void {
  const span = hi - lo;
  const digits = digitsFor(span || Math.abs(hi));
  const mid = (lo + hi) / 2;
  const fine = span > 0 && digits > 5;
  const label = (v: number): string => {
    if (!fine || v === mid) return v.toFixed(fine ? 4 : digits).replace("-", "−");
    const d = v - mid;
    return `${d < 0 ? "−" : "+"}${Math.abs(d).toExponential(1)}`;
  };
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of span > 0 ? [lo, mid, hi] : [hi]) {
    const y = Y(v);
    ctx.strokeStyle = p.faint;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(left + pw, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = p.muted;
    ctx.fillText(label(v), left - 8, y);
  }
}

/**
 * The points as drawable segments, broken where no state arrived for a while; when
 * points outnumber pixels (`decimate`), one column per pixel with the first, greatest,
 * least and last value of the line and the extremes of the band.
 */
function collectSegments(
  history: History,
  since: number,
  decimate: boolean,
  X: (t: number) => number,
  Y: (v: number) => number,
): Segment[] {
  const segments: Segment[] = [];
  let seg: Segment | undefined;
  let col: { x: number; first: number; min: number; max: number; last: number; lo: number; hi: number } | undefined;
  const flush = (): void => {
    if (col && seg) {
      seg.points.push([col.x, Y(col.first)], [col.x + 0.33, Y(col.max)], [col.x + 0.66, Y(col.min)], [col.x + 1, Y(col.last)]);
      seg.band.push([col.x, Y(col.hi), Y(col.lo)], [col.x + 1, Y(col.hi), Y(col.lo)]);
    }
    col = undefined;
  };
  history.forEach(since, (t, v, lo, hi) => {
    if (!seg || t - seg.t1 > GAP_MS) {
      flush();
      seg = { t0: t, t1: t, points: [], band: [] };
      segments.push(seg);
    }
    seg.t1 = t;
    if (!decimate) {
      const x = X(t);
      seg.points.push([x, Y(v)]);
      seg.band.push([x, Y(hi), Y(lo)]);
      return;
    }
    const x = Math.floor(X(t));
    if (col && col.x === x) {
      if (v < col.min) col.min = v;
      if (v > col.max) col.max = v;
      if (lo < col.lo) col.lo = lo;
      if (hi > col.hi) col.hi = hi;
      col.last = v;
    } else {
      flush();
      col = { x, first: v, min: v, max: v, last: v, lo, hi };
    }
  });
  flush();
  return segments;
}

/** The envelope bands (least to greatest); whether any was wider than the line. */
function drawBands(ctx: CanvasRenderingContext2D, segments: Segment[], color: string): boolean {
  let wide = false;
  for (const { band } of segments) {
    for (const [, top, bottom] of band) {
      if (bottom - top > 0.5) {
        wide = true;
        break;
      }
    }
  }
  if (!wide) return false;
  ctx.fillStyle = withAlpha(color, 0.3);
  for (const { band } of segments) {
    if (band.length === 0) continue;
    ctx.beginPath();
    ctx.moveTo(band[0]![0], band[0]![1]);
    for (const [x, top] of band) ctx.lineTo(x, top);
    for (let k = band.length - 1; k >= 0; k--) ctx.lineTo(band[k]![0], band[k]![2]);
    ctx.closePath();
    ctx.fill();
    // A lone point has no width: a bar, so a one-frame spike still shows.
    if (band.length === 1) ctx.fillRect(band[0]![0] - 1, band[0]![1], 2, band[0]![2] - band[0]![1]);
  }
  return true;
}

/**
 * The phase histogram: bin k counts the phases in [k·2π/B, (k+1)·2π/B), as bars
 * over 0..2π, scaled to the fullest bin.
 */
export function drawHistogram(surface: Surface, bins: ArrayLike<number> | undefined, p: Palette): void {
  if (!surface.begin()) return;
  const ctx = surface.ctx;
  const w = surface.width;
  const h = surface.height;
  const left = 8;
  const right = 8;
  const top = 6;
  const bottom = 20;
  const pw = Math.max(1, w - left - right);
  const ph = Math.max(1, h - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = p.muted;
  ctx.textBaseline = "alphabetic";
  for (const [label, at] of [["0", 0], ["π", 0.5], ["2π", 1]] as const) {
    ctx.textAlign = at === 0 ? "left" : at === 1 ? "right" : "center";
    ctx.fillText(label, left + at * pw, h - 4);
  }
  ctx.strokeStyle = p.faint;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, Math.round(top + ph) + 0.5);
  ctx.lineTo(left + pw, Math.round(top + ph) + 0.5);
  ctx.stroke();
  const n = bins?.length ?? 0;
  if (!bins || n === 0) {
    centeredText(ctx, "waiting for states…", left + pw / 2, top + ph / 2, p.muted);
    return;
  }
  let max = 1;
  for (let k = 0; k < n; k++) max = Math.max(max, bins[k]!);
  const bw = pw / n;
  const gap = bw >= 6 ? 1.5 : 0;
  ctx.fillStyle = p.muted;
  ctx.globalAlpha = 0.85;
  ctx.beginPath();
  for (let k = 0; k < n; k++) {
    const bh = (bins[k]! / max) * ph;
    if (bh > 0) ctx.rect(left + k * bw + gap / 2, top + ph - bh, bw - gap, bh);
  }
  ctx.fill();
  ctx.globalAlpha = 1;
}

function withAlpha(color: string, alpha: number): string {
  const [r, g, b] = rgb(color);
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}
