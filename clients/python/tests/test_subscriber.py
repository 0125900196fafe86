"""The Subscriber against a scripted fake server on real sockets (127.0.0.1, port 0).

Each test's server script plays one side of a scenario (bad frames, lost
connections, refusals); the test checks what the subscriber yields and sends, and
that every state it yields is exactly the server's state at that seq.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Callable, TypeVar

import pytest
import wire
from fake_ws import Conn, FakeServer

from phasecast import Backoff, Event, State, Subscriber, SubscriptionRefused, Update
from phasecast.codec import resync_message
from phasecast.model import same_bits

T = TypeVar("T")

# The server's states: STATES[seq - 1] is the state with that seq.
_rng = random.Random(7)
STATES: list[State] = []
for _step in range(12):
    _phases = [_rng.uniform(-3, 3) for _ in range(6)]
    if STATES and _step % 2:  # some frames change only a little
        _phases = list(STATES[-1].phases)
        _phases[_step % 6] += 0.25
    STATES.append(
        State(
            100 + _step,
            _phases,
            [_rng.choice((1, -1)) for _ in range(6)],
            -float(_step),
            1e9 + _step,
        )
    )


def full(fmt: str, seq: int) -> str | bytes:
    encode = wire.full_json if fmt == "json" else wire.full_pb
    return encode(seq, STATES[seq - 1])


def delta(fmt: str, base_seq: int, seq: int, corrupt: bool = False) -> str | bytes:
    d = wire.diff(STATES[base_seq - 1], base_seq, STATES[seq - 1], seq, None)
    if corrupt:
        d.checksum ^= 1 << 17
    encode = wire.delta_json if fmt == "json" else wire.delta_pb
    return encode(d, STATES[seq - 1])


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05, rng=random.Random(1))


def run(scenario: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


async def collect(sub: Subscriber, until_seq: int) -> list[int]:
    """Seqs of the states yielded until ``until_seq``; checks each state's bits."""
    seqs = []
    async for update in sub:
        assert isinstance(update, Update)
        assert sub.seq == update.seq and sub.state is update.state
        assert same_bits(update.state, STATES[update.seq - 1]), f"wrong state at {update.seq}"
        seqs.append(update.seq)
        if update.seq >= until_seq:
            break
    return seqs


FORMATS = pytest.mark.parametrize("fmt", ["json", "protobuf"])


@FORMATS
def test_in_step_deltas(fmt: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full(fmt, 1))
        for seq in range(2, 8):
            await conn.send(delta(fmt, seq - 1, seq))
        await conn.send(delta(fmt, 7, 10))  # a skip: base is 3 seqs behind
        await conn.wait_closed()

    async def scenario() -> tuple[list[int], FakeServer, int]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, format=fmt) as sub:
                seqs = await collect(sub, 10)
            return seqs, server, sub.resyncs

    seqs, server, resyncs = run(scenario)
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 10]
    assert resyncs == 0
    assert server.connections[0].route == "/ws"
    assert server.connections[0].query == {"format": fmt}


@FORMATS
def test_wrong_base_seq_resyncs_and_ignores_deltas_until_full(fmt: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full(fmt, 1))
        await conn.send(delta(fmt, 1, 2))
        await conn.send(delta(fmt, 1, 3))  # the client holds 2, not 1
        await conn.recv()
        await conn.send(delta(fmt, 3, 4))  # must be ignored: no state held
        await conn.send(full(fmt, 5))
        await conn.send(delta(fmt, 5, 6))
        await conn.wait_closed()

    events: list[Event] = []

    async def scenario() -> tuple[list[int], FakeServer, int]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, format=fmt, on_event=events.append) as sub:
                seqs = await collect(sub, 6)
            return seqs, server, sub.resyncs

    seqs, server, resyncs = run(scenario)
    assert seqs == [1, 2, 5, 6]
    assert resyncs == 1
    (resync,) = [e for e in events if e.kind == "resync"]
    assert resync.detail == "delta from seq 1, but seq 2 is held" and resync.seq == 2
    assert server.connections[0].received[0] == resync_message(fmt)
    if fmt == "json":
        assert server.connections[0].received[0] == '{"op":"resync"}'
    else:
        assert server.connections[0].received[0] == b"\x0a\x00"


