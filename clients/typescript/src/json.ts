/**
 * The JSON encoding: frames are text messages, a full frame is the state's fields
 * plus `seq`, a delta has `is_delta: true` and the new values of what changed keyed
 * by index (`phases_delta`, `spins_delta`), and a 16-hex-digit `checksum`.
 *
 * With `?fields=` the keys of the parts not asked for are absent: the state held
 * has no phases, no spins, energy 0 or no timestamp. A frame with neither `phases`
 * nor `spins` (and no `is_delta`) has no body: it stands alone. `summary` and
 * `envelope` are 32-bit floats, read as the `float32` their text names.
 *
 * The server writes numbers in their shortest round-trip form, so `JSON.parse`
 * yields exactly the server's doubles.
 *
 * @module
 */

import { parseChecksumHex } from "./checksum.js";
import { DecodeError } from "./errors.js";
import type { DeltaFrame, Envelope, FrameExtras, Frame, FullFrame, Range, State, StateInput, Summary } from "./model.js";

type Json = Record<string, unknown>;

function fail(message: string, cause?: unknown): never {
  throw new DecodeError("json", message, cause === undefined ? undefined : { cause });
}

/** A JSON integer that a `number` holds exactly (seq, step, base_seq). */
function uint(obj: Json, key: string): number {
  const v = obj[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    fail(`"${key}" must be an integer in 0..2^53, got ${JSON.stringify(v)}`);
  }
  return v;
}

function finite(obj: Json, key: string): number {
  const v = obj[key];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    fail(`"${key}" must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** `energy`: a number, or 0 when absent (a subscription without `energy` in `fields`). */
function energyOf(obj: Json): number {
  return obj["energy"] === undefined ? 0 : finite(obj, "energy");
}

function object(v: unknown, key: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`"${key}" must be an object`);
  return v as Json;
}

/** A 32-bit float of a summary or envelope: the `float32` its text reads as. */
function float32(obj: Json, key: string, where: string): number {
  const v = obj[key];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    fail(`${where}.${key} must be a number, got ${JSON.stringify(v)}`);
  }
  return Math.fround(v);
}

function summaryOf(v: unknown): Summary {
  const obj = object(v, "summary");
  const histogram = obj["histogram"] ?? [];
  if (!Array.isArray(histogram)) fail(`summary.histogram must be an array`);
  const bins = new Uint32Array(histogram.length);
  for (let k = 0; k < histogram.length; k++) {
    const n: unknown = histogram[k];
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
      fail(`summary.histogram[${k}] must be a count, got ${JSON.stringify(n)}`);
    }
    bins[k] = n;
  }
  return {
    r: float32(obj, "r", "summary"),
    psi: float32(obj, "psi", "summary"),
    magnetization: float32(obj, "magnetization", "summary"),
    energy: float32(obj, "energy", "summary"),
    histogram: bins,
  };
}

function rangeOf(v: unknown, where: string): Range {
  const obj = object(v, where);
  return { min: float32(obj, "min", where), max: float32(obj, "max", where), mean: float32(obj, "mean", where) };
}

function envelopeOf(v: unknown): Envelope {
  const obj = object(v, "envelope");
  const states = obj["states"];
  if (typeof states !== "number" || !Number.isInteger(states) || states < 0 || states > 0xffffffff) {
    fail(`envelope.states must be a count, got ${JSON.stringify(states)}`);
  }
  return {
    states,
    r: rangeOf(obj["r"], "envelope.r"),
    psi: rangeOf(obj["psi"], "envelope.psi"),
    magnetization: rangeOf(obj["magnetization"], "envelope.magnetization"),
    energy: rangeOf(obj["energy"], "envelope.energy"),
  };
}

/** `summary` and `envelope`, when the frame has them. */
function extrasOf(obj: Json): { -readonly [K in keyof FrameExtras]: FrameExtras[K] } {
  const extras: { -readonly [K in keyof FrameExtras]: FrameExtras[K] } = {};
  if (obj["summary"] !== undefined && obj["summary"] !== null) extras.summary = summaryOf(obj["summary"]);
  if (obj["envelope"] !== undefined && obj["envelope"] !== null) extras.envelope = envelopeOf(obj["envelope"]);
  return extras;
}

/** `timestamp`: a number, or absent / null for a state without one. */
function optionalTimestamp(obj: Json): number | undefined {
  const v = obj["timestamp"];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number") fail(`"timestamp" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function numberArray(v: unknown, key: string): Float64Array {
  if (!Array.isArray(v)) fail(`"${key}" must be an array`);
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== "number") fail(`${key}[${i}] must be a number, got ${JSON.stringify(x)}`);
    out[i] = x;
  }
  return out;
}

function spinArray(v: unknown): Int8Array {
  if (v === undefined || v === null) return new Int8Array(0);
  if (!Array.isArray(v)) fail(`"spins" must be an array`);
  const out = new Int8Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (x !== 1 && x !== -1) fail(`spins[${i}] must be +1 or -1, got ${JSON.stringify(x)}`);
    out[i] = x;
  }
  return out;
}

const INDEX = /^\+?[0-9]+$/;

