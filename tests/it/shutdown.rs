//! Graceful shutdown: every subscriber and producer gets a close frame, `run` returns.

use futures_util::StreamExt;
use phasecast::codec::Encoding;
use phasecast_client::IngestPublisher;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

use crate::support::{state, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_session_with_going_away() {
    let server = TestServer::start().await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 4))
        .await
        .unwrap();
    let mut sockets = Vec::new();
    for format in ["json", "protobuf", "json"] {
        let (mut s, _) =
            tokio_tungstenite::connect_async(format!("{}/ws?format={format}", server.ws()))
                .await
                .unwrap();
        within("first frame", s.next()).await.unwrap().unwrap();
        sockets.push(s);
    }
    let ingest = IngestPublisher::connect(&server.ws(), None, Encoding::Json, None)
        .await
        .unwrap();
    server
        .wait_for_health("sessions up", |h| {
            h["subscribers"] == 3 && h["producers"] == 1
        })
        .await;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                while let Some(m) = s.next().await {
                    if let Ok(Message::Close(frame)) = m {
                        return frame;
                    }
                }
                None
            })
        })
        .collect();
    server.shutdown().await;
    for r in readers {
        let frame = within("close frame", r)
            .await
            .unwrap()
            .expect("a close frame");
        assert_eq!(frame.code, CloseCode::Away);
        assert_eq!(frame.reason.as_str(), "server shutting down");
    }
    drop(ingest);
}
