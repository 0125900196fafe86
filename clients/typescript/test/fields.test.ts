/**
 * `fields`, summaries and envelopes (docs/protocol.md, "Fields and summaries"): the
 * golden frames, deltas of projected states and their checksums, frames without a
 * body, and the helpers (32-bit float text, merged envelopes, field lists, epsilon).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ApplyError,
  applyDelta,
  checkEpsilon,
  checksum,
  checksumHex,
  DecodeError,
  decodeFrame,
  envelopeOf,
  FIELDS,
  formatFloat32,
  mergeEnvelopes,
  parseFields,
  pb,
  Subscriber,
  subscriptionUrl,
  type DeltaFrame,
  type Envelope,
  type Field,
  type Format,
  type Frame,
  type FullFrame,
  type State,
  type Summary,
} from "@phasecast/client";
import {
  advance,
  diff,
  fromHex,
  jsonDelta,
  jsonFull,
  makeState,
  pbDelta,
  pbFull,
  project,
  quantumExpFor,
  rng,
  sameState,
  summarize,
  toHex,
} from "./support/encoder.js";

// docs/protocol.md, "Fields and summaries": the state of seq 42 (the target of the
// "Frames" examples), 4 phases, 4 bins.
const JSON_SUMMARY =
  '{"seq":42,"step":11,"summary":{"r":0.5687318,"psi":1.5718236,"magnetization":0.0,"energy":-1.5,"histogram":[2,2,0,0]}}';
const JSON_PHASES_SUMMARY_DELTA =
  '{"is_delta":true,"seq":42,"base_seq":41,"step":11,"checksum":"9d15c900b551b2ff","phases_delta":{"1":1.005859375,"3":3.1},"summary":{"r":0.5687318,"psi":1.5718236,"magnetization":0.0,"energy":-1.5,"histogram":[2,2,0,0]}}';
const JSON_ENVELOPE =
  '{"seq":42,"step":11,"summary":{"r":0.5687318,"psi":1.5718236,"magnetization":0.0,"energy":-1.5,"histogram":[2,2,0,0]},"envelope":{"states":3,"r":{"min":0.5687318,"max":0.5928358,"mean":0.58480114},"psi":{"min":1.5658432,"max":1.5718236,"mean":1.5678366},"magnetization":{"min":0.0,"max":0.5,"mean":0.33333334},"energy":{"min":-1.5,"max":4.0,"mean":0.41666666}}}';
const PB_SUMMARY = "082a100b42150d6898113f158431c93f250000c0bf2a0402020000";
const PB_PHASES_SUMMARY_DELTA =
  "082a100b321e11ffb251b500c9159d18112201012a01063201033a08cdcccccccccc084042150d6898113f158431c93f250000c0bf2a0402020000";
const PB_ENVELOPE =
  "082a100b42150d6898113f158431c93f250000c0bf2a04020200004a410803120f0d6898113f1516c4173f1d87b5153f1a0f0d8d6dc83f158431c93f1ddfaec83f220a150000003f1dabaaaa3e2a0f0d0000c0bf15000080401d5555d53e";

const BEFORE = makeState(10, [0.5, 1, 2, 3], [1, -1, 1, 1], -1.25, 1764000000.5);
const AFTER = makeState(11, [0.5, 1.005859375, 2, 3.1], [1, -1, -1, 1], -1.5, 1764000000.5);
const PHASES_SUMMARY: Field[] = ["phases", "summary"];

/** The summary of the documented frames, as the float32 of each number's text. */
const GOLDEN_SUMMARY: Summary = {
  r: Math.fround(0.5687318),
  psi: Math.fround(1.5718236),
  magnetization: 0,
  energy: -1.5,
  histogram: Uint32Array.from([2, 2, 0, 0]),
};
const f = Math.fround;
const GOLDEN_ENVELOPE: Envelope = {
  states: 3,
  r: { min: f(0.5687318), max: f(0.5928358), mean: f(0.58480114) },
  psi: { min: f(1.5658432), max: f(1.5718236), mean: f(1.5678366) },
  magnetization: { min: 0, max: 0.5, mean: f(0.33333334) },
  energy: { min: -1.5, max: 4, mean: f(0.41666666) },
};

