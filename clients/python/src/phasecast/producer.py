"""Publishing states: :class:`Producer`.

Two ways in, both described in docs/protocol.md ("Publishing"):

- :meth:`Producer.publish`: one HTTP ``POST`` per state (``/pcc_state``, or
  ``/streams/{name}/state``), answered with the seq the server gave it. Uses the
  standard library's HTTP client in a worker thread: no extra dependency.
- :meth:`Producer.ingest`: the producer WebSocket ``/ingest?stream=NAME``, one message
  per state, for 200 Hz and more. The server answers only rejections; they are
  collected as :class:`IngestRejected`.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from . import _ws
from .codec import content_type, encode_state, normalize_format
from .model import State

__all__ = ["IngestRejected", "IngestStream", "Producer", "PublishError", "PublishResult"]


@dataclass(frozen=True)
class PublishResult:
    """The server's answer to an accepted state."""

    #: The seq the server gave the state.
    seq: int
    #: The state's step, echoed.
    step: int
    #: Number of subscribers of the stream.
    clients: int
    #: How long the server took, in milliseconds.
    processing_time_ms: float | None
    #: The whole answer, as sent.
    body: dict[str, Any] = field(repr=False)


class PublishError(Exception):
    """The server did not accept a state (or refused the producer WebSocket).

    ``status`` is the HTTP status (400 malformed, 401 key, 413 too big, 422 invalid,
    429 rate limited, 503 stream limit...), ``field`` names the offending field for
    422, ``retry_after`` is the ``Retry-After`` header in seconds, when sent.
    """

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error
        self.field = field
        self.retry_after = retry_after
        self.body = body


class IngestRejected(Exception):
    """A state the server rejected on the producer WebSocket (the socket stays open)."""

    def __init__(
        self,
        error: str,
        *,
        field: str | None = None,
        step: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"state rejected{where}: {error}")
        self.error = error
        self.field = field
        self.step = step
        self.body = body


