/**
 * The server side of the delta protocol, for tests: a port of src/delta.rs
 * (`advance`, `diff`) and of the frame encoders in src/codec/{json,protobuf}.rs, so
 * the client can be tested against frames made the way the server makes them.
 */

import { create, toBinary } from "@bufbuild/protobuf";
import {
  checksum,
  checksumHex,
  FIELDS,
  float64Bits,
  formatFloat32,
  formatJsonArray,
  formatJsonNumber,
  pb,
  pow2,
  type Envelope,
  type Field,
  type Range,
  type State,
  type Summary,
} from "@phasecast/client";

/** A change to one phase, as the server's `PhaseChange`. */
export type PhaseChange = { readonly kind: "step"; readonly steps: number } | { readonly kind: "set"; readonly value: number };

/** The server's `Delta`: turns the state with seq `baseSeq` into the one with seq `seq`. */
export interface ServerDelta {
  seq: number;
  baseSeq: number;
  step: number;
  energy: number;
  timestamp: number | undefined;
  checksum: bigint;
  quantumExp: number;
  phases: [number, PhaseChange][];
  flips: number[];
}

const MAX_EXACT_STEPS = 2 ** 53;

/** Rust's `f64::round`: half away from zero. */
function roundAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** The quantum exponent for a tolerance ε (undefined: lossless), as `Tolerance::new`. */
export function quantumExpFor(epsilon: number): number | undefined {
  if (epsilon === 0) return undefined;
  let exp = Math.floor(Math.log2(2 * epsilon));
  while (pow2(exp) / 2 > epsilon) exp--;
  return exp;
}

/** Builds a state (typed arrays). */
export function makeState(step: number, phases: ArrayLike<number>, spins: ArrayLike<number>, energy: number, timestamp?: number): State {
  const s: { -readonly [K in keyof State]: State[K] } = {
    step,
    phases: Float64Array.from(phases),
    spins: Int8Array.from(spins),
    energy,
  };
  if (timestamp !== undefined) s.timestamp = timestamp;
  return s;
}

/** The next view a subscriber in step holds, as `delta::advance`. */
export function advance(view: State, truth: State, epsilon: number): State {
  const exp = quantumExpFor(epsilon);
  let phases: Float64Array;
  if (exp === undefined) {
    phases = truth.phases.slice();
  } else {
    const quantum = pow2(exp);
    phases = view.phases.map((held, i) => {
      const wanted = truth.phases[i]!;
      const change = wanted - held;
      if (Math.abs(change) <= epsilon) return held;
      const steps = roundAway(change / quantum);
      if (Math.abs(steps) < MAX_EXACT_STEPS) {
        const moved = held + steps * quantum;
        if (Math.abs(moved - wanted) <= epsilon) return moved;
      }
      return wanted;
    });
  }
  return makeState(truth.step, phases, truth.spins, truth.energy, truth.timestamp);
}

/** The delta from `base` to `target`, as `delta::diff`. */
export function diff(base: State, baseSeq: number, target: State, seq: number, quantumExp: number | undefined): ServerDelta {
  const quantum = quantumExp === undefined ? undefined : pow2(quantumExp);
  const phases: [number, PhaseChange][] = [];
  for (let i = 0; i < base.phases.length; i++) {
    const b = base.phases[i]!;
    const t = target.phases[i]!;
    if (float64Bits(b) === float64Bits(t)) continue;
    let change: PhaseChange = { kind: "set", value: t };
    if (quantum !== undefined) {
      const steps = roundAway((t - b) / quantum);
      if (Math.abs(steps) < MAX_EXACT_STEPS && float64Bits(b + steps * quantum) === float64Bits(t)) {
        change = { kind: "step", steps };
      }
    }
    phases.push([i, change]);
  }
  const flips: number[] = [];
  for (let i = 0; i < base.spins.length; i++) if (base.spins[i] !== target.spins[i]) flips.push(i);
  return {
    seq,
    baseSeq,
    step: target.step,
    energy: target.energy,
    timestamp: target.timestamp,
    checksum: checksum(target),
    quantumExp: quantumExp ?? 0,
    phases,
    flips,
  };
}

// --- fields and summaries (projection.rs, summary.rs) ------------------------------