@FORMATS
def test_checksum_mismatch_resyncs_without_exposing_the_state(fmt: str) -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full(fmt, 1))
        await conn.send(delta(fmt, 1, 2, corrupt=True))
        await conn.recv()
        await conn.send(full(fmt, 3))
        await conn.send(delta(fmt, 3, 4))
        await conn.wait_closed()

    events: list[Event] = []

    async def scenario() -> tuple[list[int], FakeServer]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, format=fmt, on_event=events.append) as sub:
                seqs = await collect(sub, 4)
            return seqs, server

    seqs, server = run(scenario)
    assert seqs == [1, 3, 4]
    assert server.connections[0].received == [resync_message(fmt)]
    resyncs = [e for e in events if e.kind == "resync"]
    assert len(resyncs) == 1 and "checksum" in resyncs[0].detail and resyncs[0].seq == 1


def test_truncated_protobuf_frame_resyncs() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("protobuf", 1))
        await conn.send(delta("protobuf", 1, 2)[:-3])  # cut inside DeltaState
        await conn.recv()
        await conn.send(delta("protobuf", 2, 3))  # ignored
        await conn.send("a text message")  # undecodable too, but a resync is pending
        await conn.send(full("protobuf", 4))
        await conn.wait_closed()

    async def scenario() -> tuple[list[int], FakeServer, int]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, format="protobuf") as sub:
                seqs = await collect(sub, 4)
            return seqs, server, sub.resyncs

    seqs, server, resyncs = run(scenario)
    assert seqs == [1, 4]
    # One resync: the text message arrives while the full frame is already asked for.
    assert server.connections[0].received == [b"\x0a\x00"]
    assert resyncs == 1


def test_reconnects_with_resume_and_same_parameters() -> None:
    async def script(conn: Conn) -> None:
        if conn.query.get("resume") is None:
            await conn.send(full("json", 1))
            await conn.send(delta("json", 1, 2))
            await conn.close(1011, "internal error")
            return
        await conn.send(delta("json", int(conn.query["resume"]), 3))
        await conn.send(delta("json", 3, 4))
        await conn.wait_closed()

    async def scenario() -> tuple[list[int], FakeServer, int]:
        async with FakeServer(script) as server:
            url = server.url + "?client=test"
            async with Subscriber(
                url, format="json", stream="lab.1", max_hz=50, key="sekrit", backoff=fast_backoff()
            ) as sub:
                seqs = await collect(sub, 4)
            return seqs, server, sub.connections

    seqs, server, connections = run(scenario)
    assert seqs == [1, 2, 3, 4]
    assert connections == 2
    first, second = server.connections
    assert first.query == {"client": "test", "format": "json", "stream": "lab.1", "max_hz": "50"}
    assert second.query == {**first.query, "resume": "2"}
    assert second.headers["X-API-Key"] == "sekrit"


def test_reconnects_after_an_abrupt_loss() -> None:
    async def script(conn: Conn) -> None:
        if len_connections() == 1:
            await conn.send(full("protobuf", 1))
            await conn.abort_after_delivery()  # no close frame
            return
        assert conn.query.get("resume") == "1"
        await conn.send(delta("protobuf", 1, 2))
        await conn.wait_closed()

    server_ref: list[FakeServer] = []

    def len_connections() -> int:
        return len(server_ref[0].connections)

    async def scenario() -> tuple[list[int], int | None]:
        async with FakeServer(script) as server:
            server_ref.append(server)
            async with Subscriber(server.url, format="protobuf", backoff=fast_backoff()) as sub:
                seqs = await collect(sub, 2)
            return seqs, sub.close_code

    seqs, close_code = run(scenario)
    assert seqs == [1, 2]
    assert close_code is None


def test_no_resume_after_a_dropped_state_and_retry_after_1013() -> None:
    async def script(conn: Conn) -> None:
        number = len(servers[0].connections)
        if number == 1:
            await conn.send(full("json", 1))
            await conn.send(delta("json", 1, 2, corrupt=True))
            await conn.recv()  # the resync
            await conn.close(1001, "going away")
        elif number == 2:
            await conn.close(1013, "try again later")
        else:
            await conn.send(full("json", 3))
            await conn.wait_closed()

    servers: list[FakeServer] = []

    async def scenario() -> tuple[list[int], FakeServer]:
        async with FakeServer(script) as server:
            servers.append(server)
            async with Subscriber(server.url, backoff=fast_backoff()) as sub:
                seqs = await collect(sub, 3)
            return seqs, server

    seqs, server = run(scenario)
    assert seqs == [1, 3]
    assert len(server.connections) == 3
    assert all("resume" not in c.query for c in server.connections[1:])


