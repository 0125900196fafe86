import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ApplyError,
  applyDelta,
  checksum,
  checksumHex,
  DecodeError,
  decodeFrame,
  encodeResync,
  encodeState,
  pb,
  pow2,
  toState,
  type DeltaFrame,
  type Frame,
  type FullFrame,
} from "@phasecast/client";
import { diff, fromHex, jsonDelta, makeState, pbDelta, pbFull, sameState, toHex } from "./support/encoder.js";

// The two golden frames of docs/protocol.md ("Frames").
const JSON_FULL = '{"seq":41,"step":10,"energy":-1.25,"timestamp":1764000000.5,"phases":[0.5,1.0,2.0,3.0],"spins":[1,-1,1,1]}';
const JSON_DELTA =
  '{"is_delta":true,"seq":42,"base_seq":41,"step":11,"energy":-1.5,"timestamp":1764000000.5,"checksum":"dde33ea0d66bf35b","phases_delta":{"1":1.005859375,"3":3.1},"spins_delta":{"2":-1}}';
const PB_FULL =
  "0829100a19000000000000f4bf21000020402049da412a270a20000000000000e03f000000000000f03f0000000000000040000000000000084010041a010d";
const PB_DELTA =
  "082a100b19000000000000f8bf21000020402049da413221115bf36bd6a03ee3dd18112201012a01063201033a08cdcccccccccc0840420102";

const BEFORE = makeState(10, [0.5, 1, 2, 3], [1, -1, 1, 1], -1.25, 1764000000.5);
const AFTER = makeState(11, [0.5, 1.005859375, 2, 3.1], [1, -1, -1, 1], -1.5, 1764000000.5);

function full(frame: Frame): FullFrame {
  assert.equal(frame.kind, "full");
  return frame as FullFrame;
}

function delta(frame: Frame): DeltaFrame {
  assert.equal(frame.kind, "delta");
  return frame as DeltaFrame;
}

describe("checksum", () => {
  test("matches the test vector of docs/protocol.md", () => {
    const state = makeState(42, [0, 1.5, -3.25], [1, -1, 1], -2);
    assert.equal(checksumHex(checksum(state)), "a4ed18b14dd21c0c");
  });

  test("covers every field but the timestamp", () => {
    const base = makeState(7, [1, 2], [1, -1], 0.5);
    const sum = checksum(base);
    assert.equal(checksum({ ...base, timestamp: 3 }), sum);
    const changed = [
      makeState(8, [1, 2], [1, -1], 0.5),
      makeState(7, [1, 2.0000000000000004], [1, -1], 0.5),
      makeState(7, [1, 2], [-1, -1], 0.5),
      makeState(7, [1, 2], [1, -1], -0.5),
      makeState(7, [1, 2], [], 0.5),
    ];
    for (const s of changed) assert.notEqual(checksum(s), sum);
    // Bits, not values: 0 and -0 differ.
    assert.notEqual(checksum(makeState(7, [0], [], 0)), checksum(makeState(7, [-0], [], 0)));
  });

  test("packs spins 64 to a word, the last one padded", () => {
    // 130 spins: three words. Flipping spin 64 or 129 must change the checksum.
    const spins: number[] = Array.from({ length: 130 }, (_, i) => (i % 3 === 0 ? 1 : -1));
    const s = makeState(1, new Array(130).fill(0), spins, 0);
    for (const i of [0, 31, 32, 63, 64, 127, 128, 129]) {
      const flipped = spins.slice();
      flipped[i] = -flipped[i]!;
      assert.notEqual(checksum(makeState(1, new Array(130).fill(0), flipped, 0)), checksum(s), `spin ${i}`);
    }
  });
});

