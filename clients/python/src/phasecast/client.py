"""Subscribing to a stream: :class:`Subscriber`.

A subscriber holds one verified state. It takes the first full frame, applies each
delta against the state it holds, and when anything is off (a delta for another base,
a checksum mismatch, a frame it cannot decode) it drops the state, asks the server
for a full frame (``resync``) and ignores deltas until one comes. It never hands out
a state it could not verify. When the connection is lost it reconnects with
exponential back-off and ``?resume=SEQ``, so the server can continue with a delta.

:class:`phasecast.producer.Producer` (publishing) is re-exported here as well.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import _ws
from .codec import DecodeError, decode_frame, normalize_format, resync_message
from .model import DeltaError, Full, State, apply_delta
from .producer import IngestRejected, IngestStream, Producer, PublishError, PublishResult

__all__ = [
    "Backoff",
    "Event",
    "IngestRejected",
    "IngestStream",
    "Producer",
    "PublishError",
    "PublishResult",
    "Subscriber",
    "SubscriptionRefused",
]

logger = logging.getLogger("phasecast")

#: Close code the server uses for policy refusals (origin, key, limits): not retried.
CLOSE_POLICY = 1008

#: Query parameters the subscriber sets itself; any others in the URL are kept.
_OWN_PARAMETERS = frozenset({"format", "delta", "max_hz", "stream", "resume"})


@dataclass(frozen=True)
class Event:
    """Something that happened to a subscription, for logs and monitoring.

    ``kind`` is one of ``"connected"``, ``"disconnected"``, ``"connect_failed"``,
    ``"reconnecting"`` and ``"resync"``.
    """

    kind: str
    detail: str
    #: Seq of the state held when it happened, if any.
    seq: int | None = None

    def __str__(self) -> str:
        held = "" if self.seq is None else f" (holding seq {self.seq})"
        return f"{self.kind}: {self.detail}{held}"


class SubscriptionRefused(Exception):
    """The server refused the subscription for good (HTTP 4xx, or close code 1008).

    Reconnecting would not help: fix the URL, the key or the parameters.
    """

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        #: HTTP status of a refused handshake.
        self.status = status
        #: WebSocket close code.
        self.code = code


class Backoff:
    """Exponential back-off with jitter: ``initial * factor**n``, capped at ``maximum``.

    Each delay is drawn from ``[d * (1 - jitter), d]`` so that many clients cut off at
    once do not come back at once.
    """

    def __init__(
        self,
        initial: float = 0.1,
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
        return delay * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Back to the initial delay (after a connection that worked)."""
        self._attempts = 0


UpdateCallback = Callable[[State], Union[None, Awaitable[None]]]
EventCallback = Callable[[Event], None]