function full(frame: Frame): FullFrame {
  assert.equal(frame.kind, "full");
  return frame as FullFrame;
}

function delta(frame: Frame): DeltaFrame {
  assert.equal(frame.kind, "delta");
  return frame as DeltaFrame;
}

function assertEmptyState(state: State, step: number, energy = 0): void {
  assert.equal(state.step, step);
  assert.equal(state.phases.length, 0);
  assert.equal(state.spins.length, 0);
  assert.equal(state.energy, energy);
  assert.equal(state.timestamp, undefined);
}

describe("golden frames of docs/protocol.md, \"Fields and summaries\"", () => {
  test("JSON fields=summary: a frame without a body, a state with neither phases nor spins", () => {
    const frame = full(decodeFrame(JSON_SUMMARY));
    assert.equal(frame.seq, 42);
    assert.equal(frame.standalone, true);
    assert.equal(frame.epoch, undefined);
    assertEmptyState(frame.state, 11);
    assert.deepEqual(frame.summary, GOLDEN_SUMMARY);
    assert.equal(frame.envelope, undefined);
  });

  test("JSON fields=phases,summary: the delta applies to the projected base and its checksum verifies", () => {
    const base = project(BEFORE, PHASES_SUMMARY);
    assert.deepEqual([...base.spins], []);
    assert.equal(base.energy, 0);
    assert.equal(base.timestamp, undefined);
    const d = delta(decodeFrame(JSON_PHASES_SUMMARY_DELTA));
    assert.equal(d.baseSeq, 41);
    assert.equal(d.energy, 0, "no energy key: the projected energy, 0");
    assert.equal(d.timestamp, undefined);
    assert.equal(checksumHex(d.checksum), "9d15c900b551b2ff");
    assert.deepEqual(d.summary, GOLDEN_SUMMARY);
    const after = applyDelta(base, 41, d);
    assert.ok(sameState(after, makeState(11, [0.5, 1.005859375, 2, 3.1], [], 0)));
    assert.equal(checksumHex(checksum(after)), "9d15c900b551b2ff");
    // The checksum is of the projection: the whole base does not verify.
    assert.throws(() => applyDelta(BEFORE, 41, d), (e: unknown) => e instanceof ApplyError && e.reason === "checksum");
  });

  test("JSON fields=summary&max_hz=10: the envelope over three states", () => {
    const frame = full(decodeFrame(JSON_ENVELOPE));
    assert.equal(frame.standalone, true);
    assertEmptyState(frame.state, 11);
    assert.deepEqual(frame.summary, GOLDEN_SUMMARY);
    assert.deepEqual(frame.envelope, GOLDEN_ENVELOPE);
  });

  test("protobuf: the same three frames give the same values, bit for bit", () => {
    const summary = full(decodeFrame(fromHex(PB_SUMMARY)));
    assert.equal(fromHex(PB_SUMMARY).length, 27);
    assert.equal(summary.standalone, true);
    assert.equal(summary.epoch, undefined);
    assertEmptyState(summary.state, 11);
    assert.deepEqual(summary.summary, GOLDEN_SUMMARY);
    assert.equal(summary.envelope, undefined);

    const bytes = fromHex(PB_PHASES_SUMMARY_DELTA);
    assert.equal(bytes.length, 59);
    const d = delta(decodeFrame(bytes));
    assert.equal(d.quantumExp, -9);
    assert.deepEqual(Array.from(d.stepIndices), [1]);
    assert.deepEqual(Array.from(d.flips), []);
    assert.deepEqual(d.summary, GOLDEN_SUMMARY);
    const after = applyDelta(project(BEFORE, PHASES_SUMMARY), 41, d);
    assert.ok(sameState(after, applyDelta(project(BEFORE, PHASES_SUMMARY), 41, delta(decodeFrame(JSON_PHASES_SUMMARY_DELTA)))));

    const enveloped = full(decodeFrame(fromHex(PB_ENVELOPE)));
    assert.equal(fromHex(PB_ENVELOPE).length, 94);
    assert.deepEqual(enveloped.summary, GOLDEN_SUMMARY);
    assert.deepEqual(enveloped.envelope, GOLDEN_ENVELOPE);
    // JSON numbers are read as their float32, so both encodings agree exactly.
    assert.deepEqual(enveloped, full(decodeFrame(JSON_ENVELOPE)));
    assert.deepEqual(summary, full(decodeFrame(JSON_SUMMARY)));
  });

  test("the test encoder's summary and frames are the server's, byte for byte", () => {
    // The port of Summary::of that the fake server uses gives the documented summary.
    assert.deepEqual(summarize(AFTER, 4), GOLDEN_SUMMARY);
    const summary = GOLDEN_SUMMARY;
    assert.equal(toHex(pbFull(42, AFTER, "19b2c3d4", { fields: ["summary"], summary })), PB_SUMMARY);
    assert.deepEqual(JSON.parse(jsonFull(42, project(AFTER, ["summary"]), "19b2c3d4", { fields: ["summary"], summary })), JSON.parse(JSON_SUMMARY));
    const base = project(BEFORE, PHASES_SUMMARY);
    const target = project(AFTER, PHASES_SUMMARY);
    const d = diff(base, 41, target, 42, -9);
    const parts = { fields: PHASES_SUMMARY, summary };
    assert.equal(toHex(pbDelta(d, target, undefined, parts)), PB_PHASES_SUMMARY_DELTA);
    assert.deepEqual(JSON.parse(jsonDelta(d, target, parts)), JSON.parse(JSON_PHASES_SUMMARY_DELTA));
    const withEnvelope = { fields: ["summary"] as Field[], summary, envelope: GOLDEN_ENVELOPE };
    assert.equal(toHex(pbFull(42, AFTER, undefined, withEnvelope)), PB_ENVELOPE);
    assert.deepEqual(JSON.parse(jsonFull(42, project(AFTER, ["summary"]), undefined, withEnvelope)), JSON.parse(JSON_ENVELOPE));
  });
});

