//! A true drop-in: every behaviour of the old Python server's API that a deployed
//! browser page, producer or Prometheus set-up relies on, stated here in one place and
//! checked against a live server, so that a change that would break a drop-in user
//! fails a test. Only raw HTTP (`reqwest`) and WebSocket (`tokio-tungstenite`) clients
//! are used: what an old client sends and reads, nothing of phasecast's own clients.
//!
//! What is kept:
//!
//! | what | kept |
//! |---|---|
//! | routes | `POST /pcc_state`, `GET /ws`, `GET /health`, `GET /metrics`, `GET /metrics/json`; `OPTIONS` preflights on all |
//! | `POST /pcc_state` | the old JSON body; 200 `{"ok":true,"step":int,"clients":int,"processing_time_ms":number (2 decimals)}`; 422 for an invalid field; 405 for another method |
//! | `/ws` | JSON text full frames `{step,phases,spins,energy,timestamp}`; deltas `{is_delta:true,step,energy,timestamp,phases_delta:{"i":x},spins_delta:{"i":s}}`; text from the client ignored |
//! | timestamps | the producer's, or the server's accept time when it sent none (seconds since the epoch) |
//! | `/health` | `{"status":"healthy","wire_format":str,"websocket_clients":int,"uptime_seconds":number}` |
//! | `/metrics/json` | `{"ws_clients_current":int,"wire_format":str,"uptime_seconds":number}` |
//! | CORS | `ALLOWED_ORIGINS` (default `*`), credentials allowed, every method and header |
//! | environment | `MCP_SERVER_PORT` (8787), `MCP_API_KEY` (unset: no key), `PCC_WIRE_FORMAT` (json), `ALLOWED_ORIGINS` (`*`) |
//! | metrics | `mcp_*` names, types and meanings: see [`OLD_METRICS`] |
//!
//! Where phasecast deliberately differs, the test says so (`DIFFERENCE:`), and the
//! README's "Migrating from the old server" lists the difference with its reason
//! ([`DIFFERENCES`], checked by `every_difference_is_in_the_readme`).