class Subscriber:
    """A subscription to one stream on ``/ws``.

    Use it as an async context manager and iterate over it::

        async with Subscriber("ws://127.0.0.1:8080/ws", format="protobuf") as sub:
            async for state in sub:
                print(sub.seq, state.step, state.energy)

    Each iteration yields the state held after a frame, once it is verified. Or pass
    ``on_update=`` and ``await sub.run()``. The yielded :class:`State` is read-only.

    :param url: the server's ``/ws`` URL (``ws://`` or ``wss://``); other query
        parameters in it are kept.
    :param format: ``"json"`` or ``"protobuf"`` (``"proto"``), sent as ``?format=``.
    :param delta: ``False`` asks for full frames only (``?delta=false``).
    :param max_hz: at most this many frames a second (``?max_hz=``).
    :param stream: the stream name (``?stream=``); the server's default otherwise.
    :param key: the subscriber key, sent as the ``X-API-Key`` header.
    :param on_update: called with each state by :meth:`run` (may be a coroutine).
    :param on_event: called with each :class:`Event` (connects, resyncs...).
    :param reconnect: reconnect when the connection is lost or cannot be opened.
        Without it, iteration ends when the connection closes.
    :param backoff: the delays between connection attempts.
    :param max_message_bytes: largest frame accepted (a full frame of 65536 phases in
        JSON is about 1.5 MB).
    :param open_timeout: seconds to wait for the WebSocket handshake.
    """

    def __init__(
        self,
        url: str,
        format: str = "json",
        delta: bool = True,
        max_hz: float | None = None,
        stream: str | None = None,
        key: str | None = None,
        *,
        on_update: UpdateCallback | None = None,
        on_event: EventCallback | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        max_message_bytes: int | None = 16 * 1024 * 1024,
        open_timeout: float | None = 10.0,
    ) -> None:
        self._url = url
        self._format = normalize_format(format)
        self._delta = delta
        self._max_hz = max_hz
        self._stream = stream
        self._key = key
        self._on_update = on_update
        self._on_event = on_event
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._max_message_bytes = max_message_bytes
        self._open_timeout = open_timeout

        self._ws: Any = None
        self._state: State | None = None
        self._seq: int | None = None
        self._closed = False
        self._lost = False  # a connection was lost or refused: wait before the next
        self._resync_sent = False  # on the current connection
        #: How many times a resync was requested.
        self.resyncs = 0
        #: How many connections were opened.
        self.connections = 0
        #: Close code of the last connection the server closed (None: no close frame).
        self.close_code: int | None = None

    # --- what the subscriber holds -----------------------------------------------------

    @property
    def state(self) -> State | None:
        """The verified state held, or None before the first full frame / after a drop."""
        return self._state

    @property
    def seq(self) -> int | None:
        """The seq of :attr:`state`, or None when no state is held."""
        return self._seq

    @property
    def format(self) -> str:
        """The encoding: ``"json"`` or ``"protobuf"``."""
        return self._format

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Subscriber:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; iteration ends."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> State:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ws is None and not await self._open():
                raise StopAsyncIteration
            try:
                message = await self._ws.recv()
            except _ws.ConnectionClosed as closed:
                if self._closed:
                    raise StopAsyncIteration from None
                self._connection_lost(closed)
                continue
            state = await self._handle(message)
            if state is not None:
                return state

    async def run(self) -> None:
        """Calls ``on_update`` with every state until the subscriber is closed."""
        if self._on_update is None:
            raise TypeError("run() needs on_update=")
        async for state in self:
            result = self._on_update(state)
            if inspect.isawaitable(result):
                await result

    # --- connections -------------------------------------------------------------------

    def connection_url(self) -> str:
        """The URL of the next connection: ``?format=…&resume=SEQ`` and so on."""
        parts = urlsplit(self._url)
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in _OWN_PARAMETERS
        ]
        query.append(("format", self._format))
        if not self._delta:
            query.append(("delta", "false"))
        if self._max_hz is not None:
            query.append(("max_hz", _number_text(self._max_hz)))
        if self._stream is not None:
            query.append(("stream", self._stream))
        if self._state is not None and self._seq is not None:
            query.append(("resume", str(self._seq)))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def _open(self) -> bool:
        """Opens a connection, retrying with back-off. False once closed."""
        while not self._closed:
            if self._lost:
                delay = self._backoff.next_delay()
                self._emit("reconnecting", f"in {delay:.3f} s")
                await asyncio.sleep(delay)
                if self._closed:
                    break
            url = self.connection_url()
            headers: dict[str, str] = {} if self._key is None else {"X-API-Key": self._key}
            try:
                ws = await _ws.connect(
                    url,
                    headers=headers,
                    max_size=self._max_message_bytes,
                    open_timeout=self._open_timeout,
                )
            except _ws.InvalidHandshake as err:
                status = _ws.handshake_status(err)
                if status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise SubscriptionRefused(
                        f"the server refused {url}: HTTP {status}", status=status
                    ) from err
                self._connect_failed(url, err)
            except (OSError, asyncio.TimeoutError) as err:
                self._connect_failed(url, err)
            else:
                if self._closed:  # closed while connecting
                    await ws.close()
                    break
                self._ws = ws
                self._lost = False
                self._resync_sent = False
                self.connections += 1
                self._emit("connected", url)
                return True
        return False

    def _connect_failed(self, url: str, err: BaseException) -> None:
        self._emit("connect_failed", f"{url}: {err or type(err).__name__}")
        if not self._reconnect:
            raise ConnectionError(f"cannot connect to {url}: {err}") from err
        self._lost = True

    def _connection_lost(self, closed: _ws.ConnectionClosed) -> None:
        self._ws = None
        self.close_code = _ws.close_code(closed)
        reason = _ws.close_reason(closed)
        detail = f"close code {self.close_code}" + (f" ({reason})" if reason else "")
        self._emit("disconnected", detail)
        if self.close_code == CLOSE_POLICY:
            raise SubscriptionRefused(f"the server closed the subscription: {detail}", code=1008)
        if not self._reconnect:
            self._closed = True
        self._lost = True

    # --- frames ------------------------------------------------------------------------

    async def _handle(self, message: str | bytes) -> State | None:
        """Takes one frame; returns the state now held, or None when none is."""
        try:
            frame = decode_frame(message, self._format)
        except DecodeError as err:
            await self._resync(f"undecodable frame: {err}")
            return None
        if isinstance(frame, Full):
            self._state, self._seq = frame.state, frame.seq
            self._backoff.reset()
            return frame.state
        if self._state is None:
            # Deltas are ignored until the full frame that was asked for.
            if not self._resync_sent:
                await self._resync(f"delta to seq {frame.seq} while holding no state")
            return None
        if frame.base_seq != self._seq:
            await self._resync(f"delta from seq {frame.base_seq}, but seq {self._seq} is held")
            return None
        try:
            state = apply_delta(self._state, frame)
        except DeltaError as err:
            await self._resync(str(err))
            return None
        self._state, self._seq = state, frame.seq
        self._backoff.reset()
        return state

    async def _resync(self, reason: str) -> None:
        """Drops the state held and asks for a full frame."""
        self._emit("resync", reason)
        self._state = None
        self._seq = None
        self.resyncs += 1
        self._resync_sent = True
        try:
            await self._ws.send(resync_message(self._format))
        except _ws.ConnectionClosed:
            pass  # the next recv() sees it and reconnects (without resume: nothing held)

    def _emit(self, kind: str, detail: str) -> None:
        event = Event(kind, detail, self._seq)
        level = logging.INFO if kind in ("connected", "reconnecting") else logging.WARNING
        logger.log(level, "%s", event)
        if self._on_event is not None:
            self._on_event(event)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
