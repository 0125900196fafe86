/**
 * Helpers for the server's summaries and envelopes (`fields` with `summary`): the
 * 32-bit floats they are made of, and envelopes merged or made from one summary.
 *
 * @module
 */

import { formatJsonNumber } from "./json.js";
import type { Envelope, Range, Summary } from "./model.js";

/**
 * A 32-bit float in its shortest text that reads back as the same `float32` (what
 * the server writes in JSON: `0.5687318`, not the double's `0.568731784820556640625`).
 *
 * @throws {RangeError} for NaN and infinities.
 */
export function formatFloat32(x: number): string {
  const f = Math.fround(x);
  if (!Number.isFinite(f)) throw new RangeError(`${x} cannot be sent as JSON`);
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(f.toPrecision(digits));
    if (Math.fround(shorter) === f) return formatJsonNumber(Object.is(f, -0) ? -0 : shorter);
  }
  return formatJsonNumber(Number(f.toPrecision(9)));
}

function point(value: number): Range {
  return { min: value, max: value, mean: value };
}

/**
 * The envelope of one state: every range is its summary's value. What a chart
 * draws for a frame that came without an envelope (at the full rate the band is the
 * line itself).
 */
export function envelopeOf(summary: Summary): Envelope {
  return {
    states: 1,
    r: point(summary.r),
    psi: point(summary.psi),
    magnetization: point(summary.magnetization),
    energy: point(summary.energy),
  };
}

function mergeRange(a: Range, na: number, b: Range, nb: number): Range {
  const n = na + nb;
  return {
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    mean: n > 0 ? (a.mean * na + b.mean * nb) / n : (a.mean + b.mean) / 2,
  };
}

/**
 * One envelope over the states of two consecutive ones (`earlier`, then `later`):
 * least of the least, greatest of the greatest, and the mean weighted by `states`.
 * The subscriber uses it when it hands on only the newest of several frames (after
 * `pause()`), so a spike in a frame it skipped still shows.
 */
export function mergeEnvelopes(earlier: Envelope, later: Envelope): Envelope {
  const a = earlier.states;
  const b = later.states;
  return {
    states: a + b,
    r: mergeRange(earlier.r, a, later.r, b),
    psi: mergeRange(earlier.psi, a, later.psi, b),
    magnetization: mergeRange(earlier.magnetization, a, later.magnetization, b),
    energy: mergeRange(earlier.energy, a, later.energy, b),
  };
}

/** A summary as the server writes it in JSON (and the conformance runner prints it). */
export function formatSummaryJson(s: Summary): string {
  let histogram = "[";
  for (let k = 0; k < s.histogram.length; k++) histogram += (k > 0 ? "," : "") + String(s.histogram[k]);
  return (
    `{"r":${formatFloat32(s.r)},"psi":${formatFloat32(s.psi)},"magnetization":${formatFloat32(s.magnetization)},` +
    `"energy":${formatFloat32(s.energy)},"histogram":${histogram}]}`
  );
}

function formatRange(r: Range): string {
  return `{"min":${formatFloat32(r.min)},"max":${formatFloat32(r.max)},"mean":${formatFloat32(r.mean)}}`;
}

/** An envelope as the server writes it in JSON. */
export function formatEnvelopeJson(e: Envelope): string {
  return (
    `{"states":${e.states},"r":${formatRange(e.r)},"psi":${formatRange(e.psi)},` +
    `"magnetization":${formatRange(e.magnetization)},"energy":${formatRange(e.energy)}}`
  );
}
