"""A subscriber for cross-language conformance tests.

::

    python -m phasecast.conformance --url ws://127.0.0.1:PORT/ws --format protobuf \\
        --delta true --until-seq 500 [--slow-ms 20] [--stream NAME] [--timeout 30] \\
        [--epsilon 0.001] [--fields phases,summary]

After every frame that leaves it holding a verified state it prints one JSON line to
stdout with that state::

    {"seq":42,"step":11,"energy":-1.5,"timestamp":1764000000.5,"phases":[...],"spins":[...]}

(floats in Python's shortest round-trip form, so they carry the exact bits), and exits
0 once it holds a seq >= ``--until-seq``. Connection and resync events go to stderr.
Exit status: 0 done, 1 the subscription ended or was refused, 2 bad arguments (an
unknown field, a negative epsilon), 3 timed out.

``--epsilon E`` picks the precision class (``?epsilon=``) and ``--fields LIST`` the
parts of the state (``?fields=``); both are sent on every reconnect. The state printed
is the one held, the projected one with ``--fields`` (parts not taken: ``[]``, energy
``0.0``, timestamp ``null``). When the frame carried them the line also has
``"summary":{"r","psi","magnetization","energy","histogram"}`` and
``"envelope":{"states","r":{"min","max","mean"},"psi",...,"magnetization",...,
"energy",...}``, each float the Python float of the server's 32-bit float.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from ._core import Event, check_epsilon
from .client import Subscriber
from .errors import ConnectError, SubscriptionRefused
from .model import Envelope, Range, State, Summary, normalize_fields

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3


def state_line(
    seq: int,
    state: State,
    summary: Summary | None = None,
    envelope: Envelope | None = None,
) -> str:
    """The JSON line printed for a state held at ``seq``, with the frame's summary and
    envelope when it carried them (keys left out otherwise)."""
    phases: Any = state.phases
    spins: Any = state.spins
    line: dict[str, Any] = {
        "seq": seq,
        "step": state.step,
        "energy": state.energy,
        "timestamp": state.timestamp,
        "phases": phases if isinstance(phases, list) else phases.tolist(),
        "spins": spins if isinstance(spins, list) else spins.tolist(),
    }
    if summary is not None:
        line["summary"] = summary_object(summary)
    if envelope is not None:
        line["envelope"] = envelope_object(envelope)
    return json.dumps(line, separators=(",", ":"))


def summary_object(summary: Summary) -> dict[str, Any]:
    """A summary as a JSON object, with the server's keys."""
    return {
        "r": summary.r,
        "psi": summary.psi,
        "magnetization": summary.magnetization,
        "energy": summary.energy,
        "histogram": list(summary.histogram),
    }


def envelope_object(envelope: Envelope) -> dict[str, Any]:
    """An envelope as a JSON object, with the server's keys."""

    def ranged(r: Range) -> dict[str, float]:
        return {"min": r.min, "max": r.max, "mean": r.mean}

    return {
        "states": envelope.states,
        "r": ranged(envelope.r),
        "psi": ranged(envelope.psi),
        "magnetization": ranged(envelope.magnetization),
        "energy": ranged(envelope.energy),
    }


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _epsilon(text: str) -> float:
    try:
        return check_epsilon(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fields(text: str) -> tuple[str, ...]:
    try:
        return normalize_fields(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m phasecast.conformance",
        description="Subscribe and print the state held after every frame as a JSON line.",
        epilog="Exit status: 0 done, 1 the subscription ended or was refused, "
        "2 bad arguments, 3 timed out.",
    )
    parser.add_argument("--url", required=True, help="the server's /ws URL")
    parser.add_argument("--format", default="json", choices=["json", "protobuf", "proto"])
    parser.add_argument("--delta", type=_bool, default=True, help="true or false")
    parser.add_argument("--until-seq", type=int, required=True, help="stop once seq >= this")
    parser.add_argument("--slow-ms", type=float, default=0.0, help="sleep after each frame")
    parser.add_argument("--stream", default=None)
    parser.add_argument("--max-hz", type=float, default=None)
    parser.add_argument("--key", default=None, help="subscriber key (X-API-Key)")
    parser.add_argument(
        "--epsilon", type=_epsilon, default=None, help="precision class, radians (?epsilon=)"
    )
    parser.add_argument(
        "--fields",
        type=_fields,
        default=None,
        help="comma list of phases, spins, energy, timestamp, summary (?fields=)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument(
        "--numpy", action="store_true", help="hold phases as a numpy array (phasecast[numpy])"
    )
    return parser.parse_args(argv)


def _log(text: str) -> None:
    print(f"phasecast.conformance: {text}", file=sys.stderr, flush=True)


def _log_event(event: Event) -> None:
    _log(str(event))


async def run(args: argparse.Namespace) -> int:
    """Subscribes and prints until ``--until-seq``; returns the exit status."""
    subscriber = Subscriber(
        args.url,
        format=args.format,
        delta=None if args.delta else False,  # deltas are the default: ask only for none
        max_hz=args.max_hz,
        stream=args.stream,
        key=args.key,
        epsilon=args.epsilon,
        fields=args.fields,
        numpy=args.numpy,
        on_event=_log_event,
    )
    async with subscriber as sub:
        async for update in sub:
            line = state_line(update.seq, update.state, update.summary, update.envelope)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            if update.seq >= args.until_seq:
                return EXIT_OK
            if args.slow_ms > 0:
                await asyncio.sleep(args.slow_ms / 1000.0)
    _log("the subscription ended before --until-seq")
    return EXIT_FAILED


async def _run_with_timeout(args: argparse.Namespace) -> int:
    try:
        return await asyncio.wait_for(run(args), args.timeout)
    except asyncio.TimeoutError:
        _log(f"timed out after {args.timeout} s")
        return EXIT_TIMEOUT


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Events are printed by _log_event; keep the library's log records off stderr.
    logging.getLogger("phasecast").addHandler(logging.NullHandler())
    try:
        return asyncio.run(_run_with_timeout(args))
    except (SubscriptionRefused, ConnectError) as err:
        _log(str(err))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
