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
    __slots__ = ("seq", "step", "energy", "timestamp", "full", "delta", "epoch")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    step: int
    energy: float
    timestamp: float
    full: FullState
    delta: DeltaState
    epoch: str
    def __init__(self, seq: _Optional[int] = ..., step: _Optional[int] = ..., energy: _Optional[float] = ..., timestamp: _Optional[float] = ..., full: _Optional[_Union[FullState, _Mapping]] = ..., delta: _Optional[_Union[DeltaState, _Mapping]] = ..., epoch: _Optional[str] = ...) -> None: ...

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