describe("projected states", () => {
  test("a full frame holds only the parts it has: absent keys are empty, 0 or none", () => {
    const phasesOnly = full(decodeFrame('{"seq":7,"epoch":"e1","step":3,"phases":[0.5,-0.0]}'));
    assert.equal(phasesOnly.standalone, undefined);
    assert.equal(phasesOnly.epoch, "e1", "a frame with a body keeps its epoch");
    assert.ok(sameState(phasesOnly.state, makeState(3, [0.5, -0], [], 0)));
    const spinsOnly = full(decodeFrame('{"seq":7,"epoch":"e1","step":3,"spins":[1,-1]}'));
    assert.equal(spinsOnly.standalone, undefined);
    assert.ok(sameState(spinsOnly.state, makeState(3, [], [1, -1], 0)));
    // fields=energy: no body, but the exact energy (and the timestamp with it).
    const energy = full(decodeFrame('{"seq":7,"step":3,"energy":-1.25,"timestamp":17.5}'));
    assert.equal(energy.standalone, true);
    assert.ok(sameState(energy.state, makeState(3, [], [], -1.25, 17.5)));
    assert.equal(energy.summary, undefined);
  });

  test("a protobuf frame without a body keeps no epoch", () => {
    const bytes = toBinary(pb.FrameSchema, create(pb.FrameSchema, { seq: 9n, step: 4n, energy: -2, epoch: "e1" }));
    const frame = full(decodeFrame(bytes));
    assert.equal(frame.standalone, true);
    assert.equal(frame.epoch, undefined);
    assertEmptyState(frame.state, 4, -2);
  });

  test("a JSON delta of spins only: no phases_delta, energy 0; a body-ful projection verifies", () => {
    const base = project(BEFORE, ["spins"]);
    const target = project(AFTER, ["spins"]);
    const text = jsonDelta(diff(base, 41, target, 42, undefined), target, { fields: ["spins"] });
    assert.doesNotMatch(text, /phases_delta|energy|timestamp/);
    const after = applyDelta(base, 41, delta(decodeFrame(text)));
    assert.ok(sameState(after, makeState(11, [], [1, -1, -1, 1], 0)));
  });

  const PROJECTIONS: Field[][] = [
    ["phases"],
    ["spins"],
    ["phases", "spins"],
    ["phases", "energy"],
    ["phases", "timestamp", "summary"],
    ["spins", "energy", "summary"],
    ["phases", "spins", "energy", "timestamp", "summary"],
  ];

  test(`seeded streams round-trip bit-exactly under ${PROJECTIONS.length} projections, both encodings, in step and skipping`, () => {
    let deltas = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const n = 1 + Math.floor(r() * 20);
      const epsilon = r() < 0.5 ? 0 : 1e-3;
      const truths: State[] = [];
      let phases = Array.from({ length: n }, () => -4 + 8 * r());
      let spins: (1 | -1)[] = Array.from({ length: n }, () => (r() < 0.5 ? 1 : -1));
      for (let step = 0; step < 12; step++) {
        phases = phases.map((p) => (r() < 0.5 ? p + (r() - 0.5) * 0.01 : p));
        spins = spins.map((s) => (r() < 0.1 ? (s === 1 ? -1 : 1) : s));
        truths.push(makeState(step, phases, spins, -step / 3, r() < 0.7 ? 1_764_000_000 + step : undefined));
      }
      const views: State[] = [truths[0]!];
      for (const t of truths.slice(1)) views.push(advance(views.at(-1)!, t, epsilon));
      for (const fields of PROJECTIONS) {
        for (const format of ["json", "protobuf"] as Format[]) {
          for (const stride of [1, 3]) {
            const held0 = project(views[0]!, fields);
            const summary = fields.includes("summary") ? summarize(truths[0]!) : undefined;
            const parts = { fields, summary };
            const first = full(decodeFrame(format === "json" ? jsonFull(1, held0, "e", parts) : pbFull(1, views[0]!, "e", parts)));
            assert.ok(sameState(first.state, held0), `seed ${seed} ${fields} ${format}: first frame`);
            assert.deepEqual(first.summary, summary);
            let held = first.state;
            let heldSeq = 1;
            for (let seq = 2; seq <= views.length; seq++) {
              if (seq % stride !== 0) continue;
              const target = project(views[seq - 1]!, fields);
              const d = diff(project(views[heldSeq - 1]!, fields), heldSeq, target, seq, quantumExpFor(epsilon));
              const s = fields.includes("summary") ? summarize(truths[seq - 1]!) : undefined;
              const p = { fields, summary: s };
              const frame = delta(decodeFrame(format === "json" ? jsonDelta(d, target, p) : pbDelta(d, target, undefined, p)));
              held = applyDelta(held, heldSeq, frame);
              heldSeq = seq;
              deltas++;
              assert.ok(sameState(held, target), `seed ${seed} ${fields} ${format} stride ${stride} seq ${seq}`);
              assert.deepEqual(frame.summary, s);
            }
          }
        }
      }
    }
    assert.ok(deltas > 1000, `deltas applied: ${deltas}`);
  });
});