/** What a frame carries besides its state: the fields taken, the summary, the envelope. */
export interface Parts {
  readonly fields: readonly Field[];
  readonly summary?: Summary | undefined;
  readonly envelope?: Envelope | undefined;
}

/** The whole state and nothing else: the frame of before. */
export const DEFAULT_PARTS: Parts = { fields: ["phases", "spins", "energy", "timestamp"] };

/** Whether frames for these fields have a body (phases or spins). */
export function hasBody(fields: readonly Field[]): boolean {
  return fields.includes("phases") || fields.includes("spins");
}

/** The part of `state` a subscriber taking `fields` holds, as `Projection::apply`. */
export function project(state: State, fields: readonly Field[]): State {
  return makeState(
    state.step,
    fields.includes("phases") ? state.phases : [],
    fields.includes("spins") ? state.spins : [],
    fields.includes("energy") ? state.energy : 0,
    fields.includes("timestamp") ? state.timestamp : undefined,
  );
}

/** Rust's `f64::rem_euclid`. */
function remEuclid(x: number, m: number): number {
  const r = x % m;
  return r < 0 ? r + m : r;
}

/** The summary of `state`, as `Summary::of` (f64 arithmetic, sent as f32). */
export function summarize(state: State, bins = 16): Summary {
  const histogram = new Uint32Array(Math.max(1, bins));
  let re = 0;
  let im = 0;
  const TAU = 2 * Math.PI;
  for (const phase of state.phases) {
    re += Math.cos(phase);
    im += Math.sin(phase);
    const k = Math.floor((remEuclid(phase, TAU) / TAU) * histogram.length);
    histogram[Math.min(k, histogram.length - 1)]!++;
  }
  const n = Math.max(1, state.phases.length);
  re /= n;
  im /= n;
  const r = Math.hypot(re, im);
  let psi = 0;
  if (r !== 0) {
    const a = Math.atan2(im, re);
    psi = a <= -Math.PI ? Math.PI : a;
  }
  let magnetization = 0;
  if (state.spins.length > 0) {
    let sum = 0;
    for (const s of state.spins) sum += s;
    magnetization = sum / state.spins.length;
  }
  const F32_MAX = 3.4028234663852886e38;
  return {
    r: Math.fround(Math.min(r, 1)),
    psi: Math.fround(psi),
    magnetization: Math.fround(magnetization),
    energy: Math.fround(Math.min(F32_MAX, Math.max(-F32_MAX, state.energy))),
    histogram,
  };
}

/** Folds summaries into an envelope, as `EnvelopeFold`. */
export class EnvelopeFold {
  #states = 0;
  #runs = { r: run(), psi: run(), magnetization: run(), energy: run() };

  add(s: Summary): void {
    this.#states++;
    for (const key of ["r", "psi", "magnetization", "energy"] as const) {
      const v = s[key];
      const x = this.#runs[key];
      x.min = Math.min(x.min, v);
      x.max = Math.max(x.max, v);
      x.sum += v;
    }
  }

  get states(): number {
    return this.#states;
  }

  /** The envelope so far (undefined for none), starting again. */
  take(): Envelope | undefined {
    const n = this.#states;
    const runs = this.#runs;
    this.#states = 0;
    this.#runs = { r: run(), psi: run(), magnetization: run(), energy: run() };
    if (n === 0) return undefined;
    const range = (x: { min: number; max: number; sum: number }): Range => ({ min: x.min, max: x.max, mean: Math.fround(x.sum / n) });
    return { states: n, r: range(runs.r), psi: range(runs.psi), magnetization: range(runs.magnetization), energy: range(runs.energy) };
  }
}

function run(): { min: number; max: number; sum: number } {
  return { min: Infinity, max: -Infinity, sum: 0 };
}

/** `fields` as the server reads `?fields=` (undefined: not a valid list). */
export function readFields(text: string | null): Field[] | undefined {
  if (text === null) return [...DEFAULT_PARTS.fields];
  const names = text.split(",");
  if (names.length === 0 || names.some((n) => !(FIELDS as readonly string[]).includes(n))) return undefined;
  return FIELDS.filter((f) => names.includes(f));
}

// --- JSON (src/codec/json.rs) -------------------------------------------------------

