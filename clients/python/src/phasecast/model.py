"""The state a subscriber holds, the frames that change it, and how a delta is applied.

Pure data and arithmetic, no I/O and no wire format: :mod:`phasecast.codec` turns
bytes into these types. The rules are those of ``docs/protocol.md`` ("Applying a
delta", "Checksum"); ``src/delta.rs`` on the server is the reference.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from ._np import is_ndarray

__all__ = [
    "ChecksumMismatch",
    "DEFAULT_FIELDS",
    "Delta",
    "DeltaError",
    "Envelope",
    "FIELDS",
    "Frame",
    "Full",
    "IndexOutOfRange",
    "Range",
    "State",
    "Summary",
    "apply_delta",
    "checksum",
    "normalize_fields",
    "project",
    "same_bits",
]


#: A list of numbers, or (with the numpy extra) a 1-D ``numpy.ndarray``.
Values = Union[Sequence[float], Sequence[int], Any]


@dataclass(eq=False)
class State:
    """One state of the phase-coupled computation (PCC).

    ``phases`` and ``spins`` are lists, or numpy arrays: a producer may pass
    ``numpy.ndarray`` values (any float dtype for phases, any integer or float dtype
    holding +1/-1 for spins), and a subscriber made with ``numpy=True`` holds a
    read-only ``float64`` array of phases and an ``int8`` array of spins.

    The library never changes a ``State`` it has handed out: applying a delta makes a
    new one. Treat the states you receive as read-only (:meth:`copy` gives one you may
    change).
    """

    #: The producer's step counter.
    step: int
    #: Oscillator phases in radians: a list of floats or a numpy array.
    phases: Values
    #: Spins, each ``1`` or ``-1``: none, or one per phase (a list or a numpy array).
    spins: Values
    #: Energy of the state.
    energy: float
    #: The producer's clock (seconds since the Unix epoch), when it sent one.
    timestamp: float | None = None

    def copy(self) -> State:
        """A copy whose lists (or arrays) can be changed without touching this state."""
        return State(
            self.step, _copy_seq(self.phases), _copy_seq(self.spins), self.energy, self.timestamp
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            self.step == other.step
            and self.energy == other.energy
            and self.timestamp == other.timestamp
            and _as_list(self.phases) == _as_list(other.phases)
            and _as_list(self.spins) == _as_list(other.spins)
        )

    __hash__ = None  # type: ignore[assignment]


def _copy_seq(values: Any) -> Any:
    if is_ndarray(values):
        return values.copy()  # a writable copy, also of a read-only array
    return list(values)


def _as_list(values: Any) -> list[Any]:
    return values.tolist() if is_ndarray(values) else list(values)


#: The parts of a state a subscriber may take (``?fields=``), in the server's order.
FIELDS = ("phases", "spins", "energy", "timestamp", "summary")
#: What a subscriber takes when it names no fields: the whole state, no summary.
DEFAULT_FIELDS = ("phases", "spins", "energy", "timestamp")


def normalize_fields(fields: str | Iterable[str]) -> tuple[str, ...]:
    """``fields`` checked, without repeats and in the server's order (:data:`FIELDS`).

    Takes a comma-separated string (``"summary,phases"``) or a sequence of names
    (``["summary", "phases"]``); both give ``("phases", "summary")``.

    :raises ValueError: an empty list, or a name that is not one of :data:`FIELDS`
        (the server would refuse the subscription with 400 naming ``fields``).
    """
    names = [n.strip() for n in fields.split(",")] if isinstance(fields, str) else list(fields)
    known = ", ".join(FIELDS)
    if not names or names == [""]:
        raise ValueError(f"fields: an empty list takes nothing; name some of {known}")
    for name in names:
        if not isinstance(name, str) or name not in FIELDS:
            raise ValueError(f"fields: unknown field {name!r} (known: {known})")
    return tuple(f for f in FIELDS if f in names)


def project(state: State, fields: str | Iterable[str]) -> State:
    """The state a subscriber taking ``fields`` holds: the parts not taken are empty
    phases, empty spins, energy 0.0 and no timestamp (docs/protocol.md, "Fields and
    summaries"). Frames, deltas and checksums are of this state.

    >>> project(State(3, [0.5], [1], -1.0, 7.0), "phases,summary")
    State(step=3, phases=[0.5], spins=[], energy=0.0, timestamp=None)
    """
    taken = normalize_fields(fields)
    return State(
        state.step,
        _copy_seq(state.phases) if "phases" in taken else [],
        _copy_seq(state.spins) if "spins" in taken else [],
        state.energy if "energy" in taken else 0.0,
        state.timestamp if "timestamp" in taken else None,
    )


@dataclass(frozen=True)
class Summary:
    """Quantities the server derives from one state, for subscribers taking
    ``summary``: computed from the producer's state (not from the view within ε).

    The numbers are 32-bit floats on the wire; here each is the Python float of that
    ``float32`` (the same value from JSON and from protobuf).
    """

    #: Kuramoto order parameter r = |(1/N) Σ e^{iθ_k}|, in [0, 1] (0 without phases).
    r: float
    #: Its angle ψ in radians, in (-π, π]; 0 when r is 0.
    psi: float
    #: Mean spin, in [-1, 1]; 0 without spins.
    magnetization: float
    #: The state's energy, as a 32-bit float (``fields`` with ``energy`` gives the exact one).
    energy: float
    #: Count of phases per bin: bin k holds the phases (wrapped into [0, 2π)) in
    #: [k·2π/B, (k+1)·2π/B), for the server's B bins (``PCC_SUMMARY_BINS``).
    histogram: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "histogram", tuple(self.histogram))


@dataclass(frozen=True)
class Range:
    """Least, greatest and mean value of one summary quantity over an
    :class:`Envelope`'s states (32-bit floats, as in :class:`Summary`)."""

    min: float
    max: float
    mean: float


@dataclass(frozen=True)
class Envelope:
    """The range of each :class:`Summary` quantity over every state since the
    subscriber's previous frame, this frame's included: what a ``max_hz`` subscriber
    taking ``summary`` gets, so that a spike between two frames still shows.
    """

    #: How many states it covers (fewer than the seqs between two frames after a
    #: stall longer than the server's history).
    states: int
    r: Range
    psi: Range
    magnetization: Range
    energy: Range


@dataclass(frozen=True)
class Full:
    """A full frame: the whole state with seq ``seq``.

    With ``?fields=`` the state is the projected one (see :func:`project`). A frame
    without a body (a subscription taking neither phases nor spins) is a ``Full`` of
    a state with no phases and no spins, marked ``standalone``: it has no epoch,
    nothing resumes from it and no delta follows it.
    """

    seq: int
    state: State
    #: The stream's epoch, when the server sent one (``Frame.epoch``, JSON ``"epoch"``).
    epoch: str | None = None
    #: The state's summary, when the subscription takes ``summary``.
    summary: Summary | None = None
    #: The envelope since the previous frame (with ``max_hz`` and ``summary``).
    envelope: Envelope | None = None
    #: Whether the frame had no body: it stands alone (no epoch, never a delta base).
    standalone: bool = False


@dataclass(frozen=True)
class Delta:
    """A delta frame: the changes that turn the state with seq ``base_seq`` into ``seq``.

    Protobuf deltas use ``steps``, ``values`` and ``flips``; JSON deltas use ``values``
    and ``spin_values``. Every index list is ascending. With ``?fields=`` the base, the
    result and the checksum are projected states (see :func:`project`).
    """

    seq: int
    base_seq: int
    step: int
    energy: float
    timestamp: float | None
    #: Checksum (:func:`checksum`) of the state this delta produces.
    checksum: int
    #: One quantum of ``steps`` is ``2**quantum_exp`` radians.
    quantum_exp: int = 0
    #: ``(index, quanta)``: add ``quanta * 2**quantum_exp`` to that phase.
    steps: Sequence[tuple[int, int]] = ()
    #: ``(index, value)``: the phase's new value.
    values: Sequence[tuple[int, float]] = ()
    #: Indices of the spins that changed sign.
    flips: Sequence[int] = ()
    #: ``(index, spin)``: the spin's new value (JSON deltas).
    spin_values: Sequence[tuple[int, int]] = ()
    #: The new state's summary, when the subscription takes ``summary``.
    summary: Summary | None = None
    #: The envelope since the previous frame (with ``max_hz`` and ``summary``).
    envelope: Envelope | None = None


#: A decoded frame.
Frame = Union[Full, Delta]


class DeltaError(ValueError):
    """A delta could not be applied to the state held: drop the state and resync."""


class IndexOutOfRange(DeltaError):
    """The delta names a phase or spin the state does not have."""

    def __init__(self, what: str, index: int, length: int) -> None:
        super().__init__(f"delta changes {what}[{index}], but the state holds {length}")
        self.what = what
        self.index = index
        self.length = length


class ChecksumMismatch(DeltaError):
    """After applying the delta the state's checksum is not the one announced."""

    def __init__(self, seq: int, expected: int, actual: int) -> None:
        super().__init__(
            f"checksum mismatch after applying delta to seq {seq}: "
            f"expected {expected:016x}, got {actual:016x}"
        )
        self.seq = seq
        self.expected = expected
        self.actual = actual


def apply_delta(state: State, delta: Delta) -> State:
    """Applies ``delta`` to ``state`` and verifies the result against its checksum.

    Returns a new state; ``state`` is not changed. The caller checks that
    ``delta.base_seq`` is the seq of ``state`` before calling. A state holding numpy
    arrays gives one holding (read-only) numpy arrays, with the same bits as the list
    arithmetic.

    :raises IndexOutOfRange: the delta names an index the state does not have.
    :raises ChecksumMismatch: the result is not the state the server meant.
    """
    if is_ndarray(state.phases):
        return _apply_delta_numpy(state, delta)
    phases = list(state.phases)
    spins = list(state.spins)
    if delta.steps:
        # One IEEE-754 multiplication (exact: a power of two) and one addition,
        # rounded to nearest, exactly as every other implementation does it.
        quantum = math.ldexp(1.0, delta.quantum_exp)
        for index, quanta in delta.steps:
            _check_index("phases", index, len(phases))
            phases[index] = phases[index] + float(quanta) * quantum
    for index, value in delta.values:
        _check_index("phases", index, len(phases))
        phases[index] = value
    for index in delta.flips:
        _check_index("spins", index, len(spins))
        spins[index] = -spins[index]
    for index, spin in delta.spin_values:
        _check_index("spins", index, len(spins))
        spins[index] = spin
    result = State(delta.step, phases, spins, delta.energy, delta.timestamp)
    actual = checksum(result)
    if actual != delta.checksum:
        raise ChecksumMismatch(delta.seq, delta.checksum, actual)
    return result


def _apply_delta_numpy(state: State, delta: Delta) -> State:
    """:func:`apply_delta` on arrays: the same operations, vectorised.

    Indices within one list are strictly increasing (gaps) or unique (JSON keys), so
    a fancy-indexed assignment does what the loop over them does.
    """
    np = sys.modules["numpy"]
    phases = np.array(state.phases, dtype=np.float64)  # a writable copy
    spins = np.array(state.spins, dtype=np.int8)
    if delta.steps:
        index = _indices(np, "phases", [i for i, _ in delta.steps], len(phases))
        quanta = np.array([q for _, q in delta.steps], dtype=np.float64)
        # float64 multiplication by an exact power of two, then one rounded addition.
        phases[index] = phases[index] + quanta * math.ldexp(1.0, delta.quantum_exp)
    if delta.values:
        index = _indices(np, "phases", [i for i, _ in delta.values], len(phases))
        phases[index] = np.array([v for _, v in delta.values], dtype=np.float64)
    if delta.flips:
        index = _indices(np, "spins", list(delta.flips), len(spins))
        spins[index] = -spins[index]
    if delta.spin_values:
        index = _indices(np, "spins", [i for i, _ in delta.spin_values], len(spins))
        spins[index] = np.array([s for _, s in delta.spin_values], dtype=np.int8)
    phases.flags.writeable = False
    spins.flags.writeable = False
    result = State(delta.step, phases, spins, delta.energy, delta.timestamp)
    actual = checksum(result)
    if actual != delta.checksum:
        raise ChecksumMismatch(delta.seq, delta.checksum, actual)
    return result


def _indices(np: Any, what: str, indices: list[int], length: int) -> Any:
    for index in (min(indices), max(indices)):
        _check_index(what, index, length)
    return np.array(indices, dtype=np.intp)


def _check_index(what: str, index: int, length: int) -> None:
    if not 0 <= index < length:
        raise IndexOutOfRange(what, index, length)


_MASK = (1 << 64) - 1
_SEED = 0x243F6A8885A308D3
_MULTIPLIER = 0x9E3779B97F4A7C15


def checksum(state: State) -> int:
    """The 64-bit checksum of a state, as carried by every delta frame.

    Mixes 64-bit words, starting from ``0x243F6A8885A308D3``, each as
    ``h = (h ^ w) * 0x9E3779B97F4A7C15; h ^= h >> 29`` (modulo 2**64): the step, the
    number of phases, each phase's IEEE-754 bits, the number of spins, the spins 64
    to a word (bit j set when spin 64*g + j is +1), and the energy's bits. The
    timestamp is not covered.

    >>> f"{checksum(State(42, [0.0, 1.5, -3.25], [1, -1, 1], -2.0)):016x}"
    'a4ed18b14dd21c0c'
    """
    words: list[int] = [state.step & _MASK, len(state.phases)]
    words.extend(_double_bits(state.phases))
    spins = state.spins
    words.append(len(spins))
    words.extend(_spin_words(spins))
    words.append(struct.unpack("<Q", struct.pack("<d", state.energy))[0])

    h = _SEED
    multiplier, mask = _MULTIPLIER, _MASK  # locals: this loop is the hot spot
    for w in words:
        h = ((h ^ w) * multiplier) & mask
        h ^= h >> 29
    return h


def _double_bits(values: Any) -> Any:
    """The IEEE-754 bits of each value, as unsigned 64-bit integers."""
    if is_ndarray(values):
        np = sys.modules["numpy"]
        return np.ascontiguousarray(values, dtype="<f8").view("<u8").tolist()
    bits = array("Q")
    if bits.itemsize != 8:  # pragma: no cover - no mainstream platform
        return array("Q", (struct.unpack("<Q", struct.pack("<d", v))[0] for v in values))
    bits.frombytes(array("d", values).tobytes())
    return bits


def _spin_words(spins: Any) -> list[int]:
    """The spins 64 to a word, bit j of word g set when spin 64*g + j is +1."""
    if is_ndarray(spins):
        np = sys.modules["numpy"]
        packed = np.packbits(np.asarray(spins) > 0, bitorder="little").tobytes()
        return [int.from_bytes(packed[i : i + 8], "little") for i in range(0, len(packed), 8)]
    words = []
    for start in range(0, len(spins), 64):
        word = 0
        for bit, spin in enumerate(spins[start : start + 64]):
            if spin > 0:
                word |= 1 << bit
        words.append(word)
    return words


def same_bits(a: State, b: State) -> bool:
    """Whether two states are equal bit for bit (``==`` treats 0.0 and -0.0 as equal).

    Lists and numpy arrays compare by value: a list state and an array state with the
    same bits are the same.
    """
    timestamps = [t for t in (a.timestamp, b.timestamp) if t is not None]
    timestamps_equal = len(timestamps) != 1 and (
        not timestamps or _bits(timestamps[:1]) == _bits(timestamps[1:])
    )
    return (
        a.step == b.step
        and _as_list(a.spins) == _as_list(b.spins)
        and _bits(a.phases) == _bits(b.phases)
        and _bits([a.energy]) == _bits([b.energy])
        and timestamps_equal
    )


def _bits(values: Any) -> bytes:
    if is_ndarray(values):
        np = sys.modules["numpy"]
        return bytes(np.ascontiguousarray(values, dtype="<f8").tobytes())
    doubles = array("d", values)
    if sys.byteorder == "big":  # pragma: no cover - compare little-endian bytes
        doubles.byteswap()
    return doubles.tobytes()
