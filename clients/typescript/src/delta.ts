/**
 * Applying a delta frame to the state a subscriber holds, exactly as
 * docs/protocol.md "Applying a delta" says, verified by the checksum.
 *
 * ```text
 * if d.base_seq != held_seq: resync
 * phases[i] = phases[i] + steps * 2^quantum_exp   (one multiplication, one addition)
 * phases[i] = value
 * spins[i]  = -spins[i]          (protobuf flips)   or   spins[i] = value   (JSON)
 * step, energy, timestamp = d.step, d.energy, d.timestamp
 * if checksum(new) != d.checksum: resync
 * ```
 *
 * @module
 */

import { checksum, checksumHex } from "./checksum.js";
import type { DeltaFrame, State } from "./model.js";

/** Why a delta could not be applied. */
export type ApplyErrorReason = "base_seq" | "index" | "shape" | "spin" | "checksum";

/**
 * A delta that cannot be applied to the state held. The held state is unchanged
 * (`applyDelta` works on a copy), but it is no use for the deltas that follow: the
 * subscriber drops it and asks for a full frame.
 */
export class ApplyError extends Error {
  override readonly name = "ApplyError";

  constructor(
    /** What went wrong, for counters and logs. */
    readonly reason: ApplyErrorReason,
    message: string,
  ) {
    super(message);
  }
}

const bitsScratch = new BigUint64Array(1);
const floatScratch = new Float64Array(bitsScratch.buffer);

/**
 * `2 ** e` as a double, built from its bits so it is exact for every `e` in
 * -1074..1023 (subnormals included) whatever the platform's `Math.pow` does.
 */
export function pow2(e: number): number {
  if (!Number.isInteger(e) || e < -1074 || e > 1023) {
    throw new RangeError(`quantum exponent ${e} is outside -1074..1023`);
  }
  bitsScratch[0] = e >= -1022 ? BigInt(e + 1023) << 52n : 1n << BigInt(e + 1074);
  return floatScratch[0]!;
}

/**
 * Applies `delta` to `held` (whose seq is `heldSeq`) and verifies the result.
 *
 * @returns the new state; `held` is not modified.
 * @throws {ApplyError} when the delta is for another base, names an index the state
 *   does not have, or the result's checksum is not the one the delta announced.
 */
export function applyDelta(held: State, heldSeq: number, delta: DeltaFrame): State {
  if (delta.baseSeq !== heldSeq) {
    throw new ApplyError(
      "base_seq",
      `delta to seq ${delta.seq} is from base_seq ${delta.baseSeq}, but the state held has seq ${heldSeq}`,
    );
  }
  const phases = held.phases.slice();
  const spins = held.spins.slice();
  if (delta.denseLength !== undefined && delta.denseLength !== phases.length) {
    throw new ApplyError(
      "shape",
      `dense list of ${delta.denseLength} entries for a state of ${phases.length} phases`,
    );
  }
  const checkIndex = (index: number, length: number, what: string): void => {
    if (!(index >= 0 && index < length)) {
      throw new ApplyError(
        "index",
        `delta changes ${what}[${index}], but the state holds only ${length}`,
      );
    }
  };

  if (delta.stepIndices.length > 0) {
    const quantum = pow2(delta.quantumExp);
    for (let k = 0; k < delta.stepIndices.length; k++) {
      const i = delta.stepIndices[k]!;
      checkIndex(i, phases.length, "phases");
      phases[i] = phases[i]! + delta.stepCounts[k]! * quantum;
    }
  }
  for (let k = 0; k < delta.valueIndices.length; k++) {
    const i = delta.valueIndices[k]!;
    checkIndex(i, phases.length, "phases");
    phases[i] = delta.values[k]!;
  }
  for (let k = 0; k < delta.flips.length; k++) {
    const i = delta.flips[k]!;
    checkIndex(i, spins.length, "spins");
    spins[i] = -spins[i]!;
  }
  for (let k = 0; k < delta.spinIndices.length; k++) {
    const i = delta.spinIndices[k]!;
    checkIndex(i, spins.length, "spins");
    const value = delta.spinValues[k]!;
    if (value !== 1 && value !== -1) {
      throw new ApplyError("spin", `spins[${i}] set to ${value}, not +1 or -1`);
    }
    spins[i] = value;
  }

  const next: { -readonly [K in keyof State]: State[K] } = {
    step: delta.step,
    phases,
    spins,
    energy: delta.energy,
  };
  if (delta.timestamp !== undefined) next.timestamp = delta.timestamp;

  const actual = checksum(next);
  if (actual !== delta.checksum) {
    throw new ApplyError(
      "checksum",
      `checksum mismatch after applying delta to seq ${delta.seq}: expected ${checksumHex(delta.checksum)}, got ${checksumHex(actual)}`,
    );
  }
  return next;
}
