"""The few parts of the ``websockets`` package this client uses (websockets >= 13.1).

The asyncio client is ``websockets.asyncio.client`` (new in 13, the default from 14
on); the blocking one is ``websockets.sync.client``. Both report a refused handshake
as ``InvalidStatus``, whose ``response`` carries the status, headers and body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect as _connect_async
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as _connect_sync

__all__ = [
    "ConnectionClosed",
    "InvalidHandshake",
    "InvalidStatus",
    "Refusal",
    "close_code",
    "close_reason",
    "connect",
    "connect_sync",
    "refusal",
]


#: Frames a subscriber's websockets connection parses ahead of its code: one. The
#: library stops reading the socket beyond that, so the server's pings (answered as
#: they are read) tell it how far the code has got, and a slow reader is handed the
#: newest state instead of a queue of old ones (ARCHITECTURE.md, "Slow subscribers").
SUBSCRIBER_QUEUE = 1


def _options(
    headers: Mapping[str, str],
    max_size: int | None,
    open_timeout: float | None,
    max_queue: int | None,
) -> dict[str, Any]:
    options = {
        "additional_headers": dict(headers),
        "max_size": max_size,
        "open_timeout": open_timeout,
    }
    if max_queue is not None:
        options["max_queue"] = max_queue
    return options


async def connect(
    url: str,
    *,
    headers: Mapping[str, str],
    max_size: int | None,
    open_timeout: float | None,
    max_queue: int | None = None,
) -> Any:
    """Opens an asyncio client connection (``send``, ``recv``, ``close``);
    ``max_queue`` is websockets' own (None: its default)."""
    return await _connect_async(
        url, **_options(headers, max_size, open_timeout, max_queue)
    )


def connect_sync(
    url: str,
    *,
    headers: Mapping[str, str],
    max_size: int | None,
    open_timeout: float | None,
    max_queue: int | None = None,
) -> Any:
    """Opens a blocking client connection (``send``, ``recv``, ``close``).

    ``__enter__`` gives the connection both from websockets < 17.1 (where connect()
    returns it) and from the newer API (where connect() is used as a context manager).
    """
    return _connect_sync(
        url, **_options(headers, max_size, open_timeout, max_queue)
    ).__enter__()


def close_code(closed: ConnectionClosed) -> int | None:
    """The close code the peer sent, or None when it sent no close frame."""
    received = getattr(closed, "rcvd", None)
    return None if received is None else int(received.code)


def close_reason(closed: ConnectionClosed) -> str:
    """The close reason the peer sent ("" when none)."""
    received = getattr(closed, "rcvd", None)
    return "" if received is None else str(received.reason)


@dataclass(frozen=True)
class Refusal:
    """An HTTP answer other than 101 to a WebSocket upgrade."""

    status: int
    #: The ``error`` of the server's JSON body, when it sent one.
    error: str | None
    #: The ``field`` of the server's JSON body.
    field: str | None
    #: ``Retry-After`` in seconds, when sent.
    retry_after: float | None
    #: The JSON body, when it was a JSON object.
    body: dict[str, Any] | None
    content_type: str


def refusal(error: BaseException) -> Refusal | None:
    """The HTTP answer in a refused handshake, or None when there was none."""
    if not isinstance(error, InvalidStatus):
        return None
    response = error.response
    headers = response.headers
    body = json_object(response.body or b"")
    reason = body.get("error") if body else None
    field = body.get("field") if body else None
    return Refusal(
        status=int(response.status_code),
        error=str(reason) if reason is not None else None,
        field=str(field) if field is not None else None,
        retry_after=retry_after_seconds(headers.get("Retry-After")),
        body=body,
        content_type=str(headers.get("Content-Type", "")),
    )


def json_object(raw: Any) -> dict[str, Any] | None:
    """The JSON object in ``raw``, or None when it is not one."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def retry_after_seconds(header: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date from now."""
    if header is None:
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    import email.utils
    import time

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:  # pragma: no cover - Python < 3.10 returns None on junk
        return None
    return max(0.0, when.timestamp() - time.time())