describe("golden frames", () => {
  test("JSON full then delta gives the documented state", () => {
    const f = full(decodeFrame(JSON_FULL));
    assert.equal(f.seq, 41);
    assert.ok(sameState(f.state, BEFORE));
    const d = delta(decodeFrame(JSON_DELTA));
    assert.equal(d.seq, 42);
    assert.equal(d.baseSeq, 41);
    assert.equal(d.checksum, 0xdde33ea0d66bf35bn);
    const after = applyDelta(f.state, f.seq, d);
    assert.ok(sameState(after, AFTER), JSON.stringify({ ...after, phases: [...after.phases], spins: [...after.spins] }));
    // applyDelta works on a copy.
    assert.ok(sameState(f.state, BEFORE));
  });

  test("protobuf full then delta gives the documented state", () => {
    const bytes = fromHex(PB_FULL);
    // docs/protocol.md labels this frame "73 bytes"; its hex is 63 bytes (and the
    // delta's, labelled 55, is 57): the hex is what the Rust encoder produces.
    assert.equal(bytes.length, 63);
    const f = full(decodeFrame(bytes));
    assert.equal(f.seq, 41);
    assert.ok(sameState(f.state, BEFORE));
    const dBytes = fromHex(PB_DELTA);
    assert.equal(dBytes.length, 57);
    const d = delta(decodeFrame(dBytes.buffer.slice(0) as ArrayBuffer));
    assert.equal(d.baseSeq, 41);
    assert.equal(d.quantumExp, -9);
    assert.deepEqual(Array.from(d.stepIndices), [1]);
    assert.deepEqual(Array.from(d.stepCounts), [3]);
    assert.deepEqual(Array.from(d.valueIndices), [3]);
    assert.deepEqual(Array.from(d.values), [3.1]);
    assert.deepEqual(Array.from(d.flips), [2]);
    assert.ok(sameState(applyDelta(f.state, f.seq, d), AFTER));
  });

  test("the test encoder packs the golden frames byte for byte like the server", () => {
    assert.equal(toHex(pbFull(41, BEFORE)), PB_FULL);
    const d = diff(BEFORE, 41, AFTER, 42, -9);
    // phase 1 moved by 3 quanta of 2^-9; phase 3 by a value.
    assert.deepEqual(d.phases, [
      [1, { kind: "step", steps: 3 }],
      [3, { kind: "set", value: 3.1 }],
    ]);
    assert.equal(toHex(pbDelta(d, AFTER)), PB_DELTA);
    assert.deepEqual(JSON.parse(jsonDelta(d, AFTER)), JSON.parse(JSON_DELTA));
  });
});

describe("bad frames", () => {
  const f = full(decodeFrame(fromHex(PB_FULL)));

  test("truncated protobuf is a DecodeError", () => {
    const bytes = fromHex(PB_DELTA);
    for (const cut of [1, 10, 20, 30, 54]) {
      assert.throws(() => decodeFrame(bytes.slice(0, cut)), DecodeError, `cut at ${cut}`);
    }
  });

  test("malformed JSON frames are DecodeErrors", () => {
    const bad = [
      "not json",
      "[1,2]",
      '{"seq":1,"step":1,"energy":0,"phases":[1,"x"]}',
      '{"seq":1,"step":1,"energy":0,"phases":[1],"spins":[0]}',
      '{"seq":-1,"step":1,"energy":0,"phases":[1]}',
      '{"seq":1.5,"step":1,"energy":0,"phases":[1]}',
      '{"seq":1,"step":1,"energy":"x","phases":[1]}',
      '{"seq":1,"step":1,"energy":0,"timestamp":"now","phases":[1]}',
      '{"is_delta":true,"seq":2,"step":1,"energy":0,"checksum":"00"}', // no base_seq
      '{"is_delta":true,"seq":2,"base_seq":1,"step":1,"energy":0}', // no checksum
      '{"is_delta":true,"seq":2,"base_seq":1,"step":1,"energy":0,"checksum":"xyz"}',
      '{"is_delta":true,"seq":2,"base_seq":1,"step":1,"energy":0,"checksum":"00","phases_delta":{"a":1}}',
      '{"is_delta":true,"seq":2,"base_seq":1,"step":1,"energy":0,"checksum":"00","phases_delta":{"1":"x"}}',
      '{"is_delta":"yes","seq":2,"base_seq":1,"step":1,"energy":0,"checksum":"00"}',
    ];
    for (const text of bad) assert.throws(() => decodeFrame(text), DecodeError, text);
  });

  test("malformed protobuf deltas are DecodeErrors", () => {
    const frame = (d: MessageInitShape<typeof pb.DeltaStateSchema>, seq = 5n): Uint8Array =>
      toBinary(pb.FrameSchema, create(pb.FrameSchema, { seq, step: 1n, body: { case: "delta", value: create(pb.DeltaStateSchema, d) } }));
    const bad: [string, Uint8Array][] = [
      ["skips past 0", frame({ skipped: 5n })],
      ["gap count", frame({ stepGaps: [0, 1], steps: [1n], quantumExp: -3 })],
      ["gaps without values", frame({ valueGaps: [1] })],
      ["two flip forms", frame({ flipGaps: [0], flipBits: new Uint8Array([1]) })],
      ["quantum_exp", frame({ steps: [1n], stepGaps: [0], quantumExp: 2000 })],
      ["dense lengths", frame({ steps: [1n, 2n], values: [1, 2, 3], quantumExp: -3 })],
      [
        "spin_bits length",
        toBinary(
          pb.FrameSchema,
          create(pb.FrameSchema, { seq: 1n, body: { case: "full", value: create(pb.FullStateSchema, { phases: [1], spinCount: 9, spinBits: new Uint8Array([1]) }) } }),
        ),
      ],
    ];
    for (const [what, bytes] of bad) assert.throws(() => decodeFrame(bytes), DecodeError, what);
  });

  test("a delta for another base is refused", () => {
    const d = delta(decodeFrame(JSON_DELTA.replace('"base_seq":41', '"base_seq":40')));
    assert.throws(() => applyDelta(f.state, f.seq, d), (e: unknown) => e instanceof ApplyError && e.reason === "base_seq");
  });

  test("a checksum mismatch is refused and the state held is unchanged", () => {
    const d = delta(decodeFrame(JSON_DELTA.replace('"3":3.1', '"3":3.2')));
    assert.throws(() => applyDelta(f.state, f.seq, d), (e: unknown) => e instanceof ApplyError && e.reason === "checksum");
    assert.ok(sameState(f.state, BEFORE));
  });

  test("indices out of range, dense lists of the wrong length and bad spins are refused", () => {
    const reason = (text: string): string => {
      try {
        applyDelta(f.state, 41, delta(decodeFrame(text)));
        return "applied";
      } catch (e) {
        return (e as ApplyError).reason;
      }
    };
    const head = '{"is_delta":true,"seq":42,"base_seq":41,"step":11,"energy":-1.5,"checksum":"0000000000000000"';
    assert.equal(reason(`${head},"phases_delta":{"4":1}}`), "index");
    assert.equal(reason(`${head},"spins_delta":{"9":1}}`), "index");
    assert.equal(reason(`${head},"spins_delta":{"0":0}}`), "spin");
    const dense = toBinary(
      pb.FrameSchema,
      create(pb.FrameSchema, { seq: 42n, step: 11n, body: { case: "delta", value: create(pb.DeltaStateSchema, { values: [1, 2, 3] }) } }),
    );
    assert.throws(() => applyDelta(f.state, 41, delta(decodeFrame(dense))), (e: unknown) => (e as ApplyError).reason === "shape");
  });
});

