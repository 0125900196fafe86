"""What the asyncio and the blocking subscriber share: everything but the I/O.

docs/clients.md is the contract this implements: the URL and its parameters, the
key header, the connection states and their events, which outcomes are permanent
and which are retried (and how long to wait), what each yielded state says, the
stats, and the log levels. :class:`phasecast.Subscriber` (asyncio) and
:class:`phasecast.SyncSubscriber` (blocking) only open sockets, wait and read.
"""

from __future__ import annotations

import copy
import enum
import logging
import math
import numbers
import random
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Union
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from . import _np, _ws
from .codec import DecodeError, decode_frame, normalize_format, resync_message
from .errors import ConnectError, PhasecastError, SubscriptionRefused
from .model import DeltaError, Envelope, Full, State, Summary, apply_delta, normalize_fields

logger = logging.getLogger("phasecast")

#: Close codes after which reconnecting would not help (docs/clients.md).
PERMANENT_CLOSE_CODES = frozenset({1002, 1003, 1007, 1009, 1010})
#: HTTP answers to the upgrade that are permanent, with the server's reason.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})
#: Parameters the client sets itself from the state it holds.
OWN_PARAMETERS = ("resume", "epoch")


class ConnectionState(str, enum.Enum):
    """Where a subscriber is: ``connecting`` → ``connected`` → (``reconnecting`` →
    ``connected``)* → ``closed``. Compares equal to its name (``== "connected"``)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Event:
    """Something that happened to a subscription, for logs and monitoring.

    ``kind`` is a connection state (``"connecting"``, ``"connected"``,
    ``"reconnecting"``, ``"closed"``: a transition to it), ``"connect_failed"`` (one
    try failed and will be retried after ``delay`` seconds) or ``"resync"`` (the state
    was dropped and a full frame asked for). The other fields say why, when they apply.
    """

    kind: str
    detail: str
    #: Seq of the state held when it happened, if any.
    seq: int | None = None
    #: The connection state after the event.
    connection: ConnectionState | None = None
    #: The URL of the connection concerned.
    url: str | None = None
    #: The exception behind it (a refused connection, a timeout, a close...).
    exception: BaseException | None = None
    #: HTTP status of an answer to the upgrade.
    status: int | None = None
    #: The server's reason (``error`` of its JSON answer).
    error: str | None = None
    #: The field or parameter the server names.
    field: str | None = None
    #: WebSocket close code (None when the connection ended without one).
    code: int | None = None
    #: WebSocket close reason.
    reason: str | None = None
    #: Which try this was, counting from 1, for ``connect_failed``.
    attempt: int | None = None
    #: Seconds until the next try, for ``connect_failed`` and ``reconnecting``.
    delay: float | None = None

    def __str__(self) -> str:
        held = "" if self.seq is None else f" (holding seq {self.seq})"
        return f"{self.kind}: {self.detail}{held}"


@dataclass
class Stats:
    """What a subscriber counted since it was made."""

    #: Frames received (every WebSocket message, used or not).
    frames: int = 0
    #: Bytes of those frames.
    bytes: int = 0
    #: Full frames among them (frames without a body included).
    full_frames: int = 0
    #: Delta frames among them.
    delta_frames: int = 0
    #: Full frames asked for (``{"op":"resync"}`` sent).
    resyncs: int = 0
    #: Connections opened after the first (a lost connection made again).
    reconnects: int = 0
    #: Connections opened.
    connections: int = 0


@dataclass(frozen=True)
class Update:
    """One verified state, as a subscriber yields it, and where it came from.

    ``seq`` is its place in the stream, ``kind`` is ``"full"`` or ``"delta"`` (the
    frame that brought it), ``epoch`` the stream's epoch from the latest full frame
    (None while the server sends none). The state's fields are readable here too:
    ``update.step``, ``update.phases``... Read-only: :meth:`copy` gives a state you
    may change.

    With ``fields=`` the state is the projected one (the parts not taken are empty,
    0.0 or None). ``summary`` and ``envelope`` are what the frame carried (with
    ``fields`` taking ``summary``; the envelope also needs ``max_hz``), else None.
    ``standalone`` marks a state from a frame without a body (``fields`` with
    neither phases nor spins): a ``"full"`` update of no phases and no spins that
    nothing resumes from.
    """

    seq: int
    kind: str
    epoch: str | None
    state: State = field(repr=False)
    #: The state's summary, computed by the server (``fields`` taking ``summary``).
    summary: Summary | None = None
    #: The range of each summary quantity since the previous frame (``max_hz`` and
    #: ``summary``).
    envelope: Envelope | None = None
    #: Whether the frame had no body (no epoch; never resumed from).
    standalone: bool = False

    @property
    def is_full(self) -> bool:
        """Whether a full frame brought this state."""
        return self.kind == "full"

    @property
    def is_delta(self) -> bool:
        """Whether a delta frame brought this state."""
        return self.kind == "delta"

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def phases(self) -> Any:
        """The phases: a list, or a read-only float64 array with ``numpy=True``."""
        return self.state.phases

    @property
    def spins(self) -> Any:
        """The spins: a list, or a read-only int8 array with ``numpy=True``."""
        return self.state.spins

    @property
    def energy(self) -> float:
        return self.state.energy

    @property
    def timestamp(self) -> float | None:
        return self.state.timestamp

    def copy(self) -> State:
        """A copy of the state whose lists (or arrays) you may change."""
        return self.state.copy()


class Backoff:
    """Capped exponential back-off with jitter (docs/clients.md, "Back-off").

    Try *n* (counting from 0) waits ``min(maximum, initial * factor**n)`` times
    ``1 - jitter + jitter * random()``: with the defaults, between 0.125 and 0.25 s
    first, at most 10 s. The jitter keeps clients cut off together from coming back
    together. :meth:`reset` starts again from ``initial``.
    """

    def __init__(
        self,
        initial: float = 0.25,
        maximum: float = 10.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= maximum or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call makes the following one longer."""
        delay = self.initial
        for _ in range(self._attempts):
            delay *= self.factor
            if delay >= self.maximum:
                break
        delay = min(delay, self.maximum)
        self._attempts += 1
        return delay * (1.0 - self.jitter + self.jitter * self._rng.random())

    def reset(self) -> None:
        """Back to the initial delay (after a connection that delivered a frame)."""
        self._attempts = 0