/** An `{"index": number}` map as parallel arrays, ascending by index. */
function indexMap(v: unknown, key: string): { indices: number[]; values: number[] } {
  const indices: number[] = [];
  const values: number[] = [];
  if (v === undefined || v === null) return { indices, values };
  if (typeof v !== "object" || Array.isArray(v)) fail(`"${key}" must be an object`);
  const entries = Object.entries(v as Json).map(([k, x]): [number, number] => {
    const index = INDEX.test(k) ? Number(k) : NaN;
    if (!Number.isSafeInteger(index) || index > 0xffffffff) {
      fail(`${key}: index ${JSON.stringify(k)} is not a number`);
    }
    if (typeof x !== "number") fail(`${key}["${k}"] must be a number, got ${JSON.stringify(x)}`);
    return [index, x];
  });
  entries.sort((a, b) => a[0] - b[0]);
  for (const [i, x] of entries) {
    indices.push(i);
    values.push(x);
  }
  return { indices, values };
}

/**
 * Decodes a JSON frame (the text of one WebSocket message).
 *
 * @throws {DecodeError} when the text is not a frame.
 */
export function decodeJsonFrame(text: string): Frame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail((err as Error).message, err);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    fail("a frame must be a JSON object");
  }
  const obj = parsed as Json;
  const isDelta = obj["is_delta"] ?? false;
  if (typeof isDelta !== "boolean") fail(`"is_delta" must be a boolean`);
  const seq = uint(obj, "seq");
  const step = uint(obj, "step");
  const energy = energyOf(obj);
  const timestamp = optionalTimestamp(obj);
  const extras = extrasOf(obj);

  if (!isDelta) {
    // A part not asked for (`?fields=`) is absent: the subscriber holds none of it.
    const phases = obj["phases"];
    const spins = obj["spins"];
    const state: { -readonly [K in keyof State]: State[K] } = {
      step,
      phases: phases === undefined || phases === null ? new Float64Array(0) : numberArray(phases, "phases"),
      spins: spinArray(spins),
      energy,
    };
    if (timestamp !== undefined) state.timestamp = timestamp;
    const full: { -readonly [K in keyof FullFrame]: FullFrame[K] } = { kind: "full", seq, state, ...extras };
    if ((phases === undefined || phases === null) && (spins === undefined || spins === null)) {
      // No body: the frame stands alone (no epoch, nothing to resume from).
      full.standalone = true;
      return full;
    }
    const epoch = obj["epoch"];
    if (epoch === undefined || epoch === null || epoch === "") return full;
    if (typeof epoch !== "string") fail(`"epoch" must be a string, got ${JSON.stringify(epoch)}`);
    full.epoch = epoch;
    return full;
  }

  const baseSeq = uint(obj, "base_seq");
  const sum = obj["checksum"];
  const checksum = typeof sum === "string" ? parseChecksumHex(sum) : undefined;
  if (checksum === undefined) fail(`delta without a valid checksum: ${JSON.stringify(sum)}`);
  const phases = indexMap(obj["phases_delta"], "phases_delta");
  const spins = indexMap(obj["spins_delta"], "spins_delta");
  const delta: { -readonly [K in keyof DeltaFrame]: DeltaFrame[K] } = {
    kind: "delta",
    seq,
    baseSeq,
    step,
    energy,
    checksum,
    quantumExp: 0,
    stepIndices: [],
    stepCounts: [],
    valueIndices: phases.indices,
    values: phases.values,
    flips: [],
    spinIndices: spins.indices,
    spinValues: spins.values,
    ...extras,
  };
  if (timestamp !== undefined) delta.timestamp = timestamp;
  return delta;
}

/**
 * A finite number in its shortest round-trip form (what `String(x)` gives), with
 * negative zero written `-0.0` so its sign survives every JSON parser.
 *
 * @throws {RangeError} for NaN and infinities, which JSON cannot carry.
 */
export function formatJsonNumber(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`${x} cannot be sent as JSON`);
  return Object.is(x, -0) ? "-0.0" : String(x);
}

function formatUint(x: number, what: string): string {
  if (!Number.isSafeInteger(x) || x < 0) {
    throw new RangeError(`${what} must be an integer in 0..2^53, got ${x}`);
  }
  return String(x);
}

/** Writes a list of numbers as a JSON array. */
export function formatJsonArray(values: ArrayLike<number>): string {
  let out = "[";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ",";
    out += formatJsonNumber(values[i]!);
  }
  return out + "]";
}

/**
 * A producer state as the JSON body of `POST /pcc_state` or an `/ingest` text
 * message: `{"step":..,"energy":..,"timestamp":..,"phases":[..],"spins":[..]}`.
 *
 * @throws {RangeError} for a step that is not a safe non-negative integer or a
 *   value JSON cannot carry (NaN, ±Infinity).
 */
export function encodeJsonState(state: StateInput): string {
  let out = `{"step":${formatUint(state.step, "step")},"energy":${formatJsonNumber(state.energy)}`;
  if (state.timestamp !== undefined && state.timestamp !== null) {
    out += `,"timestamp":${formatJsonNumber(state.timestamp)}`;
  }
  out += `,"phases":${formatJsonArray(state.phases)}`;
  out += `,"spins":${formatJsonArray(state.spins ?? [])}}`;
  return out;
}

/** The resync request of a JSON subscriber. */
export const JSON_RESYNC = '{"op":"resync"}';
