"""A real phasecast server for the tests: ``$PHASECAST_BIN serve`` on a free loopback port.

The binary comes from ``PHASECAST_BIN``. Without it the tests that need it skip with a
message, unless ``PHASECAST_REQUIRE_TOOLS`` is set (not ``0``), when they fail.

The port is picked by binding port 0 and closing; if the server then finds it taken
it exits, and the next free port is tried. Readiness is ``GET /health`` answering;
the server is stopped (SIGTERM, then SIGKILL) when the test is done. Only 127.0.0.1
is ever used.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

import pytest

#: How long a server may take to answer /health (a failure guard: a loaded 2-core
#: machine starts it in well under a second).
START_TIMEOUT = 60.0


def binary() -> str:
    """The server binary, or skip/fail the test as PHASECAST_REQUIRE_TOOLS says."""
    path = os.environ.get("PHASECAST_BIN", "")
    required = os.environ.get("PHASECAST_REQUIRE_TOOLS", "") not in ("", "0")
    if not path:
        message = (
            "PHASECAST_BIN is not set: the real-server tests need a phasecast binary "
            "(cargo build --bin phasecast; PHASECAST_BIN=target/debug/phasecast)"
        )
        if required:
            pytest.fail(message + " and PHASECAST_REQUIRE_TOOLS is set")
        pytest.skip(message)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"PHASECAST_BIN={path!r} is not an executable file")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealServer:
    """``with RealServer("--demo") as server:`` … ``server.ws_url``, ``server.restart()``."""

    def __init__(self, *args: str, binary_path: str | None = None) -> None:
        self.binary = binary_path or binary()
        self.args = list(args)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    # --- addresses ---------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.http_url + "/health", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> RealServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()

    def start(self, same_port: bool = False) -> None:
        """Starts the server (on a new free port unless ``same_port``)."""
        for _ in range(10):
            if not same_port:
                self.port = free_port()
            if self._spawn():
                return
            if same_port:
                # The old process is gone (stop() waited), so the port frees promptly.
                continue
        raise AssertionError(f"the server did not start:\n{self.log()[-4000:]}")

    def _spawn(self) -> bool:
        command = [
            self.binary,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.args,
        ]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "in use" in self.log().lower():
                    return False  # the port was taken meanwhile: try another
                raise AssertionError(f"the server exited:\n{self.log()[-4000:]}")
            try:
                self.health()
                return True
            except OSError:
                time.sleep(0.05)  # polling interval while the server starts
        self.stop()
        raise AssertionError(f"no /health answer within {START_TIMEOUT} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

    def restart(self) -> None:
        """Stops the server and starts a new one on the same port."""
        self.stop()
        self.start(same_port=True)
