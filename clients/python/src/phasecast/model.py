"""The state a subscriber holds, the frames that change it, and how a delta is applied.

Pure data and arithmetic, no I/O and no wire format: :mod:`phasecast.codec` turns
bytes into these types. The rules are those of ``docs/protocol.md`` ("Applying a
delta", "Checksum"); ``src/delta.rs`` on the server is the reference.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

__all__ = [
    "ChecksumMismatch",
    "Delta",
    "DeltaError",
    "Frame",
    "Full",
    "IndexOutOfRange",
    "State",
    "apply_delta",
    "checksum",
    "same_bits",
]


@dataclass
class State:
    """One state of the phase-coupled computation (PCC).

    The library never changes a ``State`` it has handed out: applying a delta makes a
    new one. Treat the states you receive as read-only.
    """

    #: The producer's step counter.
    step: int
    #: Oscillator phases in radians.
    phases: list[float]
    #: Spins, each ``1`` or ``-1``: none, or one per phase.
    spins: list[int]
    #: Energy of the state.
    energy: float
    #: The producer's clock (seconds since the Unix epoch), when it sent one.
    timestamp: float | None = None

    def copy(self) -> State:
        """A copy whose lists can be changed without touching this state."""
        return State(self.step, list(self.phases), list(self.spins), self.energy, self.timestamp)


@dataclass(frozen=True)
class Full:
    """A full frame: the whole state with seq ``seq``."""

    seq: int
    state: State


@dataclass(frozen=True)
class Delta:
    """A delta frame: the changes that turn the state with seq ``base_seq`` into ``seq``.

    Protobuf deltas use ``steps``, ``values`` and ``flips``; JSON deltas use ``values``
    and ``spin_values``. Every index list is ascending.
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
    ``delta.base_seq`` is the seq of ``state`` before calling.

    :raises IndexOutOfRange: the delta names an index the state does not have.
    :raises ChecksumMismatch: the result is not the state the server meant.
    """
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
    for start in range(0, len(spins), 64):
        word = 0
        for bit, spin in enumerate(spins[start : start + 64]):
            if spin > 0:
                word |= 1 << bit
        words.append(word)
    words.append(struct.unpack("<Q", struct.pack("<d", state.energy))[0])

    h = _SEED
    for w in words:
        h = ((h ^ w) * _MULTIPLIER) & _MASK
        h ^= h >> 29
    return h


def _double_bits(values: Sequence[float]) -> array:  # type: ignore[type-arg]
    """The IEEE-754 bits of each value, as unsigned 64-bit integers."""
    bits = array("Q")
    if bits.itemsize != 8:  # pragma: no cover - no mainstream platform
        return array("Q", (struct.unpack("<Q", struct.pack("<d", v))[0] for v in values))
    bits.frombytes(array("d", values).tobytes())
    return bits


def same_bits(a: State, b: State) -> bool:
    """Whether two states are equal bit for bit (``==`` treats 0.0 and -0.0 as equal)."""
    timestamps = [t for t in (a.timestamp, b.timestamp) if t is not None]
    timestamps_equal = len(timestamps) != 1 and (
        not timestamps or _bits(timestamps[:1]) == _bits(timestamps[1:])
    )
    return (
        a.step == b.step
        and a.spins == b.spins
        and _bits(a.phases) == _bits(b.phases)
        and _bits([a.energy]) == _bits([b.energy])
        and timestamps_equal
    )


def _bits(values: Sequence[float]) -> bytes:
    return array("d", values).tobytes()
