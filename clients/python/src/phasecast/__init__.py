"""Python client for phasecast: subscribe to PCC state streams and publish states.

Subscribing::

    async with Subscriber("ws://127.0.0.1:8080/ws", format="protobuf") as sub:
        async for state in sub:
            print(sub.seq, state.step, state.energy)

Publishing::

    producer = Producer("http://127.0.0.1:8080", key="...")
    await producer.publish(State(step=1, phases=[0.1, 0.2], spins=[1, -1], energy=-0.5))

The wire protocol is described in the server's ``docs/protocol.md``.
"""

import logging as _logging

from .client import Backoff, Event, Subscriber, SubscriptionRefused
from .codec import DecodeError, decode_frame, encode_state, resync_message
from .model import (
    ChecksumMismatch,
    Delta,
    DeltaError,
    Frame,
    Full,
    IndexOutOfRange,
    State,
    apply_delta,
    checksum,
)
from .producer import IngestRejected, IngestStream, Producer, PublishError, PublishResult

__version__ = "0.1.0"

# A library logs to "phasecast" and leaves output to the application's logging setup.
_logging.getLogger("phasecast").addHandler(_logging.NullHandler())

__all__ = [
    "Backoff",
    "ChecksumMismatch",
    "DecodeError",
    "Delta",
    "DeltaError",
    "Event",
    "Frame",
    "Full",
    "IndexOutOfRange",
    "IngestRejected",
    "IngestStream",
    "Producer",
    "PublishError",
    "PublishResult",
    "State",
    "Subscriber",
    "SubscriptionRefused",
    "__version__",
    "apply_delta",
    "checksum",
    "decode_frame",
    "encode_state",
    "resync_message",
]
