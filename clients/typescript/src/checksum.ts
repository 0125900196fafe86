/**
 * The state checksum every delta frame carries (docs/protocol.md, "Checksum").
 *
 * A 64-bit hash over 64-bit words, all arithmetic modulo 2^64:
 *
 * ```text
 * h = 0x243F6A8885A308D3
 * mix(w): h = (h XOR w) * 0x9E3779B97F4A7C15;  h = h XOR (h >> 29)
 * words: step, phase count, each phase's IEEE-754 bits, spin count,
 *        spins packed 64 to a word (bit j set when spin 64g+j is +1), energy's bits
 * ```
 *
 * The timestamp is not covered. It detects a wrong state; it is not a MAC.
 *
 * @module
 */

import type { State } from "./model.js";

const SEED = 0x243f6a8885a308d3n;
const MULTIPLIER = 0x9e3779b97f4a7c15n;

/** Running hash state; `word` mixes in one 64-bit word. */
class Hasher {
  h = SEED;

  word(w: bigint): void {
    const x = BigInt.asUintN(64, (this.h ^ w) * MULTIPLIER);
    this.h = x ^ (x >> 29n);
  }
}

/** Scratch space to read a double's bits (same bytes, platform byte order). */
const scratchFloat = new Float64Array(1);
const scratchBits = new BigUint64Array(scratchFloat.buffer);

/** The IEEE-754 bits of `x` as an unsigned 64-bit integer. */
export function float64Bits(x: number): bigint {
  scratchFloat[0] = x;
  return scratchBits[0]!;
}

/** Checksum of a state as a 64-bit unsigned `bigint`. */
export function checksum(state: State): bigint {
  const hash = new Hasher();
  hash.word(BigInt(state.step));
  const phases = state.phases;
  hash.word(BigInt(phases.length));
  // A BigUint64Array over the same bytes yields each double's bits directly.
  const bits = new BigUint64Array(phases.buffer, phases.byteOffset, phases.length);
  for (let i = 0; i < bits.length; i++) hash.word(bits[i]!);
  const spins = state.spins;
  hash.word(BigInt(spins.length));
  for (let g = 0; g < spins.length; g += 64) {
    let lo = 0;
    let hi = 0;
    const end = Math.min(spins.length, g + 64);
    for (let i = g; i < end; i++) {
      if (spins[i]! > 0) {
        const j = i - g;
        if (j < 32) lo |= 1 << j;
        else hi |= 1 << (j - 32);
      }
    }
    hash.word((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
  }
  hash.word(float64Bits(state.energy));
  return hash.h;
}

/** A checksum as JSON frames write it: 16 lowercase hex digits. */
export function checksumHex(value: bigint): string {
  return value.toString(16).padStart(16, "0");
}

/**
 * Parses a JSON frame's checksum (16 hex digits; case-insensitive).
 *
 * @returns the value, or `undefined` when the text is not 1 to 16 hex digits.
 */
export function parseChecksumHex(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  return BigInt("0x" + text);
}
