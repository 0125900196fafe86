"""A scripted WebSocket server on 127.0.0.1 (port 0) for the client tests.

Each connection runs ``script(conn)`` with a :class:`Conn` that gives the request's
path, query and headers and ``send``/``recv``/``close``. ``refuse`` answers chosen
handshakes with a plain HTTP response instead (a status, headers and a body, as the
server does with its JSON errors). :class:`ThreadedServer` runs one in a thread of its
own, for the blocking client.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, Callable, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve as _serve


class Conn:
    """One accepted connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.path: str = ws.request.path
        self.headers = ws.request.headers
        parts = urlsplit(self.path)
        self.route = parts.path
        self.raw_query = parts.query
        self.query: dict[str, str] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        #: Every message received from the client, in order.
        self.received: list[str | bytes] = []

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def recv(self, timeout: float = 10.0) -> str | bytes:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        self.received.append(message)
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    async def abort_after_delivery(self) -> None:
        """Drops the connection without a close frame, once the client has read what
        was sent (its answer to a ping, which follows the frames, has come back)."""
        pong = await self.ws.ping()
        await asyncio.wait_for(pong, 10)
        self.ws.transport.abort()

    async def wait_closed(self) -> None:
        """Reads (and records) until the client goes away."""
        try:
            while True:
                self.received.append(await self.ws.recv())
        except Exception:
            return


Script = Callable[[Conn], Awaitable[None]]
#: (status, headers, body) for an HTTP answer instead of the upgrade.
Answer = Tuple[int, "dict[str, str]", bytes]
#: Given the handshake number (1, 2, ...) and the request path, an answer or None.
Refuse = Callable[[int, str], Optional[Answer]]


def json_answer(status: int, error: str, field: str | None = None, **headers: str) -> Answer:
    """An answer like the server's: ``{"ok":false,"error":…,"field":…}``."""
    body: dict[str, Any] = {"ok": False, "error": error}
    if field is not None:
        body["field"] = field
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


class FakeServer:
    """``async with FakeServer(script) as server:`` then connect to ``server.url``.

    ``refuse_status`` answers every handshake with that HTTP status instead;
    ``refuse`` chooses per handshake.
    """

    def __init__(
        self,
        script: Script,
        refuse_status: int | None = None,
        refuse: Refuse | None = None,
    ) -> None:
        self._script = script
        if refuse is None and refuse_status is not None:
            status = refuse_status
            refuse = lambda n, path: (status, {"Content-Type": "text/plain"}, b"refused\n")  # noqa: E731
        self._refuse = refuse
        self.connections: list[Conn] = []
        #: Paths of every handshake request, refused or not.
        self.handshakes: list[str] = []
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handler(self, ws: Any) -> None:
        conn = Conn(ws)
        self.connections.append(conn)
        await self._script(conn)

    async def _process_request(self, connection: Any, request: Any) -> Any:
        self.handshakes.append(request.path)
        if self._refuse is None:
            return None
        answer = self._refuse(len(self.handshakes), request.path)
        if answer is None:
            return None
        status, headers, body = answer
        response = connection.respond(HTTPStatus(status), "")
        response.body = body
        for name in ("Content-Type", "Content-Length"):
            del response.headers[name]
        for name, value in headers.items():
            response.headers[name] = value
        response.headers["Content-Length"] = str(len(body))
        return response

    async def __aenter__(self) -> FakeServer:
        self._server = await _serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()


class ThreadedServer:
    """A :class:`FakeServer` on an event loop in its own thread: ``with
    ThreadedServer(script) as server:`` for the blocking client's tests."""

    def __init__(self, script: Script, **options: Any) -> None:
        self.server = FakeServer(script, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
