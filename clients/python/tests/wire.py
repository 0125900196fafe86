"""A test-only model of the server's side: views, diffs and frame encoders.

A port of what ``src/delta.rs`` (advance, diff) and ``src/codec/{json,protobuf}.rs``
(encode_full, encode_delta) do, so the tests can make the frames the server would
send for any pair of states. It is deliberately written apart from the library's
decoder: the two meet only through bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from phasecast._pb.pcc.v1 import pcc_pb2 as pb
from phasecast.model import State, checksum

MAX_EXACT_STEPS = 2.0**53


def quantum_exp_for(epsilon: float) -> int | None:
    """The largest power of two not above 2ε, as an exponent (None: lossless)."""
    if epsilon == 0:
        return None
    exp = math.floor(math.log2(2 * epsilon))
    while 2.0**exp / 2 > epsilon:
        exp -= 1
    return exp


def _round_half_away(x: float) -> float:
    """Rust's f64::round."""
    whole = math.floor(abs(x))
    if abs(x) - whole >= 0.5:
        whole += 1
    return math.copysign(whole, x)


def advance(view: State, truth: State, epsilon: float) -> State:
    """The next view: each phase moves only when it is more than ε from the truth."""
    exp = quantum_exp_for(epsilon)
    if exp is None:
        phases = list(truth.phases)
    else:
        quantum = 2.0**exp
        phases = []
        for held, wanted in zip(view.phases, truth.phases):
            change = wanted - held
            if abs(change) <= epsilon:
                phases.append(held)
                continue
            steps = _round_half_away(change / quantum)
            if abs(steps) < MAX_EXACT_STEPS:
                moved = held + steps * quantum
                if abs(moved - wanted) <= epsilon:
                    phases.append(moved)
                    continue
            phases.append(wanted)
    return State(truth.step, phases, list(truth.spins), truth.energy, truth.timestamp)


def _bits(x: float) -> bytes:
    import struct

    return struct.pack("<d", x)


@dataclass
class ServerDelta:
    seq: int
    base_seq: int
    step: int
    energy: float
    timestamp: float | None
    checksum: int
    quantum_exp: int
    #: (index, ("step", quanta) or ("set", value)), ascending.
    phases: list[tuple[int, tuple[str, int | float]]]
    flips: list[int]


def diff(base: State, base_seq: int, target: State, seq: int, exp: int | None) -> ServerDelta:
    """The delta from ``base`` to ``target``, as the server computes it."""
    quantum = None if exp is None else 2.0**exp
    phases: list[tuple[int, tuple[str, int | float]]] = []
    for i, (b, t) in enumerate(zip(base.phases, target.phases)):
        if _bits(b) == _bits(t):
            continue
        change: tuple[str, int | float] = ("set", t)
        if quantum is not None:
            steps = _round_half_away((t - b) / quantum)
            if abs(steps) < MAX_EXACT_STEPS and _bits(b + steps * quantum) == _bits(t):
                change = ("step", int(steps))
        phases.append((i, change))
    flips = [i for i, (b, t) in enumerate(zip(base.spins, target.spins)) if b != t]
    return ServerDelta(
        seq=seq,
        base_seq=base_seq,
        step=target.step,
        energy=target.energy,
        timestamp=target.timestamp,
        checksum=checksum(target),
        quantum_exp=exp or 0,
        phases=phases,
        flips=flips,
    )


# --- JSON ---------------------------------------------------------------------------


def _scalars(step: int, energy: float, timestamp: float | None) -> dict:
    out: dict = {"step": step, "energy": energy}
    if timestamp is not None:
        out["timestamp"] = timestamp
    return out


def full_json(seq: int, state: State) -> str:
    body = {"seq": seq, **_scalars(state.step, state.energy, state.timestamp)}
    body.update(phases=state.phases, spins=state.spins)
    return json.dumps(body, separators=(",", ":"))


def delta_json(delta: ServerDelta, target: State) -> str:
    body = {"is_delta": True, "seq": delta.seq, "base_seq": delta.base_seq}
    body.update(_scalars(delta.step, delta.energy, delta.timestamp))
    body["checksum"] = f"{delta.checksum:016x}"
    # New values, not steps, as the server writes them.
    body["phases_delta"] = {str(i): target.phases[i] for i, _ in delta.phases}
    body["spins_delta"] = {str(i): target.spins[i] for i in delta.flips}
    return json.dumps(body, separators=(",", ":"))


# --- protobuf -----------------------------------------------------------------------


def pack_bits(flags: list[bool]) -> bytes:
    out = bytearray((len(flags) + 7) // 8)
    for i, flag in enumerate(flags):
        if flag:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def gaps(indices: list[int]) -> list[int]:
    out, following = [], 0
    for i in indices:
        out.append(i - following)
        following = i + 1
    return out


def _varint_len(v: int) -> int:
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _frame(seq: int, step: int, energy: float, timestamp: float | None) -> pb.Frame:
    frame = pb.Frame(seq=seq, step=step, energy=energy)
    if timestamp is not None:
        frame.timestamp = timestamp
    return frame


def full_pb(seq: int, state: State) -> bytes:
    frame = _frame(seq, state.step, state.energy, state.timestamp)
    frame.full.phases.extend(state.phases)
    frame.full.spin_count = len(state.spins)
    frame.full.spin_bits = pack_bits([s > 0 for s in state.spins])
    return frame.SerializeToString()


def delta_pb(delta: ServerDelta, target: State) -> bytes:
    n = len(target.phases)
    step_idx = [i for i, (kind, _) in delta.phases if kind == "step"]
    steps = [int(v) for _, (kind, v) in delta.phases if kind == "step"]
    value_idx = [i for i, (kind, _) in delta.phases if kind == "set"]
    values = [float(v) for _, (kind, v) in delta.phases if kind == "set"]

    def index_gaps(idx: list[int]) -> list[int]:
        return [] if len(idx) == n else gaps(idx)

    frame = _frame(delta.seq, delta.step, delta.energy, delta.timestamp)
    d = frame.delta
    d.skipped = delta.seq - 1 - delta.base_seq
    d.checksum = delta.checksum
    d.quantum_exp = delta.quantum_exp if steps else 0
    d.step_gaps.extend(index_gaps(step_idx))
    d.steps.extend(steps)
    d.value_gaps.extend(index_gaps(value_idx))
    d.values.extend(values)
    flip_gaps = gaps(delta.flips)
    bits_len = (len(target.spins) + 7) // 8
    if not delta.flips or sum(_varint_len(g) for g in flip_gaps) <= bits_len:
        d.flip_gaps.extend(flip_gaps)
    else:
        flipped = set(delta.flips)
        d.flip_bits = pack_bits([i in flipped for i in range(len(target.spins))])
    # Even an empty delta is a delta: make sure the oneof is set.
    frame.delta.SetInParent()
    return frame.SerializeToString()
