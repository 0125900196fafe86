"""The rules of docs/clients.md, one by one, against the scripted fake server.

URL and options, the key header, connection states and events, permanent and
transient outcomes, the bounded first connect, back-off, what each update says
(seq, full or delta, epoch), resume with the epoch, stats and log levels; for the
asyncio subscriber and, where the I/O differs, the blocking one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import wire
from fake_ws import Conn, FakeServer, ThreadedServer, json_answer
from test_subscriber import STATES, collect, delta, fast_backoff, full, run

from phasecast import (
    Backoff,
    ConnectError,
    ConnectionState,
    Event,
    PhasecastError,
    Subscriber,
    SubscriptionRefused,
    SyncSubscriber,
    Update,
)
from phasecast._pb.pcc.v1 import pcc_pb2 as pb
from phasecast.model import same_bits


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


# --- URL and options ---------------------------------------------------------------


def test_empty_path_or_slash_gets_ws_and_other_paths_are_kept() -> None:
    for url in ("ws://127.0.0.1:8787", "ws://127.0.0.1:8787/"):
        assert Subscriber(url).connection_url() == "ws://127.0.0.1:8787/ws?format=json"
    assert Subscriber("ws://h:1/index.html").connection_url() == "ws://h:1/index.html?format=json"
    assert Subscriber("http://h:1").connection_url() == "ws://h:1/ws?format=json"
    assert Subscriber("https://h").connection_url() == "wss://h/ws?format=json"
    with pytest.raises(ValueError):
        Subscriber("ftp://h/ws")


def test_url_parameters_are_kept_and_explicit_options_win() -> None:
    sub = Subscriber("ws://h:1/ws?stream=lab1&format=protobuf&custom=a%20b")
    assert sub.format == "protobuf"
    assert query_of(sub.connection_url()) == [
        ("stream", "lab1"),
        ("format", "protobuf"),
        ("custom", "a b"),
    ]
    sub = Subscriber(
        "ws://h:1/ws?stream=lab1&format=protobuf&delta=false",
        format="json",
        stream="lab 2/x",
        delta=True,
        max_hz=2.5,
    )
    assert sub.format == "json"
    assert query_of(sub.connection_url()) == [
        ("stream", "lab 2/x"),
        ("format", "json"),
        ("delta", "true"),
        ("max_hz", "2.5"),
    ]
    # Values are URL-encoded.
    assert "stream=lab%202%2Fx" in sub.connection_url()
    assert Subscriber("ws://h/ws?format=proto").format == "protobuf"


def test_resume_and_epoch_in_the_url_are_the_clients_own(caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, "phasecast"):
        sub = Subscriber("ws://h/ws?resume=9&epoch=abc&stream=s")
    assert query_of(sub.connection_url()) == [("stream", "s"), ("format", "json")]
    assert "ignoring resume=9" in caplog.text and "ignoring epoch=abc" in caplog.text


def test_the_key_goes_in_the_header_not_the_url() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    async def scenario() -> Conn:
        async with FakeServer(script) as server:
            async with Subscriber(server.url + "?key=old", key="sekrit") as sub:
                await collect(sub, 1)
            return server.connections[0]

    conn = run(scenario)
    assert conn.headers["X-API-Key"] == "sekrit"
    assert "key" not in conn.query


# --- permanent and transient outcomes ----------------------------------------------


def never(conn: Conn) -> Any:
    raise AssertionError("the upgrade was refused: no script runs")


@pytest.mark.parametrize(
    "status,error,field",
    [
        (400, 'max_hz: "0" is not a rate of at least 0.01 frames a second', "max_hz"),
        (401, "missing or invalid API key (send it as X-API-Key)", None),
        (403, 'origin "http://evil" is not allowed (ALLOWED_ORIGINS)', None),
        (404, 'unknown stream "nope"', "stream"),
    ],
)
def test_4xx_answers_raise_at_once_with_the_servers_reason(
    status: int, error: str, field: str | None
) -> None:
    events: list[Event] = []

    async def scenario() -> FakeServer:
        refuse = lambda n, path: json_answer(status, error, field)  # noqa: E731
        async with FakeServer(never, refuse=refuse) as server:
            with pytest.raises(SubscriptionRefused) as err:
                async with Subscriber(server.url, on_event=events.append):
                    pass
            assert (err.value.status, err.value.error, err.value.field) == (status, error, field)
            assert f"HTTP {status}: {error}" in str(err.value)
            assert err.value.body == json.loads(json_answer(status, error, field)[2])
            return server

    server = run(scenario)
    assert len(server.handshakes) == 1  # not retried
    assert [e.kind for e in events] == ["connecting", "closed"]
    assert events[-1].status == status and events[-1].error == error
    assert events[-1].connection is ConnectionState.CLOSED


@pytest.mark.parametrize("status", [200, 301, 405])
def test_an_answer_that_is_not_a_websocket_is_permanent(status: int) -> None:
    async def scenario() -> FakeServer:
        page = (status, {"Content-Type": "text/html; charset=utf-8"}, b"<!doctype html>")
        async with FakeServer(never, refuse=lambda n, path: page) as server:
            with pytest.raises(SubscriptionRefused) as err:
                async with Subscriber(server.url, backoff=fast_backoff()):
                    pass
            assert err.value.status == status
            assert "not a phasecast WebSocket endpoint" in str(err.value)
            assert "text/html" in str(err.value)
            return server

    assert len(run(scenario).handshakes) == 1


def test_429_is_retried_no_sooner_than_retry_after() -> None:
    def refuse(n: int, path: str) -> Any:
        return json_answer(429, "too many", **{"Retry-After": "1"}) if n == 1 else None

    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    events: list[Event] = []

    async def scenario() -> list[int]:
        async with FakeServer(script, refuse=refuse) as server:
            sub = Subscriber(server.url, backoff=fast_backoff(), on_event=events.append)
            async with sub:
                return await collect(sub, 1)

    assert run(scenario) == [1]
    (failed,) = [e for e in events if e.kind == "connect_failed"]
    assert failed.status == 429 and failed.error == "too many"
    assert failed.delay is not None and failed.delay >= 1.0  # Retry-After, not the back-off


@pytest.mark.parametrize("status", [502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    def refuse(n: int, path: str) -> Any:
        return json_answer(status, "busy") if n <= 2 else None

    async def script(conn: Conn) -> None:
        await conn.send(full("protobuf", 1))
        await conn.wait_closed()

    events: list[Event] = []

    async def scenario() -> list[int]:
        async with FakeServer(script, refuse=refuse) as server:
            sub = Subscriber(
                server.url, format="protobuf", backoff=fast_backoff(), on_event=events.append
            )
            async with sub:
                return await collect(sub, 1)

    assert run(scenario) == [1]
    assert [e.attempt for e in events if e.kind == "connect_failed"] == [1, 2]
    assert [e.kind for e in events if e.kind != "connect_failed"] == [
        "connecting",
        "connected",
        "closed",
    ]


def test_first_connect_makes_a_bounded_number_of_tries() -> None:
    port = free_port()
    events: list[Event] = []

    async def scenario() -> None:
        sub = Subscriber(
            f"ws://127.0.0.1:{port}/ws",
            first_connect_tries=3,
            backoff=fast_backoff(),
            on_event=events.append,
        )
        async with sub:
            raise AssertionError("connected")

    with pytest.raises(ConnectError) as err:
        run(scenario)
    assert err.value.tries == 3 and "after 3 tries" in str(err.value)
    assert "connection refused" in str(err.value)
    assert isinstance(err.value, ConnectionError) and isinstance(err.value, PhasecastError)
    assert isinstance(err.value.__cause__, OSError)
    assert [e.kind for e in events] == ["connecting", "connect_failed", "connect_failed", "closed"]


def test_each_try_has_a_connect_and_handshake_timeout() -> None:
    # A listener that accepts and never answers the upgrade.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(ConnectError) as err:
            run(
                lambda: Subscriber(
                    f"ws://127.0.0.1:{port}/ws",
                    first_connect_tries=2,
                    connect_timeout=0.2,
                    backoff=fast_backoff(),
                ).connect(),
                timeout=60,
            )
    finally:
        listener.close()
    assert err.value.tries == 2
    assert "no connection and handshake within 0.2 s" in str(err.value)


def test_after_a_connection_retries_are_unbounded_unless_max_reconnects() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.close(1011)

    def refuse(n: int, path: str) -> Any:
        return None if n == 1 else json_answer(503, "restarting")

    events: list[Event] = []

    async def scenario() -> None:
        async with FakeServer(script, refuse=refuse) as server:
            sub = Subscriber(
                server.url,
                backoff=fast_backoff(),
                first_connect_tries=1,  # the reconnects are not bounded by this
                max_reconnects=4,
                on_event=events.append,
            )
            async with sub:
                await collect(sub, 99)

    with pytest.raises(ConnectError) as err:
        run(scenario)
    assert err.value.status == 503 and err.value.error == "restarting"
    assert [e.attempt for e in events if e.kind == "connect_failed"] == [1, 2, 3]
    assert [e.kind for e in events if e.kind != "connect_failed"] == [
        "connecting",
        "connected",
        "reconnecting",
        "closed",
    ]


# --- states and events -------------------------------------------------------------


def test_connection_states_and_their_events() -> None:
    async def script(conn: Conn) -> None:
        if len(server_ref[0].connections) == 1:
            await conn.send(full("json", 1))
            await conn.close(1001, "server shutting down")
            return
        await conn.send(delta("json", 1, 2))
        await conn.wait_closed()

    server_ref: list[FakeServer] = []
    events: list[Event] = []
    seen_states: list[ConnectionState] = []

    async def scenario() -> Subscriber:
        async with FakeServer(script) as server:
            server_ref.append(server)
            sub = Subscriber(server.url, backoff=fast_backoff(), on_event=events.append)
            seen_states.append(sub.connection_state)
            async with sub:
                seen_states.append(sub.connection_state)
                await collect(sub, 2)
            seen_states.append(sub.connection_state)
            return sub

    sub = run(scenario)
    assert seen_states == ["connecting", "connected", "closed"]
    assert [(e.kind, e.connection) for e in events] == [
        ("connecting", ConnectionState.CONNECTING),
        ("connected", ConnectionState.CONNECTED),
        ("reconnecting", ConnectionState.RECONNECTING),
        ("connected", ConnectionState.CONNECTED),
        ("closed", ConnectionState.CLOSED),
    ]
    lost = events[2]
    assert (lost.code, lost.reason, lost.seq) == (1001, "server shutting down", 1)
    assert "resume=1" in (events[3].url or "")
    assert events[-1].detail == "closed by the application"
    assert sub.closed


def test_a_connection_lost_without_a_close_frame_is_1006_and_transient() -> None:
    async def script(conn: Conn) -> None:
        if len(server_ref[0].connections) == 1:
            await conn.send(full("json", 1))
            await conn.abort_after_delivery()
            return
        await conn.send(full("json", 2))
        await conn.wait_closed()

    server_ref: list[FakeServer] = []
    events: list[Event] = []

    async def scenario() -> list[int]:
        async with FakeServer(script) as server:
            server_ref.append(server)
            sub = Subscriber(server.url, backoff=fast_backoff(), on_event=events.append)
            async with sub:
                return await collect(sub, 2)

    assert run(scenario) == [1, 2]
    (lost,) = [e for e in events if e.kind == "reconnecting"]
    assert lost.code is None and "1006" in lost.detail


def test_updates_say_seq_kind_and_epoch_and_resume_sends_the_epoch() -> None:
    def with_epoch(message: str | bytes, epoch: str) -> str | bytes:
        if isinstance(message, str):
            obj = json.loads(message)
            obj["epoch"] = epoch
            return json.dumps(obj)
        frame = pb.Frame.FromString(message)
        frame.epoch = epoch
        return frame.SerializeToString()

    async def script(conn: Conn) -> None:
        fmt = conn.query["format"]
        if "resume" not in conn.query:
            await conn.send(with_epoch(full(fmt, 1), "e1"))
            await conn.send(delta(fmt, 1, 2))
            await conn.close(1012, "restart")
            return
        assert (conn.query["resume"], conn.query["epoch"]) == ("2", "e1")
        # A new epoch: its full frame replaces what is held, whatever its seq.
        await conn.send(with_epoch(full(fmt, 3), "e2"))
        await conn.send(delta(fmt, 3, 4))
        await conn.wait_closed()

    for fmt in ("json", "protobuf"):
        updates: list[Update] = []

        async def scenario() -> Subscriber:
            async with FakeServer(script) as server:
                async with Subscriber(server.url, format=fmt, backoff=fast_backoff()) as sub:
                    async for update in sub:
                        updates.append(update)
                        if update.seq == 4:
                            return sub
            raise AssertionError("ended")

        sub = run(scenario)
        assert [(u.seq, u.kind, u.epoch) for u in updates] == [
            (1, "full", "e1"),
            (2, "delta", "e1"),
            (3, "full", "e2"),
            (4, "delta", "e2"),
        ]
        assert updates[0].is_full and updates[1].is_delta
        assert sub.epoch == "e2"
        assert "epoch=e2" in sub.connection_url() and "resume=4" in sub.connection_url()
        assert same_bits(updates[3].state, STATES[3]) and updates[3].step == STATES[3].step


def test_no_epoch_param_while_the_server_sends_none() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    async def scenario() -> str:
        async with FakeServer(script) as server:
            async with Subscriber(server.url) as sub:
                update = await sub.__anext__()
                assert update.epoch is None
                return sub.connection_url()

    url = run(scenario)
    assert "resume=1" in url and "epoch" not in url


def test_stats() -> None:
    async def script(conn: Conn) -> None:
        if "resume" not in conn.query:
            await conn.send(full("protobuf", 1))
            await conn.send(delta("protobuf", 1, 2))
            await conn.send(delta("protobuf", 1, 3))  # wrong base: resync
            await conn.recv()
            await conn.send(full("protobuf", 4))
            await conn.close(1011)
            return
        await conn.send(delta("protobuf", 4, 5))
        await conn.wait_closed()

    async def scenario() -> tuple[Subscriber, int]:
        async with FakeServer(script) as server:
            sub = Subscriber(server.url, format="protobuf", backoff=fast_backoff())
            async with sub:
                await collect(sub, 5)
            sizes = [len(full("protobuf", 1)), len(delta("protobuf", 1, 2))]
            sizes += [len(delta("protobuf", 1, 3)), len(full("protobuf", 4))]
            sizes += [len(delta("protobuf", 4, 5))]
            return sub, sum(sizes)

    sub, total = run(scenario)
    stats = sub.stats
    assert (stats.frames, stats.full_frames, stats.delta_frames) == (5, 2, 3)
    assert (stats.resyncs, stats.reconnects, stats.connections) == (1, 1, 2)
    assert stats.bytes == total


def test_log_levels(caplog: Any) -> None:
    port = free_port()

    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    async def scenario() -> None:
        with pytest.raises(ConnectError):
            await Subscriber(
                f"ws://127.0.0.1:{port}/ws", first_connect_tries=2, backoff=fast_backoff()
            ).connect()
        async with FakeServer(script) as server:
            async with Subscriber(server.url) as sub:
                await collect(sub, 1)

    with caplog.at_level(logging.DEBUG, "phasecast"):
        run(scenario)
    levels = {(r.levelname, r.getMessage().split(":")[1].strip()) for r in caplog.records}
    assert ("WARNING", "connect_failed") in levels
    assert ("INFO", "connecting") in levels and ("INFO", "connected") in levels
    frames = [r for r in caplog.records if r.levelname == "DEBUG"]
    assert any("full frame, seq 1" in r.getMessage() for r in frames)
    assert all(r.name == "phasecast" for r in caplog.records)


def test_a_raising_on_event_does_not_break_the_subscription() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    def on_event(event: Event) -> None:
        raise RuntimeError("oops")

    async def scenario() -> list[int]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, on_event=on_event) as sub:
                return await collect(sub, 1)

    assert run(scenario) == [1]


def test_close_during_the_back_off_ends_at_once() -> None:
    async def scenario() -> None:
        backoff = Backoff(initial=60, maximum=60, jitter=0.0)  # one long wait
        sub = Subscriber(f"ws://127.0.0.1:{free_port()}/ws", backoff=backoff)
        waiting = asyncio.Event()
        sub._on_event = lambda e: waiting.set() if e.kind == "connect_failed" else None
        task = asyncio.ensure_future(sub.connect())
        await waiting.wait()
        await sub.close()
        await task  # returns instead of waiting 60 s

    run(scenario, timeout=30)


def test_backoff_follows_the_formula() -> None:
    rng = random.Random(5)
    backoff = Backoff(rng=rng)  # defaults: 0.25 s, doubling, cap 10 s, jitter 0.5
    check = random.Random(5)
    for n in range(10):
        expected = min(10.0, 0.25 * 2**n) * (0.5 + 0.5 * check.random())
        assert backoff.next_delay() == pytest.approx(expected)


# --- numpy off: the default holds lists --------------------------------------------


def test_default_updates_hold_lists() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("protobuf", 1))
        await conn.send(delta("protobuf", 1, 2))
        await conn.wait_closed()

    async def scenario() -> list[Update]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url, format="protobuf") as sub:
                out = []
                async for update in sub:
                    out.append(update)
                    if update.seq == 2:
                        return out
        raise AssertionError

    for update in run(scenario):
        assert type(update.phases) is list and type(update.spins) is list


# --- the blocking subscriber -------------------------------------------------------


def sync_collect(sub: SyncSubscriber, until_seq: int) -> list[int]:
    seqs = []
    for update in sub:
        assert same_bits(update.state, STATES[update.seq - 1])
        seqs.append(update.seq)
        if update.seq >= until_seq:
            break
    return seqs


def test_sync_subscriber_applies_deltas_resyncs_and_resumes() -> None:
    async def script(conn: Conn) -> None:
        if "resume" not in conn.query:
            await conn.send(full("protobuf", 1))
            await conn.send(delta("protobuf", 1, 2))
            await conn.send(delta("protobuf", 1, 3, corrupt=True))  # wrong base
            await conn.recv()
            await conn.send(full("protobuf", 4))
            await conn.close(1011)
            return
        await conn.send(delta("protobuf", int(conn.query["resume"]), 5))
        await conn.wait_closed()

    events: list[Event] = []
    with ThreadedServer(script) as server:
        with SyncSubscriber(
            server.url, format="protobuf", backoff=fast_backoff(), on_event=events.append
        ) as sub:
            assert sync_collect(sub, 5) == [1, 2, 4, 5]
            assert (sub.stats.resyncs, sub.stats.reconnects) == (1, 1)
        assert server.connections[0].received == [b"\x0a\x00"]
        assert server.connections[1].query["resume"] == "4"
    assert [e.kind for e in events if e.kind not in ("resync",)] == [
        "connecting",
        "connected",
        "reconnecting",
        "connected",
        "closed",
    ]


def test_sync_subscriber_refusals_and_first_connect() -> None:
    with ThreadedServer(never, refuse=lambda n, p: json_answer(401, "bad key")) as server:
        with pytest.raises(SubscriptionRefused) as err:
            SyncSubscriber(server.url, key="wrong").connect()
        assert (err.value.status, err.value.error) == (401, "bad key")
        assert len(server.handshakes) == 1
    with pytest.raises(ConnectError) as cerr:
        with SyncSubscriber(
            f"ws://127.0.0.1:{free_port()}", first_connect_tries=2, backoff=fast_backoff()
        ):
            pass
    assert cerr.value.tries == 2


def test_sync_subscriber_close_from_another_thread() -> None:
    async def script(conn: Conn) -> None:
        await conn.send(full("json", 1))
        await conn.wait_closed()

    with ThreadedServer(script) as server:
        sub = SyncSubscriber(server.url)
        got_one = threading.Event()
        seqs: list[int] = []

        def consume() -> None:
            for update in sub:
                seqs.append(update.seq)
                got_one.set()

        thread = threading.Thread(target=consume)
        thread.start()
        assert got_one.wait(30)
        sub.close()
        thread.join(30)
        assert not thread.is_alive() and seqs == [1]
        assert sub.connection_state == "closed"


def test_sync_and_async_yield_the_same_updates() -> None:
    rng = random.Random(11)
    states = []
    phases = [rng.uniform(-3, 3) for _ in range(50)]
    spins = [rng.choice((1, -1)) for _ in range(50)]
    for step in range(30):
        for i in rng.sample(range(50), 5):
            phases[i] += rng.uniform(-0.1, 0.1)
        spins[rng.randrange(50)] *= -1
        states.append(wire.State(step, list(phases), list(spins), -step / 3, None))

    async def script(conn: Conn) -> None:
        fmt = conn.query["format"]
        await conn.send((wire.full_json if fmt == "json" else wire.full_pb)(1, states[0]))
        for seq in range(2, 31):
            d = wire.diff(states[seq - 2], seq - 1, states[seq - 1], seq, None)
            encode = wire.delta_json if fmt == "json" else wire.delta_pb
            await conn.send(encode(d, states[seq - 1]))
        await conn.wait_closed()

    for fmt in ("json", "protobuf"):
        with ThreadedServer(script) as server:
            with SyncSubscriber(server.url, format=fmt) as sync_sub:
                sync_updates = [u for _, u in zip(range(30), sync_sub)]

        async def scenario() -> list[Update]:
            async with FakeServer(script) as server:
                async with Subscriber(server.url, format=fmt) as sub:
                    out = []
                    async for u in sub:
                        out.append(u)
                        if len(out) == 30:
                            return out
            raise AssertionError

        async_updates = run(scenario)
        assert [(u.seq, u.kind) for u in sync_updates] == [(u.seq, u.kind) for u in async_updates]
        for a, b, truth in zip(sync_updates, async_updates, states):
            assert same_bits(a.state, truth) and same_bits(b.state, truth)