class Producer:
    """Publishes states to one stream of a phasecast server.

    :param url: the server's base URL, e.g. ``http://127.0.0.1:8080``.
    :param stream: the stream name; ``None`` uses the old API (``/pcc_state``, the
        ``default`` stream).
    :param format: ``"json"`` or ``"protobuf"``: the body encoding.
    :param key: the API key, sent as ``X-API-Key``.
    :param timeout: seconds to wait for an HTTP answer.

    ::

        producer = Producer("http://127.0.0.1:8080", stream="lab1", format="protobuf")
        result = await producer.publish(State(1, [0.0, 0.5], [1, -1], energy=-0.25))
        print(result.seq)
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        format: str = "json",
        key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._base = url.rstrip("/")
        self._stream = stream
        self._format = normalize_format(format)
        self._key = key
        self._timeout = timeout

    @property
    def publish_url(self) -> str:
        """Where :meth:`publish` posts."""
        if self._stream is None:
            return f"{self._base}/pcc_state"
        return f"{self._base}/streams/{quote(self._stream, safe='')}/state"

    @property
    def ingest_url(self) -> str:
        """The producer WebSocket URL (``ws://…/ingest?stream=NAME``)."""
        parts = urlsplit(self._base)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        query = "" if self._stream is None else urlencode({"stream": self._stream})
        return urlunsplit((scheme, parts.netloc, parts.path + "/ingest", query, ""))

    def _headers(self) -> dict[str, str]:
        return {} if self._key is None else {"X-API-Key": self._key}

    async def publish(self, state: State) -> PublishResult:
        """Posts one state; returns the server's answer.

        :raises PublishError: the server answered with an error status.
        :raises OSError: the server could not be reached.
        """
        return await asyncio.to_thread(self.publish_blocking, state)

    def publish_blocking(self, state: State) -> PublishResult:
        """:meth:`publish` for code without an event loop."""
        body = encode_state(state, self._format)
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(
            self.publish_url,
            data=data,
            method="POST",
            headers={"Content-Type": content_type(self._format), **self._headers()},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer = _json_object(response.read())
        except urllib.error.HTTPError as err:
            answer = _json_object(err.read())
            raise PublishError(
                err.code,
                str(answer.get("error") or err.reason),
                field=answer.get("field"),
                retry_after=_seconds(err.headers.get("Retry-After")),
                body=answer or None,
            ) from None
        return PublishResult(
            seq=int(answer.get("seq", 0)),
            step=int(answer.get("step", state.step)),
            clients=int(answer.get("clients", 0)),
            processing_time_ms=answer.get("processing_time_ms"),
            body=answer,
        )

    def ingest(
        self,
        *,
        on_error: Callable[[IngestRejected], None] | None = None,
        open_timeout: float | None = 10.0,
    ) -> IngestStream:
        """A producer WebSocket; use as ``async with producer.ingest() as ingest:``."""
        return IngestStream(
            self.ingest_url,
            format=self._format,
            headers=self._headers(),
            on_error=on_error,
            open_timeout=open_timeout,
        )


class IngestStream:
    """A producer WebSocket (``/ingest``): :meth:`send` one state per message.

    The server answers only rejections (``{"ok":false,"error":…,"field":…}``). They
    arrive asynchronously; each is passed to ``on_error`` and kept until read with
    :meth:`rejections` or :meth:`next_rejection`.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        headers: dict[str, str] | None = None,
        on_error: Callable[[IngestRejected], None] | None = None,
        open_timeout: float | None = 10.0,
    ) -> None:
        self._url = url
        self._format = normalize_format(format)
        self._headers = headers or {}
        self._on_error = on_error
        self._open_timeout = open_timeout
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        # Made in __aenter__: on Python 3.9 a queue binds to the loop it is made in.
        self._rejections: asyncio.Queue[IngestRejected] | None = None
        #: Close code of the connection once the server closed it.
        self.close_code: int | None = None

    async def __aenter__(self) -> IngestStream:
        try:
            self._ws = await _ws.connect(
                self._url, headers=self._headers, max_size=1 << 20, open_timeout=self._open_timeout
            )
        except _ws.InvalidHandshake as err:
            status = _ws.handshake_status(err)
            if status is None:
                raise
            raise PublishError(status, f"the server refused {self._url}") from err
        self._rejections = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read(self._ws, self._rejections))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, state: State) -> None:
        """Sends one state (text for JSON, binary for protobuf).

        :raises ConnectionError: the connection is closed.
        """
        if self._ws is None:
            raise ConnectionError("the ingest stream is not open")
        try:
            await self._ws.send(encode_state(state, self._format))
        except _ws.ConnectionClosed as closed:
            raise ConnectionError(
                f"the ingest stream is closed (code {_ws.close_code(closed)})"
            ) from None

    def rejections(self) -> list[IngestRejected]:
        """The rejections received and not yet read, oldest first."""
        found: list[IngestRejected] = []
        while self._rejections is not None and not self._rejections.empty():
            found.append(self._rejections.get_nowait())
        return found

    async def next_rejection(self, timeout: float | None = None) -> IngestRejected | None:
        """Waits for the next rejection; None after ``timeout`` seconds without one."""
        if self._rejections is None:
            raise ConnectionError("the ingest stream is not open")
        try:
            return await asyncio.wait_for(self._rejections.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def close(self) -> None:
        """Closes the connection (a no-op when closed)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await self._reader

    async def _read(self, ws: Any, rejections: asyncio.Queue[IngestRejected]) -> None:
        try:
            while True:
                message = await ws.recv()
                answer = _json_object(message)
                if answer.get("ok") is True:
                    continue
                rejection = IngestRejected(
                    str(answer.get("error") or message),
                    field=answer.get("field"),
                    step=answer.get("step"),
                    body=answer or None,
                )
                rejections.put_nowait(rejection)
                if self._on_error is not None:
                    self._on_error(rejection)
        except _ws.ConnectionClosed as closed:
            self.close_code = _ws.close_code(closed)


def _json_object(raw: Any) -> dict[str, Any]:
    """The JSON object in ``raw``, or ``{}`` when it is not one."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(header: str | None) -> float | None:
    try:
        return None if header is None else float(header)
    except ValueError:
        return None  # an HTTP date: not worth parsing here