EventCallback = Callable[[Event], None]
Message = Union[str, bytes]


class SubscriberBase:
    """The I/O-free part of a subscriber; see :class:`phasecast.Subscriber`."""

    def __init__(
        self,
        url: str,
        format: str | None = None,
        delta: bool | None = None,
        max_hz: float | None = None,
        stream: str | None = None,
        key: str | None = None,
        *,
        epsilon: float | None = None,
        fields: str | Iterable[str] | None = None,
        numpy: bool = False,
        headers: Mapping[str, str] | None = None,
        on_event: EventCallback | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        first_connect_tries: int = 5,
        connect_timeout: float | None = 4.0,
        max_reconnects: int | None = None,
        max_message_bytes: int | None = 16 * 1024 * 1024,
    ) -> None:
        if first_connect_tries < 1:
            raise ValueError("first_connect_tries must be at least 1")
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError("max_reconnects must be None (no limit) or >= 0")
        if numpy:
            _np.require()
        self._numpy = numpy
        self._key = key
        self._extra_headers = dict(headers or {})
        self._on_event = on_event
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._first_connect_tries = first_connect_tries
        self._connect_timeout = connect_timeout
        self._max_reconnects = max_reconnects
        self._max_message_bytes = max_message_bytes
        self._parse_url(
            url,
            format=format,
            delta=delta,
            max_hz=max_hz,
            stream=stream,
            epsilon=None if epsilon is None else check_epsilon(epsilon),
            fields=None if fields is None else normalize_fields(fields),
        )

        self._state: State | None = None
        self._seq: int | None = None
        self._epoch: str | None = None
        self._standalone = False  # the state held came from a frame without a body
        self._summary: Summary | None = None
        self._envelope: Envelope | None = None
        self._connection = ConnectionState.CONNECTING
        self._started = False  # the "connecting" event was sent
        self._ever_connected = False
        self._closed = False
        self._tries = 0  # failed tries since the last connection opened
        self._without_frame = 0  # tries and connections since the last frame
        self._framed = False  # the current connection delivered a frame
        self._resync_pending = False  # sent on this connection, no full frame yet
        self._stats = Stats()
        #: Close code of the last connection the server closed (None: no close frame).
        self.close_code: int | None = None

    # --- URL and headers ---------------------------------------------------------------

    def _parse_url(
        self,
        url: str,
        *,
        format: str | None,
        delta: bool | None,
        max_hz: float | None,
        stream: str | None,
        epsilon: float | None,
        fields: tuple[str, ...] | None,
    ) -> None:
        parts = urlsplit(url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
        if scheme not in ("ws", "wss"):
            raise ValueError(f"{url!r}: a subscriber URL starts with ws:// or wss://")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        path = parts.path if parts.path not in ("", "/") else "/ws"
        explicit: dict[str, str] = {}
        if format is not None:
            explicit["format"] = normalize_format(format)
        if delta is not None:
            explicit["delta"] = "true" if delta else "false"
        if max_hz is not None:
            explicit["max_hz"] = _number_text(max_hz)
        if epsilon is not None:
            explicit["epsilon"] = _number_text(epsilon)
        if fields is not None:
            explicit["fields"] = ",".join(fields)
        if stream is not None:
            explicit["stream"] = stream
        replaced = set(explicit)
        if self._key is not None:
            replaced.add("key")  # the key goes in the header instead

        query: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in OWN_PARAMETERS:
                logger.warning(
                    "phasecast: ignoring %s=%s in the URL: the subscriber sets %s itself "
                    "from the state it holds",
                    name,
                    value,
                    name,
                )
                continue
            if name in replaced:
                if name in explicit:
                    query.append((name, explicit.pop(name)))
                continue
            query.append((name, value))
        query.extend(explicit.items())
        formats = [v for k, v in query if k == "format"]
        if formats:
            self._format = normalize_format(formats[-1])
        else:
            self._format = "json"
            query.append(("format", "json"))
        self._base = (scheme, parts.netloc, path)
        self._query = query

    def connection_url(self) -> str:
        """The URL of the next connection: the URL's and the options' parameters
        (``epsilon`` and ``fields`` on every connection, as resuming needs), and
        ``resume=SEQ&epoch=EPOCH`` from the state held (epoch only when known; no
        resume from a frame without a body, which stands alone)."""
        query = list(self._query)
        if self._state is not None and self._seq is not None and not self._standalone:
            query.append(("resume", str(self._seq)))
            if self._epoch:
                query.append(("epoch", self._epoch))
        scheme, netloc, path = self._base
        return urlunsplit((scheme, netloc, path, urlencode(query, quote_via=quote), ""))

    def _headers(self) -> dict[str, str]:
        headers = dict(self._extra_headers)
        if self._key is not None:
            headers["X-API-Key"] = self._key
        return headers

    # --- what the subscriber holds -----------------------------------------------------

    @property
    def state(self) -> State | None:
        """The verified state held, or None before the first full frame / after a drop.

        With ``fields=`` it is the projected state (see :func:`phasecast.project`)."""
        return self._state

    @property
    def summary(self) -> Summary | None:
        """The summary of :attr:`state` (with ``fields`` taking ``summary``), else None."""
        return self._summary

    @property
    def envelope(self) -> Envelope | None:
        """The envelope the frame of :attr:`state` carried (``max_hz`` and ``summary``)."""
        return self._envelope

    @property
    def seq(self) -> int | None:
        """The seq of :attr:`state`, or None when no state is held."""
        return self._seq

    @property
    def epoch(self) -> str | None:
        """The stream's epoch from the latest full frame (None: the server sent none)."""
        return self._epoch

    @property
    def format(self) -> str:
        """The encoding: ``"json"`` or ``"protobuf"``."""
        return self._format

    @property
    def connection_state(self) -> ConnectionState:
        """``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self._connection

    @property
    def closed(self) -> bool:
        """Whether the subscriber is closed (by :meth:`close` or a permanent error)."""
        return self._closed

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters: frames, bytes, full and delta frames, resyncs,
        reconnects, connections."""
        return copy.copy(self._stats)

    @property
    def resyncs(self) -> int:
        """How many times a full frame was asked for (``stats.resyncs``)."""
        return self._stats.resyncs

    @property
    def connections(self) -> int:
        """How many connections were opened (``stats.connections``)."""
        return self._stats.connections

    # --- events ------------------------------------------------------------------------

    def _emit(self, kind: str, detail: str, level: int, **fields: Any) -> None:
        event = Event(kind, detail, self._seq, self._connection, **fields)
        logger.log(level, "phasecast: %s", event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken callback must not break the subscription
                logger.exception("phasecast: on_event raised")

    def _begin(self) -> None:
        """Called before each try: the first one announces ``connecting``."""
        if not self._started:
            self._started = True
            self._emit("connecting", self.connection_url(), logging.INFO, url=self.connection_url())

    def _set_closed(self, detail: str, level: int = logging.INFO, **fields: Any) -> bool:
        """Moves to ``closed`` (once); False when it already was."""
        if self._connection is ConnectionState.CLOSED:
            self._closed = True
            return False
        self._closed = True
        self._connection = ConnectionState.CLOSED
        self._emit("closed", detail, level, **fields)
        return True

    # --- connecting --------------------------------------------------------------------

    def _connect_failed(self, err: BaseException, url: str) -> float:
        """A try failed. Raises when that is final; else returns the delay before the
        next try."""
        refusal = _ws.refusal(err)
        permanent = self._permanent(err, refusal, url)
        fields: dict[str, Any] = {"url": url, "exception": err}
        if refusal is not None:
            fields.update(status=refusal.status, error=refusal.error, field=refusal.field)
        if permanent is not None:
            self._set_closed(str(permanent), logging.INFO, **fields)
            raise permanent from err

        self._tries += 1
        self._without_frame += 1
        detail = f"{url}: {self._describe(err)}"
        first = not self._ever_connected
        if first and self._tries >= self._first_connect_tries:
            self._give_up(err, url, detail, refusal, fields, f"after {self._tries} tries")
        if not first and self._max_reconnects is not None:
            if self._without_frame >= self._max_reconnects:
                self._give_up(
                    err, url, detail, refusal, fields, f"after {self._without_frame} reconnects"
                )
        delay = self._backoff.next_delay()
        if refusal is not None and refusal.retry_after is not None:
            delay = max(delay, refusal.retry_after)
        self._emit(
            "connect_failed",
            f"{detail}; next try in {delay:.3f} s",
            logging.WARNING,
            attempt=self._tries,
            delay=delay,
            **fields,
        )
        return delay

    def _give_up(
        self,
        err: BaseException,
        url: str,
        detail: str,
        refusal: _ws.Refusal | None,
        fields: dict[str, Any],
        when: str,
    ) -> None:
        error = ConnectError(
            f"cannot connect to {url} {when}: {self._describe(err)}",
            url=url,
            tries=self._tries,
            status=None if refusal is None else refusal.status,
            error=None if refusal is None else refusal.error,
        )
        self._set_closed(str(error), logging.INFO, attempt=self._tries, **fields)
        raise error from err

    def _permanent(
        self, err: BaseException, refusal: _ws.Refusal | None, url: str
    ) -> PhasecastError | None:
        """The exception to raise when ``err`` is permanent, else None."""
        if refusal is not None:
            status = refusal.status
            if status in PERMANENT_STATUSES:
                reason = f": {refusal.error}" if refusal.error else ""
                where = f" (field {refusal.field})" if refusal.field else ""
                return SubscriptionRefused(
                    f"{url} refused the subscription: HTTP {status}{reason}{where}",
                    status=status,
                    error=refusal.error,
                    field=refusal.field,
                    url=url,
                    body=refusal.body,
                )
            if status == 429 or 500 <= status <= 599:
                return None
            kind = f", {refusal.content_type}" if refusal.content_type else ""
            return SubscriptionRefused(
                f"not a phasecast WebSocket endpoint: {url} answered HTTP {status}{kind} "
                "instead of upgrading to a WebSocket (the subscriber URL is "
                "ws://HOST:PORT/ws)",
                status=status,
                error=refusal.error,
                field=refusal.field,
                url=url,
                body=refusal.body,
            )
        if isinstance(err, ssl.SSLCertVerificationError):
            return SubscriptionRefused(f"{url}: TLS certificate rejected: {err}", url=url)
        return None

    def _describe(self, err: BaseException) -> str:
        refusal = _ws.refusal(err)
        if refusal is not None:
            reason = f": {refusal.error}" if refusal.error else ""
            return f"HTTP {refusal.status}{reason}"
        if isinstance(err, TimeoutError) or type(err).__name__ == "TimeoutError":
            if self._connect_timeout is None:
                return "timed out"
            return f"no connection and handshake within {self._connect_timeout:g} s"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        return str(err) or type(err).__name__

    def _connected(self, url: str) -> None:
        """A connection is open."""
        self._stats.connections += 1
        if self._ever_connected:
            self._stats.reconnects += 1
        self._ever_connected = True
        self._tries = 0
        self._framed = False
        self._resync_pending = False
        self._connection = ConnectionState.CONNECTED
        self._emit("connected", url, logging.INFO, url=url)

    def _connection_lost(self, closed: BaseException) -> float | None:
        """The open connection ended. Raises when that is final; returns None when
        the subscriber closes (``reconnect=False``), else the delay before the next
        try."""
        code = _ws.close_code(closed) if isinstance(closed, _ws.ConnectionClosed) else None
        reason = _ws.close_reason(closed) if isinstance(closed, _ws.ConnectionClosed) else ""
        self.close_code = code
        detail = (
            "connection closed without a close frame (1006)"
            if code is None
            else (f"close code {code}" + (f" ({reason})" if reason else ""))
        )
        fields: dict[str, Any] = {"exception": closed, "code": code, "reason": reason or None}
        if code in PERMANENT_CLOSE_CODES:
            error = SubscriptionRefused(
                f"the server closed the subscription: {detail}", code=code, reason=reason
            )
            self._set_closed(str(error), logging.INFO, **fields)
            raise error from closed
        if not self._reconnect:
            self._set_closed(detail, logging.INFO, **fields)
            return None
        if not self._framed:
            self._without_frame += 1
        limit = self._max_reconnects
        exhausted = limit == 0 or (not self._framed and self._without_frame >= (limit or 0))
        if limit is not None and exhausted:
            gave_up = ConnectError(
                f"connection lost ({detail}), giving up: max_reconnects={limit}",
                url=self.connection_url(),
                tries=self._without_frame,
            )
            self._set_closed(str(gave_up), logging.INFO, **fields)
            raise gave_up from closed
        delay = self._backoff.next_delay()
        self._connection = ConnectionState.RECONNECTING
        self._emit(
            "reconnecting",
            f"{detail}; next try in {delay:.3f} s",
            logging.WARNING,
            delay=delay,
            **fields,
        )
        return delay

    # --- frames ------------------------------------------------------------------------

    def _handle(self, message: Message) -> tuple[Update | None, Message | None]:
        """Takes one frame: the update to yield (None when no state is held) and the
        message to send back (a resync request, or None)."""
        stats = self._stats
        stats.frames += 1
        size = (
            len(message)
            if isinstance(message, bytes) or message.isascii()
            else len(message.encode())
        )
        stats.bytes += size
        try:
            frame = decode_frame(message, self._format, numpy=self._numpy)
        except DecodeError as err:
            return None, self._resync(f"undecodable frame: {err}")
        self._framed = True
        self._without_frame = 0
        self._backoff.reset()
        if isinstance(frame, Full):
            stats.full_frames += 1
            self._state, self._seq, self._epoch = frame.state, frame.seq, frame.epoch
            self._standalone = frame.standalone
            self._resync_pending = False
            self._log_frame("standalone" if frame.standalone else "full", size)
            self._summary, self._envelope = frame.summary, frame.envelope
            update = Update(
                frame.seq,
                "full",
                frame.epoch,
                frame.state,
                summary=frame.summary,
                envelope=frame.envelope,
                standalone=frame.standalone,
            )
            return update, None
        stats.delta_frames += 1
        if self._state is None:
            # Deltas are ignored until the full frame that was asked for.
            return None, self._resync(f"delta to seq {frame.seq} while holding no state")
        if self._standalone:
            return None, self._resync(
                f"delta to seq {frame.seq}, but the state held came from a frame without a body"
            )
        if frame.base_seq != self._seq:
            return None, self._resync(
                f"delta from seq {frame.base_seq}, but seq {self._seq} is held"
            )
        try:
            state = apply_delta(self._state, frame)
        except DeltaError as err:
            return None, self._resync(str(err))
        self._state, self._seq = state, frame.seq
        self._summary, self._envelope = frame.summary, frame.envelope
        self._log_frame("delta", size)
        update = Update(
            frame.seq, "delta", self._epoch, state, summary=frame.summary, envelope=frame.envelope
        )
        return update, None

    def _log_frame(self, kind: str, size: int) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("phasecast: %s frame, seq %s, %d bytes", kind, self._seq, size)

    def _resync(self, reason: str) -> Message | None:
        """Drops the state held; the resync request to send, unless one is pending."""
        self._summary = self._envelope = None
        if self._resync_pending:
            self._state = None
            self._seq = None
            logger.debug("phasecast: %s (a full frame is already asked for)", reason)
            return None
        self._resync_pending = True
        self._stats.resyncs += 1
        self._emit("resync", reason, logging.WARNING)  # with the seq that was held
        self._state = None
        self._seq = None
        return resync_message(self._format)


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` checked: a finite number >= 0, in radians.

    The server takes only the precision classes it offers (``/health`` →
    ``precision_classes``) and refuses any other with 400 naming ``epsilon``
    (:class:`~phasecast.SubscriptionRefused`, ``field == "epsilon"``).

    :raises ValueError: a negative, infinite or NaN epsilon, or not a number.
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError(f"epsilon: expected a number of radians, got {epsilon!r}")
    value = float(epsilon)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"epsilon: must be a finite number >= 0 (radians), got {epsilon!r}")
    return value


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
