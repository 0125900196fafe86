//! Producer key: required when set, compared exactly; subscriber key and origins.

use phasecast::{
    client::{IngestPublisher, Publisher, SubscribeOptions, Subscriber},
    codec::Encoding,
};

use crate::support::{state, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_need_the_key_when_one_is_set() {
    let server = TestServer::with(|c| c.producer.api_key = Some("s3cret".into())).await;
    let s = state(1, 4);
    for key in [None, Some("wrong"), Some("s3cre"), Some("s3cret!")] {
        let p = Publisher::new(&server.http(), None, Encoding::Json, key.map(Into::into));
        match within("publish", p.publish(&s)).await {
            Err(phasecast::client::ClientError::Status { status, body }) => {
                assert_eq!(status, 401, "{key:?}");
                assert!(body.contains("API key"), "{body}");
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
    let p = Publisher::new(
        &server.http(),
        None,
        Encoding::Protobuf,
        Some("s3cret".into()),
    );
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
