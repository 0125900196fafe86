"""``python -m phasecast.conformance`` against the fake server, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from fake_ws import Conn, FakeServer
from test_subscriber import STATES, delta, full

from phasecast.model import State


async def run_tool(script, *args: str) -> tuple[int, list[str], str]:  # type: ignore[no-untyped-def]
    async with FakeServer(script) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "phasecast.conformance",
            "--url",
            server.url,
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode().splitlines(), err.decode()


def expected_line(seq: int) -> dict:
    state: State = STATES[seq - 1]
    return {
        "seq": seq,
        "step": state.step,
        "energy": state.energy,
        "timestamp": state.timestamp,
        "phases": state.phases,
        "spins": state.spins,
    }


def test_prints_each_state_held_and_stops_at_until_seq() -> None:
    async def script(conn: Conn) -> None:
        assert conn.query == {"format": "protobuf", "stream": "s1"}
        await conn.send(full("protobuf", 1))
        await conn.send(delta("protobuf", 1, 2))
        await conn.send(delta("protobuf", 1, 3))  # wrong base: resync
        await conn.recv()
        await conn.send(full("protobuf", 4))
        await conn.send(delta("protobuf", 4, 5))
        await conn.send(delta("protobuf", 5, 6))  # never needed
        await conn.wait_closed()

    code, lines, err = asyncio.run(
        run_tool(
            script, "--format", "protobuf", "--until-seq", "5", "--stream", "s1", "--slow-ms", "1"
        )
    )
    assert code == 0, err
    assert [json.loads(line) for line in lines] == [expected_line(s) for s in (1, 2, 4, 5)]
    # Shortest round-trip floats: parsing gives back the exact doubles.
    assert json.loads(lines[0])["phases"] == STATES[0].phases
    assert "resync" in err
    assert lines[0].startswith('{"seq":1,"step":100,"energy":-0.0,"timestamp":1000000000.0,')


def test_delta_false_and_timeout() -> None:
    async def script(conn: Conn) -> None:
        assert conn.query == {"format": "json", "delta": "false"}
        await conn.send(full("json", 1))
        await conn.wait_closed()

    code, lines, err = asyncio.run(
        run_tool(
            script, "--format", "json", "--delta", "false", "--until-seq", "9", "--timeout", "2"
        )
    )
    assert code == 3
    # The one state there is, unless the machine was too slow to get it in 2 s (the
    # exit status is what this checks; the line format is checked above).
    assert [json.loads(line) for line in lines] in ([expected_line(1)], [])
    assert "timed out" in err


def test_state_line_format() -> None:
    from phasecast.conformance import state_line

    line = state_line(7, State(3, [0.1, 1e-320, -0.0], [1, -1, 1], -2.0, None))
    assert line == (
        '{"seq":7,"step":3,"energy":-2.0,"timestamp":null,'
        '"phases":[0.1,1e-320,-0.0],"spins":[1,-1,1]}'
    )
