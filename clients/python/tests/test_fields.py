"""``?fields=`` and ``?epsilon=``: projected states, summaries, envelopes, frames
without a body, and the subscriber options that ask for them.

The golden frames are those of docs/protocol.md, "Fields and summaries": exactly
what the server emits. Their base state is the seq 41 of "Frames" (GOLDEN_SEQ41)
and their target the seq 42 (GOLDEN_SEQ42).
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable

import pytest
import wire
from fake_ws import Conn, FakeServer, ThreadedServer
from test_model import GOLDEN_FULL_JSON, GOLDEN_FULL_PB, GOLDEN_SEQ41, GOLDEN_SEQ42
from test_subscriber import fast_backoff, run

from phasecast import (
    FIELDS,
    Envelope,
    Event,
    Range,
    State,
    Subscriber,
    Summary,
    SyncSubscriber,
    Update,
    project,
)
from phasecast.codec import DecodeError, decode_frame, decode_json_frame, decode_protobuf_frame
from phasecast.model import (
    ChecksumMismatch,
    Delta,
    Full,
    apply_delta,
    checksum,
    normalize_fields,
    same_bits,
)

# --- docs/protocol.md, "Fields and summaries" ---------------------------------------

GOLDEN_SUMMARY_JSON = (
    '{"seq":42,"step":11,"summary":{"r":0.5687318,"psi":1.5718236,"magnetization":0.0,'
    '"energy":-1.5,"histogram":[2,2,0,0]}}'
)
GOLDEN_PROJECTED_DELTA_JSON = (
    '{"is_delta":true,"seq":42,"base_seq":41,"step":11,"checksum":"9d15c900b551b2ff",'
    '"phases_delta":{"1":1.005859375,"3":3.1},"summary":{"r":0.5687318,"psi":1.5718236,'
    '"magnetization":0.0,"energy":-1.5,"histogram":[2,2,0,0]}}'
)
GOLDEN_ENVELOPE_JSON = (
    '{"seq":42,"step":11,"summary":{"r":0.5687318,"psi":1.5718236,"magnetization":0.0,'
    '"energy":-1.5,"histogram":[2,2,0,0]},"envelope":{"states":3,'
    '"r":{"min":0.5687318,"max":0.5928358,"mean":0.58480114},'
    '"psi":{"min":1.5658432,"max":1.5718236,"mean":1.5678366},'
    '"magnetization":{"min":0.0,"max":0.5,"mean":0.33333334},'
    '"energy":{"min":-1.5,"max":4.0,"mean":0.41666666}}}'
)
GOLDEN_SUMMARY_PB = bytes.fromhex("082a100b42150d6898113f158431c93f250000c0bf2a0402020000")
GOLDEN_PROJECTED_DELTA_PB = bytes.fromhex(
    "082a100b321e11ffb251b500c9159d18112201012a01063201033a08cdcccccccccc084042150d68"
    "98113f158431c93f250000c0bf2a0402020000"
)
GOLDEN_ENVELOPE_PB = bytes.fromhex(
    "082a100b42150d6898113f158431c93f250000c0bf2a04020200004a410803120f0d6898113f1516"
    "c4173f1d87b5153f1a0f0d8d6dc83f158431c93f1ddfaec83f220a150000003f1dabaaaa3e2a0f0d"
    "0000c0bf15000080401d5555d53e"
)
#: The golden delta's subscription and checksum (of the projected seq 42).
GOLDEN_DELTA_FIELDS = ("phases", "summary")
GOLDEN_PROJECTED_CHECKSUM = 0x9D15C900B551B2FF

f32 = wire.f32

#: The summary in the golden frames: the float32 values of the numbers written.
GOLDEN_SUMMARY = Summary(f32(0.5687318), f32(1.5718236), 0.0, -1.5, (2, 2, 0, 0))
GOLDEN_ENVELOPE = Envelope(
    states=3,
    r=Range(f32(0.5687318), f32(0.5928358), f32(0.58480114)),
    psi=Range(f32(1.5658432), f32(1.5718236), f32(1.5678366)),
    magnetization=Range(0.0, 0.5, f32(0.33333334)),
    energy=Range(-1.5, 4.0, f32(0.41666666)),
)

GOLDEN_PAIRS = pytest.mark.parametrize(
    "text, binary",
    [
        (GOLDEN_SUMMARY_JSON, GOLDEN_SUMMARY_PB),
        (GOLDEN_PROJECTED_DELTA_JSON, GOLDEN_PROJECTED_DELTA_PB),
        (GOLDEN_ENVELOPE_JSON, GOLDEN_ENVELOPE_PB),
    ],
    ids=["summary", "delta", "envelope"],
)
BOTH = pytest.mark.parametrize("fmt", ["json", "protobuf"])


def golden(name: str, fmt: str) -> str | bytes:
    frames: dict[str, tuple[str, bytes]] = {
        "summary": (GOLDEN_SUMMARY_JSON, GOLDEN_SUMMARY_PB),
        "delta": (GOLDEN_PROJECTED_DELTA_JSON, GOLDEN_PROJECTED_DELTA_PB),
        "envelope": (GOLDEN_ENVELOPE_JSON, GOLDEN_ENVELOPE_PB),
    }
    text, binary = frames[name]
    return text if fmt == "json" else binary


def test_golden_protobuf_sizes_are_the_documented_ones() -> None:
    sizes = [len(b) for b in (GOLDEN_SUMMARY_PB, GOLDEN_PROJECTED_DELTA_PB, GOLDEN_ENVELOPE_PB)]
    assert sizes == [27, 59, 94]


@GOLDEN_PAIRS
def test_golden_summaries_are_the_float32_values_in_both_formats(text: str, binary: bytes) -> None:
    from_json = decode_json_frame(text)
    from_pb = decode_protobuf_frame(binary)
    assert from_json.summary == from_pb.summary == GOLDEN_SUMMARY
    # JSON's "0.5687318" is read as the float32 it names, not as that double: the
    # two encodings give the same Python floats.
    assert from_json.summary is not None and from_json.summary.r != 0.5687318
    for value in (GOLDEN_SUMMARY.r, GOLDEN_SUMMARY.psi):
        assert f32(value) == value
    assert from_json.summary.histogram == (2, 2, 0, 0)
    assert from_json.envelope == from_pb.envelope


@BOTH
def test_golden_summary_only_frame_stands_alone(fmt: str) -> None:
    frame = decode_frame(golden("summary", fmt), fmt)
    assert isinstance(frame, Full)
    assert frame.standalone and frame.epoch is None and frame.envelope is None
    assert frame.seq == 42
    # fields=summary holds the step, and nothing of the rest.
    assert same_bits(frame.state, State(11, [], [], 0.0, None))
    assert same_bits(frame.state, project(GOLDEN_SEQ42, "summary"))


@BOTH
def test_golden_projected_delta_applies_on_the_projected_base(fmt: str) -> None:
    delta = decode_frame(golden("delta", fmt), fmt)
    assert isinstance(delta, Delta)
    assert (delta.seq, delta.base_seq, delta.checksum) == (42, 41, GOLDEN_PROJECTED_CHECKSUM)
    # No energy, timestamp or spins on the wire: the projected state has none.
    assert (delta.energy, delta.timestamp) == (0.0, None)
    assert not delta.flips and not delta.spin_values
    base = project(GOLDEN_SEQ41, GOLDEN_DELTA_FIELDS)
    assert same_bits(base, State(10, [0.5, 1.0, 2.0, 3.0], [], 0.0, None))
    held = apply_delta(base, delta)
    assert same_bits(held, State(11, [0.5, 1.005859375, 2.0, 3.1], [], 0.0, None))
    assert checksum(held) == GOLDEN_PROJECTED_CHECKSUM
    assert delta.summary == GOLDEN_SUMMARY
    # The checksum covers the projection: the whole base state does not verify.
    with pytest.raises(ChecksumMismatch):
        apply_delta(GOLDEN_SEQ41, delta)


@BOTH
def test_golden_envelope(fmt: str) -> None:
    frame = decode_frame(golden("envelope", fmt), fmt)
    assert isinstance(frame, Full) and frame.standalone
    assert frame.envelope == GOLDEN_ENVELOPE
    assert frame.summary == GOLDEN_SUMMARY
    envelope, summary = frame.envelope, frame.summary
    assert envelope is not None and summary is not None
    # This frame's state is among those the envelope covers.
    assert envelope.energy.min <= summary.energy <= envelope.energy.max
    assert envelope.r.min <= summary.r <= envelope.r.max


def test_the_test_server_model_writes_the_golden_frames() -> None:
    """wire.py, which plays the server below, writes exactly the documented bytes."""
    summary = wire.summary_of(GOLDEN_SEQ42, bins=4)
    assert Summary(**summary) == GOLDEN_SUMMARY
    assert wire.full_json(42, GOLDEN_SEQ42, fields=["summary"], summary=summary) == (
        GOLDEN_SUMMARY_JSON
    )
    assert wire.full_pb(42, GOLDEN_SEQ42, fields=["summary"], summary=summary) == (
        GOLDEN_SUMMARY_PB
    )
    fields = GOLDEN_DELTA_FIELDS
    base, target = (wire.projected(s, fields) for s in (GOLDEN_SEQ41, GOLDEN_SEQ42))
    d = wire.diff(base, 41, target, 42, wire.quantum_exp_for(0.001))
    assert wire.delta_json(d, target, fields=fields, summary=summary) == (
        GOLDEN_PROJECTED_DELTA_JSON
    )
    assert wire.delta_pb(d, target, summary=summary) == GOLDEN_PROJECTED_DELTA_PB
    envelope = {
        "states": 3,
        **{
            name: {"min": r.min, "max": r.max, "mean": r.mean}
            for name, r in vars(GOLDEN_ENVELOPE).items()
            if isinstance(r, Range)
        },
    }
    assert wire.full_json(
        42, GOLDEN_SEQ42, fields=["summary"], summary=summary, envelope=envelope
    ) == (GOLDEN_ENVELOPE_JSON)
    assert wire.full_pb(
        42, GOLDEN_SEQ42, fields=["summary"], summary=summary, envelope=envelope
    ) == (GOLDEN_ENVELOPE_PB)
    # The default subscription's frames are those of "Frames", byte for byte.
    assert wire.full_pb(41, GOLDEN_SEQ41) == GOLDEN_FULL_PB
    assert wire.full_json(41, GOLDEN_SEQ41) == GOLDEN_FULL_JSON


def test_default_frames_carry_no_summary() -> None:
    for frame in (decode_json_frame(GOLDEN_FULL_JSON), decode_protobuf_frame(GOLDEN_FULL_PB)):
        assert isinstance(frame, Full)
        assert (frame.summary, frame.envelope, frame.standalone) == (None, None, False)


# --- projected frames ------------------------------------------------------------------

PROJECTIONS = [
    ("phases",),
    ("spins",),
    ("phases", "energy"),
    ("spins", "timestamp", "summary"),
    ("phases", "spins", "energy", "timestamp"),
    ("phases", "spins", "energy", "timestamp", "summary"),
]


@pytest.mark.parametrize("fields", PROJECTIONS, ids=",".join)
def test_full_frames_hold_only_the_parts_taken(fields: tuple[str, ...]) -> None:
    summary = wire.summary_of(GOLDEN_SEQ41) if "summary" in fields else None
    text = wire.full_json(41, GOLDEN_SEQ41, fields=fields, epoch="e1", summary=summary)
    keys = set(json.loads(text))
    for part in ("phases", "spins", "energy", "timestamp", "summary"):
        assert (part in keys) == (part in fields), part
    binary = wire.full_pb(41, GOLDEN_SEQ41, fields=fields, epoch="e1", summary=summary)
    for frame in (decode_json_frame(text), decode_protobuf_frame(binary)):
        assert isinstance(frame, Full)
        assert same_bits(frame.state, project(GOLDEN_SEQ41, fields)), fields
        assert frame.epoch == "e1" and not frame.standalone
        assert frame.summary == (None if summary is None else Summary(**summary))


@pytest.mark.parametrize("fields", [("energy",), ("energy", "timestamp"), ("timestamp", "summary")])
def test_frames_without_phases_and_spins_have_no_body(fields: tuple[str, ...]) -> None:
    text = wire.full_json(41, GOLDEN_SEQ41, fields=fields, epoch="e1")
    assert "epoch" not in json.loads(text) and "is_delta" not in json.loads(text)
    binary = wire.full_pb(41, GOLDEN_SEQ41, fields=fields, epoch="e1")
    assert pb_body(binary) is None
    for frame in (decode_json_frame(text), decode_protobuf_frame(binary)):
        assert isinstance(frame, Full) and frame.standalone and frame.epoch is None
        assert same_bits(frame.state, project(GOLDEN_SEQ41, fields))
    assert decode_json_frame(text).state.energy == (-1.25 if "energy" in fields else 0.0)


def pb_body(binary: bytes) -> str | None:
    from phasecast._pb.pcc.v1 import pcc_pb2 as pb

    return pb.Frame.FromString(binary).WhichOneof("body")


def random_states(rng: random.Random, count: int, n: int) -> list[State]:
    phases = [rng.uniform(-3, 3) for _ in range(n)]
    spins = [rng.choice((1, -1)) for _ in range(n)]
    states = []
    for step in range(count):
        for i in rng.sample(range(n), 3):
            phases[i] += rng.choice((0.0004, -0.003, 0.02, rng.uniform(-1, 1)))
        spins[rng.randrange(n)] *= -1
        states.append(State(step, list(phases), list(spins), rng.uniform(-5, 5), 1e9 + step))
    return states


@pytest.mark.parametrize("fields", [f for f in PROJECTIONS if wire.has_body(f)], ids=",".join)
@pytest.mark.parametrize("epsilon", [0.0, 0.001])
def test_projected_deltas_chain_and_verify(fields: tuple[str, ...], epsilon: float) -> None:
    """Deltas of projected views, in both formats, applied one after the other."""
    states = random_states(random.Random(5), 25, 12)
    exp = wire.quantum_exp_for(epsilon)
    for fmt in ("json", "protobuf"):
        views = [wire.projected(states[0], fields)]
        first = decode_frame(
            (wire.full_json if fmt == "json" else wire.full_pb)(1, views[0], fields=fields), fmt
        )
        assert isinstance(first, Full)
        held = first.state
        for seq in range(2, len(states) + 1):
            view = wire.advance(views[-1], wire.projected(states[seq - 1], fields), epsilon)
            d = wire.diff(views[-1], seq - 1, view, seq, exp)
            if fmt == "json":
                message: str | bytes = wire.delta_json(d, view, fields=fields)
            else:
                message = wire.delta_pb(d, view)
            frame = decode_frame(message, fmt)
            assert isinstance(frame, Delta)
            held = apply_delta(held, frame)
            assert same_bits(held, view), (fmt, seq)
            for a, b in zip(held.phases, states[seq - 1].phases):
                assert abs(a - b) <= epsilon
            views.append(view)


def test_a_numpy_subscriber_gets_empty_arrays_without_a_body() -> None:
    np = pytest.importorskip("numpy")
    for fmt in ("json", "protobuf"):
        frame = decode_frame(golden("summary", fmt), fmt, numpy=True)
        assert isinstance(frame, Full) and frame.standalone
        phases, spins = frame.state.phases, frame.state.spins
        assert isinstance(phases, np.ndarray) and phases.dtype == np.float64 and phases.size == 0
        assert isinstance(spins, np.ndarray) and spins.dtype == np.int8 and spins.size == 0
        assert frame.summary == GOLDEN_SUMMARY


@pytest.mark.parametrize(
    "text",
    [
        GOLDEN_SUMMARY_JSON.replace('"summary":{', '"summary":[{').replace("]}}", "]}]}"),
        GOLDEN_SUMMARY_JSON.replace("[2,2,0,0]", "[2,-1,0,0]"),
        GOLDEN_SUMMARY_JSON.replace("[2,2,0,0]", "[2,2.5,0,0]"),
        GOLDEN_SUMMARY_JSON.replace("[2,2,0,0]", "[2,4294967296,0,0]"),
        GOLDEN_SUMMARY_JSON.replace("[2,2,0,0]", '"2,2,0,0"'),
        GOLDEN_SUMMARY_JSON.replace('"r":0.5687318', '"r":"0.57"'),
        GOLDEN_SUMMARY_JSON.replace('"r":0.5687318,', ""),
        GOLDEN_SUMMARY_JSON.replace('"r":0.5687318', '"r":1e39'),  # beyond float32
        GOLDEN_ENVELOPE_JSON.replace('"states":3,', ""),
        GOLDEN_ENVELOPE_JSON.replace('"states":3', '"states":-3'),
        GOLDEN_ENVELOPE_JSON.replace('"energy":{"min":-1.5,', '"energy":{'),
        GOLDEN_ENVELOPE_JSON.replace('"magnetization":{', '"magnetisation":{'),
        GOLDEN_SUMMARY_JSON.replace('"step":11,', '"step":11,"envelope":3,'),
    ],
)
def test_bad_summaries_and_envelopes_are_decode_errors(text: str) -> None:
    assert text != GOLDEN_SUMMARY_JSON and text != GOLDEN_ENVELOPE_JSON
    with pytest.raises(DecodeError):
        decode_json_frame(text)


# --- options: fields and epsilon ------------------------------------------------------


def test_fields_are_checked_and_put_in_the_servers_order() -> None:
    assert FIELDS == ("phases", "spins", "energy", "timestamp", "summary")
    assert normalize_fields(["summary", "phases"]) == ("phases", "summary")
    assert normalize_fields(" summary , phases,summary") == ("phases", "summary")
    assert normalize_fields(("timestamp",)) == ("timestamp",)


@pytest.mark.parametrize(
    "fields, message",
    [
        ("phase", "unknown field 'phase'"),
        (["phases", "bogus"], "unknown field 'bogus'"),
        (["PHASES"], "unknown field 'PHASES'"),
        ("phases,", "unknown field ''"),
        ([], "empty list"),
        ("", "empty list"),
        ([1], "unknown field 1"),
    ],
)
def test_bad_fields_are_refused_before_any_connection(fields: Any, message: str) -> None:
    for make in (Subscriber, SyncSubscriber):
        with pytest.raises(ValueError, match=message) as err:
            make("ws://127.0.0.1:1/ws", fields=fields)
        assert "phases, spins, energy, timestamp, summary" in str(err.value)


@pytest.mark.parametrize("epsilon", [-0.001, float("nan"), float("inf"), True, "0.001"])
def test_bad_epsilon_is_refused_before_any_connection(epsilon: Any) -> None:
    for make in (Subscriber, SyncSubscriber):
        with pytest.raises(ValueError, match="epsilon"):
            make("ws://127.0.0.1:1/ws", epsilon=epsilon)


def query_of(sub: Subscriber) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(sub.connection_url()).query, keep_blank_values=True)


def test_epsilon_and_fields_go_in_the_url() -> None:
    sub = Subscriber("ws://h/ws", epsilon=0.001, fields=["summary", "phases"])
    assert query_of(sub) == [("epsilon", "0.001"), ("fields", "phases,summary"), ("format", "json")]
    assert "fields=phases%2Csummary" in sub.connection_url()
    assert ("epsilon", "0") in query_of(Subscriber("ws://h/ws", epsilon=0))
    assert ("epsilon", "0.0001") in query_of(Subscriber("ws://h/ws", epsilon=1e-4))
    assert ("fields", "summary") in query_of(SyncSubscriber("ws://h/ws", fields="summary"))
    # Explicit options replace the URL's own parameters, in place.
    sub = Subscriber("ws://h/ws?fields=spins&epsilon=0.5&stream=s", epsilon=0.01, fields="energy")
    assert query_of(sub) == [
        ("fields", "energy"),
        ("epsilon", "0.01"),
        ("stream", "s"),
        ("format", "json"),
    ]
    # Asking for nothing new sends nothing new.
    assert query_of(Subscriber("ws://h/ws")) == [("format", "json")]


# --- subscribers against the fake server --------------------------------------------

_rng = random.Random(23)
TRUTH: list[State] = random_states(_rng, 8, 6)  # TRUTH[seq - 1] is the state with that seq


def summary_at(seq: int) -> dict[str, Any]:
    return wire.summary_of(TRUTH[seq - 1])


def envelope_at(seqs: list[int]) -> dict[str, Any]:
    return wire.envelope_of([summary_at(s) for s in seqs])


def full_frame(
    fmt: str, seq: int, fields: tuple[str, ...], epoch: str | None = None, envelope: bool = False
) -> str | bytes:
    encode = wire.full_json if fmt == "json" else wire.full_pb
    summary = summary_at(seq) if "summary" in fields else None
    return encode(
        seq,
        TRUTH[seq - 1],
        fields=fields,
        epoch=epoch,
        summary=summary,
        envelope=envelope_at([seq]) if envelope else None,
    )


def delta_frame(
    fmt: str, base_seq: int, seq: int, fields: tuple[str, ...], envelope: list[int] | None = None
) -> str | bytes:
    base, target = (wire.projected(TRUTH[s - 1], fields) for s in (base_seq, seq))
    d = wire.diff(base, base_seq, target, seq, None)
    summary = summary_at(seq) if "summary" in fields else None
    extras = {"summary": summary, "envelope": None if envelope is None else envelope_at(envelope)}
    if fmt == "json":
        return wire.delta_json(d, target, fields=fields, **extras)
    return wire.delta_pb(d, target, **extras)


def check_update(update: Update, fields: tuple[str, ...]) -> None:
    """The update holds the projected truth and the frame's summary."""
    assert same_bits(update.state, project(TRUTH[update.seq - 1], fields)), update.seq
    expected = Summary(**summary_at(update.seq)) if "summary" in fields else None
    assert update.summary == expected


