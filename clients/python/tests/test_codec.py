"""Decoding edge cases and bad frames, and the producer encodings."""

from __future__ import annotations

import json

import pytest
from test_model import GOLDEN_DELTA_JSON, GOLDEN_DELTA_PB, GOLDEN_FULL_PB

from phasecast._pb.pcc.v1 import pcc_pb2 as pb
from phasecast.codec import (
    DecodeError,
    decode_frame,
    decode_json_frame,
    decode_protobuf_frame,
    encode_state,
    normalize_format,
    resync_message,
)
from phasecast.model import Delta, Full, State, same_bits


def test_truncated_protobuf_is_a_decode_error() -> None:
    # Every cut inside the nested FullState / DeltaState breaks a length prefix.
    for frame in (GOLDEN_FULL_PB, GOLDEN_DELTA_PB):
        body_start = frame.index(b"\x2a" if frame is GOLDEN_FULL_PB else b"\x32\x21") + 2
        for cut in range(body_start, len(frame)):
            with pytest.raises(DecodeError):
                decode_protobuf_frame(frame[:cut])


def test_protobuf_frame_without_body_stands_alone() -> None:
    # ?fields= without phases and spins: no body, and no epoch kept even if sent.
    frame = decode_protobuf_frame(pb.Frame(seq=1, step=1, epoch="e").SerializeToString())
    assert isinstance(frame, Full) and frame.standalone
    assert (frame.seq, frame.epoch, frame.summary) == (1, None, None)
    assert same_bits(frame.state, State(1, [], [], 0.0, None))


def test_protobuf_frame_as_text_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_frame("not bytes", "protobuf")


def test_protobuf_spin_bits_must_match_spin_count() -> None:
    frame = pb.Frame(
        seq=1, step=1, full=pb.FullState(phases=[0.0] * 9, spin_count=9, spin_bits=b"\x01")
    )
    with pytest.raises(DecodeError, match="spin_bits"):
        decode_protobuf_frame(frame.SerializeToString())


def test_protobuf_gap_lists_must_match_their_values() -> None:
    frame = pb.Frame(seq=2, delta=pb.DeltaState(value_gaps=[0, 1], values=[1.0]))
    with pytest.raises(DecodeError, match="values"):
        decode_protobuf_frame(frame.SerializeToString())


def test_protobuf_dense_lists_flip_bits_and_skipped() -> None:
    frame = pb.Frame(
        seq=10,
        step=3,
        delta=pb.DeltaState(
            skipped=4,
            quantum_exp=-2,
            steps=[1, -1, 0],  # dense: phases 0, 1, 2
            flip_bits=bytes([0b1000_0001, 0b0000_0010]),
        ),
    )
    delta = decode_protobuf_frame(frame.SerializeToString())
    assert isinstance(delta, Delta)
    assert delta.base_seq == 5
    assert list(delta.steps) == [(0, 1), (1, -1), (2, 0)]
    assert list(delta.flips) == [0, 7, 9]
    assert delta.timestamp is None


def test_protobuf_delta_rejects_nonsense() -> None:
    for d in (
        pb.Frame(seq=1, delta=pb.DeltaState(skipped=1)),  # base before seq 0
        pb.Frame(seq=2, delta=pb.DeltaState(quantum_exp=2000, steps=[1])),
        pb.Frame(seq=2, delta=pb.DeltaState(flip_gaps=[1], flip_bits=b"\x01")),
    ):
        with pytest.raises(DecodeError):
            decode_protobuf_frame(d.SerializeToString())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[1]",
        "{",
        '{"step":1,"energy":0,"phases":[0]}',  # no seq
        '{"seq":-1,"step":1,"energy":0,"phases":[0]}',
        '{"seq":1,"step":1,"energy":0,"phases":{}}',  # phases not an array
        '{"seq":1,"step":1,"energy":0,"spins":1}',  # spins not an array
        '{"seq":1,"step":1,"energy":NaN,"phases":[0]}',
        '{"seq":1,"step":1,"energy":0,"phases":[0],"spins":[2]}',
        '{"seq":1,"step":1,"energy":0,"phases":["0"]}',
        '{"seq":1,"step":1,"energy":true,"phases":[0]}',
        GOLDEN_DELTA_JSON.replace('"checksum":"dde33ea0d66bf35b"', '"checksum":"xyz"'),
        GOLDEN_DELTA_JSON.replace('"checksum":"dde33ea0d66bf35b"', '"checksum":12'),
        GOLDEN_DELTA_JSON.replace('"base_seq":41,', ""),
        GOLDEN_DELTA_JSON.replace('"1":1.005859375', '"-1":1.005859375'),
        GOLDEN_DELTA_JSON.replace('"1":1.005859375', '"a":1.005859375'),
        GOLDEN_DELTA_JSON.replace('"2":-1', '"2":0'),
    ],
)
def test_bad_json_frames_are_decode_errors(text: str) -> None:
    with pytest.raises(DecodeError):
        decode_json_frame(text)


def test_json_frame_may_come_as_bytes_and_without_spins() -> None:
    frame = decode_frame(b'{"seq":3,"step":2,"energy":1,"phases":[1e-320,-0.0]}', "json")
    assert isinstance(frame, Full)
    assert frame.state.spins == [] and frame.state.timestamp is None
    assert frame.state.energy == 1.0 and isinstance(frame.state.energy, float)
    assert frame.state.phases[0] == 1e-320


def test_format_names() -> None:
    assert normalize_format("proto") == "protobuf"
    assert normalize_format(" JSON ") == "json"
    with pytest.raises(ValueError):
        normalize_format("xml")


def test_resync_messages() -> None:
    assert resync_message("json") == '{"op":"resync"}'
    message = pb.ClientMessage.FromString(resync_message("protobuf"))  # type: ignore[arg-type]
    assert message.WhichOneof("op") == "resync"


def test_encode_state_json_matches_the_documented_body() -> None:
    state = State(1200, [0.12, 3.0, 6.1], [1, -1, 1], -0.82, 1764150000.125)
    body = encode_state(state, "json")
    assert json.loads(body) == {
        "step": 1200,
        "phases": [0.12, 3.0, 6.1],
        "spins": [1, -1, 1],
        "energy": -0.82,
        "timestamp": 1764150000.125,
    }
    assert "timestamp" not in json.loads(encode_state(State(1, [0.0], [], 0.0), "json"))
    with pytest.raises(ValueError):
        encode_state(State(1, [float("nan")], [], 0.0), "json")


def test_encode_state_protobuf() -> None:
    state = State(1200, [0.12, 3.0, 6.1], [1, -1, 1], -0.82, 1764150000.125)
    message = pb.PccState.FromString(encode_state(state, "protobuf"))  # type: ignore[arg-type]
    assert message.step == 1200
    assert list(message.phases) == [0.12, 3.0, 6.1]
    assert list(message.spins) == [1, -1, 1]
    assert message.energy == -0.82 and message.timestamp == 1764150000.125
    bare = pb.PccState.FromString(encode_state(State(1, [0.0], [], 0.0), "protobuf"))  # type: ignore[arg-type]
    assert not bare.HasField("timestamp")
