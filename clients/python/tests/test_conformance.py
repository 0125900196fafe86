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


def test_epsilon_and_fields_are_passed_and_summaries_printed() -> None:
    from test_fields import TRUTH, delta_frame, envelope_at, full_frame, summary_at

    fields = ("phases", "summary")

    async def script(conn: Conn) -> None:
        assert conn.query == {
            "format": "protobuf",
            "max_hz": "10",
            "epsilon": "0.001",
            "fields": "phases,summary",
        }
        await conn.send(full_frame("protobuf", 1, fields, epoch="e1", envelope=True))
        await conn.send(delta_frame("protobuf", 1, 2, fields))  # a summary, no envelope
        await conn.wait_closed()

    code, lines, err = asyncio.run(
        run_tool(
            script,
            "--format",
            "protobuf",
            "--until-seq",
            "2",
            "--max-hz",
            "10",
            "--epsilon",
            "0.001",
            "--fields",
            "summary,phases",
        )
    )
    assert code == 0, err
    first, second = (json.loads(line) for line in lines)
    for line in (first, second):
        truth = TRUTH[line["seq"] - 1]
        # The projected state: no spins, energy 0, no timestamp.
        assert (line["spins"], line["energy"], line["timestamp"]) == ([], 0.0, None)
        assert line["phases"] == truth.phases
        # The float32 values, exactly, as Python floats.
        assert line["summary"] == summary_at(line["seq"])
    assert first["envelope"] == envelope_at([1])
    assert "envelope" not in second
    assert list(first) == [
        "seq",
        "step",
        "energy",
        "timestamp",
        "phases",
        "spins",
        "summary",
        "envelope",
    ]


def test_a_summary_only_subscription_prints_empty_states() -> None:
    from test_fields import TRUTH, full_frame, summary_at

    async def script(conn: Conn) -> None:
        assert conn.query == {"format": "json", "fields": "summary"}
        for seq in (1, 4):
            await conn.send(full_frame("json", seq, ("summary",)))
        await conn.wait_closed()

    code, lines, err = asyncio.run(
        run_tool(script, "--format", "json", "--until-seq", "4", "--fields", "summary")
    )
    assert code == 0, err
    assert [json.loads(line) for line in lines] == [
        {
            "seq": seq,
            "step": TRUTH[seq - 1].step,
            "energy": 0.0,
            "timestamp": None,
            "phases": [],
            "spins": [],
            "summary": summary_at(seq),
        }
        for seq in (1, 4)
    ]
    assert "resync" not in err


def test_bad_fields_and_epsilon_exit_2_naming_the_argument() -> None:
    for args, message in (
        (["--fields", "phases,bogus"], "unknown field 'bogus'"),
        (["--fields", ""], "empty list"),
        (["--epsilon", "-1"], "epsilon"),
        (["--epsilon", "nan"], "epsilon"),
    ):
        process = subprocess.run(
            [sys.executable, "-m", "phasecast.conformance", "--url", "ws://127.0.0.1:1/ws"]
            + ["--until-seq", "1", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert process.returncode == 2, (args, process.stderr)
        assert f"argument {args[0]}" in process.stderr and message in process.stderr
        assert process.stdout == ""


def test_state_line_with_summary_and_envelope() -> None:
    from phasecast.conformance import state_line
    from phasecast.model import Envelope, Range, Summary

    summary = Summary(0.5, -0.25, 1.0, -1.5, (1, 0, 2))
    envelope = Envelope(
        2,
        Range(0.25, 0.5, 0.375),
        Range(0.0, 0.0, 0.0),
        Range(1.0, 1.0, 1.0),
        Range(-2.0, 1.0, -0.5),
    )
    line = state_line(3, State(9, [], [], 0.0, None), summary, envelope)
    assert line == (
        '{"seq":3,"step":9,"energy":0.0,"timestamp":null,"phases":[],"spins":[],'
        '"summary":{"r":0.5,"psi":-0.25,"magnetization":1.0,"energy":-1.5,"histogram":[1,0,2]},'
        '"envelope":{"states":2,"r":{"min":0.25,"max":0.5,"mean":0.375},'
        '"psi":{"min":0.0,"max":0.0,"mean":0.0},"magnetization":{"min":1.0,"max":1.0,"mean":1.0},'
        '"energy":{"min":-2.0,"max":1.0,"mean":-0.5}}}'
    )