@BOTH
def test_a_projected_subscription_resumes_with_the_same_epsilon_and_fields(fmt: str) -> None:
    fields = ("phases", "summary")

    async def script(conn: Conn) -> None:
        assert conn.query["epsilon"] == "0.001" and conn.query["fields"] == "phases,summary"
        assert conn.query["max_hz"] == "10"
        if "resume" not in conn.query:
            await conn.send(full_frame(fmt, 1, fields, epoch="e1", envelope=True))
            await conn.send(delta_frame(fmt, 1, 3, fields, envelope=[2, 3]))
            await conn.close(1012, "restart")
            return
        assert (conn.query["resume"], conn.query["epoch"]) == ("3", "e1")
        await conn.send(delta_frame(fmt, 3, 6, fields, envelope=[4, 5, 6]))
        await conn.wait_closed()

    async def scenario() -> tuple[list[Update], Subscriber, FakeServer]:
        async with FakeServer(script) as server:
            async with Subscriber(
                server.url,
                format=fmt,
                max_hz=10,
                epsilon=0.001,
                fields="summary,phases",
                backoff=fast_backoff(),
            ) as sub:
                updates = []
                async for update in sub:
                    updates.append(update)
                    if update.seq == 6:
                        return updates, sub, server
        raise AssertionError("ended")

    updates, sub, server = run(scenario)
    assert [(u.seq, u.kind, u.epoch) for u in updates] == [
        (1, "full", "e1"),
        (3, "delta", "e1"),
        (6, "delta", "e1"),
    ]
    for update in updates:
        check_update(update, fields)
        assert not update.standalone
    assert [u.envelope.states if u.envelope else None for u in updates] == [1, 2, 3]
    assert updates[2].envelope == Envelope(
        **{k: (Range(**v) if isinstance(v, dict) else v) for k, v in envelope_at([4, 5, 6]).items()}
    )
    assert sub.summary == updates[-1].summary and sub.envelope == updates[-1].envelope
    assert sub.resyncs == 0 and len(server.connections) == 2
    assert all(conn.received == [] for conn in server.connections)