describe("bad summaries and envelopes are DecodeErrors", () => {
  test("JSON", () => {
    const head = '{"seq":1,"step":1';
    const bad = [
      `${head},"summary":1}`,
      `${head},"summary":{"r":"x","psi":0,"magnetization":0,"energy":0,"histogram":[]}}`,
      `${head},"summary":{"r":0,"psi":0,"magnetization":0,"energy":0,"histogram":[-1]}}`,
      `${head},"summary":{"r":0,"psi":0,"magnetization":0,"energy":0,"histogram":[1.5]}}`,
      `${head},"summary":{"r":0,"psi":0,"energy":0,"histogram":[]}}`,
      `${head},"envelope":{"states":1,"r":{"min":0,"max":0,"mean":0}}}`,
      `${head},"envelope":{"states":-1,"r":{"min":0,"max":0,"mean":0},"psi":{"min":0,"max":0,"mean":0},"magnetization":{"min":0,"max":0,"mean":0},"energy":{"min":0,"max":0,"mean":0}}}`,
      `${head},"energy":"x"}`,
    ];
    for (const text of bad) assert.throws(() => decodeFrame(text), DecodeError, text);
  });
});

describe("summary helpers", () => {
  test("formatFloat32: the shortest text that reads back as the same float32", () => {
    assert.equal(formatFloat32(Math.fround(0.5687318)), "0.5687318");
    assert.equal(formatFloat32(Math.fround(0.33333334)), "0.33333334");
    assert.equal(formatFloat32(-1.5), "-1.5");
    assert.equal(formatFloat32(4), "4");
    assert.equal(formatFloat32(-0), "-0.0");
    assert.equal(formatFloat32(Math.fround(1e-7)), "1e-7");
    // Every float32 of a spread of magnitudes comes back exactly.
    const r = rng(3);
    for (let k = 0; k < 2000; k++) {
      const x = Math.fround((r() - 0.5) * 10 ** Math.floor(r() * 20 - 10));
      const text = formatFloat32(x);
      assert.equal(Math.fround(Number(text)), x, `${x} -> ${text}`);
      assert.ok(text.replace(/^-|e.*$|\./g, "").replace(/^0+/, "").length <= 9, text);
    }
    assert.throws(() => formatFloat32(NaN), RangeError);
  });

  test("mergeEnvelopes: least, greatest, mean weighted by states; envelopeOf is one state", () => {
    const a: Envelope = { ...envelopeOf({ ...GOLDEN_SUMMARY, energy: 4 }), states: 1 };
    const merged = mergeEnvelopes(GOLDEN_ENVELOPE, a);
    assert.equal(merged.states, 4);
    assert.deepEqual(merged.energy, { min: -1.5, max: 4, mean: (GOLDEN_ENVELOPE.energy.mean * 3 + 4) / 4 });
    assert.deepEqual(merged.r, { min: GOLDEN_ENVELOPE.r.min, max: GOLDEN_ENVELOPE.r.max, mean: (GOLDEN_ENVELOPE.r.mean * 3 + GOLDEN_SUMMARY.r) / 4 });
    const one = envelopeOf(GOLDEN_SUMMARY);
    assert.deepEqual(one.psi, { min: GOLDEN_SUMMARY.psi, max: GOLDEN_SUMMARY.psi, mean: GOLDEN_SUMMARY.psi });
    assert.equal(one.states, 1);
  });
});

