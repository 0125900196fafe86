/**
 * The server side of the delta protocol, for tests: a port of src/delta.rs
 * (`advance`, `diff`) and of the frame encoders in src/codec/{json,protobuf}.rs, so
 * the client can be tested against frames made the way the server makes them.
 */

import { create, toBinary } from "@bufbuild/protobuf";
import { checksum, checksumHex, float64Bits, formatJsonArray, formatJsonNumber, pb, pow2, type State } from "@phasecast/client";

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

// --- JSON (src/codec/json.rs) -------------------------------------------------------

function scalars(step: number, energy: number, timestamp: number | undefined): string {
  let out = `,"step":${step},"energy":${formatJsonNumber(energy)}`;
  if (timestamp !== undefined) out += `,"timestamp":${formatJsonNumber(timestamp)}`;
  return out;
}

/** A JSON full frame. */
export function jsonFull(seq: number, state: State, epoch?: string): string {
  const e = epoch === undefined ? "" : `,"epoch":${JSON.stringify(epoch)}`;
  return `{"seq":${seq}${e}${scalars(state.step, state.energy, state.timestamp)},"phases":${formatJsonArray(state.phases)},"spins":${formatJsonArray(state.spins)}}`;
}

/** A JSON delta frame: new values keyed by index. */
export function jsonDelta(delta: ServerDelta, target: State): string {
  const phases = delta.phases.map(([i]) => `"${i}":${formatJsonNumber(target.phases[i]!)}`).join(",");
  const spins = delta.flips.map((i) => `"${i}":${target.spins[i]}`).join(",");
  return (
    `{"is_delta":true,"seq":${delta.seq},"base_seq":${delta.baseSeq}` +
    scalars(delta.step, delta.energy, delta.timestamp) +
    `,"checksum":"${checksumHex(delta.checksum)}","phases_delta":{${phases}},"spins_delta":{${spins}}}`
  );
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

/** A protobuf full frame. */
export function pbFull(seq: number, state: State, epoch?: string): Uint8Array {
  const frame = create(pb.FrameSchema, {
    seq: BigInt(seq),
    epoch: epoch ?? "",
    step: BigInt(state.step),
    energy: state.energy,
    body: {
      case: "full",
      value: create(pb.FullStateSchema, {
        phases: Array.from(state.phases),
        spinCount: state.spins.length,
        spinBits: packBits((i) => state.spins[i]! > 0, state.spins.length),
      }),
    },
  });
  if (state.timestamp !== undefined) frame.timestamp = state.timestamp;
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

/** A protobuf delta frame, packed as the server packs it. */
export function pbDelta(delta: ServerDelta, target: State, shape?: PbDeltaShape): Uint8Array {
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
