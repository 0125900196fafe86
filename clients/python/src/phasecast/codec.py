"""The wire forms: frames from the server, states to it, resync requests.

- :func:`decode_frame` turns a WebSocket message into a :class:`Full` or
  :class:`Delta` (JSON text or protobuf ``pcc.v1.Frame`` bytes), with the frame's
  :class:`Summary` and :class:`Envelope` when it carries them.
- :func:`encode_state` makes a producer body (JSON object or protobuf ``PccState``).
- :func:`resync_message` is what a subscriber sends to ask for a full frame.

Both directions take or give numpy arrays where asked (``numpy=True`` when decoding;
``ndarray`` phases and spins when encoding) and otherwise never import numpy.

The model types and :func:`apply_delta` / :func:`checksum` live in
:mod:`phasecast.model` and are re-exported here.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from array import array
from typing import Any

from . import _np
from ._pb.pcc.v1 import pcc_pb2 as pb
from .model import (
    ChecksumMismatch,
    Delta,
    DeltaError,
    Envelope,
    Frame,
    Full,
    IndexOutOfRange,
    Range,
    State,
    Summary,
    apply_delta,
    checksum,
)

__all__ = [
    "ChecksumMismatch",
    "DecodeError",
    "Delta",
    "DeltaError",
    "Envelope",
    "Frame",
    "Full",
    "IndexOutOfRange",
    "Range",
    "State",
    "Summary",
    "apply_delta",
    "checksum",
    "content_type",
    "decode_frame",
    "decode_json_frame",
    "decode_protobuf_frame",
    "encode_state",
    "encode_state_json",
    "encode_state_protobuf",
    "normalize_format",
    "resync_message",
]

#: The two encodings, by their canonical names.
FORMATS = ("json", "protobuf")


class DecodeError(ValueError):
    """A message that is not a valid frame in the expected encoding."""


def normalize_format(name: str) -> str:
    """``"json"`` or ``"protobuf"`` for a format name (``"proto"`` is an alias)."""
    lowered = name.strip().lower()
    if lowered == "proto":
        return "protobuf"
    if lowered not in FORMATS:
        raise ValueError(f'unknown format {name!r}: use "json" or "protobuf"')
    return lowered


def decode_frame(data: str | bytes, format: str, *, numpy: bool = False) -> Frame:
    """Decodes one WebSocket message in ``format`` (``"json"`` or ``"protobuf"``).

    With ``numpy=True`` a full frame's state holds a read-only ``float64`` array of
    phases and an ``int8`` array of spins (numpy must be installed).

    :raises DecodeError: the message is not a frame (a JSON client may also get its
        frames as bytes; a protobuf frame must be bytes).
    """
    if normalize_format(format) == "json":
        return decode_json_frame(data, numpy=numpy)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("protobuf frame arrived as a text message")
    return decode_protobuf_frame(bytes(data), numpy=numpy)


# --- JSON -------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise DecodeError(f"{name} is not a JSON number")


def decode_json_frame(data: str | bytes, *, numpy: bool = False) -> Frame:
    """Decodes a JSON frame: a full frame, or a delta when ``is_delta`` is true.

    Numbers parse to the exact doubles the server wrote (it writes the shortest form
    that round-trips). A part of the state the subscription does not take
    (``?fields=``) is absent: no phases or spins are empty, no energy is 0.0, no
    timestamp is None. A frame with neither phases nor spins (nor ``is_delta``) has
    no body: a :class:`Full` marked ``standalone``. ``summary`` and ``envelope`` are
    read as 32-bit floats.
    """
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise DecodeError(f"malformed JSON frame: {err}") from None
    if not isinstance(obj, dict):
        raise DecodeError("JSON frame is not an object")

    seq = _uint(obj, "seq")
    step = _uint(obj, "step")
    energy = _number(obj["energy"], "energy") if "energy" in obj else 0.0
    timestamp = _optional_number(obj.get("timestamp"), "timestamp")
    is_delta = obj.get("is_delta", False)
    if not isinstance(is_delta, bool):
        raise DecodeError("is_delta: expected true or false")
    summary = _json_summary(obj.get("summary"))
    envelope = _json_envelope(obj.get("envelope"))

    if not is_delta:
        phases = obj.get("phases")
        spins = obj.get("spins")
        standalone = phases is None and spins is None
        if not isinstance(phases, (list, type(None))):
            raise DecodeError("phases: expected an array")
        if not isinstance(spins, (list, type(None))):
            raise DecodeError("spins: expected an array")
        epoch = None if standalone else obj.get("epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise DecodeError(f"epoch: expected a string, got {epoch!r}")
        state = State(
            step=step,
            phases=_floats(phases or [], "phases"),
            spins=_spins(spins or [], "spins"),
            energy=energy,
            timestamp=timestamp,
        )
        return Full(
            seq,
            _as_numpy(state) if numpy else state,
            epoch or None,
            summary=summary,
            envelope=envelope,
            standalone=standalone,
        )

    base_seq = _uint(obj, "base_seq")
    raw_checksum = obj.get("checksum")
    if not isinstance(raw_checksum, str) or not _HEX64.fullmatch(raw_checksum):
        raise DecodeError("delta without a valid checksum (16 hex digits)")
    values = sorted(
        (_index(k), _number(v, f"phases_delta[{k}]"))
        for k, v in _object(obj, "phases_delta").items()
    )
    spin_values = sorted(
        (_index(k), _spin(v, f"spins_delta[{k}]")) for k, v in _object(obj, "spins_delta").items()
    )
    return Delta(
        seq=seq,
        base_seq=base_seq,
        step=step,
        energy=energy,
        timestamp=timestamp,
        checksum=int(raw_checksum, 16),
        values=values,
        spin_values=spin_values,
        summary=summary,
        envelope=envelope,
    )


def _json_summary(value: Any) -> Summary | None:
    """A JSON ``summary`` object, or None when the frame has none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError("summary: expected an object")
    histogram = value.get("histogram", [])
    if not isinstance(histogram, list):
        raise DecodeError("summary.histogram: expected an array")
    counts = set(map(type, histogram)) <= {int} and all(0 <= n < _UINT32_LIMIT for n in histogram)
    if not counts:
        raise DecodeError(f"summary.histogram: expected counts (uint32), got {histogram!r}")
    return Summary(
        r=_float32(value.get("r"), "summary.r"),
        psi=_float32(value.get("psi"), "summary.psi"),
        magnetization=_float32(value.get("magnetization"), "summary.magnetization"),
        energy=_float32(value.get("energy"), "summary.energy"),
        histogram=tuple(histogram),
    )