function scalars(step: number, energy: number, timestamp: number | undefined, fields: readonly Field[] = DEFAULT_PARTS.fields): string {
  let out = `,"step":${step}`;
  if (fields.includes("energy")) out += `,"energy":${formatJsonNumber(energy)}`;
  if (timestamp !== undefined && fields.includes("timestamp")) out += `,"timestamp":${formatJsonNumber(timestamp)}`;
  return out;
}

function jsonRange(r: Range): string {
  return `{"min":${formatFloat32(r.min)},"max":${formatFloat32(r.max)},"mean":${formatFloat32(r.mean)}}`;
}

function jsonExtras(parts: Parts): string {
  let out = "";
  const s = parts.summary;
  if (s !== undefined) {
    out +=
      `,"summary":{"r":${formatFloat32(s.r)},"psi":${formatFloat32(s.psi)},"magnetization":${formatFloat32(s.magnetization)}` +
      `,"energy":${formatFloat32(s.energy)},"histogram":[${Array.from(s.histogram).join(",")}]}`;
  }
  const e = parts.envelope;
  if (e !== undefined) {
    out +=
      `,"envelope":{"states":${e.states},"r":${jsonRange(e.r)},"psi":${jsonRange(e.psi)}` +
      `,"magnetization":${jsonRange(e.magnetization)},"energy":${jsonRange(e.energy)}}`;
  }
  return out;
}

/** A JSON full frame of the parts of `state` in `parts.fields` (no body without phases and spins). */
export function jsonFull(seq: number, state: State, epoch?: string, parts: Parts = DEFAULT_PARTS): string {
  const f = parts.fields;
  const e = epoch === undefined || !hasBody(f) ? "" : `,"epoch":${JSON.stringify(epoch)}`;
  let out = `{"seq":${seq}${e}${scalars(state.step, state.energy, state.timestamp, f)}`;
  if (f.includes("phases")) out += `,"phases":${formatJsonArray(state.phases)}`;
  if (f.includes("spins")) out += `,"spins":${formatJsonArray(state.spins)}`;
  return out + jsonExtras(parts) + "}";
}

/** A JSON delta frame: new values keyed by index (a delta of projected states). */
export function jsonDelta(delta: ServerDelta, target: State, parts: Parts = DEFAULT_PARTS): string {
  const f = parts.fields;
  const phases = delta.phases.map(([i]) => `"${i}":${formatJsonNumber(target.phases[i]!)}`).join(",");
  const spins = delta.flips.map((i) => `"${i}":${target.spins[i]}`).join(",");
  let out =
    `{"is_delta":true,"seq":${delta.seq},"base_seq":${delta.baseSeq}` +
    scalars(delta.step, delta.energy, delta.timestamp, f) +
    `,"checksum":"${checksumHex(delta.checksum)}"`;
  if (f.includes("phases")) out += `,"phases_delta":{${phases}}`;
  if (f.includes("spins")) out += `,"spins_delta":{${spins}}`;
  return out + jsonExtras(parts) + "}";
}

// --- protobuf (src/codec/protobuf.rs) ---------------------------------------------

function packBits(indicesSet: (i: number) => boolean, count: number): Uint8Array<ArrayBuffer> {
  const bits = new Uint8Array(Math.ceil(count / 8));
  for (let i = 0; i < count; i++) if (indicesSet(i)) bits[i >> 3]! |= 1 << (i & 7);
  return bits;
}

function gaps(indices: readonly number[]): number[] {
  let next = 0;
  return indices.map((i) => {
    const gap = i - next;
    next = i + 1;
    return gap;
  });
}

