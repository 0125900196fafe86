//! The Rust client against a server that sends bad frames: a truncated protobuf
//! delta, a JSON delta for another base, a delta whose checksum does not match. Each
//! time the client drops its state, asks for a full frame, and never exposes a
//! corrupt state.

#![allow(missing_docs)]

use std::{future::Future, time::Duration};

use futures_util::{SinkExt, StreamExt};
use phasecast_client::{SubscribeOptions, Subscriber};
use phasecast_wire::{
    codec::{self, ClientMessage, Encoding, FrameKind},
    delta,
    model::State,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Fails the test instead of hanging when `fut` takes more than 30 s.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn state(step: u64) -> State {
    State {
        step,
        phases: vec![0.5, 1.5, 2.5, 3.5],
        spins: vec![1, -1, 1, -1],
        energy: step as f64,
        timestamp: None,
    }
}

fn message(encoding: Encoding, bytes: bytes::Bytes) -> Message {
    match encoding {
        Encoding::Json => Message::Text(String::from_utf8(bytes.to_vec()).unwrap().into()),
        Encoding::Protobuf => Message::Binary(bytes),
    }
}

/// A one-connection server that sends `bad` after a good full frame (five times, as
/// deltas still in flight would come), expects one resync request and no more, then
/// sends a good full frame.
async fn scripted_server(
    encoding: Encoding,
    bad: bytes::Bytes,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(message(
            encoding,
            codec::encode_full(encoding, 1, "", &state(1)),
        ))
        .await
        .unwrap();
        for _ in 0..5 {
            ws.send(message(encoding, bad.clone())).await.unwrap();
        }
        // The client asks for a full frame, in its encoding.
        let request = ws.next().await.unwrap().unwrap();
        let asked = match &request {
            Message::Text(t) => codec::decode_client_message(Encoding::Json, t.as_bytes()),
            Message::Binary(b) => codec::decode_client_message(Encoding::Protobuf, b),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(asked, Ok(ClientMessage::Resync));
        assert_eq!(request.is_binary(), encoding == Encoding::Protobuf);
        ws.send(message(
            encoding,
            codec::encode_full(encoding, 3, "", &state(3)),
        ))
        .await
        .unwrap();
        // One request for all five: nothing else comes until the client closes.
        let more = tokio::time::timeout(std::time::Duration::from_millis(300), ws.next()).await;
        assert!(
            matches!(more, Err(_) | Ok(None | Some(Ok(Message::Close(_))))),
            "{more:?}"
        );
        let _ = ws.close(None).await;
    });
    (url, handle)
}

async fn expect_resync(encoding: Encoding, bad: bytes::Bytes) {
    let (url, server) = scripted_server(encoding, bad).await;
    let mut sub =
        Subscriber::connect(&SubscribeOptions::new(format!("{url}/ws")).encoding(encoding))
            .await
            .unwrap();
    let first = within("first", sub.next_frame()).await.unwrap().unwrap();
    assert_eq!((first.seq, first.kind), (1, FrameKind::Full));
    // The bad frame is not applied: the next state the client exposes is the full
    // frame sent after its resync request.
    let next = within("after the bad frame", sub.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.seq, next.kind), (3, FrameKind::Full));
    assert_eq!(sub.state().unwrap(), &state(3));
    assert_eq!(sub.resyncs(), 1);
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn truncated_protobuf_delta_makes_the_client_resync() {
    let mut target = state(2);
    target.phases[1] = 9.0;
    let d = delta::diff(&state(1), 1, &target, 2, None);
    let bytes = codec::encode_delta(Encoding::Protobuf, &d, &target);
    expect_resync(Encoding::Protobuf, bytes.slice(..bytes.len() - 3)).await;
}

#[tokio::test]
async fn json_delta_for_another_base_makes_the_client_resync() {
    let mut target = state(2);
    target.phases[1] = 9.0;
    // A valid delta, but from seq 7, which the client does not hold.
    let d = delta::diff(&state(1), 7, &target, 8, None);
    expect_resync(
        Encoding::Json,
        codec::encode_delta(Encoding::Json, &d, &target),
    )
    .await;
}

#[tokio::test]
async fn checksum_mismatch_makes_the_client_resync() {
    for encoding in Encoding::ALL {
        let mut target = state(2);
        target.phases[1] = 9.0;
        let mut d = delta::diff(&state(1), 1, &target, 2, None);
        d.checksum ^= 1;
        expect_resync(encoding, codec::encode_delta(encoding, &d, &target)).await;
    }
}
