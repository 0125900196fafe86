"""Publishing states: :class:`Producer` (asyncio) and :class:`SyncProducer` (blocking).

Two ways in, both described in docs/protocol.md ("Publishing"):

- ``publish(state)``: an HTTP ``POST`` per state (``/pcc_state``, or
  ``/streams/{name}/state``), answered with the seq the server gave it. All the
  posts of one producer go over ONE kept-alive HTTP/1.1 connection (``httpx``, with a
  pool of one), so a tight loop never opens a connection per state and never trips
  the server's per-IP connection-rate limit.
- ``ingest()``: the producer WebSocket ``/ingest?stream=NAME``, one message per
  state, for 200 Hz and more. The server answers only rejections; they arrive as
  :class:`IngestRejected`.

Every refusal and every transport failure is a :class:`PublishError` with ``status``
(None when no answer came), ``error`` (the server's reason), ``field``, ``step`` and
``retry_after``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from . import _ws
from .codec import content_type, encode_state, normalize_format
from .errors import IngestRejected, PublishError
from .model import State

__all__ = [
    "IngestRejected",
    "IngestStream",
    "Producer",
    "ProducerStats",
    "PublishError",
    "PublishResult",
    "SyncIngestStream",
    "SyncProducer",
]

logger = logging.getLogger("phasecast")

#: Errors of a kept-alive connection the server had closed before reading the
#: request: safe to send once more on a new connection.
_STALE_CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError)
#: Seconds between two WARNING records of rejected ingest states.
_REJECTION_LOG_INTERVAL = 5.0
#: What an ingest connection attempt can raise.
_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, TimeoutError, EOFError, _ws.InvalidHandshake)


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


@dataclass
class ProducerStats:
    """What a producer counted since it was made."""

    #: States the server accepted.
    states: int = 0
    #: Bytes of the state bodies (or messages) sent.
    bytes: int = 0
    #: States the server refused (HTTP status other than 200), or rejected on /ingest.
    refused: int = 0
    #: States that got no answer (connection refused or lost, timeout).
    failures: int = 0
    #: TCP connections opened for ``publish`` (1 for any number of states, normally).
    connections: int = 0


class _ProducerBase:
    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        format: str = "json",
        key: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 4.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
        if scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: a producer URL starts with http:// or https://")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "stream":
                stream = value if stream is None else stream  # the option wins
            else:
                raise ValueError(
                    f"{url!r}: the producer URL takes no parameter {name!r} "
                    "(only stream=; the key goes in key=)"
                )
        self._scheme = scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._stream = stream
        self._format = normalize_format(format)
        self._key = key
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._extra_headers = dict(headers or {})
        self._stats = ProducerStats()
        self._options: dict[str, Any] = dict(
            url=url,
            stream=stream,
            format=format,
            key=key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            headers=headers,
        )

    # --- addresses and headers ---------------------------------------------------------

    @property
    def publish_url(self) -> str:
        """Where ``publish`` posts: ``/pcc_state``, or ``/streams/NAME/state``."""
        if self._stream is None:
            path = f"{self._prefix}/pcc_state"
        else:
            path = f"{self._prefix}/streams/{quote(self._stream, safe='')}/state"
        return urlunsplit((self._scheme, self._netloc, path, "", ""))

    @property
    def ingest_url(self) -> str:
        """The producer WebSocket URL (``ws://…/ingest?stream=NAME``)."""
        scheme = "wss" if self._scheme == "https" else "ws"
        query = "" if self._stream is None else urlencode({"stream": self._stream}, quote_via=quote)
        return urlunsplit((scheme, self._netloc, f"{self._prefix}/ingest", query, ""))

    @property
    def format(self) -> str:
        """The body encoding: ``"json"`` or ``"protobuf"``."""
        return self._format

    @property
    def stats(self) -> ProducerStats:
        """A snapshot of the counters."""
        return ProducerStats(**vars(self._stats))

    def _key_headers(self) -> dict[str, str]:
        headers = dict(self._extra_headers)
        if self._key is not None:
            headers["X-API-Key"] = self._key
        return headers

    def _post_headers(self) -> dict[str, str]:
        return {"Content-Type": content_type(self._format), **self._key_headers()}

    def _client_options(self) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(self._timeout, connect=self._connect_timeout),
            # One connection, kept alive (and closed by the client after 5 s idle,
            # before the server's 10 s idle limit).
            "limits": httpx.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=5.0
            ),
            "headers": self._post_headers(),
        }

    # --- bodies and answers ------------------------------------------------------------

    def _encode(self, state: State) -> bytes:
        try:
            body = encode_state(state, self._format)
        except (ValueError, TypeError, OverflowError) as err:
            text = str(err)
            name = text.split(":", 1)[0] if ":" in text else None
            raise PublishError(
                None, f"cannot encode the state: {text}", field=name, step=_step_of(state)
            ) from None
        return body.encode() if isinstance(body, str) else body

    def _answer(self, state: State, response: httpx.Response) -> PublishResult:
        answer = _ws.json_object(response.content) or {}
        if response.status_code != 200:
            self._stats.refused += 1
            raise PublishError(
                response.status_code,
                str(answer.get("error") or response.reason_phrase or "refused"),
                field=_text_or_none(answer.get("field")),
                step=_step_of(state),
                retry_after=_ws.retry_after_seconds(response.headers.get("Retry-After")),
                body=answer or None,
            )
        if answer.get("ok") is not True or not isinstance(answer.get("seq"), int):
            self._stats.refused += 1
            kind = response.headers.get("Content-Type", "no content type")
            raise PublishError(
                200,
                f"not a phasecast answer ({kind}): is {self.publish_url} a phasecast server?",
                step=_step_of(state),
                body=answer or None,
            )
        self._stats.states += 1
        return PublishResult(
            seq=int(answer["seq"]),
            step=int(answer.get("step", state.step)),
            clients=int(answer.get("clients", 0)),
            processing_time_ms=answer.get("processing_time_ms"),
            body=answer,
        )

    def _failed(self, state: State, err: httpx.HTTPError) -> PublishError:
        self._stats.failures += 1
        if isinstance(err, httpx.TimeoutException):
            what = f"no answer from {self.publish_url} within the timeout ({type(err).__name__})"
        elif isinstance(err, httpx.ConnectError):
            what = f"cannot connect to {self.publish_url}: {err or type(err).__name__}"
        else:
            what = f"{self.publish_url}: {type(err).__name__}: {err}"
        return PublishError(None, what, step=_step_of(state))


