//! Clients that cross a limit or misbehave are refused clearly, and the others are
//! not affected.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phasecast::codec::Encoding;
use phasecast_client::Subscriber;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

use crate::support::{state, within, RawWs, TestServer};

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
    // and, as text that is not a control message, ignored (the old server ignored
    // every text): that subscriber is served on (checked with the next state below).
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
    crate::support::wait_for_metric(&server, "phasecast_client_messages_ignored_total", |n| {
        n == 1.0
    })
    .await;

    // What claims to be a control message and is not one: 1003. (A JSON object with
    // an unknown op; binary that is not a protobuf ClientMessage.)
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
    // Text that would be ignored one by one counts against the rate all the same.
    let (mut chatty, _) =
        tokio_tungstenite::connect_async(format!("{}/ws?format=json", server.ws()))
            .await
            .unwrap();
    for _ in 0..200 {
        if chatty.feed(Message::Text("ping".into())).await.is_err() {
            break;
        }
    }
    let _ = chatty.flush().await;
    let (code, reason) = close_frame(&mut chatty).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("PCC_CLIENT_MESSAGE_RATE"), "{reason}");
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

    // Through all of it the good subscriber got every state, and so did the one whose
    // text was ignored.
    assert_eq!(
        within("good", good.next_frame())
            .await
            .unwrap()
            .unwrap()
            .seq,
        2
    );
    assert_eq!(good.resyncs(), 0);
    within("the ignored one is still served", async {
        loop {
            match under.next().await.unwrap().unwrap() {
                Message::Text(t) if t.as_str().contains("\"seq\":2") => break,
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    })
    .await;
    // Left: the good one, the ignored one and the calm pinger; no producer socket.
    server
        .wait_for_health("flooders gone", |h| {
            h["subscribers"] == 3 && h["producers"] == 0
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
    // The established subscriber is not subject to the deadline: it connected before
    // the two sockets the deadline just closed, so it has been open longer than the
    // deadline (no sleep needed to know that).
    still_served(&server, &mut good, 2).await;
    crate::support::wait_for_metric(
        &server,
        "phasecast_connections_refused_total{reason=\"handshake_timeout\"}",
        |n| n == 2.0,
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_rate_are_refused() {
    // Two a second, two of burst. Connect until three are refused: for none to be, each
    // connection would have to take half a second, so the loop ends on events whatever
    // the machine's speed; how many were accepted is bounded by the time it took.
    let server = TestServer::with(|c| c.connection.rate_limit = 2).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let (mut ok, mut refused) = (0, 0);
    let started = std::time::Instant::now();
    within("three connections refused", async {
        while refused < 3 {
            match client.get(format!("{}/health", server.http())).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                _ => refused += 1,
            }
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let most = 2 + (2.0 * elapsed).ceil() as usize + 1;
    assert!(
        (2..=most).contains(&ok),
        "the burst of 2 and {elapsed:.2} s of refill: {ok} accepted (at most {most})"
    );
    // The scrape may itself be refused while the bucket is empty: try until it is not
    // (each refusal is counted too).
    let scrape = within("a scrape gets through", async {
        loop {
            match client
                .get(format!("{}/metrics", server.http()))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => return r.text().await.unwrap(),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
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
    // One second: a reader that answers is never near the two-second window.
    let server = TestServer::with(|c| c.connection.ping_interval = Duration::from_secs(1)).await;
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
    // A subscriber and a producer on bare sockets that never answer a ping, for
    // certain: they only read, and only once the server has closed them.
    let mut silent_subscriber = RawWs::connect(server.addr(), "/ws").await;
    let mut silent_producer = RawWs::connect(server.addr(), "/ingest").await;
    server
        .wait_for_health("both connected", |h| {
            h["subscribers"] == 2 && h["producers"] == 1
        })
        .await;

    for socket in [&mut silent_subscriber, &mut silent_producer] {
        let (code, reason) = socket.close_frame().await;
        assert_eq!(code, 1008);
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
    crate::support::wait_for_metric(
        &server,
        "phasecast_ws_connections_closed_total{reason=\"ping_timeout\"}",
        |n| n == 1.0,
    )
    .await;
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
