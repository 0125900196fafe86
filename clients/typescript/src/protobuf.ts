/**
 * The protobuf encoding (`pcc.v1`, generated into `gen/pcc/v1/pcc_pb.ts`): frames
 * are binary messages. A delta is packed tightly; this module unpacks it:
 *
 * - index lists are sent as gaps: first index `gaps[0]`, each next one
 *   `previous + 1 + gaps[k]`;
 * - a list whose gaps are empty (but whose values are not) is dense: one entry per
 *   phase, indices 0..n-1;
 * - spins are bits (least significant first); flips are gaps or a bitset;
 * - `base_seq = seq - 1 - skipped`;
 * - a frame with neither `full` nor `delta` (`?fields=` without phases and spins)
 *   stands alone: a state with no phases and no spins, no epoch;
 * - `summary` and `envelope` (fields 8 and 9) come with the frames that carry them.
 *
 * @module
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DecodeError } from "./errors.js";
import {
  ClientMessageSchema,
  FrameSchema,
  FullStateSchema,
  PccStateSchema,
  ResyncSchema,
  type DeltaState,
  type Envelope as PbEnvelope,
  type Frame as PbFrame,
  type FullState,
  type Range as PbRange,
  type Summary as PbSummary,
} from "./gen/pcc/v1/pcc_pb.js";
import type { DeltaFrame, Envelope, Frame, FrameExtras, FullFrame, Range, State, StateInput, Summary } from "./model.js";

function fail(message: string, cause?: unknown): never {
  throw new DecodeError("protobuf", message, cause === undefined ? undefined : { cause });
}

/** A uint64 that must fit a `number` exactly (seq, step). */
function safe(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} is beyond 2^53`);
  return Number(value);
}

/** Spins from `spin_count` and `spin_bits` (bit i%8 of byte i/8 set: +1). */
function unpackSpins(count: number, bits: Uint8Array): Int8Array {
  if (bits.length !== Math.ceil(count / 8)) {
    fail(`spin_bits: ${bits.length} bytes for ${count} spins`);
  }
  const spins = new Int8Array(count);
  for (let i = 0; i < count; i++) spins[i] = (bits[i >> 3]! >> (i & 7)) & 1 ? 1 : -1;
  return spins;
}

/** Indices from index gaps; `count` entries are expected. */
function fromGaps(gaps: readonly number[], count: number, what: string): number[] {
  if (gaps.length !== count) fail(`${what}: ${gaps.length} index gaps for ${count} entries`);
  const out: number[] = new Array<number>(count);
  let next = 0;
  for (let k = 0; k < count; k++) {
    const i = next + gaps[k]!;
    out[k] = i;
    next = i + 1;
  }
  return out;
}

/** Indices of a list that may be dense; records the dense length in `dense`. */
function listIndices(
  gaps: readonly number[],
  count: number,
  what: string,
  dense: { length?: number },
): ArrayLike<number> {
  if (count === 0) {
    if (gaps.length !== 0) fail(`${what}: ${gaps.length} index gaps for no entries`);
    return [];
  }
  if (gaps.length > 0) return fromGaps(gaps, count, what);
  if (dense.length !== undefined && dense.length !== count) {
    fail(`dense lists of ${dense.length} and ${count} entries`);
  }
  dense.length = count;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = i;
  return out;
}

function flipIndices(d: DeltaState): ArrayLike<number> {
  if (d.flipBits.length > 0) {
    if (d.flipGaps.length > 0) fail("delta has both flip_gaps and flip_bits");
    const out: number[] = [];
    for (let i = 0; i < d.flipBits.length * 8; i++) {
      if ((d.flipBits[i >> 3]! >> (i & 7)) & 1) out.push(i);
    }
    return out;
  }
  return fromGaps(d.flipGaps, d.flipGaps.length, "flip_gaps");
}

function fullState(frame: { step: bigint; energy: number; timestamp?: number | undefined }, full: FullState): State {
  const state: { -readonly [K in keyof State]: State[K] } = {
    step: safe(frame.step, "step"),
    phases: Float64Array.from(full.phases),
    spins: unpackSpins(full.spinCount, full.spinBits),
    energy: frame.energy,
  };
  if (frame.timestamp !== undefined) state.timestamp = frame.timestamp;
  return state;
}

function summaryOf(s: PbSummary): Summary {
  return { r: s.r, psi: s.psi, magnetization: s.magnetization, energy: s.energy, histogram: Uint32Array.from(s.histogram) };
}

/** A range; an absent one (never sent by the server) reads as zeros, as proto3 does. */
function rangeOf(r: PbRange | undefined): Range {
  return { min: r?.min ?? 0, max: r?.max ?? 0, mean: r?.mean ?? 0 };
}

function envelopeOf(e: PbEnvelope): Envelope {
  return {
    states: e.states,
    r: rangeOf(e.r),
    psi: rangeOf(e.psi),
    magnetization: rangeOf(e.magnetization),
    energy: rangeOf(e.energy),
  };
}

function extrasOf(frame: PbFrame): { -readonly [K in keyof FrameExtras]: FrameExtras[K] } {
  const extras: { -readonly [K in keyof FrameExtras]: FrameExtras[K] } = {};
  if (frame.summary !== undefined) extras.summary = summaryOf(frame.summary);
  if (frame.envelope !== undefined) extras.envelope = envelopeOf(frame.envelope);
  return extras;
}

function deltaFrame(
  frame: { seq: bigint; step: bigint; energy: number; timestamp?: number | undefined },
  d: DeltaState,
): DeltaFrame {
  const base = frame.seq - 1n - d.skipped;
  if (base < 0n) fail(`delta to seq ${frame.seq} skips ${d.skipped}: past seq 0`);
  if (!Number.isInteger(d.quantumExp) || d.quantumExp < -1074 || d.quantumExp > 1023) {
    fail(`quantum_exp ${d.quantumExp} out of range`);
  }
  const dense: { length?: number } = {};
  const stepIndices = listIndices(d.stepGaps, d.steps.length, "steps", dense);
  const valueIndices = listIndices(d.valueGaps, d.values.length, "values", dense);
  // Number(bigint) rounds to nearest like Rust's `i64 as f64`; exact below 2^53.
  const stepCounts = new Float64Array(d.steps.length);
  for (let k = 0; k < d.steps.length; k++) stepCounts[k] = Number(d.steps[k]!);
  const delta: { -readonly [K in keyof DeltaFrame]: DeltaFrame[K] } = {
    kind: "delta",
    seq: safe(frame.seq, "seq"),
    baseSeq: Number(base),
    step: safe(frame.step, "step"),
    energy: frame.energy,
    checksum: d.checksum,
    quantumExp: d.quantumExp,
    stepIndices,
    stepCounts,
    valueIndices,
    values: d.values,
    flips: flipIndices(d),
    spinIndices: [],
    spinValues: [],
  };
  if (frame.timestamp !== undefined) delta.timestamp = frame.timestamp;
  if (dense.length !== undefined) delta.denseLength = dense.length;
  return delta;
}

/**
 * Decodes a protobuf `pcc.v1.Frame` (one binary WebSocket message).
 *
 * @throws {DecodeError} when the bytes are not a frame (truncated, wrong wire
 *   types, inconsistent lists).
 */
export function decodeProtobufFrame(bytes: Uint8Array): Frame {
  let frame;
  try {
    frame = fromBinary(FrameSchema, bytes);
  } catch (err) {
    fail((err as Error).message, err);
  }
  const extras = extrasOf(frame);
  switch (frame.body.case) {
    case "full": {
      const full: { -readonly [K in keyof FullFrame]: FullFrame[K] } = {
        kind: "full",
        seq: safe(frame.seq, "seq"),
        state: fullState(frame, frame.body.value),
        ...extras,
      };
      // proto3: an absent epoch is the empty string.
      if (frame.epoch !== "") full.epoch = frame.epoch;
      return full;
    }
    case "delta":
      return { ...deltaFrame(frame, frame.body.value), ...extras };
    default: {
      // No body (`?fields=` without phases and spins): a state with neither, standing
      // alone. Its epoch, if one were sent, is not kept: nothing resumes from it.
      const empty = create(FullStateSchema);
      return { kind: "full", seq: safe(frame.seq, "seq"), state: fullState(frame, empty), standalone: true, ...extras };
    }
  }
}

/**
 * A producer state as protobuf `PccState` (body of `POST` with
 * `Content-Type: application/x-protobuf`, or a binary `/ingest` message).
 */
export function encodeProtobufState(state: StateInput): Uint8Array {
  if (!Number.isSafeInteger(state.step) || state.step < 0) {
    throw new RangeError(`step must be an integer in 0..2^53, got ${state.step}`);
  }
  const message = create(PccStateSchema, {
    step: BigInt(state.step),
    phases: Array.from(state.phases),
    spins: Array.from(state.spins ?? []),
    energy: state.energy,
  });
  if (state.timestamp !== undefined && state.timestamp !== null) {
    message.timestamp = state.timestamp;
  }
  return toBinary(PccStateSchema, message);
}

/** The resync request of a protobuf subscriber: `ClientMessage{resync{}}`. */
export function encodeProtobufResync(): Uint8Array {
  return toBinary(
    ClientMessageSchema,
    create(ClientMessageSchema, { op: { case: "resync", value: create(ResyncSchema) } }),
  );
}