describe("epsilon and fields in the URL", () => {
  test("they become ?epsilon= and ?fields= (server order, no repeats), replacing the URL's own", () => {
    const url = subscriptionUrl("ws://h:8787/ws?fields=phases&epsilon=0.01&x=1", { epsilon: 0.001, fields: ["summary", "phases", "summary"] });
    assert.equal(url.href, "ws://h:8787/ws?fields=phases%2Csummary&epsilon=0.001&x=1");
    assert.equal(url.searchParams.get("fields"), "phases,summary");
    assert.equal(subscriptionUrl("ws://h/ws", { epsilon: 0 }).searchParams.get("epsilon"), "0");
    // Not given: nothing added (the frame of before, the server's default class).
    assert.equal(subscriptionUrl("ws://h/ws").search, "");
  });

  test("parseFields names an unknown field and lists the known ones; an empty list is refused", () => {
    assert.deepEqual(parseFields(["timestamp", "phases"]), ["phases", "timestamp"]);
    assert.deepEqual(parseFields([...FIELDS].reverse()), FIELDS);
    assert.throws(() => parseFields(["phases", "phase"]), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /unknown field "phase" \(known: phases, spins, energy, timestamp, summary\)/);
      return true;
    });
    assert.throws(() => parseFields([]), /empty list/);
    assert.throws(() => parseFields(["Phases"]), TypeError, "names are case-sensitive, as the server's");
  });

  test("checkEpsilon takes finite numbers >= 0", () => {
    assert.equal(checkEpsilon(0.001), 0.001);
    for (const bad of [-0.001, NaN, Infinity]) assert.throws(() => checkEpsilon(bad), RangeError, String(bad));
  });

  test("the Subscriber refuses bad fields and epsilon when it is made, before connecting", () => {
    assert.throws(() => new Subscriber({ url: "ws://127.0.0.1:1/ws", fields: ["summary", "histogram"] }), /unknown field "histogram"/);
    assert.throws(() => new Subscriber({ url: "ws://127.0.0.1:1/ws", epsilon: -1 }), RangeError);
    const sub = new Subscriber({ url: "ws://127.0.0.1:1/ws", fields: ["summary"], epsilon: 0.01, reconnect: false });
    assert.match(sub.connectUrl(), /\?epsilon=0\.01&fields=summary$/);
    sub.close();
  });
});
