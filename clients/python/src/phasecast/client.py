"""Subscribing to a stream with asyncio: :class:`Subscriber`.

A subscriber holds one verified state. It takes the first full frame, applies each
delta against the state it holds, and when anything is off (a delta for another base,
a checksum mismatch, a frame it cannot decode) it drops the state, asks the server
for a full frame (``resync``) once and ignores deltas until one comes. It never hands
out a state it could not verify. When the connection is lost it reconnects with
capped, jittered back-off and ``?resume=SEQ&epoch=EPOCH``, so the server can go on
with a delta. What is retried and what is raised follows docs/clients.md.

:class:`phasecast.SyncSubscriber` is the same without an event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, Mapping
from types import TracebackType
from typing import Any, Callable, Union

from . import _ws
from ._core import (
    Backoff,
    ConnectionState,
    Event,
    EventCallback,
    Stats,
    SubscriberBase,
    Update,
)
from .errors import ConnectError, SubscriptionRefused
from .producer import IngestRejected, IngestStream, Producer, PublishError, PublishResult

__all__ = [
    "Backoff",
    "ConnectError",
    "ConnectionState",
    "Event",
    "IngestRejected",
    "IngestStream",
    "Producer",
    "PublishError",
    "PublishResult",
    "Stats",
    "Subscriber",
    "SubscriptionRefused",
    "Update",
]

UpdateCallback = Callable[[Update], Union[None, Awaitable[None]]]

#: What a failed connection attempt can raise (anything else is a bug, and propagates).
CONNECT_ERRORS = (OSError, asyncio.TimeoutError, TimeoutError, EOFError, _ws.InvalidHandshake)


class Subscriber(SubscriberBase):
    """A subscription to one stream on ``/ws``, for asyncio.

    ::

        async with Subscriber("ws://127.0.0.1:8787/ws", stream="lab1") as sub:
            async for update in sub:
                print(update.seq, update.kind, update.step, update.energy)

    ``async with`` opens the connection (raising at once on a permanent refusal, or
    :class:`~phasecast.ConnectError` after ``first_connect_tries``); each iteration
    yields an :class:`~phasecast.Update` once its state is verified. Or pass
    ``on_update=`` and ``await sub.run()``.

    :param url: the server's ``/ws`` URL (``ws://`` or ``wss://``; an empty path or
        ``/`` gets ``/ws``). Its query parameters are kept; an option given here
        replaces the parameter of the same name.
    :param format: ``"json"`` or ``"protobuf"`` (``"proto"``), sent as ``?format=``
        (default: the URL's, else ``json``).
    :param delta: ``False`` asks for full frames only (``?delta=false``).
    :param max_hz: at most this many frames a second (``?max_hz=``).
    :param stream: the stream name (``?stream=``); the server's ``default`` otherwise.
    :param key: the subscriber key (``PCC_SUBSCRIBE_KEY``), sent as ``X-API-Key``.
    :param epsilon: the precision class (``?epsilon=``): every phase held stays within
        this many radians of the producer's. One the server offers (``/health`` →
        ``precision_classes``); another is refused (:class:`~phasecast.SubscriptionRefused`
        with ``field == "epsilon"``). Default: the server's ``PCC_DELTA_EPSILON``.
    :param fields: the parts of each state to take (``?fields=``): names among
        ``phases``, ``spins``, ``energy``, ``timestamp`` and ``summary``, as a list or
        a comma-separated string. The state held is then the projected one (parts
        not taken are empty, 0.0 or None) and, with ``summary``, every update has a
        :class:`~phasecast.Summary` (and with ``max_hz`` an
        :class:`~phasecast.Envelope`). Without phases and spins every update stands
        alone (``update.standalone``). Default: the whole state, no summary.
        ``epsilon`` and ``fields`` are sent again on every reconnect; an unknown
        field name, an empty list or a negative or non-finite epsilon raises
        ``ValueError`` here, before any connection.
    :param numpy: hold and yield phases as a read-only ``float64`` ``numpy.ndarray``
        (and spins as ``int8``); needs ``pip install "phasecast[numpy]"``.
    :param headers: more HTTP headers for the upgrade request.
    :param on_update: called with each update by :meth:`run` (may be a coroutine).
    :param on_event: called with each :class:`~phasecast.Event`: connection state
        changes, failed tries, resyncs.
    :param reconnect: reconnect when an open connection is lost. Without it,
        iteration ends when the connection closes.
    :param backoff: the delays between tries (default: from 0.25 s, doubling, at most
        10 s, jittered).
    :param first_connect_tries: tries for the first connection before raising
        :class:`~phasecast.ConnectError`.
    :param connect_timeout: seconds for one try to connect and finish the handshake.
    :param max_reconnects: after a connection was open, give up (raise
        :class:`~phasecast.ConnectError`) after this many tries in a row without a
        frame; None retries forever.
    :param max_message_bytes: largest frame accepted (a full frame of 65536 phases
        in JSON is about 1.5 MB).
    """

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
        on_update: UpdateCallback | None = None,
        on_event: EventCallback | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        first_connect_tries: int = 5,
        connect_timeout: float | None = 4.0,
        max_reconnects: int | None = None,
        max_message_bytes: int | None = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(
            url,
            format,
            delta,
            max_hz,
            stream,
            key,
            epsilon=epsilon,
            fields=fields,
            numpy=numpy,
            headers=headers,
            on_event=on_event,
            reconnect=reconnect,
            backoff=backoff,
            first_connect_tries=first_connect_tries,
            connect_timeout=connect_timeout,
            max_reconnects=max_reconnects,
            max_message_bytes=max_message_bytes,
        )
        self._on_update = on_update
        self._ws: Any = None
        self._delay: float | None = None  # wait this long before the next try
        self._connecting: asyncio.Future[Any] | None = None
        self._wake: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Subscriber:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Opens the connection now, if none is open (iteration does it otherwise).

        :raises SubscriptionRefused: a permanent refusal (HTTP 400/401/403/404, not
            a WebSocket endpoint, a permanent close code).
        :raises ConnectError: every try failed.
        """
        if self._ws is None and not self._closed:
            await self._open()

    async def close(self) -> None:
        """Closes the subscriber for good; iteration ends. Safe from any task."""
        self._set_closed("closed by the application")
        if self._wake is not None:
            self._wake.set()
        if self._connecting is not None:
            self._connecting.cancel()
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Update:
        while True:
            if self._closed:
                raise StopAsyncIteration
            ws = self._ws
            if ws is None:
                if not await self._open():
                    raise StopAsyncIteration
                ws = self._ws
            try:
                message = await ws.recv()
            except _ws.ConnectionClosed as closed:
                if self._closed:
                    raise StopAsyncIteration from None
                self._ws = None
                self._delay = self._connection_lost(closed)
                if self._delay is None:
                    raise StopAsyncIteration from None
                continue
            update, reply = self._handle(message)
            if reply is not None:
                try:
                    await ws.send(reply)
                except _ws.ConnectionClosed:
                    pass  # the next recv() sees it and reconnects
            if update is not None:
                return update

    async def run(self) -> None:
        """Calls ``on_update`` with every update until the subscriber is closed."""
        if self._on_update is None:
            raise TypeError("run() needs on_update=")
        async for update in self:
            result = self._on_update(update)
            if inspect.isawaitable(result):
                await result

    # --- connections -------------------------------------------------------------------

    async def _open(self) -> bool:
        """Opens a connection, retrying as the contract says. False once closed."""
        self._begin()
        while not self._closed:
            if self._delay is not None:
                delay, self._delay = self._delay, None
                if await self._sleep(delay):
                    return False
            url = self.connection_url()
            self._connecting = asyncio.ensure_future(
                _ws.connect(
                    url,
                    headers=self._headers(),
                    max_size=self._max_message_bytes,
                    open_timeout=self._connect_timeout,
                    max_queue=_ws.SUBSCRIBER_QUEUE,
                )
            )
            try:
                ws = await self._connecting
            except asyncio.CancelledError:
                if self._closed:
                    return False
                raise
            except CONNECT_ERRORS as err:
                self._delay = self._connect_failed(err, url)
                continue
            finally:
                self._connecting = None
            if self._closed:  # closed while connecting
                await ws.close()
                return False
            self._ws = ws
            self._connected(url)
            return True
        return False

    async def _sleep(self, delay: float) -> bool:
        """Waits ``delay`` seconds; True when the subscriber was closed meanwhile."""
        if self._wake is None:
            self._wake = asyncio.Event()  # made here: on 3.9 it binds to the running loop
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass
        return self._closed
