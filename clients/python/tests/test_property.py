"""Random state sequences, encoded as the server would, decoded and applied.

``wire`` (a test-only model of the server) makes views within ε, diffs them, and
encodes full and delta frames in both encodings; the library must rebuild every
view bit for bit, in step or skipping frames.
"""

from __future__ import annotations

import math
import random
import struct

import pytest
import wire

from phasecast.codec import decode_json_frame, decode_protobuf_frame
from phasecast.model import Delta, Full, State, apply_delta, same_bits


def awkward_float(rng: random.Random) -> float:
    """Mostly ordinary phases, sometimes values that are hard to print or add."""
    pick = rng.random()
    if pick < 0.7:
        return rng.uniform(-10, 10)
    if pick < 0.8:
        return rng.choice([0.0, -0.0, 5e-324, -2.2250738585072014e-308, 1e300, math.pi])
    # Any finite double at all.
    while True:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            return x


def random_states(rng: random.Random, count: int, epsilon: float) -> list[State]:
    n = rng.randint(1, 40)
    with_spins = rng.random() < 0.8
    phases = [rng.uniform(-10, 10) for _ in range(n)]
    spins = [rng.choice((1, -1)) for _ in range(n)] if with_spins else []
    states = []
    for step in range(count):
        # Drift some phases a little, jump others, leave the rest.
        for i in range(n):
            r = rng.random()
            if r < 0.4:
                phases[i] += rng.uniform(-3, 3) * (epsilon or 1e-3)
            elif r < 0.5:
                phases[i] = awkward_float(rng) if epsilon == 0 else rng.uniform(-10, 10)
        for i in range(len(spins)):
            if rng.random() < 0.1:
                spins[i] = -spins[i]
        timestamp = None if rng.random() < 0.2 else 1764000000.0 + step / 200
        states.append(State(step, list(phases), list(spins), rng.uniform(-5, 5), timestamp))
    return states


def views_of(states: list[State], epsilon: float) -> list[State]:
    views = [states[0]]
    for truth in states[1:]:
        views.append(wire.advance(views[-1], truth, epsilon))
    return views


@pytest.mark.parametrize("seed", range(40))
def test_subscriber_rebuilds_every_view(seed: int) -> None:
    rng = random.Random(seed)
    epsilon = 0.0 if seed % 3 == 0 else rng.choice([1e-6, 1e-3, 0.01, 0.5])
    exp = wire.quantum_exp_for(epsilon)
    states = random_states(rng, 30, epsilon)
    views = views_of(states, epsilon)
    for view, truth in zip(views, states):
        assert all(abs(v - t) <= epsilon for v, t in zip(view.phases, truth.phases))

    for stride in (1, 3):
        for encoding in ("json", "protobuf"):
            decode = decode_json_frame if encoding == "json" else decode_protobuf_frame
            full = wire.full_json(1, views[0]) if encoding == "json" else wire.full_pb(1, views[0])
            frame = decode(full)
            assert isinstance(frame, Full)
            held, held_seq = frame.state, frame.seq
            assert same_bits(held, views[0])
            for index in range(stride, len(views), stride):
                seq = index + 1
                server_delta = wire.diff(views[held_seq - 1], held_seq, views[index], seq, exp)
                encode = wire.delta_json if encoding == "json" else wire.delta_pb
                frame = decode(encode(server_delta, views[index]))
                assert isinstance(frame, Delta) and frame.base_seq == held_seq
                held = apply_delta(held, frame)
                held_seq = frame.seq
                assert same_bits(held, views[index]), (encoding, stride, seq)


def test_quantised_steps_are_used_and_exact() -> None:
    """A slow drift is sent as steps, and the view never strays more than ε."""
    epsilon = 1e-3
    exp = wire.quantum_exp_for(epsilon)
    assert exp is not None and 2.0**exp / 2 <= epsilon < 2.0**exp
    truth = State(0, [1.0, -2.0], [1, -1], 0.0)
    view = held = truth
    used_steps = 0
    for seq in range(2, 400):
        truth = State(
            seq, [truth.phases[0] + epsilon / 2, truth.phases[1] - epsilon / 3], [1, -1], 0.0
        )
        nxt = wire.advance(view, truth, epsilon)
        frame = decode_protobuf_frame(wire.delta_pb(wire.diff(view, seq - 1, nxt, seq, exp), nxt))
        assert isinstance(frame, Delta)
        used_steps += len(frame.steps)
        held = apply_delta(held, frame)
        assert same_bits(held, nxt)
        assert all(abs(h - t) <= epsilon for h, t in zip(held.phases, truth.phases))
        view = nxt
    assert used_steps > 100


def test_flip_bits_and_dense_lists_round_trip() -> None:
    """Many flips go as a bitset; all phases changing goes as a dense list."""
    base = State(1, [float(i) for i in range(20)], [1] * 20, 0.0)
    target = State(2, [float(i) + 0.5 for i in range(20)], [-1] * 19 + [1], 1.0)
    payload = wire.delta_pb(wire.diff(base, 1, target, 2, -1), target)
    raw = wire.pb.Frame.FromString(payload).delta
    assert raw.flip_bits and not raw.flip_gaps
    assert raw.steps and not raw.step_gaps  # dense
    frame = decode_protobuf_frame(payload)
    assert isinstance(frame, Delta)
    assert same_bits(apply_delta(base, frame), target)