describe("encoding", () => {
  const input = { step: 1200, phases: [0.12, 3.0, 6.1, -0], spins: [1, -1, 1, 1], energy: -0.82, timestamp: 1764150000.125 };

  test("JSON state round-trips exactly (negative zero included)", () => {
    const text = encodeState(input, "json");
    assert.equal(text, '{"step":1200,"energy":-0.82,"timestamp":1764150000.125,"phases":[0.12,3,6.1,-0.0],"spins":[1,-1,1,1]}');
    const back = JSON.parse(text) as { phases: number[] };
    assert.ok(Object.is(back.phases[3], -0));
    assert.throws(() => encodeState({ ...input, energy: NaN }, "json"), RangeError);
    assert.throws(() => encodeState({ ...input, step: 1.5 }, "json"), RangeError);
    assert.ok(!encodeState({ ...input, timestamp: null }, "json").includes("timestamp"));
  });

  test("protobuf PccState round-trips through the generated schema", () => {
    const bytes = encodeState(input, "protobuf");
    const msg = fromBinary(pb.PccStateSchema, bytes);
    assert.equal(msg.step, 1200n);
    assert.deepEqual(msg.phases, input.phases);
    assert.deepEqual(msg.spins, input.spins);
    assert.equal(msg.energy, -0.82);
    assert.equal(msg.timestamp, 1764150000.125);
    assert.equal(fromBinary(pb.PccStateSchema, encodeState({ step: 1, phases: [1], energy: 0 }, "protobuf")).timestamp, undefined);
  });

  test("resync requests", () => {
    assert.equal(encodeResync("json"), '{"op":"resync"}');
    const bytes = encodeResync("protobuf") as Uint8Array;
    assert.equal(toHex(bytes), "0a00");
    assert.equal(fromBinary(pb.ClientMessageSchema, bytes).op.case, "resync");
  });

  test("pow2 is exact over the whole exponent range", () => {
    assert.equal(pow2(0), 1);
    assert.equal(pow2(-9), 1 / 512);
    assert.equal(pow2(-1074), Number.MIN_VALUE);
    assert.equal(pow2(-1022), 2.2250738585072014e-308);
    assert.equal(pow2(1023), 8.98846567431158e307);
    assert.throws(() => pow2(1024), RangeError);
  });

  test("toState copies into typed arrays", () => {
    const s = toState(input);
    assert.ok(s.phases instanceof Float64Array && s.spins instanceof Int8Array);
    assert.equal(s.timestamp, 1764150000.125);
    assert.equal(toState({ ...input, timestamp: null }).timestamp, undefined);
  });
});
