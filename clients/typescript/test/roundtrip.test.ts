/**
 * Seeded random round trips: states made into views and frames the way the server
 * does (test/support/encoder.ts), decoded and applied by the client, must give the
 * views bit for bit — in step, and skipping frames (delta from an older base).
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { applyDelta, decodeFrame, type Format, type State } from "@phasecast/client";
import {
  advance,
  diff,
  jsonDelta,
  jsonFull,
  makeState,
  pbDelta,
  pbFull,
  quantumExpFor,
  rng,
  sameState,
  type PbDeltaShape,
} from "./support/encoder.js";

const TRIALS = 250;

/** A random sequence of true states of one shape, and the tolerance to use. */
function scenario(seed: number): { truths: State[]; epsilon: number } {
  const r = rng(seed);
  const n = 1 + Math.floor(r() * 40);
  const count = 2 + Math.floor(r() * 30);
  const epsilon = r() < 0.35 ? 0 : 10 ** (-6 + r() * 6);
  let phases = Array.from({ length: n }, () => -10 + 20 * r());
  let spins: number[] = Array.from({ length: r() < 0.2 ? 0 : n }, () => (r() < 0.5 ? 1 : -1));
  const truths: State[] = [];
  for (let step = 0; step < count; step++) {
    const mode = r();
    if (mode < 0.2) {
      phases = phases.map(() => -10 + 20 * r()); // everything new
    } else if (mode < 0.75) {
      // A random walk: some moves below ε, some of a few quanta, some large.
      const scale = [epsilon / 4, epsilon * 3, 1e-3, 1][Math.floor(r() * 4)]!;
      const moving = r();
      phases = phases.map((p) => (r() < moving ? p + (r() - 0.5) * 2 * scale : p));
    } else if (mode < 0.8) {
      phases = phases.map((p) => (p === 0 ? -0 : Object.is(p, -0) ? 0 : p)); // sign of zero only
      phases[0] = r() < 0.5 ? 0 : -0;
    } // else: unchanged
    const flips = r();
    if (flips < 0.3) spins = spins.map(() => (r() < 0.5 ? 1 : -1));
    else if (flips < 0.6) spins = spins.map((s) => (r() < 0.05 ? -s : s));
    const timestamp = r() < 0.7 ? 1_764_000_000 + step / 200 : undefined;
    truths.push(makeState(step * 3, phases, spins, -5 + 10 * r(), timestamp));
  }
  return { truths, epsilon };
}

test(`${TRIALS} seeded scenarios round-trip bit-exactly in both encodings, in step and skipping frames`, () => {
  const coverage = { denseSteps: 0, denseValues: 0, flipBits: 0, flipGaps: 0, steps: 0, values: 0, skipped: 0, empty: 0 };
  for (let seed = 1; seed <= TRIALS; seed++) {
    const { truths, epsilon } = scenario(seed);
    const quantumExp = quantumExpFor(epsilon);
    // views[seq - 1] is the state subscribers hold at seq (seqs start at 1).
    const views: State[] = [truths[0]!];
    for (const truth of truths.slice(1)) views.push(advance(views[views.length - 1]!, truth, epsilon));
    views.forEach((view, k) => {
      view.phases.forEach((p, i) => assert.ok(Math.abs(p - truths[k]!.phases[i]!) <= epsilon, `seed ${seed}: view off by more than ε`));
    });

    for (const format of ["json", "protobuf"] as Format[]) {
      for (const stride of [1, 2, 3, 5]) {
        const first = format === "json" ? jsonFull(1, views[0]!) : pbFull(1, views[0]!);
        const f = decodeFrame(first);
        assert.equal(f.kind, "full");
        let held = f.kind === "full" ? f.state : views[0]!;
        let heldSeq = 1;
        for (let seq = 2; seq <= views.length; seq++) {
          if (seq % stride !== 0 && seq !== views.length) continue;
          const target = views[seq - 1]!;
          const d = diff(views[heldSeq - 1]!, heldSeq, target, seq, quantumExp);
          const shape: PbDeltaShape = { denseSteps: false, denseValues: false, flipBits: false, steps: 0, values: 0 };
          const bytes = format === "json" ? jsonDelta(d, target) : pbDelta(d, target, shape);
          const frame = decodeFrame(bytes);
          assert.equal(frame.kind, "delta");
          if (frame.kind !== "delta") continue;
          assert.equal(frame.baseSeq, heldSeq);
          held = applyDelta(held, heldSeq, frame);
          heldSeq = seq;
          assert.ok(sameState(held, target), `seed ${seed} ${format} stride ${stride} seq ${seq}`);
          if (format === "protobuf") {
            coverage.denseSteps += +shape.denseSteps;
            coverage.denseValues += +shape.denseValues;
            coverage.flipBits += +shape.flipBits;
            coverage.flipGaps += +(d.flips.length > 0 && !shape.flipBits);
            coverage.steps += +(shape.steps > 0);
            coverage.values += +(shape.values > 0);
            coverage.skipped += +(d.baseSeq !== seq - 1);
            coverage.empty += +(d.phases.length === 0 && d.flips.length === 0);
          }
        }
      }
    }
  }
  // Every way of packing a delta was exercised.
  for (const [what, count] of Object.entries(coverage)) assert.ok(count > 0, `no delta with ${what}: ${JSON.stringify(coverage)}`);
});
