//! A subscriber that keeps up loses nothing: 10,000 states at 200 Hz to 100
//! subscribers (both formats, deltas on and off), every one delivered in order and
//! exact, and no state counted as dropped. Its own test binary, so it runs alone.

#![allow(unreachable_pub, missing_docs, dead_code)]

#[path = "it/support.rs"]
mod support;

use std::time::Duration;

use phasecast::{codec::Encoding, model::State, workload::Workload};
use phasecast_client::{IngestPublisher, SubscribeOptions, Subscriber};
use support::{metric, within, TestServer};

const STATES: u64 = 10_000;
const SUBSCRIBERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_subscribers_get_every_one_of_ten_thousand_states_at_200_hz() {
    let server = TestServer::with(|c| {
        c.stream.tolerance = phasecast::delta::Tolerance::new(1e-3).unwrap();
        // What is tested is order and exactness for readers that keep up. On a loaded
        // machine a reader task can be descheduled for longer than the default outbox
        // (64 frames, 320 ms here) and would rightly be skipped ahead: the outbox here
        // holds the whole run, so keeping up does not depend on the machine's speed.
        c.subscriber.outbox_frames = STATES as usize;
    })
    .await;
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let encoding = if i % 2 == 0 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        let options = SubscribeOptions::new(server.ws())
            .encoding(encoding)
            .deltas(i % 10 != 9);
        subscribers.push(
            within("subscribe", Subscriber::connect(&options))
                .await
                .unwrap(),
        );
    }
    server
        .wait_for_health("all subscribed", |h| h["subscribers"] == SUBSCRIBERS as u64)
        .await;

    // The readers keep only the final state and check seq continuity as they go.
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut expected = 1;
                while expected <= STATES {
                    let r = sub.next_frame().await.unwrap().expect("frame");
                    assert_eq!(r.seq, expected, "in order, none missing");
                    expected += 1;
                }
                assert_eq!(sub.resyncs(), 0);
                sub.state().cloned().unwrap()
            })
        })
        .collect();

    let mut producer = IngestPublisher::connect(&server.ws(), None, Encoding::Protobuf, None)
        .await
        .unwrap();
    let mut workload = Workload::kuramoto(32, 11);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut last = State::default();
    for _ in 0..STATES {
        tick.tick().await;
        last = workload.next_state();
        producer.send(&last).await.unwrap();
    }
    for reader in readers {
        let held = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("reader finished")
            .unwrap();
        assert_eq!(
            (held.step, &held.spins, held.energy),
            (last.step, &last.spins, last.energy)
        );
        for (h, t) in held.phases.iter().zip(&last.phases) {
            assert!((h - t).abs() <= 1e-3);
        }
    }
    let scrape = server.metrics().await;
    assert_eq!(
        metric(&scrape, "mcp_pcc_messages_received_total"),
        Some(STATES as f64)
    );
    assert_eq!(
        metric(
            &scrape,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "mcp_pcc_messages_dropped_total{reason=\"disconnected\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&scrape, "mcp_pcc_messages_broadcast_total"),
        Some((STATES * SUBSCRIBERS as u64) as f64)
    );
    server.shutdown().await;
}
