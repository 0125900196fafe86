from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PccState(_message.Message):
    __slots__ = ("step", "phases", "spins", "energy", "timestamp")
    STEP_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    SPINS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    step: int
    phases: _containers.RepeatedScalarFieldContainer[float]
    spins: _containers.RepeatedScalarFieldContainer[int]
    energy: float
    timestamp: float
    def __init__(self, step: _Optional[int] = ..., phases: _Optional[_Iterable[float]] = ..., spins: _Optional[_Iterable[int]] = ..., energy: _Optional[float] = ..., timestamp: _Optional[float] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "step", "energy", "timestamp", "full", "delta", "epoch", "summary", "envelope")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    step: int
    energy: float
    timestamp: float
    full: FullState
    delta: DeltaState
    epoch: str
    summary: Summary
    envelope: Envelope
    def __init__(self, seq: _Optional[int] = ..., step: _Optional[int] = ..., energy: _Optional[float] = ..., timestamp: _Optional[float] = ..., full: _Optional[_Union[FullState, _Mapping]] = ..., delta: _Optional[_Union[DeltaState, _Mapping]] = ..., epoch: _Optional[str] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., envelope: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("r", "psi", "magnetization", "energy", "histogram")
    R_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    MAGNETIZATION_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    r: float
    psi: float
    magnetization: float
    energy: float
    histogram: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, r: _Optional[float] = ..., psi: _Optional[float] = ..., magnetization: _Optional[float] = ..., energy: _Optional[float] = ..., histogram: _Optional[_Iterable[int]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("states", "r", "psi", "magnetization", "energy")
    STATES_FIELD_NUMBER: _ClassVar[int]
    R_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    MAGNETIZATION_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    states: int
    r: Range
    psi: Range
    magnetization: Range
    energy: Range
    def __init__(self, states: _Optional[int] = ..., r: _Optional[_Union[Range, _Mapping]] = ..., psi: _Optional[_Union[Range, _Mapping]] = ..., magnetization: _Optional[_Union[Range, _Mapping]] = ..., energy: _Optional[_Union[Range, _Mapping]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("min", "max", "mean")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    mean: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ...) -> None: ...

class FullState(_message.Message):
    __slots__ = ("phases", "spin_count", "spin_bits")
    PHASES_FIELD_NUMBER: _ClassVar[int]
    SPIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPIN_BITS_FIELD_NUMBER: _ClassVar[int]
    phases: _containers.RepeatedScalarFieldContainer[float]
    spin_count: int
    spin_bits: bytes
    def __init__(self, phases: _Optional[_Iterable[float]] = ..., spin_count: _Optional[int] = ..., spin_bits: _Optional[bytes] = ...) -> None: ...

class DeltaState(_message.Message):
    __slots__ = ("skipped", "checksum", "quantum_exp", "step_gaps", "steps", "value_gaps", "values", "flip_gaps", "flip_bits")
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    QUANTUM_EXP_FIELD_NUMBER: _ClassVar[int]
    STEP_GAPS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUE_GAPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FLIP_GAPS_FIELD_NUMBER: _ClassVar[int]
    FLIP_BITS_FIELD_NUMBER: _ClassVar[int]
    skipped: int
    checksum: int
    quantum_exp: int
    step_gaps: _containers.RepeatedScalarFieldContainer[int]
    steps: _containers.RepeatedScalarFieldContainer[int]
    value_gaps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    flip_gaps: _containers.RepeatedScalarFieldContainer[int]
    flip_bits: bytes
    def __init__(self, skipped: _Optional[int] = ..., checksum: _Optional[int] = ..., quantum_exp: _Optional[int] = ..., step_gaps: _Optional[_Iterable[int]] = ..., steps: _Optional[_Iterable[int]] = ..., value_gaps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., flip_gaps: _Optional[_Iterable[int]] = ..., flip_bits: _Optional[bytes] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("resync",)
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    resync: Resync
    def __init__(self, resync: _Optional[_Union[Resync, _Mapping]] = ...) -> None: ...

class Resync(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
