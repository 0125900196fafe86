"""Producer: HTTP POST against a stdlib HTTP/1.1 server, /ingest against the fake server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_ws import Conn, FakeServer, ThreadedServer, json_answer

from phasecast import (
    IngestRejected,
    Producer,
    PublishError,
    State,
    SyncProducer,
)
from phasecast._pb.pcc.v1 import pcc_pb2 as pb

STATE = State(1200, [0.12, 3.0, 6.1], [1, -1, 1], -0.82, 1764150000.125)


class Recorder(BaseHTTPRequestHandler):
    """Answers like the server over kept-alive HTTP/1.1: 200 with a seq; 422 for a
    state with step 13; 429 for step 14; a page for step 15; for step 16, on a
    connection that already answered, closes without an answer (as a server does
    with an idle connection it times out just as the request arrives)."""

    protocol_version = "HTTP/1.1"
    # Buffered: each answer leaves in one write (headers and body apart would wait for
    # the client's delayed ACK, 40 ms an answer).
    wbufsize = 1 << 16
    requests: list[dict[str, Any]] = []
    connections = 0
    seq = 0

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1
        self.answered = 0

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers["Content-Type"] == "application/x-protobuf":
            step = pb.PccState.FromString(body).step
        else:
            step = json.loads(body)["step"]
        if step == 16 and self.answered:
            self.close_connection = True
            return
        self.requests.append({"path": self.path, "headers": self.headers, "body": body})
        headers = {"Content-Type": "application/json"}
        if step == 13:
            status = 422
            answer: Any = {
                "ok": False,
                "error": "phases[3]: must be a finite number",
                "field": "phases[3]",
            }
        elif step == 14:
            status, answer = 429, {"ok": False, "error": "rate limited"}
            headers["Retry-After"] = "2"
        elif step == 15:
            status, answer = 200, "<html>a page</html>"
            headers["Content-Type"] = "text/html"
        else:
            type(self).seq += 1
            status = 200
            answer = {
                "ok": True,
                "seq": self.seq,
                "step": step,
                "clients": 12,
                "processing_time_ms": 0.04,
            }
        payload = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.answered += 1

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def http_server() -> Iterator[str]:
    Recorder.requests = []
    Recorder.connections = 0
    Recorder.seq = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_json_to_the_old_endpoint(http_server: str) -> None:
    result = asyncio.run(Producer(http_server).publish(STATE))
    assert (result.seq, result.step, result.clients, result.processing_time_ms) == (
        1,
        1200,
        12,
        0.04,
    )
    (request,) = Recorder.requests
    assert request["path"] == "/pcc_state"
    assert request["headers"]["Content-Type"] == "application/json"
    assert "X-API-Key" not in request["headers"]
    assert json.loads(request["body"])["phases"] == [0.12, 3.0, 6.1]


def test_publish_protobuf_to_a_stream_with_key(http_server: str) -> None:
    async def scenario() -> None:
        async with Producer(
            http_server + "/", stream="lab-1", format="protobuf", key="k1"
        ) as producer:
            await producer.publish(STATE)

    asyncio.run(scenario())
    (request,) = Recorder.requests
    assert request["path"] == "/streams/lab-1/state"
    assert request["headers"]["Content-Type"] == "application/x-protobuf"
    assert request["headers"]["X-API-Key"] == "k1"
    message = pb.PccState.FromString(request["body"])
    assert list(message.phases) == STATE.phases and message.timestamp == STATE.timestamp
    assert list(message.spins) == STATE.spins and message.energy == STATE.energy


def test_stream_from_the_url_and_option_wins() -> None:
    assert Producer("http://h:8787?stream=a").publish_url == "http://h:8787/streams/a/state"
    assert (
        Producer("http://h:8787/?stream=a", stream="b").publish_url
        == "http://h:8787/streams/b/state"
    )
    assert Producer("http://h/prefix/", stream="x y").ingest_url == (
        "ws://h/prefix/ingest?stream=x%20y"
    )
    assert Producer("https://h").ingest_url == "wss://h/ingest"
    with pytest.raises(ValueError, match="format"):
        Producer("http://h:8787?format=json")
    with pytest.raises(ValueError, match="http"):
        Producer("ftp://h")


def test_many_states_share_one_kept_alive_connection(http_server: str) -> None:
    with SyncProducer(http_server, stream="s") as producer:
        seqs = [producer.publish(State(step, [0.5], [1], 0.0)).seq for step in range(100, 300)]
        assert producer.stats.connections == 1
        assert producer.stats.states == 200
    assert seqs == list(range(1, 201))
    assert Recorder.connections == 1

    async def scenario() -> int:
        async with Producer(http_server) as producer:
            for step in range(100, 200):
                await producer.publish(State(step, [0.5], [1], 0.0))
            return producer.stats.connections

    assert asyncio.run(scenario()) == 1
    assert Recorder.connections == 2


def test_a_kept_alive_connection_closed_by_the_server_is_replaced(http_server: str) -> None:
    with SyncProducer(http_server) as producer:
        producer.publish(State(1, [0.5], [1], 0.0))
        result = producer.publish(State(16, [0.5], [1], 0.0))  # closed, then again
        assert result.step == 16
        assert producer.stats.connections == 2
    assert [json.loads(r["body"])["step"] for r in Recorder.requests] == [1, 16]


def test_publish_errors_carry_status_error_field_step_and_retry_after(http_server: str) -> None:
    producer = SyncProducer(http_server)
    with pytest.raises(PublishError) as err:
        producer.publish(State(13, [0.0], [], 0.0))
    assert (err.value.status, err.value.field, err.value.step) == (422, "phases[3]", 13)
    assert err.value.error == "phases[3]: must be a finite number"
    assert "HTTP 422" in str(err.value) and "step 13" in str(err.value)
    with pytest.raises(PublishError) as err:
        producer.publish(State(14, [0.0], [], 0.0))
    assert (err.value.status, err.value.retry_after, err.value.error) == (429, 2.0, "rate limited")
    with pytest.raises(PublishError) as err:
        producer.publish(State(15, [0.0], [], 0.0))
    assert err.value.status == 200 and "not a phasecast answer" in err.value.error
    assert producer.stats.refused == 3
    assert Recorder.connections == 1  # refusals keep the connection
    producer.close()


def test_publish_blocking_on_the_async_producer(http_server: str) -> None:
    producer = Producer(http_server)
    with pytest.raises(PublishError) as err:
        producer.publish_blocking(State(14, [0.0], [], 0.0))
    assert err.value.retry_after == 2.0
    assert producer.publish_blocking(STATE).seq == 1
    assert producer.stats.refused == 1 and producer.stats.states == 1
    asyncio.run(producer.aclose())


def test_transport_failures_are_publish_errors() -> None:
    port = free_port()
    producer = SyncProducer(f"http://127.0.0.1:{port}", connect_timeout=2)
    with pytest.raises(PublishError) as err:
        producer.publish(STATE)
    assert err.value.status is None and err.value.step == 1200
    assert "cannot connect" in err.value.error
    with pytest.raises(PublishError) as err:
        asyncio.run(Producer(f"http://127.0.0.1:{port}").publish(STATE))
    assert err.value.status is None and producer.stats.failures == 1


def test_a_state_json_cannot_carry_is_a_publish_error_naming_the_field() -> None:
    producer = SyncProducer("http://127.0.0.1:9")  # never reached
    with pytest.raises(PublishError) as err:
        producer.publish(State(3, [0.0, float("nan")], [], 0.0))
    assert (err.value.status, err.value.field, err.value.step) == (None, "phases[1]", 3)
    with pytest.raises(PublishError) as err:
        producer.publish(State(3, [0.0], [0], 0.0))
    assert err.value.field == "spins[0]"


def test_ingest_sends_one_message_per_state_and_surfaces_rejections() -> None:
    async def script(conn: Conn) -> None:
        while True:
            try:
                message = await conn.recv()
            except Exception:
                return
            step = pb.PccState.FromString(message).step  # type: ignore[arg-type]
            if step == 2:
                await conn.send(
                    json.dumps(
                        {
                            "ok": False,
                            "error": "spins[0]: must be +1 or -1",
                            "field": "spins[0]",
                            "step": 2,
                        }
                    )
                )

    seen: list[IngestRejected] = []

    async def scenario() -> FakeServer:
        async with FakeServer(script) as server:
            producer = Producer(server.http_url, stream="fast", format="protobuf", key="k2")
            assert producer.ingest_url == f"ws://127.0.0.1:{server.port}/ingest?stream=fast"
            async with producer.ingest(on_error=seen.append) as ingest:
                for step in range(1, 4):
                    await ingest.send(State(step, [0.5 * step], [1], 0.0))
                rejection = await ingest.next_rejection(timeout=10)
                assert rejection is not None
                assert (rejection.field, rejection.step) == ("spins[0]", 2)
                assert isinstance(rejection, PublishError) and rejection.status is None
                assert ingest.rejections() == []
                assert ingest.stats.states == 3 and ingest.stats.rejections == 1
            return server

    server = asyncio.run(asyncio.wait_for(scenario(), 30))
    (conn,) = server.connections
    assert conn.route == "/ingest" and conn.query == {"stream": "fast"}
    assert conn.headers["X-API-Key"] == "k2"
    assert [pb.PccState.FromString(m).step for m in conn.received] == [1, 2, 3]  # type: ignore[arg-type]
    assert len(seen) == 1 and "must be +1 or -1" in str(seen[0])


def test_ingest_json_messages_are_text() -> None:
    async def script(conn: Conn) -> None:
        await conn.wait_closed()

    async def scenario() -> FakeServer:
        async with FakeServer(script) as server:
            async with Producer(server.http_url).ingest() as ingest:
                await ingest.send(STATE)
            while not server.connections or not server.connections[0].received:
                await asyncio.sleep(0.01)
            return server

    server = asyncio.run(asyncio.wait_for(scenario(), 30))
    (conn,) = server.connections
    assert conn.query == {}
    (message,) = conn.received
    assert isinstance(message, str) and json.loads(message)["step"] == 1200


@pytest.mark.parametrize("status", [401, 429, 503])
def test_a_refused_ingest_upgrade_raises_at_once_with_the_reason(status: int) -> None:
    async def script(conn: Conn) -> None:  # never reached
        raise AssertionError

    headers = {"Retry-After": "3"} if status == 429 else {}
    answer = json_answer(status, f"reason {status}", **headers)

    async def scenario() -> None:
        async with FakeServer(script, refuse=lambda n, path: answer) as server:
            async with Producer(server.http_url, key="wrong").ingest():
                raise AssertionError("opened")

    with pytest.raises(PublishError) as err:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    assert (err.value.status, err.value.error) == (status, f"reason {status}")
    assert err.value.retry_after == (3.0 if status == 429 else None)


def test_sync_ingest() -> None:
    async def script(conn: Conn) -> None:
        message = await conn.recv()
        await conn.send(json.dumps({"ok": False, "error": "rate limited", "step": 7}))
        assert json.loads(message)["step"] == 7
        await conn.wait_closed()

    with ThreadedServer(script) as server:
        rejected: list[IngestRejected] = []
        with SyncProducer(server.http_url).ingest(on_error=rejected.append) as ingest:
            ingest.send(State(7, [0.5], [1], 0.0))
            rejection = ingest.next_rejection(timeout=10)
            assert rejection is not None and rejection.error == "rate limited"
            assert rejection.step == 7 and rejected == [rejection]
            assert ingest.rejections() == []
    with pytest.raises(PublishError) as err:
        SyncProducer(f"http://127.0.0.1:{free_port()}").ingest().__enter__()
    assert err.value.status is None and "connection refused" in err.value.error