def summary_only_script(fmt: str, seqs_per_connection: list[list[int]]) -> Callable[..., Any]:
    connections = iter(seqs_per_connection)

    async def script(conn: Conn) -> None:
        assert conn.query["fields"] == "summary" and conn.query["epsilon"] == "0.001"
        # Nothing to resume from: a frame without a body stands alone.
        assert "resume" not in conn.query and "epoch" not in conn.query
        seqs = next(connections)
        for seq in seqs:
            await conn.send(full_frame(fmt, seq, ("summary",), epoch="ignored"))
        if seqs is not seqs_per_connection[-1]:
            await conn.close(1012, "restart")
            return
        await conn.wait_closed()

    return script


@BOTH
def test_a_summary_only_subscription_never_resyncs_and_never_resumes(fmt: str) -> None:
    events: list[Event] = []
    # Seqs jump (a slow reader, max_hz): with no body there is no base to miss.
    script = summary_only_script(fmt, [[1, 2, 5], [7, 8]])

    async def scenario() -> tuple[list[Update], Subscriber, FakeServer]:
        async with FakeServer(script) as server:
            async with Subscriber(
                server.url,
                format=fmt,
                epsilon=0.001,
                fields=["summary"],
                backoff=fast_backoff(),
                on_event=events.append,
            ) as sub:
                updates = []
                async for update in sub:
                    updates.append(update)
                    assert "resume" not in sub.connection_url()
                    if update.seq == 8:
                        return updates, sub, server
        raise AssertionError("ended")

    updates, sub, server = run(scenario)
    assert [u.seq for u in updates] == [1, 2, 5, 7, 8]
    for update in updates:
        assert update.standalone and update.kind == "full" and update.epoch is None
        assert update.envelope is None
        check_update(update, ("summary",))
        assert update.phases == [] and update.spins == [] and update.energy == 0.0
    assert sub.resyncs == 0 and "resync" not in [e.kind for e in events]
    assert [conn.received for conn in server.connections] == [[], []]
    assert sub.stats.full_frames == 5 and sub.epoch is None


