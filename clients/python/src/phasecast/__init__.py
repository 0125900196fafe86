"""Python client for phasecast: subscribe to PCC state streams and publish states.

Subscribing (asyncio; :class:`SyncSubscriber` is the same without an event loop)::

    async with Subscriber("ws://127.0.0.1:8787/ws") as sub:
        async for update in sub:
            print(update.seq, update.kind, update.step, update.energy)

Taking only some parts of each state, with the server's summary of it
(``fields=``; ``epsilon=`` picks a precision class)::

    async with Subscriber("ws://127.0.0.1:8787/ws", fields=["summary"], max_hz=10) as sub:
        async for update in sub:
            print(update.seq, update.summary.r, update.envelope.energy.max)

Publishing (:class:`SyncProducer` for blocking code)::

    async with Producer("http://127.0.0.1:8787", key="...") as producer:
        await producer.publish(State(step=1, phases=[0.1, 0.2], spins=[1, -1], energy=-0.5))

The behaviour (retries, errors, events, stats) follows the server's
``docs/clients.md``; the wire protocol is its ``docs/protocol.md``. Logs go to the
``phasecast`` logger: failed tries and reconnects at WARNING (shown by Python's
default handler when the application set up no logging), connects at INFO, frames at
DEBUG.
"""

from ._core import Backoff, ConnectionState, Event, Stats, Update
from .client import Subscriber
from .codec import DecodeError, decode_frame, encode_state, resync_message
from .errors import (
    ConnectError,
    IngestRejected,
    PhasecastError,
    PublishError,
    SubscriptionRefused,
)
from .model import (
    FIELDS,
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
    project,
)
from .producer import (
    IngestStream,
    Producer,
    ProducerStats,
    PublishResult,
    SyncIngestStream,
    SyncProducer,
)
from .sync import SyncSubscriber

__version__ = "0.2.0"

# No NullHandler: an application that configures no logging still sees the WARNING
# records (a wrong port, a server that went away) on stderr, through Python's
# last-resort handler, instead of a client that retries in silence.

__all__ = [
    "Backoff",
    "ChecksumMismatch",
    "ConnectError",
    "ConnectionState",
    "DecodeError",
    "Delta",
    "DeltaError",
    "Envelope",
    "Event",
    "FIELDS",
    "Frame",
    "Full",
    "IndexOutOfRange",
    "IngestRejected",
    "IngestStream",
    "PhasecastError",
    "Producer",
    "ProducerStats",
    "PublishError",
    "PublishResult",
    "Range",
    "State",
    "Stats",
    "Subscriber",
    "SubscriptionRefused",
    "Summary",
    "SyncIngestStream",
    "SyncProducer",
    "SyncSubscriber",
    "Update",
    "__version__",
    "apply_delta",
    "checksum",
    "decode_frame",
    "encode_state",
    "project",
    "resync_message",
]
