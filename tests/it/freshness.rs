//! The freshness bound (`PCC_FRESHNESS`): a subscriber whose reader falls behind gets
//! the newest state, not the frames that piled up; one that stops reading is still
//! closed by the send timeout.

use std::time::Duration;

use phasecast::{codec::Encoding, model::State, workload::Workload};

use crate::support::{metric, wait_for_metric, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_fell_behind_reads_the_newest_state_next() {
    let server = TestServer::with(|c| {
        c.subscriber.freshness = Some(Duration::from_millis(50));
        c.subscriber.send_timeout = Duration::from_secs(60);
    })
    .await;
    let states: Vec<State> = Workload::named("random", 7).unwrap().take(300).collect();
    let publisher = server.publisher(Encoding::Protobuf);
    publisher.publish(&states[0]).await.unwrap();
    let mut sub = server.subscribe(Encoding::Json, true).await;
    within("first", sub.next_frame()).await.unwrap().unwrap();
    // Its reader is not polled while 299 states go in: only the first frame and the
    // probe after it were written; the rest wait for the probe's pong.
    for s in &states[1..] {
        publisher.publish(s).await.unwrap();
    }
    let mut frames = 0;
    while sub.seq() != Some(300) {
        within("catch up", sub.next_frame()).await.unwrap().unwrap();
        frames += 1;
    }
    assert_eq!(sub.state().unwrap(), &states[299], "exact");
    assert_eq!(sub.resyncs(), 0);
    assert!(
        frames <= 2,
        "the newest state came next, not the backlog: {frames} frames"
    );
    let scrape = server.metrics().await;
    let skipped: f64 = ["outbox", "freshness"]
        .iter()
        .map(|r| {
            metric(
                &scrape,
                &format!("phasecast_conflated_frames_total{{reason=\"{r}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(
        skipped,
        (299 - frames) as f64,
        "every skipped state counted"
    );
    // Its reader reached states and said so: their age was observed.
    assert!(
        metric(&scrape, "phasecast_subscriber_state_age_seconds_count").unwrap() >= 1.0,
        "no state age observed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_closed_by_the_send_timeout() {
    let server = TestServer::with(|c| {
        c.subscriber.freshness = Some(Duration::from_millis(50));
        c.subscriber.send_timeout = Duration::from_millis(500);
    })
    .await;
    let states: Vec<State> = Workload::named("random", 7).unwrap().take(20).collect();
    let publisher = server.publisher(Encoding::Protobuf);
    publisher.publish(&states[0]).await.unwrap();
    let mut stuck = server.subscribe(Encoding::Json, true).await;
    within("first", stuck.next_frame()).await.unwrap().unwrap();
    // It never reads again (its socket is far from full: only a probe waits in it).
    for s in &states[1..] {
        publisher.publish(s).await.unwrap();
    }
    let scrape = wait_for_metric(
        &server,
        "phasecast_ws_connections_closed_total{reason=\"slow\"}",
        |n| n == 1.0,
    )
    .await;
    assert_eq!(
        metric(
            &scrape,
            "phasecast_slow_client_disconnects_total{reason=\"timeout\"}"
        ),
        Some(1.0)
    );
    drop(stuck);
    server.shutdown().await;
}
