"""A test-only model of the server's side: views, diffs and frame encoders.

A port of what ``src/delta.rs`` (advance, diff), ``crates/phasecast-wire``'s codecs
(encode_full, encode_delta, with ``?fields=`` projections, summaries and envelopes)
and its summary do, so the tests can make the frames the server would send for any
pair of states. It is deliberately written apart from the library's decoder: the two
meet only through bytes.
"""

from __future__ import annotations

import cmath
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


# --- fields and summaries -----------------------------------------------------------

#: The server's default projection: the whole state, no summary.
DEFAULT_FIELDS: tuple[str, ...] = ("phases", "spins", "energy", "timestamp")


def projected(state: State, fields: Sequence[str]) -> State:
    """What a subscriber taking ``fields`` holds (the server's Projection::apply)."""
    return State(
        state.step,
        list(state.phases) if "phases" in fields else [],
        list(state.spins) if "spins" in fields else [],
        state.energy if "energy" in fields else 0.0,
        state.timestamp if "timestamp" in fields else None,
    )


def has_body(fields: Sequence[str]) -> bool:
    return "phases" in fields or "spins" in fields


def f32(x: float) -> float:
    """The nearest float32, as a Python float."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def summary_of(state: State, bins: int = 16) -> dict[str, Any]:
    """The server's summary of ``state`` (computed in doubles, sent as float32)."""
    n = len(state.phases)
    mean = sum(cmath.exp(1j * p) for p in state.phases) / n if n else 0j
    r = abs(mean)
    histogram = [0] * bins
    for p in state.phases:
        wrapped = p % (2 * math.pi)
        histogram[min(int(wrapped / (2 * math.pi / bins)), bins - 1)] += 1
    spins = list(state.spins)
    return {
        "r": f32(r),
        "psi": f32(cmath.phase(mean)) if r > 0 else 0.0,
        "magnetization": f32(sum(spins) / len(spins)) if spins else 0.0,
        "energy": f32(state.energy),
        "histogram": histogram,
    }


def envelope_of(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The envelope over consecutive states' summaries (least, greatest, mean)."""
    out: dict[str, Any] = {"states": len(summaries)}
    for key in ("r", "psi", "magnetization", "energy"):
        values = [s[key] for s in summaries]
        out[key] = {
            "min": min(values),
            "max": max(values),
            "mean": f32(sum(values) / len(values)),
        }
    return out


def float32_text(x: float) -> str:
    """The shortest text that reads back as the same float32 (what ryu writes)."""
    value = f32(x)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if f32(float(text)) == value:
            break
    if not any(c in text for c in ".en"):
        text += ".0"
    return text


def summary_json(s: dict[str, Any]) -> str:
    return (
        f'{{"r":{float32_text(s["r"])},"psi":{float32_text(s["psi"])},'
        f'"magnetization":{float32_text(s["magnetization"])},'
        f'"energy":{float32_text(s["energy"])},'
        f'"histogram":{json.dumps(s["histogram"], separators=(",", ":"))}}}'
    )


def envelope_json(e: dict[str, Any]) -> str:
    def ranged(key: str) -> str:
        r = e[key]
        return (
            f'"{key}":{{"min":{float32_text(r["min"])},"max":{float32_text(r["max"])},'
            f'"mean":{float32_text(r["mean"])}}}'
        )

    parts = ",".join(ranged(k) for k in ("r", "psi", "magnetization", "energy"))
    return f'{{"states":{e["states"]},{parts}}}'


# --- JSON ---------------------------------------------------------------------------


def _scalars(
    step: int, energy: float, timestamp: float | None, fields: Sequence[str] = DEFAULT_FIELDS
) -> dict:
    out: dict = {"step": step}
    if "energy" in fields:
        out["energy"] = energy
    if timestamp is not None and "timestamp" in fields:
        out["timestamp"] = timestamp
    return out


def _with_extras(
    body: dict, summary: dict[str, Any] | None, envelope: dict[str, Any] | None
) -> str:
    text = json.dumps(body, separators=(",", ":"))
    if summary is not None:
        text = text[:-1] + ',"summary":' + summary_json(summary) + "}"
    if envelope is not None:
        text = text[:-1] + ',"envelope":' + envelope_json(envelope) + "}"
    return text


def full_json(
    seq: int,
    state: State,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    epoch: str | None = None,
    summary: dict[str, Any] | None = None,
    envelope: dict[str, Any] | None = None,
) -> str:
    """A full frame of the parts of ``state`` in ``fields`` (no body without phases
    and spins: then no epoch either)."""
    body: dict = {"seq": seq}
    if epoch and has_body(fields):
        body["epoch"] = epoch
    body.update(_scalars(state.step, state.energy, state.timestamp, fields))
    if "phases" in fields:
        body["phases"] = state.phases
    if "spins" in fields:
        body["spins"] = state.spins
    return _with_extras(body, summary, envelope)


def delta_json(
    delta: ServerDelta,
    target: State,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    summary: dict[str, Any] | None = None,
    envelope: dict[str, Any] | None = None,
) -> str:
    """A delta frame; with ``fields``, ``delta`` is a diff of projected states."""
    body = {"is_delta": True, "seq": delta.seq, "base_seq": delta.base_seq}
    body.update(_scalars(delta.step, delta.energy, delta.timestamp, fields))
    body["checksum"] = f"{delta.checksum:016x}"
    # New values, not steps, as the server writes them.
    if "phases" in fields:
        body["phases_delta"] = {str(i): target.phases[i] for i, _ in delta.phases}
    if "spins" in fields:
        body["spins_delta"] = {str(i): target.spins[i] for i in delta.flips}
    return _with_extras(body, summary, envelope)


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


def _pb_extras(
    frame: pb.Frame, summary: dict[str, Any] | None, envelope: dict[str, Any] | None
) -> None:
    if summary is not None:
        frame.summary.CopyFrom(pb.Summary(**summary))
    if envelope is not None:
        frame.envelope.CopyFrom(
            pb.Envelope(
                states=envelope["states"],
                **{k: pb.Range(**envelope[k]) for k in ("r", "psi", "magnetization", "energy")},
            )
        )


def full_pb(
    seq: int,
    state: State,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    epoch: str | None = None,
    summary: dict[str, Any] | None = None,
    envelope: dict[str, Any] | None = None,
) -> bytes:
    """A full frame of the parts of ``state`` in ``fields``; without phases and spins
    a frame with neither ``full`` nor ``delta``, and no epoch."""
    state = projected(state, fields)
    frame = _frame(seq, state.step, state.energy, state.timestamp)
    if has_body(fields):
        frame.full.phases.extend(state.phases)
        frame.full.spin_count = len(state.spins)
        frame.full.spin_bits = pack_bits([s > 0 for s in state.spins])
        frame.full.SetInParent()
        if epoch:
            frame.epoch = epoch
    _pb_extras(frame, summary, envelope)
    return frame.SerializeToString()


def delta_pb(
    delta: ServerDelta,
    target: State,
    *,
    summary: dict[str, Any] | None = None,
    envelope: dict[str, Any] | None = None,
) -> bytes:
    """A delta frame; with ``fields``, ``delta`` and ``target`` are projected."""
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
    _pb_extras(frame, summary, envelope)
    return frame.SerializeToString()