def test_backoff_grows_while_failing_and_resets_after_a_frame() -> None:
    async def script(conn: Conn) -> None:
        number = len(servers[0].connections)
        if number in (1, 2, 3):
            await conn.close(1011)  # fails before any frame: back off further
        elif number == 4:
            await conn.send(full("json", 1))
            await conn.close(1011)  # after a frame: back to the initial delay
        else:
            await conn.send(full("json", 2))
            await conn.wait_closed()

    servers: list[FakeServer] = []
    events: list[Event] = []

    async def scenario() -> None:
        async with FakeServer(script) as server:
            servers.append(server)
            backoff = Backoff(initial=0.01, maximum=1.0, jitter=0.0)
            async with Subscriber(server.url, backoff=backoff, on_event=events.append) as sub:
                await collect(sub, 2)

    run(scenario)
    delays = [e.delay for e in events if e.kind == "reconnecting"]
    assert delays == [0.01, 0.02, 0.04, 0.01]
    assert all("close code 1011" in e.detail for e in events if e.kind == "reconnecting")


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010])
def test_permanent_close_codes_are_final(code: int) -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.close(code, "protocol trouble")

    events: list[Event] = []

    async def scenario() -> Subscriber:
        async with FakeServer(script) as server:
            sub = Subscriber(server.url, backoff=fast_backoff(), on_event=events.append)
            async with sub:
                await collect(sub, 2)
            return sub

    with pytest.raises(SubscriptionRefused) as err:
        run(scenario)
    assert (err.value.code, err.value.reason) == (code, "protocol trouble")
    assert [e.kind for e in events] == ["connecting", "connected", "closed"]
    assert events[-1].code == code


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1011, 1012, 1013, 1014])
def test_transient_close_codes_reconnect_and_resume(code: int) -> None:
    async def script(conn: Conn) -> None:
        if "resume" not in conn.query:
            await conn.send(full("protobuf", 1))
            await conn.close(code, "later")
            return
        await conn.send(delta("protobuf", int(conn.query["resume"]), 2))
        await conn.wait_closed()

    events: list[Event] = []

    async def scenario() -> tuple[list[int], Subscriber]:
        async with FakeServer(script) as server:
            sub = Subscriber(
                server.url, format="protobuf", backoff=fast_backoff(), on_event=events.append
            )
            async with sub:
                seqs = await collect(sub, 2)
            return seqs, sub

    seqs, sub = run(scenario)
    assert seqs == [1, 2]
    (reconnecting,) = [e for e in events if e.kind == "reconnecting"]
    assert (reconnecting.code, reconnecting.reason) == (code, "later")
    assert sub.stats.reconnects == 1


def test_refused_handshake_is_final() -> None:
    async def script(conn: Conn) -> None:  # never reached
        raise AssertionError

    async def scenario() -> None:
        async with FakeServer(script, refuse_status=401) as server:
            async with Subscriber(server.url, key="wrong", backoff=fast_backoff()):
                pass

    with pytest.raises(SubscriptionRefused) as err:
        run(scenario)
    assert err.value.status == 401


def test_callback_style_full_frames_only() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("protobuf", 1))
        await conn.send(full("protobuf", 2))
        await conn.close(1000)

    received: list[Update] = []

    async def on_update(update: Update) -> None:
        received.append(update)

    async def scenario() -> FakeServer:
        async with FakeServer(script) as server:
            sub = Subscriber(
                server.url + "?format=json",  # overridden by format=
                format="proto",
                delta=False,
                on_update=on_update,
                reconnect=False,
            )
            async with sub:
                await sub.run()
            assert sub.close_code == 1000
            return server

    server = run(scenario)
    assert [s.step for s in received] == [100, 101]
    assert [(u.seq, u.kind) for u in received] == [(1, "full"), (2, "full")]
    assert server.connections[0].query == {"format": "protobuf", "delta": "false"}


def test_close_from_another_task_ends_iteration() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    async def scenario() -> list[int]:
        async with FakeServer(script) as server:
            sub = Subscriber(server.url)
            seqs: list[int] = []

            async def consume() -> None:
                async for _ in sub:
                    assert sub.seq is not None
                    seqs.append(sub.seq)

            task = asyncio.ensure_future(consume())
            while not seqs:
                await asyncio.sleep(0.01)
            await sub.close()
            await task
            return seqs

    assert run(scenario) == [1]


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=0.5, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, cap in zip(delays, caps):
        assert cap * 0.5 <= delay <= cap
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 0.1
