"""The client against a real phasecast server (``$PHASECAST_BIN``; see realserver.py).

What users hit: a wrong port, a wrong key, a wrong path, a server restart, the
producer rate limit, a tight publish loop, numpy. Every wait is for an event (a
state, a reconnect, an answer); the timeouts are only failure guards.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wire
from realserver import RealServer, binary, free_port

from phasecast import (
    ConnectError,
    Event,
    Producer,
    PublishError,
    State,
    Subscriber,
    SubscriptionRefused,
    Summary,
    SyncProducer,
    SyncSubscriber,
    Update,
    project,
)
from phasecast.model import same_bits

GUARD = 120.0  # seconds: a failure guard for one scenario, never a speed assumption


@pytest.fixture(scope="module")
def phasecast_bin() -> str:
    return binary()


def run(coroutine: Any, timeout: float = GUARD) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def state(step: int, n: int = 8) -> State:
    return State(
        step,
        [((step * 7 + i) % 63) / 10 for i in range(n)],
        [1 if (step + i) % 3 else -1 for i in range(n)],
        -0.5 * step,
        1764000000.0 + step / 200,
    )


# --- connecting to the wrong place -------------------------------------------------


def test_a_wrong_port_fails_the_first_connect_within_the_tries(phasecast_bin: str) -> None:
    with RealServer(binary_path=phasecast_bin) as server:
        wrong = free_port()
        assert wrong != server.port
        events: list[Event] = []
        started = time.monotonic()
        with pytest.raises(ConnectError) as err:
            run(Subscriber(f"ws://127.0.0.1:{wrong}/ws", on_event=events.append).connect())
        elapsed = time.monotonic() - started
        assert err.value.tries == 5  # the default
        assert "connection refused" in str(err.value)
        assert elapsed < 30, elapsed  # the contract's bound at the defaults
        assert [e.kind for e in events].count("connect_failed") == 4
        with pytest.raises(ConnectError) as err:
            SyncSubscriber(f"ws://127.0.0.1:{wrong}", first_connect_tries=2).connect()
        assert err.value.tries == 2
        # And the right port works.
        with SyncProducer(server.http_url) as producer:
            producer.publish(state(1))
        with SyncSubscriber(f"ws://127.0.0.1:{server.port}") as sub:
            assert next(iter(sub)).step == 1


def test_a_wrong_subscriber_key_fails_at_once_with_the_servers_reason(
    phasecast_bin: str,
) -> None:
    with RealServer("--subscribe-key", "right-key", binary_path=phasecast_bin) as server:
        with SyncProducer(server.http_url) as producer:
            producer.publish(state(3))
        events: list[Event] = []
        with pytest.raises(SubscriptionRefused) as err:
            run(Subscriber(server.ws_url, key="wrong", on_event=events.append).connect())
        assert err.value.status == 401
        assert err.value.error and "API key" in err.value.error
        assert err.value.error in str(err.value)
        assert "connect_failed" not in [e.kind for e in events]  # no retry
        with pytest.raises(SubscriptionRefused) as err:
            SyncSubscriber(server.ws_url).connect()  # no key at all
        assert err.value.status == 401
        # The key goes in the X-API-Key header: the right one is let in.
        with SyncSubscriber(server.ws_url, key="right-key") as sub:
            update = next(iter(sub))
        assert (update.step, update.kind) == (3, "full")


def test_a_wrong_path_fails_at_once(phasecast_bin: str) -> None:
    with RealServer(binary_path=phasecast_bin) as server:
        with SyncProducer(server.http_url) as producer:
            producer.publish(state(5))
        base = f"ws://127.0.0.1:{server.port}"

        def refused(url: str, **options: Any) -> SubscriptionRefused:
            events: list[Event] = []
            with pytest.raises(SubscriptionRefused) as err:
                run(Subscriber(url, on_event=events.append, **options).connect())
            assert "connect_failed" not in [e.kind for e in events]
            return err.value

        # The dashboard page answers 200: a page, not the WebSocket.
        page = refused(base + "/index.html")
        assert page.status == 200 and "not a phasecast WebSocket endpoint" in str(page)
        missing = refused(base + "/nope")
        assert missing.status == 404 and missing.error and "no such endpoint" in missing.error
        unknown = refused(server.ws_url, stream="no-such-stream")
        assert (unknown.status, unknown.field) == (404, "stream")
        bad = refused(server.ws_url + "?max_hz=0")
        assert (bad.status, bad.field) == (400, "max_hz")
        # "/" (and no path) get /ws.
        for url in (base, base + "/"):
            with SyncSubscriber(url) as sub:
                assert next(iter(sub)).step == 5


# --- a restart ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_a_server_restart_mid_stream_is_survived_with_a_resume(
    phasecast_bin: str, fmt: str
) -> None:
    with RealServer("--demo", binary_path=phasecast_bin) as server:
        updates: list[Update] = []
        events: list[Event] = []
        lost_at: list[int] = []  # how many updates had come when the connection was lost

        def on_event(event: Event) -> None:
            events.append(event)
            if event.kind == "reconnecting":
                lost_at.append(len(updates))

        async def scenario() -> Any:
            restart = None
            after = 0
            async with Subscriber(server.ws_url, format=fmt, on_event=on_event) as sub:
                async for update in sub:
                    updates.append(update)
                    if len(updates) == 3:  # in step: restart the server, same port
                        restart = asyncio.ensure_future(asyncio.to_thread(server.restart))
                    if sub.stats.reconnects:
                        after += 1
                        if after == 3:  # and in step again after it
                            break
                assert restart is not None
                await restart
                return sub.stats

        stats = run(scenario())
        assert stats.reconnects == 1 and stats.connections == 2
        (lost,) = [e for e in events if e.kind == "reconnecting"]
        assert lost.code in (1001, None), lost  # shutting down, or no close frame
        last_before = updates[lost_at[0] - 1]
        assert lost.seq == last_before.seq
        reconnected = [e for e in events if e.kind == "connected"][1]
        assert f"resume={last_before.seq}" in (reconnected.url or "")
        assert ("epoch=" in (reconnected.url or "")) == (last_before.epoch is not None)
        # Every update, before and after, was verified against its checksum (the
        # library yields no other); the first one after the restart is from the new
        # server, whose numbering started again.
        assert len(updates) == lost_at[0] + 3


# --- publishing --------------------------------------------------------------------


def test_429_surfaces_retry_after(phasecast_bin: str) -> None:
    with RealServer("--producer-rate-limit", "5", binary_path=phasecast_bin) as server:
        with SyncProducer(server.http_url, format="protobuf") as producer:
            refusal = None
            for step in range(1000):  # the bucket holds 5: the 6th comes soon
                try:
                    producer.publish(state(step))
                except PublishError as err:
                    refusal = err
                    break
            assert refusal is not None, "never rate limited"
            assert refusal.status == 429 and refusal.step == step
            assert refusal.retry_after is not None and refusal.retry_after >= 1
            assert "rate limited" in refusal.error
            assert producer.stats.connections == 1  # refusals keep the connection

        async def ingest() -> list[Any]:
            async with Producer(server.http_url).ingest() as stream:
                for step in range(20):
                    await stream.send(state(step))
                rejection = await stream.next_rejection(timeout=GUARD)
                return [rejection, *stream.rejections()]

        rejections = run(ingest())
        assert rejections[0] is not None and "rate limited" in rejections[0].error


def test_producer_keys_are_checked_and_refusals_carry_the_reason(phasecast_bin: str) -> None:
    with RealServer("--api-key", "pkey", binary_path=phasecast_bin) as server:
        with pytest.raises(PublishError) as err:
            with SyncProducer(server.http_url, key="wrong") as producer:
                producer.publish(state(1))
        assert err.value.status == 401 and "API key" in err.value.error
        with pytest.raises(PublishError) as err:
            with SyncProducer(server.http_url, key="pkey") as producer:
                producer.publish(State(2, [], [], 0.0))
        assert err.value.status == 422 and err.value.field == "phases"
        with pytest.raises(PublishError) as err:
            run(Producer(server.http_url, key="wrong").ingest().__aenter__())
        assert err.value.status == 401 and "API key" in err.value.error
        with SyncProducer(server.http_url, key="pkey").ingest() as stream:
            stream.send(State(3, [0.5, 0.25], [1], 0.0))  # one spin for two phases
            rejection = stream.next_rejection(timeout=GUARD)
        assert rejection is not None and rejection.step == 3
        assert rejection.field is not None and rejection.field.startswith("spins")
        with SyncProducer(server.http_url, key="pkey") as producer:
            assert producer.publish(state(4)).seq == 1


def test_10000_states_in_a_tight_loop_over_one_connection(phasecast_bin: str) -> None:
    with RealServer("--producer-rate-limit", "0", binary_path=phasecast_bin) as server:
        with SyncProducer(server.http_url, stream="tight", format="protobuf") as producer:
            seqs = [producer.publish(state(step)).seq for step in range(10_000)]
            stats = producer.stats
        assert seqs == list(range(1, 10_001))
        assert stats.connections == 1 and stats.states == 10_000
        assert next(s for s in server.health()["streams"] if s["name"] == "tight")["seq"] == 10_000

        async def asynchronous() -> Any:
            async with Producer(server.http_url, stream="tight") as producer:
                for step in range(2_000):
                    await producer.publish(state(step))
                return producer.stats

        stats = run(asynchronous())
        assert stats.connections == 1 and stats.states == 2_000


# --- numpy -------------------------------------------------------------------------


def test_numpy_in_and_out(phasecast_bin: str) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(3)
    with RealServer("--producer-rate-limit", "0", binary_path=phasecast_bin) as server:
        sent: dict[int, State] = {}

        def make(step: int, previous: State | None) -> State:
            if previous is not None and step % 2:
                # A small move, so that there are delta frames as well as full ones.
                phases = np.array(previous.phases)
                phases[step % 256] += 0.001
                return State(step, phases, np.array(previous.spins), float(step), None)
            phases = rng.uniform(-np.pi, np.pi, 256)
            spins = np.where(rng.random(256) < 0.5, -1, 1).astype(np.int8)
            return State(step, phases, spins, float(rng.normal()), 1764000000.0 + step)

        producers = [
            SyncProducer(server.http_url, stream="np", format="protobuf"),
            SyncProducer(server.http_url, stream="np", format="json"),
        ]
        first = make(0, None)
        sent[producers[0].publish(first).seq] = first  # the stream exists now

        async def scenario(fmt: str, count: int) -> list[Update]:
            target = max(sent) + count  # the server numbers the states one by one
            async with Subscriber(server.ws_url, stream="np", format=fmt, numpy=True) as sub:

                async def publish() -> None:
                    for step in range(1, count + 1):
                        s = make(step, sent[max(sent)])
                        result = await asyncio.to_thread(producers[step % 2].publish, s)
                        sent[result.seq] = s

                publisher = asyncio.ensure_future(publish())
                got: list[Update] = []
                async for update in sub:
                    got.append(update)
                    if update.seq >= target:
                        break
                await publisher
                return got

        for fmt in ("json", "protobuf"):
            updates = run(scenario(fmt, 40))
            assert "full" in {u.kind for u in updates}
            for update in updates:
                assert isinstance(update.phases, np.ndarray)
                assert update.phases.dtype == np.float64 and not update.phases.flags.writeable
                expected = sent[update.seq]
                if expected.timestamp is None:
                    # The server fills in its accept time when the producer sends none.
                    assert isinstance(update.state.timestamp, float), update.seq
                    expected = State(
                        expected.step,
                        expected.phases,
                        expected.spins,
                        expected.energy,
                        update.state.timestamp,
                    )
                assert same_bits(update.state, expected), update.seq
            assert "delta" in {u.kind for u in updates}
        for producer in producers:
            producer.close()


# --- epsilon, fields, summaries and envelopes ------------------------------------------


def shaped_state(step: int, n: int = 8) -> State:
    """Phase i sits in the middle of histogram bin i (16 bins) and drifts by less than
    ε = 0.001 a step, so a lossy view lags it, deltas carry few phases and no phase
    comes near a bin boundary."""
    width = 2 * math.pi / 16
    return State(
        step,
        [(2 * i + 1) * width / 2 + 0.05 * math.sin(step * 0.002 * (i + 1)) for i in range(n)],
        [1 if (step + i) % 3 else -1 for i in range(n)],
        0.1 - 0.5 * step,
        1764000000.0 + step / 200,
    )


def check_summary(summary: Summary | None, truth: State) -> None:
    """The server's summary is that of the producer's state (float32)."""
    assert summary is not None
    expected = wire.summary_of(truth)
    assert summary.histogram == tuple(expected["histogram"])
    assert summary.energy == expected["energy"]
    assert summary.magnetization == pytest.approx(expected["magnetization"], abs=1e-6)
    assert summary.r == pytest.approx(expected["r"], abs=1e-5)
    assert summary.psi == pytest.approx(expected["psi"], abs=1e-5)


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
def test_precision_classes_fields_summaries_and_envelopes(phasecast_bin: str, fmt: str) -> None:
    epsilon = 0.001
    with RealServer("--producer-rate-limit", "0", binary_path=phasecast_bin) as server:
        assert epsilon in server.health()["precision_classes"]
        sent: dict[int, State] = {}
        producer = SyncProducer(server.http_url, stream="shaped", format="protobuf")
        sent[producer.publish(shaped_state(0)).seq] = shaped_state(0)

        def subscriber(**options: Any) -> Subscriber:
            return Subscriber(server.ws_url, stream="shaped", format=fmt, **options)

        summaries = subscriber(epsilon=epsilon, fields=["summary"])
        phases = subscriber(epsilon=epsilon, fields="phases,summary")
        enveloped = subscriber(fields="summary", max_hz=20)
        assert "epsilon=0.001&fields=summary" in summaries.connection_url()

        async def take(sub: Subscriber, count: int) -> list[Update]:
            got: list[Update] = []
            async with sub:
                async for update in sub:
                    got.append(update)
                    if len(got) == count:
                        return got
            raise AssertionError("the subscription ended")

        async def scenario() -> list[list[Update]]:
            done = asyncio.Event()

            async def publish() -> None:
                step = 1
                while not done.is_set() and step < 100_000:
                    state = shaped_state(step)
                    sent[(await asyncio.to_thread(producer.publish, state)).seq] = state
                    step += 1

            publisher = asyncio.ensure_future(publish())
            try:
                return list(
                    await asyncio.gather(take(summaries, 40), take(phases, 40), take(enveloped, 6))
                )
            finally:
                done.set()
                await publisher

        by_summary, by_phases, by_envelope = run(scenario())
        producer.close()

        # fields=summary: frames without a body, each a projected state that stands alone.
        for update in by_summary:
            assert update.standalone and update.kind == "full" and update.epoch is None
            assert same_bits(update.state, project(sent[update.seq], "summary")), update.seq
            check_summary(update.summary, sent[update.seq])
        assert summaries.resyncs == 0

        # fields=phases,summary at ε: verified deltas of the projected view.
        assert {u.kind for u in by_phases} == {"full", "delta"}
        lagged = False
        for update in by_phases:
            truth = sent[update.seq]
            assert not update.standalone and update.epoch is not None
            assert (update.step, update.spins, update.energy, update.timestamp) == (
                truth.step,
                [],
                0.0,
                None,
            )
            assert len(update.phases) == len(truth.phases)
            for held, exact in zip(update.phases, truth.phases):
                assert abs(held - exact) <= epsilon
                lagged = lagged or held != exact
            check_summary(update.summary, truth)
        assert lagged, "a view within 0.001 never lagged: is epsilon applied?"
        assert phases.resyncs == 0

        # max_hz with summary: each envelope covers every state since the previous frame.
        for previous, update in zip(by_envelope, by_envelope[1:]):
            envelope = update.envelope
            assert envelope is not None and update.standalone
            covered = [sent[seq] for seq in range(previous.seq + 1, update.seq + 1)]
            assert envelope.states == len(covered) >= 1
            energies = [wire.f32(s.energy) for s in covered]
            assert (envelope.energy.min, envelope.energy.max) == (min(energies), max(energies))
            rs = [wire.summary_of(s)["r"] for s in covered]
            assert envelope.r.min == pytest.approx(min(rs), abs=1e-5)
            assert envelope.r.max == pytest.approx(max(rs), abs=1e-5)
            check_summary(update.summary, sent[update.seq])

        # An epsilon the server does not offer is refused, naming it.
        with pytest.raises(SubscriptionRefused) as err:
            run(subscriber(epsilon=0.002).connect())
        assert (err.value.status, err.value.field) == (400, "epsilon")


# --- the conformance tool against the real server ------------------------------------


def test_conformance_tool(phasecast_bin: str) -> None:
    server = RealServer("--producer-rate-limit", "0", binary_path=phasecast_bin)
    with server, SyncProducer(server.http_url) as producer:
        producer.publish(state(1))
        tool = subprocess.Popen(
            [sys.executable, "-m", "phasecast.conformance", "--url", server.ws_url]
            + ["--format", "protobuf", "--until-seq", "30", "--timeout", str(GUARD)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Publish until the tool is done: it exits 0 once it holds seq >= 30.
        step = 2
        while tool.poll() is None and step < 100_000:
            producer.publish(state(step))
            step += 1
        out, err = tool.communicate(timeout=GUARD)
        assert tool.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines and lines[-1].startswith('{"seq":')


# --- the README's snippets ----------------------------------------------------------


def readme_snippets() -> list[str]:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(readme_snippets())))
def test_readme_snippets_work_when_pasted(phasecast_bin: str, index: int) -> None:
    """Each ```python block of the README, run as it is against a server on its port.

    A snippet that runs until interrupted (a subscriber loop) passes once it has
    printed two lines.
    """
    snippet = readme_snippets()[index]
    with RealServer("--demo", "--demo-hz", "50", binary_path=phasecast_bin) as server:
        with SyncProducer(server.http_url, stream="lab1") as producer:
            producer.publish(state(1))  # the README's stream exists
        code = snippet.replace("8787", str(server.port))
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + GUARD
        while len(lines) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break  # the snippet ended
            lines.append(line)
        if process.poll() is None and len(lines) >= 2:
            process.kill()
            process.communicate(timeout=GUARD)
            return
        out, err = process.communicate(timeout=GUARD)
        assert process.returncode == 0, f"snippet {index} failed:\n{snippet}\n{err}"
