"""The blocking client, for scripts and notebooks: no event loop needed.

::

    from phasecast import SyncSubscriber

    with SyncSubscriber("ws://127.0.0.1:8787/ws") as sub:
        for update in sub:
            print(update.seq, update.kind, update.energy)

:class:`SyncSubscriber` behaves exactly as :class:`phasecast.Subscriber` (same
options, retries, errors, events and stats; the two share that code) over the
``websockets.sync`` client. :class:`SyncProducer` publishes over one kept-alive HTTP
connection, and its ``ingest()`` is a blocking producer WebSocket.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Callable

from . import _ws
from ._core import Backoff, EventCallback, SubscriberBase, Update
from .producer import SyncIngestStream, SyncProducer

__all__ = ["SyncIngestStream", "SyncProducer", "SyncSubscriber"]

#: What a failed connection attempt can raise (anything else is a bug, and propagates).
CONNECT_ERRORS = (OSError, TimeoutError, EOFError, _ws.InvalidHandshake)


class SyncSubscriber(SubscriberBase):
    """A subscription to one stream on ``/ws``, blocking.

    Same parameters as :class:`phasecast.Subscriber` (``on_update`` is called by
    :meth:`run`). ``with`` opens the connection; iterating yields
    :class:`~phasecast.Update` objects. :meth:`close` may be called from another
    thread (or an ``on_event``/``on_update`` callback): iteration then ends.
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
        on_update: Callable[[Update], Any] | None = None,
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
        self._delay: float | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> SyncSubscriber:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Opens the connection now, if none is open (iteration does it otherwise).

        :raises SubscriptionRefused: a permanent refusal.
        :raises ConnectError: every try failed.
        """
        if self._ws is None and not self._closed:
            self._open()

    def close(self) -> None:
        """Closes the subscriber for good; iteration ends. Safe from any thread."""
        with self._lock:
            self._set_closed("closed by the application")
            ws, self._ws = self._ws, None
        self._wake.set()
        if ws is not None:
            ws.close()

    def __iter__(self) -> Iterator[Update]:
        return self

    def __next__(self) -> Update:
        while True:
            if self._closed:
                raise StopIteration
            ws = self._ws
            if ws is None:
                if not self._open():
                    raise StopIteration
                ws = self._ws
            try:
                message = ws.recv()
            except _ws.ConnectionClosed as closed:
                if self._closed:
                    raise StopIteration from None
                self._ws = None
                self._delay = self._connection_lost(closed)
                if self._delay is None:
                    raise StopIteration from None
                continue
            update, reply = self._handle(message)
            if reply is not None:
                try:
                    ws.send(reply)
                except _ws.ConnectionClosed:
                    pass  # the next recv() sees it and reconnects
            if update is not None:
                return update

    def run(self) -> None:
        """Calls ``on_update`` with every update until the subscriber is closed."""
        if self._on_update is None:
            raise TypeError("run() needs on_update=")
        for update in self:
            self._on_update(update)

    def _open(self) -> bool:
        self._begin()
        while not self._closed:
            if self._delay is not None:
                delay, self._delay = self._delay, None
                if self._wake.wait(delay) or self._closed:
                    return False
            url = self.connection_url()
            try:
                ws = _ws.connect_sync(
                    url,
                    headers=self._headers(),
                    max_size=self._max_message_bytes,
                    open_timeout=self._connect_timeout,
                    max_queue=_ws.SUBSCRIBER_QUEUE,
                )
            except CONNECT_ERRORS as err:
                if self._closed:
                    return False
                self._delay = self._connect_failed(err, url)
                continue
            with self._lock:
                if not self._closed:
                    self._ws = ws
                    self._connected(url)
                    return True
            ws.close()  # closed while connecting
            return False
        return False