use std::{
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use phasecast::{
    codec::{self, Encoding},
    model::State,
};
use serde_json::{json, Value};
use tokio_tungstenite::{
    tungstenite::{protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::support::{metric, wait_for_metric, within, TestServer};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The old server's metrics: name (as scraped), Prometheus type, and meaning. Each is
/// checked, type and meaning, by `old_metrics_keep_their_names_types_and_meanings`.
pub const OLD_METRICS: &[(&str, &str, &str)] = &[
    (
        "mcp_ws_connections_current",
        "gauge",
        "subscriber WebSockets open now",
    ),
    (
        "mcp_ws_connections_total",
        "counter",
        "subscriber WebSockets accepted",
    ),
    (
        "mcp_ws_disconnections_total",
        "counter",
        "subscriber WebSockets ended, any reason",
    ),
    (
        "mcp_pcc_messages_received_total",
        "counter",
        "producer states accepted",
    ),
    (
        "mcp_pcc_messages_broadcast_total",
        "counter",
        "frames delivered: one per subscriber per state",
    ),
    (
        "mcp_pcc_messages_dropped_total",
        "counter",
        "states not delivered or refused, by reason",
    ),
    (
        "mcp_pcc_message_size_bytes",
        "histogram",
        "size of each accepted state as received",
    ),
    (
        "mcp_pcc_message_processing_seconds",
        "histogram",
        "request taken up to state handed off: the reply's processing_time_ms",
    ),
    (
        "mcp_pcc_broadcast_latency_seconds",
        "histogram",
        "state accepted to frame written to a subscriber",
    ),
    (
        "mcp_service_info",
        "gauge",
        "always 1, with the service's version and wire format",
    ),
];

/// Every deliberate difference from the old server, as a phrase the README's
/// "Migrating from the old server" section must contain (with its reason beside it).
pub const DIFFERENCES: &[&str] = &[
    "401 for a missing or wrong key",
    "429 over the producer rate limit",
    "413 for a body over",
    "400 for a body that is not JSON",
    "JSON error bodies",
    "deltas never drift",
    "`seq`",
    "a slow subscriber is skipped ahead",
    "`ALLOWED_ORIGINS` also guards `/ws`",
    "a preflight from an origin not allowed",
    "`{\"op\":…}` naming an unknown op",
    "limits on what a subscriber sends",
    "`mcp_pcc_message_size_bytes` of a protobuf state",
    "histogram buckets",
    "never waits on a subscriber",
];

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The JSON type of a value, as the old clients see it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks that `value` has each field with its type ("number" also takes an integer:
/// JSON does not tell 2.0 from 2).
fn expect_fields(what: &str, value: &Value, fields: &[(&str, &str)]) {
    for (name, want) in fields {
        let got = json_type(&value[name]);
        let ok = got == *want || (*want == "number" && got == "integer");
        assert!(
            ok,
            "{what}: {name} is {got}, the old API has {want}: {value}"
        );
    }
}

/// `POST path` with a body and headers: status, headers, body text.
async fn post(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.http()))
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = within("POST", request.send()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn post_state(server: &TestServer, body: &str) -> Value {
    let (status, _, text) = post(
        server,
        "/pcc_state",
        body.to_owned(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn connect(url: String) -> Ws {
    within("connect", tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .0
}

/// The next JSON text frame (pings, pongs skipped).
async fn next_json(ws: &mut Ws) -> Value {
    within("JSON frame", async {
        loop {
            match ws.next().await.expect("still open").expect("a message") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("closed: {c:?}"),
                Message::Binary(_) => panic!("a binary frame on a JSON subscription"),
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_routes_answer_with_the_old_methods_and_statuses() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let http = server.http();
    let good = r#"{"step":1,"phases":[0.5],"spins":[1],"energy":0}"#;
    let cases: Vec<(reqwest::Method, &str, Option<&str>, u16, &str)> = vec![
        (reqwest::Method::GET, "/health", None, 200, "kept"),
        (reqwest::Method::GET, "/metrics", None, 200, "kept"),
        (reqwest::Method::GET, "/metrics/json", None, 200, "kept"),
        (reqwest::Method::POST, "/pcc_state", Some(good), 200, "kept"),
        (reqwest::Method::GET, "/pcc_state", None, 405, "kept"),
        (
            reqwest::Method::POST,
            "/pcc_state",
            Some(r#"{"step":1,"phases":"no","energy":0}"#),
            422,
            "kept (a field of the wrong type)",
        ),
        (
            reqwest::Method::POST,
            "/pcc_state",
            Some(r#"{"step":1,"energy":0}"#),
            422,
            "kept (a field missing)",
        ),
        // DIFFERENCE: the old server (FastAPI) answered 422 for a body that is not JSON.
        (
            reqwest::Method::POST,
            "/pcc_state",
            Some("{"),
            400,
            "400 for a body that is not JSON",
        ),
        (reqwest::Method::GET, "/no-such-path", None, 404, "kept"),
    ];
    for (method, path, body, want, note) in cases {
        let mut request = client.request(method.clone(), format!("{http}{path}"));
        if let Some(b) = body {
            request = request
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let response = within("request", request.send()).await.unwrap();
        assert_eq!(response.status().as_u16(), want, "{method} {path}: {note}");
        if want >= 400 && want != 405 {
            // DIFFERENCE: JSON error bodies {"ok":false,"error":…,"field":…}, where the
            // old server answered FastAPI's {"detail":…}.
            let body: Value = response.json().await.unwrap();
            expect_fields(path, &body, &[("ok", "bool"), ("error", "string")]);
        }
    }
    // /ws upgrades with no parameter at all.
    let (_ws, response) = within(
        "upgrade",
        tokio_tungstenite::connect_async(format!("{}/ws", server.ws())),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    // A CORS preflight on the producer route (see the CORS tests for its headers).
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{http}/pcc_state"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcc_state_replies_with_the_old_fields() {
    let server = TestServer::start().await;
    let mut ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;
    for step in [7u64, 8, 9] {
        let body = format!(r#"{{"step":{step},"phases":[0.1,1.2],"spins":[1,-1],"energy":-1.5}}"#);
        let (status, _, text) = post(
            &server,
            "/pcc_state",
            body,
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_str(&text).unwrap();
        expect_fields(
            "reply",
            &reply,
            &[
                ("ok", "bool"),
                ("step", "integer"),
                ("clients", "integer"),
                ("processing_time_ms", "number"),
                // An addition: the stream's seq of the state.
                ("seq", "integer"),
            ],
        );
        assert_eq!(reply["ok"], true);
        assert_eq!(reply["step"], step);
        assert_eq!(reply["clients"], 1, "subscribers of the stream");
        // Rounded to two decimals, as the old server's round(ms, 2): in the text of
        // the answer, not only in its value.
        let ms = reply["processing_time_ms"].as_f64().unwrap();
        assert!(ms >= 0.0);
        let raw = text
            .split("\"processing_time_ms\":")
            .nth(1)
            .unwrap()
            .split([',', '}'])
            .next()
            .unwrap();
        let decimals = raw.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 2, "processing_time_ms {raw} in {text}");
        next_json(&mut ws).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_json_have_the_old_fields() {
    let server = TestServer::start().await;
    let _ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;
    let health = server.health().await;
    expect_fields(
        "/health",
        &health,
        &[
            ("status", "string"),
            ("wire_format", "string"),
            ("websocket_clients", "integer"),
            ("uptime_seconds", "number"),
        ],
    );
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["wire_format"], "json");
    assert_eq!(health["websocket_clients"], 1);
    let up = health["uptime_seconds"].as_f64().unwrap();
    assert!(up >= 0.0);

    let debug = server.get_json("/metrics/json").await;
    expect_fields(
        "/metrics/json",
        &debug,
        &[
            ("ws_clients_current", "integer"),
            ("wire_format", "string"),
            ("uptime_seconds", "number"),
        ],
    );
    assert_eq!(debug["ws_clients_current"], 1);
    assert_eq!(debug["wire_format"], "json");
    assert!(
        debug["uptime_seconds"].as_f64().unwrap() >= up,
        "uptime only grows"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_client_behaviour_works_unchanged() {
    let server = TestServer::start().await;
    // The old browser page: /ws with no parameters, JSON text frames.
    let mut ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;

    // The old producer: POST the old body to /pcc_state.
    let reply = post_state(
        &server,
        r#"{"step": 42, "phases": [0.1, 1.2, 2.3], "spins": [1, -1, 1], "energy": -1.75, "timestamp": 1764000000.5}"#,
    )
    .await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["step"], 42);
    assert_eq!(reply["clients"], 1);

    let frame = next_json(&mut ws).await;
    expect_fields(
        "full frame",
        &frame,
        &[
            ("step", "integer"),
            ("phases", "array"),
            ("spins", "array"),
            ("energy", "number"),
            ("timestamp", "number"),
            // An addition: the seq of the state it brings the subscriber to.
            ("seq", "integer"),
        ],
    );
    assert_eq!(frame["step"], 42);
    assert_eq!(frame["phases"], json!([0.1, 1.2, 2.3]));
    assert_eq!(frame["spins"], json!([1, -1, 1]));
    assert_eq!(frame["energy"], -1.75);
    assert_eq!(frame["timestamp"], 1764000000.5);
    assert!(frame.get("is_delta").is_none() || frame["is_delta"] == false);

    // A second state arrives as a delta the old browser code understands.
    post_state(
        &server,
        r#"{"step": 43, "phases": [0.1, 1.25, 2.3], "spins": [1, 1, 1], "energy": -1.5, "timestamp": 1764000001.0}"#,
    )
    .await;
    let delta = next_json(&mut ws).await;
    expect_fields(
        "delta frame",
        &delta,
        &[
            ("is_delta", "bool"),
            ("step", "integer"),
            ("energy", "number"),
            ("timestamp", "number"),
            ("phases_delta", "object"),
            ("spins_delta", "object"),
            // Additions: seq, the base it applies to, the checksum of the result.
            ("seq", "integer"),
            ("base_seq", "integer"),
            ("checksum", "string"),
        ],
    );
    assert_eq!(delta["is_delta"], true);
    assert_eq!(delta["step"], 43);
    assert_eq!(delta["phases_delta"], json!({"1": 1.25}));
    assert_eq!(delta["spins_delta"], json!({"1": 1}));

    let health = server.health().await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["wire_format"], "json");
    assert_eq!(health["websocket_clients"], 1);
    assert_eq!(health["last_step"], 43);
    server.shutdown().await;
}

/// DIFFERENCE: deltas never drift. The old server compared each state with the
/// previous one, so a phase creeping by less than the threshold each step was never
/// sent; phasecast compares with what the subscriber holds, so it holds every phase
/// within ε at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_never_drift() {
    let eps = 0.01;
    let server = TestServer::with(|c| {
        c.stream.tolerance = phasecast::delta::Tolerance::new(eps).unwrap();
    })
    .await;
    let mut ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;
    let mut held: Vec<f64> = Vec::new();
    let mut sent_phase_0 = 0;
    for step in 0..40u64 {
        // Phase 0 creeps by 0.004 (< ε) a step; phase 1 stays.
        let truth = [0.004 * step as f64, 1.0];
        post_state(
            &server,
            &format!(
                r#"{{"step":{step},"phases":[{},{}],"energy":0}}"#,
                truth[0], truth[1]
            ),
        )
        .await;
        let frame = next_json(&mut ws).await;
        if frame["is_delta"] == true {
            for (i, v) in frame["phases_delta"].as_object().unwrap() {
                let i: usize = i.parse().unwrap();
                held[i] = v.as_f64().unwrap();
                sent_phase_0 += usize::from(i == 0);
            }
        } else {
            held = frame["phases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
        }
        for (h, t) in held.iter().zip(truth) {
            assert!((h - t).abs() <= eps, "step {step}: holds {h}, truth {t}");
        }
    }
    assert!(
        sent_phase_0 >= 5,
        "the creeping phase was sent as it added up"
    );
    server.shutdown().await;
}

/// The old `/ws` loop read and ignored whatever text a client sent (pages send
/// keep-alive strings every few seconds). A subscriber sending text every 100 ms for
/// 5 s (10 a second, within the default message rate of 20) gets every frame.
///
/// Lock-step (a text, a state, its frame) keeps the test on events: however slowly
/// this machine runs it, at most a couple of texts are ever unread, so it never
/// bunches up past the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_a_subscriber_is_ignored() {
    let server = TestServer::start().await;
    let mut ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;
    let texts = ["ping", "{\"type\":\"ping\"}", "\"keep-alive\"", "", "[1,2]"];
    let sent = 50;
    for step in 1..=sent {
        ws.send(Message::Text(texts[step % texts.len()].into()))
            .await
            .unwrap();
        let reply = post_state(
            &server,
            &format!(r#"{{"step":{step},"phases":[0.5,{step}],"energy":0}}"#),
        )
        .await;
        let frame = next_json(&mut ws).await;
        assert_eq!(frame["seq"], reply["seq"], "every frame, in order");
        assert_eq!(frame["step"], step);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = wait_for_metric(&server, "phasecast_client_messages_ignored_total", |n| {
        n == sent as f64
    })
    .await;
    assert_eq!(
        metric(
            &scrape,
            "phasecast_ws_connections_closed_total{reason=\"policy\"}"
        ),
        Some(0.0)
    );
    assert_eq!(server.health().await["websocket_clients"], 1);

    // The one control message works as before.
    ws.send(Message::Text("{\"op\":\"resync\"}".into()))
        .await
        .unwrap();
    let full = next_json(&mut ws).await;
    assert!(
        full["phases"].is_array(),
        "a full frame after resync: {full}"
    );

    // What claims to be a control message and names an unknown op is refused.
    ws.send(Message::Text("{\"op\":\"nope\"}".into()))
        .await
        .unwrap();
    let close = within("close", async {
        loop {
            if let Message::Close(Some(c)) = ws.next().await.unwrap().unwrap() {
                return c;
            }
        }
    })
    .await;
    assert_eq!(close.code, CloseCode::Unsupported);
    assert!(close.reason.contains("resync"), "{}", close.reason);
    server.shutdown().await;
}

/// The old server put its own receive time in `timestamp` when the producer sent
/// none; the producer's own value wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_without_timestamp_gets_the_accept_time() {
    let server = TestServer::start().await;
    let mut ws = connect(format!("{}/ws?delta=false", server.ws())).await;
    let mut deltas = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("two clients", |h| h["websocket_clients"] == 2)
        .await;
    let within_window = |frame: &Value, before: f64, after: f64| {
        let t = frame["timestamp"]
            .as_f64()
            .unwrap_or_else(|| panic!("no timestamp: {frame}"));
        // A second of slack for the wall clock's own steps.
        assert!(
            (before - 1.0..=after + 1.0).contains(&t),
            "{t} not within {before}..{after}"
        );
    };

    // JSON, no timestamp field; then "timestamp": null.
    for body in [
        r#"{"step":1,"phases":[0.5],"energy":0}"#,
        r#"{"step":2,"phases":[0.6],"energy":0,"timestamp":null}"#,
    ] {
        let before = unix_now();
        post_state(&server, body).await;
        let after = unix_now();
        within_window(&next_json(&mut ws).await, before, after);
        within_window(&next_json(&mut deltas).await, before, after);
    }
    // The producer's own timestamp wins.
    post_state(
        &server,
        r#"{"step":3,"phases":[0.7],"energy":0,"timestamp":12.5}"#,
    )
    .await;
    assert_eq!(next_json(&mut ws).await["timestamp"], 12.5);
    assert_eq!(next_json(&mut deltas).await["timestamp"], 12.5);
    // Protobuf, no timestamp.
    let state = State {
        step: 4,
        phases: vec![0.8],
        spins: vec![],
        energy: 0.0,
        timestamp: None,
    };
    let before = unix_now();
    let (status, _, text) = post(
        &server,
        "/pcc_state",
        codec::encode_state(Encoding::Protobuf, &state).to_vec(),
        &[("content-type", "application/x-protobuf")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    within_window(&next_json(&mut ws).await, before, unix_now());
    next_json(&mut deltas).await;
    // The producer WebSocket, no timestamp.
    let mut ingest = connect(format!("{}/ingest", server.ws())).await;
    let before = unix_now();
    ingest
        .send(Message::Text(
            r#"{"step":5,"phases":[0.9],"energy":0}"#.into(),
        ))
        .await
        .unwrap();
    let frame = next_json(&mut ws).await;
    within_window(&frame, before, unix_now());
    assert_eq!(frame["step"], 5);
    server.shutdown().await;
}

/// The CORS headers of a response, lower-cased names.
fn cors_headers(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    within(
        "preflight",
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.http()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send(),
    )
    .await
    .unwrap()
}

/// Checks the headers a browser needs to let a page on `origin` read the answer.
fn allowed(what: &str, headers: &reqwest::header::HeaderMap, origin: &str) {
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(origin),
        "{what}: {:?}",
        cors_headers(headers)
    );
    assert_eq!(
        header(headers, "access-control-allow-credentials"),
        Some("true"),
        "{what}"
    );
}

/// `ALLOWED_ORIGINS` unset (the old default `*`): a page on any origin may post and
/// read, with credentials, so its origin is mirrored (a literal `*` is not allowed with
/// credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_any_origin_when_allowed_origins_is_unset() {
    let server = TestServer::start().await;
    let origin = "http://localhost:3000";
    for path in ["/pcc_state", "/health", "/streams/lab/state"] {
        let answer = preflight(&server, path, origin).await;
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        let h = answer.headers();
        allowed(path, h, origin);
        let methods = header(h, "access-control-allow-methods").unwrap();
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
            assert!(methods.contains(m), "{path}: {methods}");
        }
        let headers = header(h, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("x-api-key"),
            "{path}: the headers asked for: {headers}"
        );
        assert_eq!(header(h, "access-control-max-age"), Some("600"));
    }
    // The cross-origin requests themselves: a POST, its error answers, the reads.
    let (status, h, _) = post(
        &server,
        "/pcc_state",
        r#"{"step":1,"phases":[0.5],"energy":0}"#,
        &[("content-type", "application/json"), ("origin", origin)],
    )
    .await;
    assert_eq!(status, 200);
    allowed("POST", &h, origin);
    let (status, h, _) = post(
        &server,
        "/pcc_state",
        r#"{"step":1}"#,
        &[("content-type", "application/json"), ("origin", origin)],
    )
    .await;
    assert_eq!(status, 422);
    allowed("an error the page can read", &h, origin);
    for path in ["/health", "/metrics/json", "/metrics"] {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", server.http()))
            .header("origin", "https://dashboard.example.net")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        allowed(path, response.headers(), "https://dashboard.example.net");
    }
    server.shutdown().await;
}

/// `ALLOWED_ORIGINS` set: the listed origins get the CORS headers, others none (their
/// browser keeps the answer from the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_listed_origins_when_allowed_origins_is_set() {
    let server = TestServer::with(|c| {
        c.subscriber.allowed_origins = Some(vec![
            "https://dash.example".into(),
            "http://localhost:3000".into(),
        ])
    })
    .await;
    for origin in ["https://dash.example", "http://localhost:3000"] {
        let answer = preflight(&server, "/pcc_state", origin).await;
        assert_eq!(answer.status().as_u16(), 200);
        allowed("preflight", answer.headers(), origin);
        let (status, h, _) = post(
            &server,
            "/pcc_state",
            r#"{"step":1,"phases":[0.5],"energy":0}"#,
            &[("content-type", "application/json"), ("origin", origin)],
        )
        .await;
        assert_eq!(status, 200);
        allowed("POST", &h, origin);
    }
    // DIFFERENCE: a preflight from an origin not allowed is answered 200 without any
    // Access-Control-Allow-Origin (the old middleware answered 400); either way the
    // browser does not send the request.
    let answer = preflight(&server, "/pcc_state", "https://evil.example").await;
    assert_eq!(
        header(answer.headers(), "access-control-allow-origin"),
        None
    );
    let (_, h, _) = post(
        &server,
        "/pcc_state",
        r#"{"step":2,"phases":[0.5],"energy":0}"#,
        &[
            ("content-type", "application/json"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    server.shutdown().await;
}

/// The `phasecast` binary, started with exactly `env` (nothing inherited), on a free
/// loopback port given as `MCP_SERVER_PORT`; killed on drop.
struct Binary {
    child: tokio::process::Child,
    base: String,
    ws: String,
}

impl Binary {
    async fn start(env: &[(&str, &str)]) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        crate::support::install_crypto_provider();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
            .arg("serve")
            .env_clear()
            // Loopback only (PCC_HOST is phasecast's, not the old server's).
            .env("PCC_HOST", "127.0.0.1")
            .env("MCP_SERVER_PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        within("the binary listens on MCP_SERVER_PORT", async {
            while reqwest::get(format!("{base}/health")).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Binary {
            child,
            ws: format!("ws://127.0.0.1:{port}"),
            base,
        }
    }

    async fn post(&self, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}/pcc_state", self.base))
            .header("content-type", "application/json")
            .body(r#"{"step":1,"phases":[0.5],"energy":0}"#);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        within("POST", request.send()).await.unwrap()
    }

    async fn health(&self) -> Value {
        reqwest::get(format!("{}/health", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The first frame a default `/ws` subscriber gets, after one state is published.
    async fn first_frame(&self) -> Message {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", self.ws))
            .await
            .unwrap();
        within("first frame", async {
            loop {
                let m = ws.next().await.unwrap().unwrap();
                if m.is_text() || m.is_binary() {
                    return m;
                }
            }
        })
        .await
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_environment_variables_and_their_defaults() {
    // The defaults, as the binary documents them (the port is not bound here: 8787 may
    // be in use on this machine).
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
        .args(["serve", "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let option = |flag: &str| -> String {
        let mut lines = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag));
        lines.next().unwrap_or_else(|| panic!("{flag} in --help"));
        lines.next().unwrap_or_default().to_owned()
    };
    for (flag, env, default) in [
        ("--port", "[env: MCP_SERVER_PORT=]", Some("[default: 8787]")),
        ("--api-key", "[env: MCP_API_KEY]", None),
        (
            "--wire-format",
            "[env: PCC_WIRE_FORMAT=]",
            Some("[default: json]"),
        ),
        ("--allowed-origins", "[env: ALLOWED_ORIGINS=]", None),
    ] {
        let text = option(flag);
        assert!(text.contains(env), "{flag}: {text}");
        match default {
            Some(d) => assert!(text.contains(d), "{flag}: {text}"),
            None => assert!(!text.contains("[default:"), "{flag} has no default: {text}"),
        }
    }

    // Nothing but the port set: the old defaults.
    let plain = Binary::start(&[]).await;
    assert_eq!(plain.health().await["wire_format"], "json");
    assert_eq!(plain.post(&[]).await.status(), 200, "no key needed");
    let response = plain.post(&[("origin", "http://any.example")]).await;
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some("http://any.example"),
        "ALLOWED_ORIGINS defaults to *"
    );
    assert!(plain.first_frame().await.is_text(), "JSON text frames");
    plain.stop().await;

    // The old variables set.
    let set = Binary::start(&[
        ("MCP_API_KEY", "old-k3y"),
        ("PCC_WIRE_FORMAT", "protobuf"),
        ("ALLOWED_ORIGINS", "https://a.example, https://b.example"),
    ])
    .await;
    assert_eq!(set.health().await["wire_format"], "protobuf");
    // DIFFERENCE: 401 for a missing or wrong key (the old server answered 500).
    for key in [None, Some("wrong")] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let refused = set.post(&headers).await;
        assert_eq!(refused.status(), 401, "{key:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["ok"], false);
    }
    let accepted = set
        .post(&[("x-api-key", "old-k3y"), ("origin", "https://b.example")])
        .await;
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        header(accepted.headers(), "access-control-allow-origin"),
        Some("https://b.example")
    );
    let other = set
        .post(&[("x-api-key", "old-k3y"), ("origin", "https://c.example")])
        .await;
    assert_eq!(header(other.headers(), "access-control-allow-origin"), None);
    assert!(
        set.first_frame().await.is_binary(),
        "PCC_WIRE_FORMAT=protobuf: binary frames by default"
    );
    set.stop().await;

    // `*` is the old default spelled out; `proto` is accepted for protobuf.
    let star = Binary::start(&[("ALLOWED_ORIGINS", "*"), ("PCC_WIRE_FORMAT", "proto")]).await;
    assert_eq!(star.health().await["wire_format"], "protobuf");
    let response = star.post(&[("origin", "http://any.example")]).await;
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some("http://any.example")
    );
    star.stop().await;
}

/// The `# TYPE` of `name` in a scrape.
fn metric_type<'a>(scrape: &'a str, name: &str) -> Option<&'a str> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix("# TYPE ")?;
        let (n, t) = rest.split_once(' ')?;
        (n == name).then_some(t.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_metrics_keep_their_names_types_and_meanings() {
    // Its subscriber reads after the states are in and counts one frame per state:
    // without the freshness bound, which would rightly skip it ahead on a busy machine.
    let server = TestServer::with(|c| c.subscriber.freshness = None).await;
    let mut ws = connect(format!("{}/ws", server.ws())).await;
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;

    // Five JSON states and one protobuf state, each of a known size; one refused.
    let mut sizes = 0;
    let mut reported_ms = 0.0;
    for step in 1..=5u64 {
        let n = step as usize;
        let body = format!(
            r#"{{"step":{step},"phases":[{}],"spins":[{}],"energy":-1}}"#,
            vec!["0.25"; n].join(","),
            vec!["1"; n].join(",")
        );
        sizes += body.len();
        let reply = post_state(&server, &body).await;
        reported_ms += reply["processing_time_ms"].as_f64().unwrap();
    }
    let proto = codec::encode_state(
        Encoding::Protobuf,
        &State {
            step: 6,
            phases: vec![0.5; 9],
            spins: vec![],
            energy: 0.0,
            timestamp: Some(1.0),
        },
    )
    .to_vec();
    sizes += proto.len();
    let (status, _, text) = post(
        &server,
        "/pcc_state",
        proto,
        &[("content-type", "application/x-protobuf")],
    )
    .await;
    assert_eq!(status, 200);
    reported_ms += serde_json::from_str::<Value>(&text).unwrap()["processing_time_ms"]
        .as_f64()
        .unwrap();
    let (status, _, _) = post(
        &server,
        "/pcc_state",
        r#"{"step":7}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 422);
    for _ in 0..6 {
        next_json(&mut ws).await;
    }
    ws.close(None).await.unwrap();
    let scrape = wait_for_metric(&server, "mcp_ws_disconnections_total", |n| n == 1.0).await;
    let scrape = if metric(&scrape, "mcp_pcc_broadcast_latency_seconds_count") == Some(6.0) {
        scrape
    } else {
        wait_for_metric(&server, "mcp_pcc_broadcast_latency_seconds_count", |n| {
            n == 6.0
        })
        .await
    };

    for (name, kind, meaning) in OLD_METRICS {
        assert_eq!(
            metric_type(&scrape, name),
            Some(*kind),
            "{name} ({meaning})\n{scrape}"
        );
    }
    let value = |name: &str| metric(&scrape, name).unwrap_or_else(|| panic!("{name}\n{scrape}"));
    // Connections: accepted, ended, open.
    assert_eq!(value("mcp_ws_connections_total"), 1.0);
    assert_eq!(value("mcp_ws_disconnections_total"), 1.0);
    assert_eq!(value("mcp_ws_connections_current"), 0.0);
    // States accepted; one frame per subscriber per state; the refused one.
    assert_eq!(value("mcp_pcc_messages_received_total"), 6.0);
    assert_eq!(value("mcp_pcc_messages_broadcast_total"), 6.0);
    assert_eq!(
        value("mcp_pcc_messages_dropped_total{reason=\"rejected\"}"),
        1.0
    );
    // The size of each state as received: the bodies posted.
    assert_eq!(value("mcp_pcc_message_size_bytes_count"), 6.0);
    assert_eq!(value("mcp_pcc_message_size_bytes_sum"), sizes as f64);
    // Processing: what the replies reported (each rounded to 0.01 ms).
    assert_eq!(value("mcp_pcc_message_processing_seconds_count"), 6.0);
    let processing = value("mcp_pcc_message_processing_seconds_sum");
    assert!(
        (processing * 1000.0 - reported_ms).abs() <= 6.0 * 0.005 + 1e-9,
        "processing {processing} s against {reported_ms} ms reported"
    );
    // Latency: one per frame written.
    assert_eq!(value("mcp_pcc_broadcast_latency_seconds_count"), 6.0);
    assert_eq!(
        value("mcp_service_info{service=\"phasecast\",version=\"0.1.0\",wire_format=\"json\"}"),
        1.0
    );
    // phasecast's own measurements are under phasecast_* names: encoded outgoing
    // frames, and decode + validate alone (a part of the processing time).
    assert_eq!(
        metric_type(&scrape, "phasecast_frame_encoded_size_bytes"),
        Some("histogram")
    );
    assert!(
        value("phasecast_frame_encoded_size_bytes_count{format=\"json\",kind=\"full\"}") >= 1.0
    );
    assert_eq!(value("phasecast_state_decode_seconds_count"), 6.0);
    assert!(value("phasecast_state_decode_seconds_sum") <= processing);
    server.shutdown().await;
}

/// Each deliberate difference is explained where migrating users read.
#[test]
fn every_difference_is_in_the_readme() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Migrating from the old server")
        .expect("the section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    for difference in DIFFERENCES {
        assert!(
            section.contains(difference),
            "README \"Migrating from the old server\" does not mention: {difference}"
        );
    }
    for (name, _, _) in OLD_METRICS {
        let base = name.trim_end_matches("_total");
        assert!(
            readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{base}")),
            "README metrics table: {name}"
        );
    }
}
