"""Producer: HTTP POST against a stdlib HTTP server, /ingest against the fake server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_ws import Conn, FakeServer

from phasecast import IngestRejected, Producer, PublishError, State
from phasecast._pb.pcc.v1 import pcc_pb2 as pb

STATE = State(1200, [0.12, 3.0, 6.1], [1, -1, 1], -0.82, 1764150000.125)


class Recorder(BaseHTTPRequestHandler):
    """Answers like the server: 200 with a seq, or 422 for a state with step 13."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append({"path": self.path, "headers": self.headers, "body": body})
        if self.headers["Content-Type"] == "application/x-protobuf":
            step = pb.PccState.FromString(body).step
        else:
            step = json.loads(body)["step"]
        if step == 13:
            status, answer = (
                422,
                {"ok": False, "error": "phases[3]: must be a finite number", "field": "phases[3]"},
            )
        elif step == 14:
            status, answer = 429, {"ok": False, "error": "rate limited"}
        else:
            status, answer = (
                200,
                {"ok": True, "seq": 57, "step": step, "clients": 12, "processing_time_ms": 0.04},
            )
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429:
            self.send_header("Retry-After", "2")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def http_server() -> Iterator[str]:
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_publish_json_to_the_old_endpoint(http_server: str) -> None:
    result = asyncio.run(Producer(http_server).publish(STATE))
    assert (result.seq, result.step, result.clients, result.processing_time_ms) == (
        57,
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
    producer = Producer(http_server + "/", stream="lab-1", format="protobuf", key="k1")
    asyncio.run(producer.publish(STATE))
    (request,) = Recorder.requests
    assert request["path"] == "/streams/lab-1/state"
    assert request["headers"]["Content-Type"] == "application/x-protobuf"
    assert request["headers"]["X-API-Key"] == "k1"
    message = pb.PccState.FromString(request["body"])
    assert list(message.phases) == STATE.phases and message.timestamp == STATE.timestamp


def test_publish_errors_carry_status_field_and_retry_after(http_server: str) -> None:
    producer = Producer(http_server)
    with pytest.raises(PublishError) as err:
        producer.publish_blocking(State(13, [0.0], [], 0.0))
    assert (err.value.status, err.value.field) == (422, "phases[3]")
    assert "finite" in err.value.error
    with pytest.raises(PublishError) as err:
        producer.publish_blocking(State(14, [0.0], [], 0.0))
    assert (err.value.status, err.value.retry_after) == (429, 2.0)


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
                rejection = await ingest.next_rejection(timeout=5)
                assert rejection is not None
                assert (rejection.field, rejection.step) == ("spins[0]", 2)
                assert await ingest.next_rejection(timeout=0.1) is None
                assert ingest.rejections() == []
            return server

    server = asyncio.run(asyncio.wait_for(scenario(), 10))
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
            await asyncio.sleep(0.05)
            return server

    server = asyncio.run(asyncio.wait_for(scenario(), 10))
    (conn,) = server.connections
    assert conn.query == {}
    (message,) = conn.received
    assert isinstance(message, str) and json.loads(message)["step"] == 1200