def _json_envelope(value: Any) -> Envelope | None:
    """A JSON ``envelope`` object, or None when the frame has none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError("envelope: expected an object")
    states = value.get("states")
    if isinstance(states, bool) or not isinstance(states, int) or not 0 <= states < _UINT32_LIMIT:
        raise DecodeError(f"envelope.states: expected a count (uint32), got {states!r}")
    return Envelope(
        states=states,
        r=_json_range(value, "r"),
        psi=_json_range(value, "psi"),
        magnetization=_json_range(value, "magnetization"),
        energy=_json_range(value, "energy"),
    )


def _json_range(envelope: dict[str, Any], key: str) -> Range:
    value = envelope.get(key)
    if not isinstance(value, dict):
        raise DecodeError(f"envelope.{key}: expected an object with min, max and mean")
    return Range(
        min=_float32(value.get("min"), f"envelope.{key}.min"),
        max=_float32(value.get("max"), f"envelope.{key}.max"),
        mean=_float32(value.get("mean"), f"envelope.{key}.mean"),
    )


def _float32(value: Any, what: str) -> float:
    """A JSON number as the Python float of the nearest ``float32`` (what the server
    wrote: the shortest text that reads back as that ``float32``)."""
    number = _number(value, what)
    try:
        return float(_F32.unpack(_F32.pack(number))[0])
    except OverflowError:
        raise DecodeError(f"{what}: {number!r} is out of range for a 32-bit float") from None


_F32 = struct.Struct("<f")
_UINT32_LIMIT = 1 << 32


_HEX64 = re.compile(r"[0-9a-fA-F]{1,16}")
_DIGITS = re.compile(r"[0-9]+")


def _uint(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DecodeError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(f"{what}: expected a number, got {value!r}")
    return float(value)


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _floats(values: list[Any], what: str) -> list[float]:
    """The numbers of a JSON array as floats; checked by type in one pass (C speed)."""
    kinds = set(map(type, values))
    if kinds <= {float}:
        return values
    if kinds <= {float, int}:
        try:
            return [float(v) for v in values]
        except OverflowError:
            pass
    for i, v in enumerate(values):
        _number(v, f"{what}[{i}]")
        if isinstance(v, int):
            try:
                float(v)
            except OverflowError:
                raise DecodeError(f"{what}[{i}]: {v} is out of range") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _spins(values: list[Any], what: str) -> list[int]:
    """A JSON array of +1/-1 (not booleans), checked in one pass."""
    if set(map(type, values)) <= {int} and set(values) <= {1, -1}:
        return values
    return [_spin(s, f"{what}[{i}]") for i, s in enumerate(values)]


def _as_numpy(state: State) -> State:
    """The state with read-only numpy arrays: float64 phases, int8 spins."""
    np = _np.require()
    phases = np.array(state.phases, dtype=np.float64)
    spins = np.array(state.spins, dtype=np.int8)
    phases.flags.writeable = False
    spins.flags.writeable = False
    return State(state.step, phases, spins, state.energy, state.timestamp)


def _spin(value: Any, what: str) -> int:
    if isinstance(value, bool) or value not in (1, -1):
        raise DecodeError(f"{what}: expected 1 or -1, got {value!r}")
    return int(value)


def _index(key: str) -> int:
    if not _DIGITS.fullmatch(key):
        raise DecodeError(f"delta index {key!r} is not a number")
    return int(key)


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{key}: expected an object keyed by index")
    return value


# --- protobuf ---------------------------------------------------------------------

#: Quantum exponents a double can represent (2**-1074 to 2**1023).
_QUANTUM_EXP_RANGE = range(-1074, 1024)


def decode_protobuf_frame(data: bytes, *, numpy: bool = False) -> Frame:
    """Decodes a protobuf ``pcc.v1.Frame``.

    Unpacks what the server packs: spins as bits, indices as gaps, dense lists
    (no gaps: one entry per phase), quantised steps, and ``base_seq`` from
    ``skipped``. A frame with neither ``full`` nor ``delta`` (a subscription taking
    neither phases nor spins) is a :class:`Full` of a state with no phases and no
    spins, marked ``standalone``. ``Frame.summary`` and ``Frame.envelope`` are read
    when present.
    """
    frame = pb.Frame()
    try:
        frame.ParseFromString(data)
    except Exception as err:  # google.protobuf.message.DecodeError, or worse on junk
        raise DecodeError(f"malformed protobuf frame: {err or type(err).__name__}") from None
    timestamp = frame.timestamp if frame.HasField("timestamp") else None
    summary = _pb_summary(frame.summary) if frame.HasField("summary") else None
    envelope = _pb_envelope(frame.envelope) if frame.HasField("envelope") else None
    body = frame.WhichOneof("body")
    if body is None:
        # Nothing to resume from: no epoch is kept, even if one were sent.
        state = State(frame.step, [], [], frame.energy, timestamp)
        return Full(
            frame.seq,
            _as_numpy(state) if numpy else state,
            None,
            summary=summary,
            envelope=envelope,
            standalone=True,
        )
    if body == "full":
        full = frame.full
        epoch = frame.epoch or None
        if numpy:
            state = _full_state_numpy(frame, timestamp)
        else:
            state = State(
                step=frame.step,
                phases=list(full.phases),
                spins=unpack_spins(full.spin_count, full.spin_bits),
                energy=frame.energy,
                timestamp=timestamp,
            )
        return Full(frame.seq, state, epoch, summary=summary, envelope=envelope)

    d = frame.delta
    base_seq = frame.seq - 1 - d.skipped
    if base_seq < 0:
        raise DecodeError("delta skips past seq 0")
    if d.quantum_exp not in _QUANTUM_EXP_RANGE:
        raise DecodeError(f"quantum_exp {d.quantum_exp} out of range")
    steps = list(zip(gap_indices(d.step_gaps, len(d.steps), "steps"), d.steps))
    values = list(zip(gap_indices(d.value_gaps, len(d.values), "values"), d.values))
    if d.flip_bits and d.flip_gaps:
        raise DecodeError("delta has both flip_gaps and flip_bits")
    if d.flip_bits:
        flips = [i for i in range(len(d.flip_bits) * 8) if d.flip_bits[i // 8] >> (i % 8) & 1]
    else:
        # An empty flip list is no flips (never dense).
        flips = _undo_gaps(d.flip_gaps)
    return Delta(
        seq=frame.seq,
        base_seq=base_seq,
        step=frame.step,
        energy=frame.energy,
        timestamp=timestamp,
        checksum=d.checksum,
        quantum_exp=d.quantum_exp,
        steps=steps,
        values=values,
        flips=flips,
        summary=summary,
        envelope=envelope,
    )


def _pb_summary(s: Any) -> Summary:
    """A ``pcc.v1.Summary`` (its floats are already the float32 values)."""
    return Summary(s.r, s.psi, s.magnetization, s.energy, tuple(s.histogram))


def _pb_envelope(e: Any) -> Envelope:
    """A ``pcc.v1.Envelope``; a range left out on the wire is all zeros (proto3)."""
    return Envelope(
        states=e.states,
        r=_pb_range(e.r),
        psi=_pb_range(e.psi),
        magnetization=_pb_range(e.magnetization),
        energy=_pb_range(e.energy),
    )


def _pb_range(r: Any) -> Range:
    return Range(r.min, r.max, r.mean)


def _full_state_numpy(frame: Any, timestamp: float | None) -> State:
    """A full frame's state as read-only arrays, without a list in between."""
    np = _np.require()
    full = frame.full
    count, bits = full.spin_count, full.spin_bits
    if len(bits) != (count + 7) // 8:
        raise DecodeError(f"spin_bits: {len(bits)} bytes for {count} spins")
    phases = np.array(full.phases, dtype=np.float64)
    up = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=count, bitorder="little")
    spins = up.astype(np.int8) * 2 - 1
    phases.flags.writeable = False
    spins.flags.writeable = False
    return State(frame.step, phases, spins, frame.energy, timestamp)


