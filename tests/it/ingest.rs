//! The producer WebSocket: states stream in; bad ones are answered, the socket stays.

use phasecast::codec::Encoding;
use phasecast_client::IngestPublisher;

use crate::support::{state, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_streams_states_and_answers_only_bad_ones() {
    // Its subscriber reads after the states are in: without the freshness bound, which
    // would rightly skip it ahead, and with an outbox that holds all 102 states, so a
    // dispatch that runs late (a busy machine) still owes it every one of them.
    let server = TestServer::with(|c| {
        c.subscriber.freshness = None;
        c.subscriber.outbox_frames = 256;
    })
    .await;
    let mut sub = server.subscribe(Encoding::Protobuf, true).await;
    for encoding in Encoding::ALL {
        let mut producer = IngestPublisher::connect(&server.ws(), None, encoding, None)
            .await
            .unwrap();
        for step in 1..=50 {
            producer.send(&state(step, 24)).await.unwrap();
        }
        let mut bad = state(51, 24);
        bad.spins[3] = 0;
        producer.send(&bad).await.unwrap();
        let rejection = within("rejection", producer.rejection())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rejection["ok"], false);
        assert_eq!(rejection["field"], "spins[3]");
        // The step of a state that does not even decode as a state is still named.
        assert_eq!(rejection["step"], bad.step, "{rejection}");
        producer
            .send_encoded(b"not a state".to_vec(), encoding == Encoding::Json)
            .await
            .unwrap();
        let rejection = within("rejection", producer.rejection())
            .await
            .unwrap()
            .unwrap();
        assert!(
            rejection["error"].as_str().unwrap().contains("malformed"),
            "{rejection}"
        );
        // Still open: the next good state is accepted.
        producer.send(&state(52, 24)).await.unwrap();
        producer.close().await.unwrap();
    }
    let mut last = 0;
    while last < 102 {
        let r = within("frame", sub.next_frame()).await.unwrap().unwrap();
        assert_eq!(r.seq, last + 1);
        last = r.seq;
    }
    assert_eq!(sub.state().unwrap(), &state(52, 24));
    assert_eq!(sub.resyncs(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_rate_limit_and_producer_limit() {
    // One state a second (one of burst): eleven states sent back to back meet the
    // limit unless every gap between them is a second, far beyond any machine's pace.
    let server = TestServer::with(|c| {
        c.producer.rate_limit = 1;
        c.producer.max_producers = 1;
    })
    .await;
    let mut producer = IngestPublisher::connect(&server.ws(), Some("lab"), Encoding::Json, None)
        .await
        .unwrap();
    server
        .wait_for_health("one producer", |h| h["producers"] == 1)
        .await;
    let second = IngestPublisher::connect(&server.ws(), Some("lab"), Encoding::Json, None).await;
    assert!(second.unwrap_err().to_string().contains("503"));
    for step in 1..=11 {
        producer.send(&state(step, 4)).await.unwrap();
    }
    let rejection = within("rate limited", producer.rejection())
        .await
        .unwrap()
        .unwrap();
    assert!(
        rejection["error"]
            .as_str()
            .unwrap()
            .contains("rate limited"),
        "{rejection}"
    );
    let step = rejection["step"].as_u64().unwrap();
    assert!((2..=11).contains(&step), "{rejection}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_message_over_the_body_limit_closes_that_producer_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

    let server = TestServer::with(|c| c.producer.max_body_bytes = 2048).await;
    let mut sub = server.subscribe(Encoding::Json, true).await;
    let mut other = IngestPublisher::connect(&server.ws(), None, Encoding::Protobuf, None)
        .await
        .unwrap();
    other.send(&state(1, 8)).await.unwrap();

    let (mut big, _) = tokio_tungstenite::connect_async(format!("{}/ingest", server.ws()))
        .await
        .unwrap();
    let body = phasecast::codec::encode_state(Encoding::Json, &state(2, 400));
    assert!(body.len() > 2048);
    big.send(Message::Text(
        String::from_utf8(body.to_vec()).unwrap().into(),
    ))
    .await
    .unwrap();
    let close = within("close frame", async {
        while let Some(m) = big.next().await {
            if let Ok(Message::Close(Some(f))) = m {
                return Some((f.code, f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("a close frame");
    assert_eq!(close.0, CloseCode::Size);
    assert!(close.1.contains("PCC_MAX_BODY_BYTES"), "{close:?}");

    // The other producer and the subscriber carry on.
    other.send(&state(3, 8)).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        seqs.push(
            within("frame", sub.next_frame())
                .await
                .unwrap()
                .unwrap()
                .seq,
        );
    }
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(sub.state().unwrap(), &state(3, 8));
    let scrape = server.metrics().await;
    assert_eq!(
        crate::support::metric(
            &scrape,
            "phasecast_inputs_rejected_total{reason=\"too_large\"}"
        ),
        Some(1.0),
        "{scrape}"
    );
    server.shutdown().await;
}
