//! A subscriber that never reads is closed; the others lose nothing.

use std::time::Duration;

use phasecast::{codec::Encoding, model::State, workload::Workload};

use crate::support::{metric, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_is_dropped_and_the_others_get_every_state() {
    // The outbox and the history hold every state of the test, and the freshness
    // bound is off, so the good subscriber cannot be skipped ahead however slowly this
    // machine runs it; only a socket unwritable for the whole send timeout (the stuck
    // one's) or a backlog over 256 KiB closes anyone.
    let server = TestServer::with(|c| {
        c.subscriber.send_timeout = Duration::from_secs(2);
        c.subscriber.max_backlog_bytes = 256 << 10;
        c.subscriber.outbox_frames = 512;
        c.subscriber.freshness = None;
        c.stream.history = 512;
    })
    .await;
    // Connected, then never read from again.
    let (stuck, _) = within(
        "stuck subscriber",
        tokio_tungstenite::connect_async(format!("{}/ws?format=json", server.ws())),
    )
    .await
    .unwrap();
    let mut good = server.subscribe(Encoding::Protobuf, true).await;
    server
        .wait_for_health("two subscribers", |h| h["subscribers"] == 2)
        .await;

    // Every state changes completely: ~48 KB JSON frames fill the stuck socket fast.
    let states: Vec<State> = Workload::named("random", 5)
        .unwrap()
        .map(|mut s| {
            s.phases.truncate(2048);
            s.spins.truncate(2048);
            s
        })
        .take(300)
        .collect();
    let publisher = server.publisher(Encoding::Protobuf);
    let reader = tokio::spawn(async move {
        let mut expected = 1;
        while expected <= 300 {
            let r = good.next_frame().await.unwrap().expect("frame");
            assert_eq!(
                r.seq, expected,
                "the good subscriber gets every state in order"
            );
            expected += 1;
        }
        good
    });
    for s in &states {
        within("publish", publisher.publish(s)).await.unwrap();
    }
    let good = within("good subscriber reads everything", reader)
        .await
        .unwrap();
    assert_eq!(good.state().unwrap(), &states[299]);

    server
        .wait_for_health("the stuck subscriber is gone", |h| h["subscribers"] == 1)
        .await;
    let scrape = server.metrics().await;
    let slow = metric(
        &scrape,
        "phasecast_slow_client_disconnects_total{reason=\"timeout\"}",
    )
    .unwrap_or(0.0)
        + metric(
            &scrape,
            "phasecast_slow_client_disconnects_total{reason=\"backlog\"}",
        )
        .unwrap_or(0.0);
    assert_eq!(slow, 1.0, "{scrape}");
    assert_eq!(
        metric(
            &scrape,
            "mcp_pcc_messages_dropped_total{reason=\"disconnected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "phasecast_ws_connections_closed_total{reason=\"slow\"}"
        ),
        Some(1.0)
    );
    drop(stuck);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_skips_to_the_newest_state_with_a_delta() {
    // A small outbox and a patient send timeout: the session blocks on the full
    // socket, falls more than the outbox behind, and then skips ahead.
    let server = TestServer::with(|c| {
        c.subscriber.outbox_frames = 8;
        // Not reading while 399 states are published is slow, not stuck.
        c.subscriber.send_timeout = Duration::from_secs(60);
        c.subscriber.socket_send_buffer = Some(32 << 10);
        c.stream.history = 16;
    })
    .await;
    let states: Vec<State> = Workload::named("sparse", 9).unwrap().take(400).collect();
    let publisher = server.publisher(Encoding::Protobuf);
    publisher.publish(&states[0]).await.unwrap();
    let mut sub = server.subscribe(Encoding::Json, true).await;
    within("first", sub.next_frame()).await.unwrap().unwrap();
    // While it does not read, 399 states (~3 KB JSON deltas, ~1.2 MB in all: more
    // than the 32 KiB send buffer and the client's receive buffer hold) go out.
    for s in &states[1..] {
        publisher.publish(s).await.unwrap();
    }
    let mut frames = 0;
    while sub.seq() != Some(400) {
        within("catch up", sub.next_frame()).await.unwrap().unwrap();
        frames += 1;
    }
    assert_eq!(sub.state().unwrap(), &states[399]);
    assert_eq!(sub.resyncs(), 0, "catching up never needs a resync");
    assert!(
        frames < 399,
        "it skipped states: {frames} frames for 399 states"
    );
    let scrape = server.metrics().await;
    let conflated = metric(
        &scrape,
        "mcp_pcc_messages_dropped_total{reason=\"conflated\"}",
    )
    .unwrap();
    assert_eq!(
        conflated,
        (399 - frames) as f64,
        "every skipped state is counted"
    );
    assert_eq!(
        metric(
            &scrape,
            "phasecast_ws_connections_closed_total{reason=\"slow\"}"
        ),
        Some(0.0)
    );
    server.shutdown().await;
}
