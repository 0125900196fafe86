"""The few parts of the ``websockets`` package this client uses, across its versions.

websockets 13 added the ``websockets.asyncio`` implementation (the default from 14
on); 12 has only the legacy one, which names the header argument ``extra_headers``
and reports a refused handshake as ``InvalidStatusCode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

try:  # websockets >= 13
    from websockets.asyncio.client import connect as _connect

    _HEADERS_ARGUMENT = "additional_headers"
except ImportError:  # pragma: no cover - websockets 12
    from websockets.client import connect as _connect  # type: ignore

    _HEADERS_ARGUMENT = "extra_headers"

__all__ = [
    "ConnectionClosed",
    "InvalidHandshake",
    "close_code",
    "close_reason",
    "connect",
    "handshake_status",
]


async def connect(
    url: str,
    *,
    headers: Mapping[str, str],
    max_size: int | None,
    open_timeout: float | None,
) -> Any:
    """Opens a client connection: an object with ``send``, ``recv`` and ``close``."""
    options: dict[str, Any] = {
        _HEADERS_ARGUMENT: dict(headers),
        "max_size": max_size,
        "open_timeout": open_timeout,
    }
    return await _connect(url, **options)


def close_code(closed: ConnectionClosed) -> int | None:
    """The close code the peer sent, or None when it sent no close frame."""
    received = getattr(closed, "rcvd", None)
    return None if received is None else int(received.code)


def close_reason(closed: ConnectionClosed) -> str:
    """The close reason the peer sent ("" when none)."""
    received = getattr(closed, "rcvd", None)
    return "" if received is None else str(received.reason)


def handshake_status(error: InvalidHandshake) -> int | None:
    """The HTTP status of a refused handshake, when the server answered with one."""
    response = getattr(error, "response", None)  # InvalidStatus (websockets >= 13)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(error, "status_code", None)  # InvalidStatusCode (legacy)
    return None if status is None else int(status)
