//! A subscriber that keeps up loses nothing: 10,000 states at 200 Hz to 100
//! subscribers (both formats, deltas on and off), every one delivered in order and
//! exact, and no state counted as dropped. Its own test binary, so it runs alone.

#![allow(unreachable_pub, missing_docs, dead_code)]

#[path = "it/support.rs"]
mod support;

use std::time::Duration;

use phasecast::{
    client::{IngestPublisher, SubscribeOptions, Subscriber},
    codec::Encoding,
    model::State,
    workload::Workload,
};
use support::{metric, within, TestServer};

const STATES: u64 = 10_000;
const SUBSCRIBERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_subscribers_get_every_one_of_ten_thousand_states_at_200_hz() {
    let server = TestServer::with(|c| {
        c.stream.tolerance = phasecast::delta::Tolerance::new(1e-3).unwrap();
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

/// The 30-second soak (`phasecast soak`; the 10-minute run is in docs/benchmarks.md):
/// churn, slow readers and readers that stop; at the end every steady subscriber is
/// exact, every slow reader is exact or was dropped as too slow, the connection gauge
/// matches the clients still connected, and descriptors are back down.
#[test]
fn thirty_second_soak() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
        .args([
            "soak",
            "--duration",
            "30s",
            "--steady",
            "100",
            "--slow",
            "10",
            "--json",
        ])
        .output()
        .expect("run phasecast soak");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{r}");
    assert_eq!(
        r["steady_exact"], 100,
        "every steady subscriber ends exact: {r}"
    );
    let slow = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(
        slow("slow_exact") + slow("slow_dropped"),
        10,
        "a slow reader ends exact or dropped, never wrong: {r}"
    );
    assert_eq!(r["resyncs"], 0);
    assert!(r["churned"].as_u64().unwrap() > 100, "{r}");
    assert!(r["stuck"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(
        r["connections_end"][0], r["connections_end"][1],
        "no connection left over: {r}"
    );
    assert_eq!(
        r["tasks"][0], r["tasks"][1],
        "as many server tasks after every client left as before the first: {r}"
    );
    assert!(
        r["series"].as_array().unwrap().len() >= 3,
        "a sample every 10 s: {r}"
    );
    let fds = &r["fds"];
    assert!(
        fds["end"].as_f64().unwrap() <= fds["start"].as_f64().unwrap() + 2.0,
        "descriptors back down: {r}"
    );
}
