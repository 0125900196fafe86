"""What the client raises. Every exception is a :class:`PhasecastError`.

- :class:`SubscriptionRefused`: permanent; the server (or what answered at that URL)
  refused the subscription. Retrying would not help: fix the URL, key or parameters.
- :class:`ConnectError`: the first connect failed on every try (or ``max_reconnects``
  ran out); the last transient error is its ``__cause__``. Also a ``ConnectionError``.
- :class:`PublishError`: a state was not accepted, or could not be sent.
- :class:`IngestRejected`: the server rejected one state on the producer WebSocket.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConnectError",
    "IngestRejected",
    "PhasecastError",
    "PublishError",
    "SubscriptionRefused",
]


class PhasecastError(Exception):
    """Base class of every exception this library raises on purpose."""


def _with_reason(text: str, error: str | None, field: str | None) -> str:
    if error:
        text += f": {error}"
    if field:
        text += f" (field {field})"
    return text


class SubscriptionRefused(PhasecastError):
    """The subscription was refused for good; the client is closed.

    Raised at once (no retry) for an HTTP 400, 401, 403 or 404 answer to the upgrade,
    any other answer that is not a WebSocket upgrade and not 429/5xx (e.g. a 200: the
    URL is a page, not the WebSocket), a close code the server uses for a protocol
    error (1002, 1003, 1007, 1009, 1010), and a TLS certificate the client rejects.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        field: str | None = None,
        code: int | None = None,
        reason: str | None = None,
        url: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        #: HTTP status of a refused handshake.
        self.status = status
        #: The server's reason (the ``error`` of its JSON answer).
        self.error = error
        #: The parameter or field the server names (``field`` of its JSON answer).
        self.field = field
        #: WebSocket close code, when the server closed the connection.
        self.code = code
        #: WebSocket close reason.
        self.reason = reason
        #: The URL that was refused.
        self.url = url
        #: The server's JSON answer, when it sent one.
        self.body = body


class ConnectError(PhasecastError, ConnectionError):
    """No connection could be made: every try of the first connect failed with a
    transient error (refused, reset, timed out, DNS, 429, 5xx), or ``max_reconnects``
    tries in a row did after a connection was lost. The client is closed.

    ``__cause__`` is the last error; ``status`` and ``error`` are set when it was an
    HTTP answer.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        tries: int,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        #: The URL of the last try.
        self.url = url
        #: How many tries were made.
        self.tries = tries
        #: HTTP status of the last try, when it got an answer (429, 503...).
        self.status = status
        #: The server's reason for that answer.
        self.error = error

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PublishError(PhasecastError):
    """A state was not accepted, or could not be delivered.

    ``status`` is the HTTP status of a refusal (400 malformed, 401 key, 413 too big,
    422 invalid, 429 rate limited, 503 stream or producer limit...), or ``None`` when
    no answer came (connection refused or lost, timeout) or the client could not
    encode the state. ``error`` is the server's reason, ``field`` the field it names,
    ``step`` the step of the state, ``retry_after`` the ``Retry-After`` header in
    seconds (on 429).
    """

    def __init__(
        self,
        status: int | None,
        error: str,
        *,
        field: str | None = None,
        step: int | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        code: int | None = None,
    ) -> None:
        head = "state" if step is None else f"state with step {step}"
        if status is None:
            message = _with_reason(f"{head} not published", error, field)
        else:
            message = _with_reason(f"{head} refused: HTTP {status}", error, field)
        if retry_after is not None:
            message += f"; retry after {retry_after:g} s"
        super().__init__(message)
        #: HTTP status, or None when there was no answer.
        self.status = status
        #: The server's reason, or what went wrong on the way.
        self.error = error
        #: The field the server names, if any.
        self.field = field
        #: The step of the state concerned, when known.
        self.step = step
        #: Seconds to wait before sending again (``Retry-After``), on 429.
        self.retry_after = retry_after
        #: The server's JSON answer, when it sent one.
        self.body = body
        #: WebSocket close code (producer WebSocket closed by the server).
        self.code = code


class IngestRejected(PublishError):
    """A state the server rejected on the producer WebSocket (the socket stays open).

    The server's message is ``{"ok":false,"error":…,"field":…,"step":…}``;
    ``status`` is None (there is no HTTP answer per message).
    """

    def __init__(
        self,
        error: str,
        *,
        field: str | None = None,
        step: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(None, error, field=field, step=step, body=body)
        head = "state" if step is None else f"state with step {step}"
        self.args = (_with_reason(f"{head} rejected", error, field),)
