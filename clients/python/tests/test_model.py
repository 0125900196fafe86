"""Checksum, apply_delta and the golden frames of docs/protocol.md."""

from __future__ import annotations

import pytest

from phasecast.codec import decode_json_frame, decode_protobuf_frame
from phasecast.model import (
    ChecksumMismatch,
    Delta,
    Full,
    IndexOutOfRange,
    State,
    apply_delta,
    checksum,
    same_bits,
)

# docs/protocol.md, "Frames".
GOLDEN_FULL_JSON = (
    '{"seq":41,"step":10,"energy":-1.25,"timestamp":1764000000.5,'
    '"phases":[0.5,1.0,2.0,3.0],"spins":[1,-1,1,1]}'
)
GOLDEN_DELTA_JSON = (
    '{"is_delta":true,"seq":42,"base_seq":41,"step":11,"energy":-1.5,'
    '"timestamp":1764000000.5,"checksum":"dde33ea0d66bf35b",'
    '"phases_delta":{"1":1.005859375,"3":3.1},"spins_delta":{"2":-1}}'
)
GOLDEN_FULL_PB = bytes.fromhex(
    "0829100a19000000000000f4bf21000020402049da412a270a20000000000000e03f"
    "000000000000f03f0000000000000040000000000000084010041a010d"
)
GOLDEN_DELTA_PB = bytes.fromhex(
    "082a100b19000000000000f8bf21000020402049da413221115bf36bd6a03ee3dd18"
    "112201012a01063201033a08cdcccccccccc0840420102"
)
GOLDEN_SEQ41 = State(10, [0.5, 1.0, 2.0, 3.0], [1, -1, 1, 1], -1.25, 1764000000.5)
GOLDEN_SEQ42 = State(11, [0.5, 1.005859375, 2.0, 3.1], [1, -1, -1, 1], -1.5, 1764000000.5)


def test_checksum_test_vector() -> None:
    state = State(42, [0.0, 1.5, -3.25], [1, -1, 1], -2.0)
    assert f"{checksum(state):016x}" == "a4ed18b14dd21c0c"


def test_checksum_ignores_timestamp_and_covers_the_rest() -> None:
    base = State(7, [1.0, 2.0], [1, -1], 0.5)
    reference = checksum(base)
    assert checksum(State(7, [1.0, 2.0], [1, -1], 0.5, timestamp=3.0)) == reference
    for changed in (
        State(8, [1.0, 2.0], [1, -1], 0.5),
        State(7, [1.0, 2.0000000000000004], [1, -1], 0.5),
        State(7, [1.0, 2.0], [-1, -1], 0.5),
        State(7, [1.0, 2.0], [1, -1], -0.5),
        State(7, [1.0, 2.0], [], 0.5),
        State(7, [1.0, -0.0 + 2.0, 0.0], [1, -1, 1], 0.5),
    ):
        assert checksum(changed) != reference, changed


def test_checksum_packs_spins_in_words_of_64() -> None:
    # 130 spins: three words; flipping spin 64 or 129 must change the checksum.
    spins = [1 if i % 3 else -1 for i in range(130)]
    phases = [0.0] * 130
    reference = checksum(State(1, phases, spins, 0.0))
    for i in (0, 63, 64, 129):
        flipped = list(spins)
        flipped[i] = -flipped[i]
        assert checksum(State(1, phases, flipped, 0.0)) != reference


@pytest.mark.parametrize(
    "full_bytes, delta_bytes, decode",
    [
        (GOLDEN_FULL_JSON, GOLDEN_DELTA_JSON, decode_json_frame),
        (GOLDEN_FULL_PB, GOLDEN_DELTA_PB, decode_protobuf_frame),
    ],
    ids=["json", "protobuf"],
)
def test_golden_frames(full_bytes, delta_bytes, decode) -> None:  # type: ignore[no-untyped-def]
    full = decode(full_bytes)
    assert isinstance(full, Full) and full.seq == 41
    assert same_bits(full.state, GOLDEN_SEQ41)
    delta = decode(delta_bytes)
    assert isinstance(delta, Delta)
    assert (delta.seq, delta.base_seq, delta.checksum) == (42, 41, 0xDDE33EA0D66BF35B)
    held = apply_delta(full.state, delta)
    assert same_bits(held, GOLDEN_SEQ42)
    assert same_bits(full.state, GOLDEN_SEQ41), "apply_delta must not change its input"


def test_golden_protobuf_delta_fields() -> None:
    delta = decode_protobuf_frame(GOLDEN_DELTA_PB)
    assert isinstance(delta, Delta)
    assert delta.quantum_exp == -9
    assert list(delta.steps) == [(1, 3)]
    assert list(delta.values) == [(3, 3.1)]
    assert list(delta.flips) == [2]


def test_golden_json_delta_fields() -> None:
    delta = decode_json_frame(GOLDEN_DELTA_JSON)
    assert isinstance(delta, Delta)
    assert list(delta.values) == [(1, 1.005859375), (3, 3.1)]
    assert list(delta.spin_values) == [(2, -1)]


def test_checksum_mismatch_is_reported() -> None:
    delta = decode_json_frame(GOLDEN_DELTA_JSON.replace("dde33ea0d66bf35b", "dde33ea0d66bf35c"))
    assert isinstance(delta, Delta)
    with pytest.raises(ChecksumMismatch) as err:
        apply_delta(GOLDEN_SEQ41, delta)
    assert err.value.expected == 0xDDE33EA0D66BF35C
    assert err.value.actual == 0xDDE33EA0D66BF35B


def test_index_out_of_range_is_reported() -> None:
    target = GOLDEN_SEQ42
    for delta in (
        Delta(42, 41, 11, -1.5, None, checksum(target), values=[(4, 1.0)]),
        Delta(42, 41, 11, -1.5, None, checksum(target), steps=[(9, 1)], quantum_exp=-3),
        Delta(42, 41, 11, -1.5, None, checksum(target), flips=[4]),
        Delta(42, 41, 11, -1.5, None, checksum(target), spin_values=[(-1, 1)]),
    ):
        with pytest.raises(IndexOutOfRange):
            apply_delta(GOLDEN_SEQ41, delta)


def test_delta_may_drop_the_timestamp() -> None:
    target = State(11, [0.5, 1.0, 2.0, 3.0], [1, -1, 1, 1], -1.25, None)
    delta = Delta(42, 41, 11, -1.25, None, checksum(target))
    assert apply_delta(GOLDEN_SEQ41, delta).timestamp is None


def test_same_bits_tells_zero_signs_apart() -> None:
    assert not same_bits(State(1, [0.0], [], 0.0), State(1, [-0.0], [], 0.0))
    assert not same_bits(State(1, [0.0], [], 0.0, 1.0), State(1, [0.0], [], 0.0))
    assert same_bits(State(1, [0.0], [1], 0.0, -0.0), State(1, [0.0], [1], 0.0, -0.0))
