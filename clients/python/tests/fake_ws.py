"""A scripted WebSocket server on 127.0.0.1 (port 0) for the subscriber tests.

Each connection runs ``script(conn)`` with a :class:`Conn` that gives the request's
path, query and headers and the version-independent ``send``/``recv``/``close``.
Works with websockets >= 13 (``websockets.asyncio``) and the legacy server of 12.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

try:
    from websockets.asyncio.server import serve as _serve

    LEGACY = False
except ImportError:  # websockets 12
    from websockets.server import serve as _serve  # type: ignore[no-redef]

    LEGACY = True


class Conn:
    """One accepted connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        if LEGACY:
            self.path: str = ws.path
            self.headers = ws.request_headers
        else:
            self.path = ws.request.path
            self.headers = ws.request.headers
        parts = urlsplit(self.path)
        self.route = parts.path
        self.query: dict[str, str] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        #: Every message received from the client, in order.
        self.received: list[str | bytes] = []

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def recv(self, timeout: float = 5.0) -> str | bytes:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        self.received.append(message)
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    async def wait_closed(self) -> None:
        """Reads (and records) until the client goes away."""
        try:
            while True:
                self.received.append(await self.ws.recv())
        except Exception:
            return


Script = Callable[[Conn], Awaitable[None]]


class FakeServer:
    """``async with FakeServer(script) as server:`` then connect to ``server.url``.

    ``refuse_status`` answers the handshake with that HTTP status instead.
    """

    def __init__(self, script: Script, refuse_status: int | None = None) -> None:
        self._script = script
        self._refuse_status = refuse_status
        self.connections: list[Conn] = []
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handler(self, ws: Any, *_: Any) -> None:
        conn = Conn(ws)
        self.connections.append(conn)
        await self._script(conn)

    async def _process_request(self, *args: Any) -> Any:
        if self._refuse_status is None:
            return None
        status = HTTPStatus(self._refuse_status)
        if LEGACY:
            return (status, [], b"refused\n")
        connection = args[0]
        return connection.respond(status, "refused\n")

    async def __aenter__(self) -> FakeServer:
        self._server = await _serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()
