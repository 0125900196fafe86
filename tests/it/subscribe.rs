//! Subscribers in every format and mode receive every state, in order, exactly.

use std::collections::HashMap;

use phasecast::{codec::Encoding, codec::FrameKind, model::State};
use phasecast_client::{SubscribeOptions, Subscriber};

use crate::support::{metric, state, within, TestServer};

/// Reads frames until `last` and checks each against the states published.
async fn expect_every_state(
    sub: &mut Subscriber,
    truth: &HashMap<u64, State>,
    last: u64,
    eps: f64,
) -> Vec<FrameKind> {
    let mut expected = 1;
    let mut kinds = Vec::new();
    while expected <= last {
        let r = within("next frame", sub.next_frame())
            .await
            .unwrap()
            .expect("frame");
        assert_eq!(r.seq, expected, "frames in order, none missing");
        let held = sub.state().unwrap();
        let want = &truth[&r.seq];
        assert_eq!(
            (held.step, held.energy, &held.spins, held.timestamp),
            (want.step, want.energy, &want.spins, want.timestamp)
        );
        for (h, w) in held.phases.iter().zip(&want.phases) {
            assert!((h - w).abs() <= eps, "seq {}: {h} vs {w} (ε {eps})", r.seq);
        }
        if eps == 0.0 {
            assert_eq!(held, want);
        }
        kinds.push(r.kind);
        expected += 1;
    }
    assert_eq!(sub.resyncs(), 0);
    kinds
}

async fn every_format_and_mode(eps: f64) {
    let server = TestServer::with(|c| {
        c.stream.tolerance = phasecast::delta::Tolerance::new(eps).unwrap();
        c.stream.keyframe_interval = 50;
        c.subscriber.outbox_frames = 1024;
    })
    .await;
    let mut subs = Vec::new();
    for encoding in Encoding::ALL {
        for deltas in [true, false] {
            for _ in 0..2 {
                subs.push((deltas, server.subscribe(encoding, deltas).await));
            }
        }
    }
    server
        .wait_for_health("8 subscribers", |h| h["subscribers"] == 8)
        .await;
    // Length changes at 100..110 force keyframes. The states are known before they
    // are published (seq = step), so every subscriber reads from the start, as fast
    // as it can, rather than after the last state has been published.
    let last = 240;
    let truth: HashMap<u64, State> = (1..=last)
        .map(|step| {
            let n = if (100..110).contains(&step) { 20 } else { 32 };
            (step, state(step, n))
        })
        .collect();
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|(deltas, sub)| {
            let truth = truth.clone();
            // The subscriber is handed back: it stays connected until every state
            // is published, so each reply counts all eight.
            tokio::spawn(async move {
                let mut sub = sub;
                let kinds = expect_every_state(&mut sub, &truth, last, eps).await;
                (deltas, kinds, sub)
            })
        })
        .collect();
    let publisher = server.publisher(Encoding::Json);
    for step in 1..=last {
        let reply = within("publish", publisher.publish(&truth[&step]))
            .await
            .unwrap();
        assert_eq!(reply.seq, step);
        assert_eq!(reply.clients, 8);
    }
    for task in tasks {
        let (deltas, kinds, _sub) = within("subscriber", task).await.unwrap();
        let deltas_seen = kinds.iter().filter(|k| **k == FrameKind::Delta).count();
        if deltas {
            assert_eq!(kinds[0], FrameKind::Full);
            assert!(deltas_seen > 200, "mostly deltas, got {deltas_seen}");
        } else {
            assert_eq!(deltas_seen, 0, "delta=false gets full frames only");
        }
    }
    let scrape = server.metrics().await;
    assert_eq!(
        metric(
            &scrape,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}"
        ),
        Some(0.0)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_mode_gets_every_state_lossless() {
    every_format_and_mode(0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_and_mode_stays_within_epsilon() {
    every_format_and_mode(1e-3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscriber_gets_the_latest_state_at_once() {
    let server = TestServer::start().await;
    let s = state(7, 16);
    server
        .publisher(Encoding::Protobuf)
        .publish(&s)
        .await
        .unwrap();
    for encoding in Encoding::ALL {
        let mut sub = server.subscribe(encoding, true).await;
        let r = within("first frame", sub.next_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.seq, r.kind), (1, FrameKind::Full));
        assert_eq!(sub.state().unwrap(), &s);
        assert_eq!(sub.encoding(), encoding);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_chooses_the_format_and_max_hz_paces_frames() {
    // Its subscriber reads after the states are in: without the freshness bound, which
    // would rightly skip it ahead (max_hz is what this test paces by).
    let server = TestServer::with(|c| c.subscriber.freshness = None).await;
    let publisher = server.publisher(Encoding::Json);
    publisher.publish(&state(1, 8)).await.unwrap();

    // Subprotocol only, no ?format=: the server answers in protobuf (binary).
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}/ws",
            server.ws()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "pcc.v1.protobuf".parse().unwrap());
    let (mut socket, response) = within("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "pcc.v1.protobuf"
    );
    use futures_util::StreamExt;
    let first = within("frame", socket.next()).await.unwrap().unwrap();
    assert!(first.is_binary());

    // max_hz=20: 100 states published over ~0.5 s arrive as at most ~12 frames, and
    // the last one brings the subscriber to the newest state.
    let mut options = SubscribeOptions::new(server.ws()).encoding(Encoding::Json);
    options.max_hz = Some(20.0);
    let mut sub = Subscriber::connect(&options).await.unwrap();
    within("first", sub.next_frame()).await.unwrap().unwrap();
    let mut truth = state(1, 8);
    let started = std::time::Instant::now();
    for step in 2..=101 {
        truth = state(step, 8);
        publisher.publish(&truth).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut frames = 0;
    while sub.seq() != Some(101) {
        within("paced frame", sub.next_frame())
            .await
            .unwrap()
            .unwrap();
        frames += 1;
    }
    assert_eq!(sub.state().unwrap(), &truth);
    let allowed = (elapsed * 20.0).ceil() as usize + 2;
    assert!(
        frames <= allowed,
        "{frames} frames in {elapsed:.2}s at max_hz=20"
    );
    assert!(frames >= 2, "paced, not starved: {frames}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_request_gets_a_full_frame() {
    let server = TestServer::start().await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 8))
        .await
        .unwrap();
    for encoding in Encoding::ALL {
        let mut sub = server.subscribe(encoding, true).await;
        within("first", sub.next_frame()).await.unwrap().unwrap();
        sub.resync().await.unwrap();
        assert!(sub.state().is_none());
        let r = within("after resync", sub.next_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.seq, r.kind), (1, FrameKind::Full));
        assert_eq!(sub.state().unwrap(), &state(1, 8));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_and_unknown_streams_are_refused_before_upgrade() {
    let server = TestServer::start().await;
    for (query, field, status) in [
        ("format=xml", "format", 400),
        ("delta=perhaps", "delta", 400),
        ("max_hz=-3", "max_hz", 400),
        ("resume=abc", "resume", 400),
        ("stream=nowhere", "stream", 404),
    ] {
        let err = tokio_tungstenite::connect_async(format!("{}/ws?{query}", server.ws()))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => {
                assert_eq!(r.status().as_u16(), status, "{query}")
            }
            other => panic!("{query}: {other}"),
        }
        // The same request over plain HTTP shows the JSON body naming the parameter.
        let response = reqwest::Client::new()
            .get(format!("{}/ws?{query}", server.http()))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["field"], field, "{query}");
    }
    server.shutdown().await;
}
