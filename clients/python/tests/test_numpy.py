"""numpy in and out (the ``phasecast[numpy]`` extra), and the same behaviour without it.

- ``publish`` takes ``ndarray`` phases and spins: the bodies are byte for byte the
  ones the same values as lists give (and the protobuf runtime writes).
- ``numpy=True`` subscribers hold read-only float64 phases (int8 spins) with the same
  bits as the list arithmetic, in step and over skipped frames, in both encodings.
- Without numpy installed (simulated in a subprocess that cannot import it) the
  library works and gives the same bytes and states as here.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest
import wire
from fake_ws import Conn, FakeServer
from test_property import random_states, views_of
from test_subscriber import STATES, delta, full, run

from phasecast import PublishError, State, Subscriber, SyncProducer, Update
from phasecast._pb.pcc.v1 import pcc_pb2 as pb
from phasecast.codec import (
    decode_json_frame,
    decode_protobuf_frame,
    encode_state_json,
    encode_state_protobuf,
)
from phasecast.model import Full, apply_delta, checksum, same_bits

np = pytest.importorskip("numpy", reason='numpy is the optional extra "phasecast[numpy]"')


def library_bytes(state: State) -> bytes:
    """What the protobuf runtime writes for this state."""
    message = pb.PccState(
        step=state.step, phases=list(state.phases), spins=list(state.spins), energy=state.energy
    )
    if state.timestamp is not None:
        message.timestamp = state.timestamp
    return bytes(message.SerializeToString())


def sample_states(count: int = 300) -> list[State]:
    rng = random.Random(21)
    out = []
    for _ in range(count):
        n = rng.randint(0, 70)
        phases = [rng.uniform(-7, 7) for _ in range(n)]
        if n and rng.random() < 0.3:
            phases[rng.randrange(n)] = rng.choice([0.0, -0.0, 5e-324, 1e300, -2.5])
        spins = [rng.choice((1, -1)) for _ in range(n)] if rng.random() < 0.7 else []
        out.append(
            State(
                rng.choice([0, 1, 200, 2**63, 2**64 - 1]),
                phases,
                spins,
                rng.choice([0.0, -1.25, rng.uniform(-9, 9)]),
                rng.choice([None, 0.0, 1764000000.125]),
            )
        )
    return out


def test_ndarray_bodies_equal_list_bodies_and_the_protobuf_runtime() -> None:
    for state in sample_states():
        as_arrays = State(
            state.step,
            np.array(state.phases, dtype=np.float64),
            np.array(state.spins, dtype=np.int64),
            state.energy,
            state.timestamp,
        )
        assert encode_state_protobuf(as_arrays) == encode_state_protobuf(state)
        assert encode_state_protobuf(state) == library_bytes(state)
        assert encode_state_json(as_arrays) == encode_state_json(state)


def test_ndarray_dtypes_layouts_and_spin_types() -> None:
    base = np.linspace(-3, 3, 40)
    spins = np.where(np.arange(40) % 3 == 0, -1, 1)
    reference = State(9, base.tolist(), spins.tolist(), -0.5, 1.5)
    wanted_pb, wanted_json = encode_state_protobuf(reference), encode_state_json(reference)
    strided = np.empty(80)
    strided[::2] = base
    for phases in (base, strided[::2], base.astype(">f8"), base.reshape(1, 40)[0]):
        for s in (spins, spins.astype(np.int8), spins.astype(np.float32), spins.astype(">i4")):
            state = State(np.uint64(9), phases, s, np.float64(-0.5), 1.5)
            assert encode_state_protobuf(state) == wanted_pb
            assert encode_state_json(state) == wanted_json
    # float32 phases are sent as the doubles they are.
    f32 = base.astype(np.float32)
    as_list = State(9, [float(x) for x in f32], spins.tolist(), -0.5, 1.5)
    assert encode_state_protobuf(State(9, f32, spins, -0.5, 1.5)) == encode_state_protobuf(as_list)


def test_ndarray_errors_name_the_field() -> None:
    bad = np.array([0.0, 1.0, np.nan])
    with pytest.raises(ValueError, match=r"phases\[2\]: must be a finite number"):
        encode_state_json(State(1, bad, [], 0.0))
    with pytest.raises(ValueError, match=r"spins\[1\]: must be \+1 or -1"):
        encode_state_protobuf(State(1, np.zeros(3), np.array([1, 0, -1]), 0.0))
    with pytest.raises(ValueError, match="1-D"):
        encode_state_protobuf(State(1, np.zeros((2, 2)), [], 0.0))
    with pytest.raises(PublishError) as err:
        SyncProducer("http://127.0.0.1:9").publish(State(4, bad, [], 0.0))
    assert (err.value.status, err.value.field, err.value.step) == (None, "phases[2]", 4)


def test_checksum_of_arrays_is_the_checksum_of_lists() -> None:
    for state in sample_states(100):
        arrays = State(
            state.step,
            np.array(state.phases, dtype=np.float64),
            np.array(state.spins, dtype=np.int8),
            state.energy,
        )
        assert checksum(arrays) == checksum(state)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_numpy_decoding_and_deltas_give_the_list_bits(seed: int, epsilon: float) -> None:
    rng = random.Random(seed)
    views = views_of(random_states(rng, 40, epsilon), epsilon)
    exp = wire.quantum_exp_for(epsilon)
    for encode_full, encode_delta, decode in (
        (wire.full_json, wire.delta_json, decode_json_frame),
        (wire.full_pb, wire.delta_pb, decode_protobuf_frame),
    ):
        first = decode(encode_full(1, views[0]), numpy=True)
        assert isinstance(first, Full)
        held_np, held_list = first.state, decode(encode_full(1, views[0])).state
        assert held_np.phases.dtype == np.float64 and held_np.spins.dtype == np.int8
        assert not held_np.phases.flags.writeable
        base_seq = 1
        for seq in range(2, len(views) + 1):
            if rng.random() < 0.3:
                continue  # skip a frame: the next delta is over more seqs
            d = wire.diff(views[base_seq - 1], base_seq, views[seq - 1], seq, exp)
            message = encode_delta(d, views[seq - 1])
            held_np = apply_delta(held_np, decode(message, numpy=True))
            held_list = apply_delta(held_list, decode(message))
            assert same_bits(held_np, held_list) and same_bits(held_np, views[seq - 1])
            assert not held_np.phases.flags.writeable
            base_seq = seq


def test_numpy_subscriber_yields_read_only_float64_phases() -> None:
    async def script(conn: Conn) -> None:
        fmt = conn.query["format"]
        await conn.send(full(fmt, 1))
        await conn.send(delta(fmt, 1, 2))
        await conn.send(delta(fmt, 2, 3, corrupt=True))  # never yielded
        await conn.recv()
        await conn.send(full(fmt, 4))
        await conn.wait_closed()

    for fmt in ("json", "protobuf"):

        async def scenario() -> list[Update]:
            async with FakeServer(script) as server:
                async with Subscriber(server.url, format=fmt, numpy=True) as sub:
                    out = []
                    async for update in sub:
                        out.append(update)
                        if update.seq == 4:
                            return out
            raise AssertionError

        updates = run(scenario)
        assert [(u.seq, u.kind) for u in updates] == [(1, "full"), (2, "delta"), (4, "full")]
        for update in updates:
            assert isinstance(update.phases, np.ndarray) and update.phases.dtype == np.float64
            assert isinstance(update.spins, np.ndarray) and update.spins.dtype == np.int8
            assert not update.phases.flags.writeable
            assert same_bits(update.state, STATES[update.seq - 1])
        mine = updates[-1].copy()
        mine.phases[0] = 1.0  # a copy is writable
        assert same_bits(updates[-1].state, STATES[3])


def test_without_numpy_the_library_behaves_the_same() -> None:
    """A subprocess that cannot import numpy encodes and decodes exactly as here."""
    states = sample_states(40)
    frames = []
    for fmt in ("json", "protobuf"):
        frames.append((fmt, full(fmt, 1)))
        for seq in range(2, 8):
            frames.append((fmt, delta(fmt, seq - 1, seq)))
    program = textwrap.dedent(
        """
        import importlib.abc, json, sys

        class NoNumpy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "numpy" or name.startswith("numpy."):
                    raise ImportError("No module named 'numpy' (blocked for this test)")
                return None

        sys.meta_path.insert(0, NoNumpy())
        import phasecast
        from phasecast import State, Subscriber
        from phasecast.codec import decode_frame, encode_state_json, encode_state_protobuf
        from phasecast.model import apply_delta, Full

        job = json.load(sys.stdin)
        out = {"json": [], "protobuf": [], "held": []}
        for step, phases, spins, energy, timestamp in job["states"]:
            state = State(step, phases, spins, energy, timestamp)
            out["json"].append(encode_state_json(state))
            out["protobuf"].append(encode_state_protobuf(state).hex())
        held = None
        for fmt, message in job["frames"]:
            data = message if fmt == "json" else bytes.fromhex(message)
            frame = decode_frame(data, fmt)
            held = frame.state if isinstance(frame, Full) else apply_delta(held, frame)
            out["held"].append([held.step, held.phases, held.spins, held.energy, held.timestamp])
        try:
            Subscriber("ws://127.0.0.1:1/ws", numpy=True)
        except ImportError as err:
            out["numpy_error"] = str(err)
        out["numpy_imported"] = "numpy" in sys.modules
        print(json.dumps(out))
        """
    )
    job = {
        "states": [[s.step, s.phases, s.spins, s.energy, s.timestamp] for s in states],
        "frames": [[fmt, m if isinstance(m, str) else m.hex()] for fmt, m in frames],
    }
    result = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["json"] == [encode_state_json(s) for s in states]
    assert out["protobuf"] == [encode_state_protobuf(s).hex() for s in states]
    expected_seqs = list(range(1, 8)) * 2
    for (step, phases, spins, energy, timestamp), seq in zip(out["held"], expected_seqs):
        assert same_bits(State(step, phases, spins, energy, timestamp), STATES[seq - 1])
    assert 'pip install "phasecast[numpy]"' in out["numpy_error"]
    assert out["numpy_imported"] is False


def test_the_library_does_not_import_numpy_unless_asked() -> None:
    program = (
        "import sys, phasecast\n"
        "from phasecast import State, Subscriber\n"
        "from phasecast.codec import encode_state_protobuf, encode_state_json\n"
        "state = State(1, [0.5], [1], 0.0)\n"
        "encode_state_protobuf(state); encode_state_json(state)\n"
        "Subscriber('ws://127.0.0.1:1/ws')\n"
        "print('numpy' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
