//! Clients that cross a limit or misbehave are refused clearly, and the others are
//! not affected.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phasecast::codec::Encoding;
use phasecast_client::Subscriber;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

use crate::support::{state, within, TestServer};

/// The next close frame on a raw socket (other messages are skipped).
async fn close_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (CloseCode, String) {
    within("close frame", async {
        while let Some(m) = socket.next().await {
            if let Ok(Message::Close(Some(f))) = m {
                return (f.code, f.reason.to_string());
            }
        }
        panic!("closed without a close frame");
    })
    .await
}

/// Publishes the state of `step` (the stream's seq `step` too) and checks that `good`
/// receives it.
async fn still_served(server: &TestServer, good: &mut Subscriber, step: u64) {
    server
        .publisher(Encoding::Json)
        .publish(&state(step, 8))
        .await
        .unwrap();
    let frame = within("good", good.next_frame()).await.unwrap().unwrap();
    assert_eq!(frame.seq, step);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_subscriber_limit_new_ones_get_1013_and_the_others_keep_going() {
    let server = TestServer::with(|c| c.subscriber.max_subscribers = 2).await;
    let publisher = server.publisher(Encoding::Json);
    publisher.publish(&state(1, 8)).await.unwrap();
    let mut a = server.subscribe(Encoding::Json, true).await;
    let mut b = server.subscribe(Encoding::Protobuf, true).await;
    for s in [&mut a, &mut b] {
        within("first", s.next_frame()).await.unwrap().unwrap();
    }
    let (mut third, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
        .await
        .unwrap();
    let (code, reason) = close_frame(&mut third).await;
    assert_eq!(code, CloseCode::Again);
    assert!(reason.contains("PCC_MAX_SUBSCRIBERS"), "{reason}");
    publisher.publish(&state(2, 8)).await.unwrap();
    for s in [&mut a, &mut b] {
        assert_eq!(
            within("unaffected", s.next_frame())
                .await
                .unwrap()
                .unwrap()
                .seq,
            2
        );
    }
    assert_eq!(server.health().await["subscribers"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_garbage_and_ping_floods_do_not_hurt_others() {
    let server = TestServer::with(|c| c.subscriber.max_client_message_bytes = 1024).await;
    let publisher = server.publisher(Encoding::Json);
    publisher.publish(&state(1, 8)).await.unwrap();
    let mut good = server.subscribe(Encoding::Protobuf, true).await;
    within("first", good.next_frame()).await.unwrap().unwrap();

    // A message over the configured 1 KiB client limit: 1009; one just under it is read
    // (and refused as not a control message: 1003).
    let (mut big, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
        .await
        .unwrap();
    big.send(Message::Text("x".repeat(1025).into()))
        .await
        .unwrap();
    assert_eq!(close_frame(&mut big).await.0, CloseCode::Size);
    let (mut under, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
        .await
        .unwrap();
    under
        .send(Message::Text("x".repeat(1000).into()))
        .await
        .unwrap();
    assert_eq!(close_frame(&mut under).await.0, CloseCode::Unsupported);

    // Garbage that is not a control message: 1003.
    for garbage in [
        Message::Text("{\"op\":\"dance\"}".into()),
        Message::Binary(vec![0xff, 0x00, 0x13].into()),
    ] {
        let (mut bad, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
            .await
            .unwrap();
        bad.send(garbage).await.unwrap();
        assert_eq!(close_frame(&mut bad).await.0, CloseCode::Unsupported);
    }

    // Ping floods, from a subscriber and from a producer: past the client message rate
    // (20 a second, one second of burst) each is closed with 1008. (The server reads a
    // bounded number of messages after its close frame, so a flood that goes on is
    // reset instead; this one stops in time to read the reason.)
    for path in ["/ws?format=json", "/ingest"] {
        let (mut flood, _) = tokio_tungstenite::connect_async(format!("{}{path}", server.ws()))
            .await
            .unwrap();
        for _ in 0..200 {
            if flood
                .feed(Message::Ping(vec![1, 2, 3].into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = flood.flush().await;
        let (code, reason) = close_frame(&mut flood).await;
        assert_eq!(code, CloseCode::Policy, "{path}");
        assert!(
            reason.contains("PCC_CLIENT_MESSAGE_RATE"),
            "{path}: {reason}"
        );
    }
    // Within the rate, pings are fine: 10 at once, answered, the session goes on.
    let (mut calm, _) = tokio_tungstenite::connect_async(format!("{}/ws?format=json", server.ws()))
        .await
        .unwrap();
    for _ in 0..10 {
        calm.feed(Message::Ping(vec![7].into())).await.unwrap();
    }
    calm.flush().await.unwrap();
    publisher.publish(&state(2, 8)).await.unwrap();
    let mut pongs = 0;
    within("calm pinger still served", async {
        while let Some(m) = calm.next().await {
            match m.unwrap() {
                Message::Pong(_) => pongs += 1,
                Message::Text(t) if t.as_str().contains("\"seq\":2") => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(pongs >= 1, "pings within the rate are answered");

    // Through all of it the good subscriber got every state.
    assert_eq!(
        within("good", good.next_frame())
            .await
            .unwrap()
            .unwrap()
            .seq,
        2
    );
    assert_eq!(good.resyncs(), 0);
    // Left: the good one and the calm pinger; no producer socket.
    server
        .wait_for_health("flooders gone", |h| {
            h["subscribers"] == 2 && h["producers"] == 0
        })
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_and_unfinished_handshakes_are_closed_after_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        TestServer::with(|c| c.connection.handshake_timeout = Duration::from_millis(300)).await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 8))
        .await
        .unwrap();
    let mut good = server.subscribe(Encoding::Json, true).await;
    within("first", good.next_frame()).await.unwrap().unwrap();

    // Silent after connecting; and a handshake cut in the middle of its headers.
    let mut silent = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    partial
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    for socket in [&mut silent, &mut partial] {
        let mut buf = [0u8; 512];
        let closed = within("server closes the socket", async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue, // e.g. a 408 answer before the close
                }
            }
        })
        .await;
        assert!(closed);
    }
    // The established subscriber is not subject to the deadline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_served(&server, &mut good, 2).await;
    let scrape = server.metrics().await;
    assert_eq!(
        crate::support::metric(
            &scrape,
            "phasecast_connections_refused_total{reason=\"handshake_timeout\"}"
        ),
        Some(2.0),
        "{scrape}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_rate_are_refused() {
    let server = TestServer::with(|c| c.connection.rate_limit = 5).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..20 {
        match client.get(format!("{}/health", server.http())).send().await {
            Ok(r) if r.status() == 200 => ok += 1,
            _ => refused += 1,
        }
    }
    assert!(
        (5..=7).contains(&ok),
        "about one second of burst: {ok} accepted"
    );
    assert_eq!(ok + refused, 20);
    let scrape = reqwest::get(format!("{}/metrics", server.http())).await;
    // The metrics request itself may be refused while the bucket is empty: wait a second.
    drop(scrape);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let scrape = server.metrics().await;
    assert!(
        crate::support::metric(
            &scrape,
            "phasecast_connections_refused_total{reason=\"rate_limited\"}"
        )
        .unwrap()
            >= refused as f64,
        "{scrape}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscribers_and_producers_are_closed_after_two_ping_intervals() {
    let server =
        TestServer::with(|c| c.connection.ping_interval = Duration::from_millis(200)).await;
    let publisher = server.publisher(Encoding::Json);
    publisher.publish(&state(1, 8)).await.unwrap();

    // A subscriber that reads (and so answers pings) all along.
    let mut good = server.subscribe(Encoding::Json, true).await;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Ok(Some(frame)) = good.next_frame().await {
            seqs.push(frame.seq);
            if frame.seq == 3 {
                break;
            }
        }
        seqs
    });
    // A subscriber and a producer that connect, then are never polled again: no pong.
    let (mut silent_subscriber, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
            .await
            .unwrap();
    let (mut silent_producer, _) =
        tokio_tungstenite::connect_async(format!("{}/ingest", server.ws()))
            .await
            .unwrap();
    server
        .wait_for_health("both connected", |h| {
            h["subscribers"] == 2 && h["producers"] == 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    for socket in [&mut silent_subscriber, &mut silent_producer] {
        let (code, reason) = close_frame(socket).await;
        assert_eq!(code, CloseCode::Policy);
        assert!(reason.contains("no pong"), "{reason}");
    }
    server
        .wait_for_health("the silent ones are gone", |h| {
            h["subscribers"] == 1 && h["producers"] == 0
        })
        .await;
    // The producer slot is free again, and the reading subscriber was never disturbed.
    publisher.publish(&state(2, 8)).await.unwrap();
    publisher.publish(&state(3, 8)).await.unwrap();
    assert_eq!(within("good", reader).await.unwrap(), vec![1, 2, 3]);
    let scrape = server.metrics().await;
    assert_eq!(
        crate::support::metric(
            &scrape,
            "phasecast_ws_connections_closed_total{reason=\"ping_timeout\"}"
        ),
        Some(1.0),
        "{scrape}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_protocol_violation_is_closed_with_1002() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut good = server.subscribe(Encoding::Json, true).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // An unmasked frame: a client's frames must be masked (RFC 6455, 5.1).
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut received = Vec::new();
    within("the server closes", tcp.read_to_end(&mut received))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = &received[text.find("\r\n\r\n").unwrap() + 4..];
    // A close frame (0x88, unmasked, short length) whose code is 1002 (0x03ea).
    assert!(
        body.windows(4)
            .any(|w| w[0] == 0x88 && w[1] < 126 && w[2..] == [0x03, 0xea]),
        "{body:?}"
    );
    // The other subscriber is still served.
    still_served(&server, &mut good, 1).await;
    server.shutdown().await;
}