def gap_indices(gaps: list[int], count: int, what: str) -> list[int]:
    """The indices of ``count`` entries sent with index ``gaps``.

    No gaps means a dense list: indices ``0 .. count-1``. Otherwise the first index
    is ``gaps[0]`` and each next one is the previous + 1 + ``gaps[k]``.
    """
    if not gaps:
        return list(range(count))
    if len(gaps) != count:
        raise DecodeError(f"{what}: {len(gaps)} index gaps for {count} entries")
    return _undo_gaps(gaps)


def _undo_gaps(gaps: list[int]) -> list[int]:
    indices = []
    following = 0
    for gap in gaps:
        index = following + gap
        indices.append(index)
        following = index + 1
    return indices


def unpack_spins(count: int, bits: bytes) -> list[int]:
    """Spins from ``FullState.spin_bits``: bit ``i % 8`` of byte ``i // 8`` set is +1."""
    if len(bits) != (count + 7) // 8:
        raise DecodeError(f"spin_bits: {len(bits)} bytes for {count} spins")
    return [1 if bits[i // 8] >> (i % 8) & 1 else -1 for i in range(count)]


def pack_spins(spins: list[int]) -> bytes:
    """The inverse of :func:`unpack_spins`."""
    packed = bytearray((len(spins) + 7) // 8)
    for i, spin in enumerate(spins):
        if spin > 0:
            packed[i // 8] |= 1 << (i % 8)
    return bytes(packed)


# --- producer states and client messages -------------------------------------------


def encode_state_json(state: State) -> str:
    """A producer body in JSON, as in docs/protocol.md ("Publishing").

    Floats are written in their shortest round-trip form. ``phases`` and ``spins`` may
    be lists or numpy arrays; an array is checked and converted in one vectorised pass
    and gives exactly the text its list would.

    :raises ValueError: a phase, the energy or the timestamp is not finite (JSON has no
        NaN or infinity), or a spin is not +1 or -1. The message names the field.
    """
    body: dict[str, Any] = {
        "step": _step(state.step),
        "phases": _finite_phases(state.phases),
        "spins": _spin_list(state.spins),
        "energy": _finite(state.energy, "energy"),
    }
    if state.timestamp is not None:
        body["timestamp"] = _finite(state.timestamp, "timestamp")
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def encode_state_protobuf(state: State) -> bytes:
    """A producer body as a protobuf ``pcc.v1.PccState``.

    Written directly in the wire format, in field order, as the protobuf runtime
    writes it: packed doubles straight from the phases' bytes (``ndarray.tobytes()``
    for an array, no Python float per phase) and spins as packed zig-zag varints.
    Non-finite numbers are sent as they are: the server answers 422 naming the field.

    :raises ValueError: a spin is not +1 or -1, or the step is not an unsigned 64-bit
        integer.
    """
    out = bytearray()
    step = _step(state.step)
    if step:
        out += b"\x08" + _varint(step)
    phases = _phase_bytes(state.phases)
    if phases:
        out += b"\x12" + _varint(len(phases)) + phases
    spins = _spin_bytes(state.spins)
    if spins:
        out += b"\x1a" + _varint(len(spins)) + spins
    energy = struct.pack("<d", float(state.energy))
    if energy != _ZERO_DOUBLE:  # proto3 leaves out +0.0 only (-0.0 keeps its sign)
        out += b"\x21" + energy
    if state.timestamp is not None:
        out += b"\x29" + struct.pack("<d", float(state.timestamp))
    return bytes(out)


_ZERO_DOUBLE = bytes(8)
_UINT64_LIMIT = 1 << 64


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            as_int = int(step)  # a numpy integer, say
        except (TypeError, ValueError):
            raise ValueError(f"step: expected an integer, got {step!r}") from None
        if as_int != step:
            raise ValueError(f"step: expected an integer, got {step!r}")
        step = as_int
    if not 0 <= step < _UINT64_LIMIT:
        raise ValueError(f"step: {step} is not an unsigned 64-bit integer")
    return step


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _finite(value: Any, field: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field}: must be a finite number, got {number!r}")
    return number


def _finite_phases(phases: Any) -> list[float]:
    if _np.is_ndarray(phases):
        np = sys.modules["numpy"]
        values = _phase_array(np, phases)
        finite = np.isfinite(values)
        if not finite.all():
            index = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"phases[{index}]: must be a finite number, got {values[index]!r}")
        return values.tolist()  # Python floats: json writes their shortest round trip
    values = [float(p) for p in phases]
    if not all(map(math.isfinite, values)):
        index = next(i for i, v in enumerate(values) if not math.isfinite(v))
        raise ValueError(f"phases[{index}]: must be a finite number, got {values[index]!r}")
    return values


def _phase_array(np: Any, phases: Any) -> Any:
    if phases.ndim != 1:
        raise ValueError(f"phases: expected a 1-D array, got shape {phases.shape}")
    if phases.dtype.kind not in "fiu":
        raise ValueError(f"phases: expected a float array, got dtype {phases.dtype}")
    return np.ascontiguousarray(phases, dtype="<f8")


def _phase_bytes(phases: Any) -> bytes:
    """Little-endian IEEE-754 doubles, as a packed ``repeated double``."""
    if _np.is_ndarray(phases):
        return bytes(_phase_array(sys.modules["numpy"], phases).tobytes())
    try:
        doubles = array("d", phases)  # ints, floats and numpy scalars, in C
    except TypeError:
        doubles = array("d", [float(p) for p in phases])
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        doubles.byteswap()
    return doubles.tobytes()


def _spin_array(spins: Any) -> Any:
    """An ndarray of spins as int8 +1/-1, checked."""
    np = sys.modules["numpy"]
    if spins.ndim != 1:
        raise ValueError(f"spins: expected a 1-D array, got shape {spins.shape}")
    good = (spins == 1) | (spins == -1)
    if not good.all():
        index = int(np.flatnonzero(~good)[0])
        raise ValueError(f"spins[{index}]: must be +1 or -1, got {spins[index]!r}")
    return spins.astype(np.int8)


def _spin_list(spins: Any) -> list[int]:
    if _np.is_ndarray(spins):
        return _spin_array(spins).tolist()  # type: ignore[no-any-return]
    values = list(spins)
    if not (set(map(type, values)) <= {int} and set(values) <= {1, -1}):
        for i, s in enumerate(values):
            if isinstance(s, bool) or s not in (1, -1):
                raise ValueError(f"spins[{i}]: must be +1 or -1, got {s!r}")
        values = [int(s) for s in values]  # numpy integers, say
    return values


def _spin_bytes(spins: Any) -> bytes:
    """Spins as packed sint32 zig-zag varints: +1 is 0x02, -1 is 0x01."""
    if _np.is_ndarray(spins):
        np = sys.modules["numpy"]
        return bytes(np.where(_spin_array(spins) > 0, 2, 1).astype(np.uint8).tobytes())
    return bytes([2 if s > 0 else 1 for s in _spin_list(spins)])


def encode_state(state: State, format: str) -> str | bytes:
    """A producer message: JSON text (``str``) or protobuf bytes."""
    if normalize_format(format) == "json":
        return encode_state_json(state)
    return encode_state_protobuf(state)


def content_type(format: str) -> str:
    """The HTTP ``Content-Type`` of a body in ``format``."""
    return "application/json" if normalize_format(format) == "json" else "application/x-protobuf"


_RESYNC_JSON = '{"op":"resync"}'
_RESYNC_PROTOBUF = pb.ClientMessage(resync=pb.Resync()).SerializeToString()


def resync_message(format: str) -> str | bytes:
    """``{"op":"resync"}`` as text for JSON, ``ClientMessage{resync{}}`` bytes for protobuf."""
    return _RESYNC_JSON if normalize_format(format) == "json" else _RESYNC_PROTOBUF