class Producer(_ProducerBase):
    """Publishes states to one stream of a phasecast server, for asyncio.

    ::

        async with Producer("http://127.0.0.1:8787", stream="lab1") as producer:
            result = await producer.publish(State(1, [0.0, 0.5], [1, -1], energy=-0.25))
            print(result.seq)

    :param url: the server's base URL, e.g. ``http://127.0.0.1:8787`` (a path prefix
        is kept; ``?stream=`` is read when ``stream`` is not given).
    :param stream: the stream name; ``None`` uses the old API (``/pcc_state``, the
        ``default`` stream).
    :param format: ``"json"`` or ``"protobuf"``: the body encoding.
    :param key: the producer key (``MCP_API_KEY``), sent as ``X-API-Key``.
    :param timeout: seconds to wait for an answer.
    :param connect_timeout: seconds to wait for a connection.
    :param headers: more HTTP headers for every request.

    The connection is opened on the first ``publish`` and kept alive; ``aclose()`` (or
    leaving ``async with``) closes it. Concurrent ``publish`` calls share it, one at a
    time. :meth:`publish_blocking` does the same without an event loop (over its own
    connection); :class:`SyncProducer` is the blocking producer.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        format: str = "json",
        key: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 4.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url,
            stream=stream,
            format=format,
            key=key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            headers=headers,
        )
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._sync: SyncProducer | None = None

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the kept-alive connection(s); the next publish opens a new one."""
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()
        if self._sync is not None:
            self._sync.close()

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # A client belongs to the loop it was used on (asyncio.run() twice, say).
            self._client = httpx.AsyncClient(**self._client_options())
            self._client_loop = loop
        return self._client

    async def publish(self, state: State) -> PublishResult:
        """Posts one state; returns the server's answer.

        :raises PublishError: the server refused it (``status``, ``error``, ``field``,
            ``retry_after``), or no answer came (``status`` None).
        """
        body = self._encode(state)
        client = self._async_client()
        self._stats.bytes += len(body)
        for last_try in (False, True):
            opened: list[bool] = []

            async def trace(name: str, info: Any) -> None:
                if name == "connection.connect_tcp.complete":
                    opened.append(True)
                    self._stats.connections += 1
                    logger.info("phasecast: producer connected to %s", self.publish_url)

            try:
                response = await client.post(
                    self.publish_url, content=body, extensions={"trace": trace}
                )
            except _STALE_CONNECTION_ERRORS as err:
                if last_try or opened:
                    raise self._failed(state, err) from err
                logger.debug("phasecast: kept-alive connection was closed (%s); again", err)
                continue
            except httpx.HTTPError as err:
                raise self._failed(state, err) from err
            return self._answer(state, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def publish_blocking(self, state: State) -> PublishResult:
        """:meth:`publish` for code without an event loop (its own kept-alive
        connection; :class:`SyncProducer` is the blocking producer)."""
        if self._sync is None:
            self._sync = SyncProducer(**self._options)
            self._sync._stats = self._stats  # one set of counters
        return self._sync.publish(state)

    def ingest(
        self,
        *,
        on_error: Callable[[IngestRejected], None] | None = None,
        connect_timeout: float | None = None,
    ) -> IngestStream:
        """A producer WebSocket; use as ``async with producer.ingest() as ingest:``."""
        return IngestStream(
            self.ingest_url,
            format=self._format,
            headers=self._key_headers(),
            on_error=on_error,
            connect_timeout=self._connect_timeout if connect_timeout is None else connect_timeout,
        )


class SyncProducer(_ProducerBase):
    """Publishes states without an event loop: :class:`Producer`'s blocking twin.

    ::

        with SyncProducer("http://127.0.0.1:8787", stream="lab1") as producer:
            for step in range(1000):
                producer.publish(State(step, phases, spins, energy))

    Same parameters as :class:`Producer`. All posts share one kept-alive
    connection; the producer may be used from several threads (one post at a time).
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        format: str = "json",
        key: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 4.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url,
            stream=stream,
            format=format,
            key=key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            headers=headers,
        )
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the kept-alive connection; the next publish opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def publish(self, state: State) -> PublishResult:
        """Posts one state; returns the server's answer.

        :raises PublishError: the server refused it (``status``, ``error``, ``field``,
            ``retry_after``), or no answer came (``status`` None).
        """
        body = self._encode(state)
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._client_options())
            client = self._client
        self._stats.bytes += len(body)
        for last_try in (False, True):
            opened: list[bool] = []

            def trace(name: str, info: Any) -> None:
                if name == "connection.connect_tcp.complete":
                    opened.append(True)
                    self._stats.connections += 1
                    logger.info("phasecast: producer connected to %s", self.publish_url)

            try:
                response = client.post(self.publish_url, content=body, extensions={"trace": trace})
            except _STALE_CONNECTION_ERRORS as err:
                if last_try or opened:
                    raise self._failed(state, err) from err
                logger.debug("phasecast: kept-alive connection was closed (%s); again", err)
                continue
            except httpx.HTTPError as err:
                raise self._failed(state, err) from err
            return self._answer(state, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def ingest(
        self,
        *,
        on_error: Callable[[IngestRejected], None] | None = None,
        connect_timeout: float | None = None,
    ) -> SyncIngestStream:
        """A blocking producer WebSocket; use as ``with producer.ingest() as ingest:``."""
        return SyncIngestStream(
            self.ingest_url,
            format=self._format,
            headers=self._key_headers(),
            on_error=on_error,
            connect_timeout=self._connect_timeout if connect_timeout is None else connect_timeout,
        )


# --- the producer WebSocket ----------------------------------------------------------


@dataclass
class IngestStats:
    """What an ingest stream counted."""

    #: States sent.
    states: int = 0
    #: Bytes sent.
    bytes: int = 0
    #: Rejections received.
    rejections: int = 0


class _IngestBase:
    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        headers: dict[str, str] | None = None,
        on_error: Callable[[IngestRejected], None] | None = None,
        connect_timeout: float | None = 4.0,
    ) -> None:
        self._url = url
        self._format = normalize_format(format)
        self._headers = headers or {}
        self._on_error = on_error
        self._connect_timeout = connect_timeout
        self._ws: Any = None
        self._stats = IngestStats()
        self._warned_at = -_REJECTION_LOG_INTERVAL
        self._warned_count = 0
        #: Close code of the connection once the server closed it.
        self.close_code: int | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def stats(self) -> IngestStats:
        """A snapshot of the counters."""
        return IngestStats(**vars(self._stats))

    def _refused(self, err: BaseException) -> PublishError:
        refusal = _ws.refusal(err)
        if refusal is not None:
            return PublishError(
                refusal.status,
                refusal.error or f"{self._url} refused the producer WebSocket",
                field=refusal.field,
                retry_after=refusal.retry_after,
                body=refusal.body,
            )
        if isinstance(err, ConnectionRefusedError):
            what = "connection refused"
        elif isinstance(err, TimeoutError) or type(err).__name__ == "TimeoutError":
            limit = self._connect_timeout
            what = (
                "timed out" if limit is None else f"no connection and handshake within {limit:g} s"
            )
        else:
            what = str(err) or type(err).__name__
        return PublishError(None, f"cannot open {self._url}: {what}")

    def _encode(self, state: State) -> str | bytes:
        try:
            return encode_state(state, self._format)
        except (ValueError, TypeError, OverflowError) as err:
            text = str(err)
            name = text.split(":", 1)[0] if ":" in text else None
            raise PublishError(
                None, f"cannot encode the state: {text}", field=name, step=_step_of(state)
            ) from None

    def _closed_error(self, closed: BaseException | None) -> PublishError:
        code = reason = None
        if isinstance(closed, _ws.ConnectionClosed):
            code, reason = _ws.close_code(closed), _ws.close_reason(closed)
            self.close_code = code
        detail = "" if code is None else f": close code {code}" + (f" ({reason})" if reason else "")
        return PublishError(None, f"the producer WebSocket is closed{detail}", code=code)

    def _rejection(self, message: Any) -> IngestRejected | None:
        answer = _ws.json_object(message) or {}
        if answer.get("ok") is True:
            return None
        step = answer.get("step")
        rejection = IngestRejected(
            str(answer.get("error") or message),
            field=_text_or_none(answer.get("field")),
            step=step if isinstance(step, int) else None,
            body=answer or None,
        )
        self._stats.rejections += 1
        now = time.monotonic()
        if now - self._warned_at >= _REJECTION_LOG_INTERVAL:
            # At most one WARNING per interval: a producer over the rate limit would
            # otherwise log every state.
            since = self._stats.rejections - self._warned_count
            more = f" ({since - 1} more since the last warning)" if since > 1 else ""
            logger.warning("phasecast: %s%s", rejection, more)
            self._warned_at, self._warned_count = now, self._stats.rejections
        else:
            logger.debug("phasecast: %s", rejection)
        if self._on_error is not None:
            try:
                self._on_error(rejection)
            except Exception:
                logger.exception("phasecast: on_error raised")
        return rejection


class IngestStream(_IngestBase):
    """A producer WebSocket (``/ingest``): :meth:`send` one state per message.

    Opening it raises :class:`PublishError` at once when the server refuses the
    upgrade (401 key, 429, 503 producer limit: ``status``, ``error``,
    ``retry_after``) or cannot be reached (``status`` None). The server answers only
    rejections (``{"ok":false,"error":…,"field":…,"step":…}``); each is passed to
    ``on_error`` and kept until read with :meth:`rejections` or
    :meth:`next_rejection`.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        headers: dict[str, str] | None = None,
        on_error: Callable[[IngestRejected], None] | None = None,
        connect_timeout: float | None = 4.0,
    ) -> None:
        super().__init__(
            url, format=format, headers=headers, on_error=on_error, connect_timeout=connect_timeout
        )
        self._reader: asyncio.Task[None] | None = None
        # Made in __aenter__: on Python 3.9 a queue binds to the loop it is made in.
        self._rejections: asyncio.Queue[IngestRejected] | None = None
        self._lost: BaseException | None = None

    async def __aenter__(self) -> IngestStream:
        try:
            self._ws = await _ws.connect(
                self._url,
                headers=self._headers,
                max_size=1 << 20,
                open_timeout=self._connect_timeout,
            )
        except _CONNECT_ERRORS as err:
            raise self._refused(err) from err
        logger.info("phasecast: producer WebSocket open: %s", self._url)
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

        :raises PublishError: the connection is closed (``code`` says how), or the
            state cannot be encoded.
        """
        if self._ws is None:
            raise PublishError(None, "the producer WebSocket is not open", step=_step_of(state))
        message = self._encode(state)
        try:
            await self._ws.send(message)
        except _ws.ConnectionClosed as closed:
            raise self._closed_error(closed) from None
        self._stats.states += 1
        self._stats.bytes += len(message)

    def rejections(self) -> list[IngestRejected]:
        """The rejections received and not yet read, oldest first."""
        found: list[IngestRejected] = []
        while self._rejections is not None and not self._rejections.empty():
            found.append(self._rejections.get_nowait())
        return found

    async def next_rejection(self, timeout: float | None = None) -> IngestRejected | None:
        """Waits for the next rejection; None after ``timeout`` seconds without one."""
        if self._rejections is None:
            raise PublishError(None, "the producer WebSocket is not open")
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
                rejection = self._rejection(await ws.recv())
                if rejection is not None:
                    rejections.put_nowait(rejection)
        except _ws.ConnectionClosed as closed:
            self._closed_error(closed)  # records the close code


class SyncIngestStream(_IngestBase):
    """:class:`IngestStream` without an event loop: ``with producer.ingest() as s:``.

    Rejections are collected as they arrive; ``on_error`` is called from the thread
    that calls :meth:`send`, :meth:`rejections` or :meth:`next_rejection`.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        headers: dict[str, str] | None = None,
        on_error: Callable[[IngestRejected], None] | None = None,
        connect_timeout: float | None = 4.0,
    ) -> None:
        super().__init__(
            url, format=format, headers=headers, on_error=on_error, connect_timeout=connect_timeout
        )
        self._pending: queue.SimpleQueue[IngestRejected] = queue.SimpleQueue()

    def __enter__(self) -> SyncIngestStream:
        try:
            self._ws = _ws.connect_sync(
                self._url,
                headers=self._headers,
                max_size=1 << 20,
                open_timeout=self._connect_timeout,
            )
        except _CONNECT_ERRORS as err:
            raise self._refused(err) from err
        logger.info("phasecast: producer WebSocket open: %s", self._url)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, state: State) -> None:
        """Sends one state; see :meth:`IngestStream.send`."""
        if self._ws is None:
            raise PublishError(None, "the producer WebSocket is not open", step=_step_of(state))
        message = self._encode(state)
        self._drain(0)
        try:
            self._ws.send(message)
        except _ws.ConnectionClosed as closed:
            raise self._closed_error(closed) from None
        self._stats.states += 1
        self._stats.bytes += len(message)

    def rejections(self) -> list[IngestRejected]:
        """The rejections received and not yet read, oldest first."""
        self._drain(0)
        found: list[IngestRejected] = []
        while not self._pending.empty():
            found.append(self._pending.get_nowait())
        return found

    def next_rejection(self, timeout: float | None = None) -> IngestRejected | None:
        """Waits for the next rejection; None after ``timeout`` seconds without one."""
        if not self._pending.empty():
            return self._pending.get_nowait()
        self._drain(timeout, first_only=True)
        return None if self._pending.empty() else self._pending.get_nowait()

    def close(self) -> None:
        """Closes the connection (a no-op when closed)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _drain(self, timeout: float | None, first_only: bool = False) -> None:
        """Reads what the server sent, waiting up to ``timeout`` for the first message."""
        ws = self._ws
        if ws is None:
            return
        while True:
            try:
                message = ws.recv(timeout=timeout)
            except TimeoutError:
                return
            except _ws.ConnectionClosed as closed:
                self._closed_error(closed)
                return
            rejection = self._rejection(message)
            if rejection is not None:
                self._pending.put(rejection)
                if first_only:
                    return
            timeout = 0


def _step_of(state: Any) -> int | None:
    step = getattr(state, "step", None)
    return step if isinstance(step, int) else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