def test_a_delta_after_a_frame_without_a_body_resyncs() -> None:
    """A server that mixed the two would be wrong: the client trusts neither."""

    async def script(conn: Conn) -> None:
        await conn.send(full_frame("json", 1, ("summary",)))
        await conn.send(delta_frame("json", 1, 2, ("phases",)))
        await conn.recv()
        await conn.send(full_frame("json", 3, ("phases",), epoch="e1"))
        await conn.wait_closed()

    async def scenario() -> tuple[list[Update], FakeServer]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url) as sub:
                updates = []
                async for update in sub:
                    updates.append(update)
                    if update.seq == 3:
                        return updates, server
        raise AssertionError("ended")

    updates, server = run(scenario)
    assert [(u.seq, u.standalone) for u in updates] == [(1, True), (3, False)]
    assert server.connections[0].received == ['{"op":"resync"}']


def test_the_sync_subscriber_takes_epsilon_and_fields() -> None:
    script = summary_only_script("protobuf", [[1, 2], [4]])
    with ThreadedServer(script) as server:
        with SyncSubscriber(
            server.url,
            format="protobuf",
            epsilon=0.001,
            fields="summary",
            backoff=fast_backoff(),
        ) as sub:
            updates = [u for _, u in zip(range(3), sub)]
        assert len(server.connections) == 2
    assert [u.seq for u in updates] == [1, 2, 4]
    for update in updates:
        assert update.standalone
        check_update(update, ("summary",))


def test_a_default_subscription_is_unchanged() -> None:
    fields = wire.DEFAULT_FIELDS

    async def script(conn: Conn) -> None:
        assert conn.query == {"format": "json"}
        await conn.send(full_frame("json", 1, fields, epoch="e1"))
        await conn.send(delta_frame("json", 1, 2, fields))
        await conn.wait_closed()

    async def scenario() -> list[Update]:
        async with FakeServer(script) as server:
            async with Subscriber(server.url) as sub:
                return [await sub.__anext__(), await sub.__anext__()]

    updates = run(scenario)
    for update in updates:
        assert same_bits(update.state, TRUTH[update.seq - 1])
        assert (update.summary, update.envelope, update.standalone) == (None, None, False)