function varintLen(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function pbExtras(frame: pb.Frame, parts: Parts): void {
  const s = parts.summary;
  if (s !== undefined) {
    frame.summary = create(pb.SummarySchema, {
      r: s.r,
      psi: s.psi,
      magnetization: s.magnetization,
      energy: s.energy,
      histogram: Array.from(s.histogram),
    });
  }
  const e = parts.envelope;
  if (e !== undefined) {
    const range = (r: Range): pb.Range => create(pb.RangeSchema, { min: r.min, max: r.max, mean: r.mean });
    frame.envelope = create(pb.EnvelopeSchema, {
      states: e.states,
      r: range(e.r),
      psi: range(e.psi),
      magnetization: range(e.magnetization),
      energy: range(e.energy),
    });
  }
}

/** A protobuf full frame of the parts of `state` in `parts.fields` (no body without phases and spins). */
export function pbFull(seq: number, state: State, epoch?: string, parts: Parts = DEFAULT_PARTS): Uint8Array {
  const f = parts.fields;
  const p = project(state, f);
  const frame = create(pb.FrameSchema, {
    seq: BigInt(seq),
    epoch: hasBody(f) ? (epoch ?? "") : "",
    step: BigInt(p.step),
    energy: p.energy,
  });
  if (hasBody(f)) {
    frame.body = {
      case: "full",
      value: create(pb.FullStateSchema, {
        phases: Array.from(p.phases),
        spinCount: p.spins.length,
        spinBits: packBits((i) => p.spins[i]! > 0, p.spins.length),
      }),
    };
  }
  if (p.timestamp !== undefined) frame.timestamp = p.timestamp;
  pbExtras(frame, parts);
  return toBinary(pb.FrameSchema, frame);
}

/** Which packing a protobuf delta used (for coverage assertions). */
export interface PbDeltaShape {
  denseSteps: boolean;
  denseValues: boolean;
  flipBits: boolean;
  steps: number;
  values: number;
}

/** A protobuf delta frame, packed as the server packs it (a delta of projected states). */
export function pbDelta(delta: ServerDelta, target: State, shape?: PbDeltaShape, parts: Parts = DEFAULT_PARTS): Uint8Array {
  const n = target.phases.length;
  const stepIdx: number[] = [];
  const steps: bigint[] = [];
  const valueIdx: number[] = [];
  const values: number[] = [];
  for (const [i, change] of delta.phases) {
    if (change.kind === "step") {
      stepIdx.push(i);
      steps.push(BigInt(change.steps));
    } else {
      valueIdx.push(i);
      values.push(change.value);
    }
  }
  const indexGaps = (idx: number[]): number[] => (idx.length === n ? [] : gaps(idx));
  let flipGaps = gaps(delta.flips);
  const flipBitsLen = Math.ceil(target.spins.length / 8);
  const gapsLen = flipGaps.reduce((sum, g) => sum + varintLen(g), 0);
  let flipBits = new Uint8Array(0);
  if (delta.flips.length > 0 && gapsLen > flipBitsLen) {
    const flipped = new Set(delta.flips);
    flipBits = packBits((i) => flipped.has(i), target.spins.length);
    flipGaps = [];
  }
  if (shape) {
    shape.denseSteps = steps.length > 0 && steps.length === n;
    shape.denseValues = values.length > 0 && values.length === n;
    shape.flipBits = flipBits.length > 0;
    shape.steps = steps.length;
    shape.values = values.length;
  }
  const frame = create(pb.FrameSchema, {
    seq: BigInt(delta.seq),
    step: BigInt(delta.step),
    energy: delta.energy,
    body: {
      case: "delta",
      value: create(pb.DeltaStateSchema, {
        skipped: BigInt(delta.seq - 1 - delta.baseSeq),
        checksum: delta.checksum,
        quantumExp: steps.length === 0 ? 0 : delta.quantumExp,
        stepGaps: indexGaps(stepIdx),
        steps,
        valueGaps: indexGaps(valueIdx),
        values,
        flipGaps,
        flipBits,
      }),
    },
  });
  if (delta.timestamp !== undefined) frame.timestamp = delta.timestamp;
  pbExtras(frame, parts);
  return toBinary(pb.FrameSchema, frame);
}

/** Bit-exact equality of two states (phases by bits: -0 is not 0). */
export function sameState(a: State, b: State): boolean {
  if (a.step !== b.step || !Object.is(a.energy, b.energy) || !Object.is(a.timestamp, b.timestamp)) return false;
  if (a.phases.length !== b.phases.length || a.spins.length !== b.spins.length) return false;
  for (let i = 0; i < a.phases.length; i++) if (float64Bits(a.phases[i]!) !== float64Bits(b.phases[i]!)) return false;
  for (let i = 0; i < a.spins.length; i++) if (a.spins[i] !== b.spins[i]) return false;
  return true;
}

/** A small seeded PRNG (mulberry32): the same numbers for the same seed everywhere. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Hex string to bytes. */
export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/** Bytes to hex string. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
