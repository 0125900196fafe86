//! Producer key: required when set, compared exactly; subscriber key and origins.

use phasecast::codec::Encoding;
use phasecast_client::{IngestPublisher, Publisher, SubscribeOptions, Subscriber};

use crate::support::{state, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_need_the_key_when_one_is_set() {
    let server = TestServer::with(|c| c.producer.api_key = Some("s3cret".into())).await;
    let s = state(1, 4);
    for key in [None, Some("wrong"), Some("s3cre"), Some("s3cret!")] {
        let p = Publisher::builder(server.http())
            .key_opt(key.map(Into::into))
            .build();
        match within("publish", p.publish(&s)).await {
            Err(phasecast_client::ClientError::Refused { status, error, .. }) => {
                assert_eq!(status, 401, "{key:?}");
                assert!(error.contains("API key"), "{error}");
            }
            other => panic!("{key:?}: {other:?}"),
        }
        let refused = IngestPublisher::connect(&server.ws(), None, Encoding::Json, key).await;
        assert!(refused.unwrap_err().to_string().contains("401"), "{key:?}");
    }
    // Bearer works too.
    let response = reqwest::Client::new()
        .post(format!("{}/pcc_state", server.http()))
        .header("authorization", "Bearer s3cret")
        .body(r#"{"step":1,"phases":[0.5],"energy":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let p = Publisher::builder(server.http())
        .encoding(Encoding::Protobuf)
        .key("s3cret")
        .build();
    assert_eq!(p.publish(&s).await.unwrap().seq, 2);
    let mut ingest = IngestPublisher::connect(&server.ws(), None, Encoding::Json, Some("s3cret"))
        .await
        .unwrap();
    ingest.send(&s).await.unwrap();
    server
        .wait_for_health("ingested", |h| h["last_seq"] == 3)
        .await;
    assert_eq!(
        server.health().await["last_seq"],
        3,
        "no state from a refused producer got in"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_key_and_allowed_origins() {
    let server = TestServer::with(|c| {
        c.subscriber.subscribe_key = Some("viewer".into());
        c.subscriber.allowed_origins = Some(vec!["https://dash.example".into()]);
    })
    .await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 4))
        .await
        .unwrap();
    let no_key = Subscriber::connect(&SubscribeOptions::new(server.ws())).await;
    assert!(no_key.unwrap_err().to_string().contains("401"));
    let mut with_key = SubscribeOptions::new(server.ws());
    with_key.key = Some("viewer".into());
    let mut sub = Subscriber::connect(&with_key).await.unwrap();
    assert_eq!(
        within("frame", sub.next_frame())
            .await
            .unwrap()
            .unwrap()
            .seq,
        1
    );
    // ?key= for browsers, which cannot set headers on a WebSocket.
    let (_, _) = tokio_tungstenite::connect_async(format!("{}/ws?key=viewer", server.ws()))
        .await
        .unwrap();

    let with_origin = |origin: &'static str| {
        let mut r = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("{}/ws?key=viewer", server.ws()),
        )
        .unwrap();
        r.headers_mut().insert("origin", origin.parse().unwrap());
        r
    };
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://dash.example"))
            .await
            .is_ok()
    );
    match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

/// Keys never reach the logs, even at debug level, whether presented right or wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_never_logged() {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (producer_key, subscriber_key) = ("prod-k3y-5ecret", "sub-k3y-5ecret");
    crate::support::install_crypto_provider();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .env("MCP_API_KEY", producer_key)
        .env("PCC_SUBSCRIBE_KEY", subscriber_key)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    within("server up", async {
        while reqwest::get(format!("{base}/health")).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let body = phasecast::codec::encode_state(Encoding::Json, &state(1, 4)).to_vec();
    for key in [producer_key, "wrong-k3y-5ecret"] {
        let _ = reqwest::Client::new()
            .post(format!("{base}/pcc_state"))
            .header("x-api-key", key)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let _ =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?key={key}")).await;
    }
    let _ =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?key={subscriber_key}"))
            .await
            .unwrap();
    server.start_kill().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let logs = out + &err;
    assert!(
        logs.contains("phasecast listening"),
        "the logs were captured: {logs}"
    );
    for secret in [producer_key, subscriber_key, "wrong-k3y-5ecret"] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}
