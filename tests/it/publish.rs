//! Bad producer input gets a precise status and a JSON body naming the field, and
//! the server keeps serving everyone else.

use std::time::Duration;

use phasecast::{
    codec::{self, Encoding},
    model::State,
};
use prost::Message as _;

use crate::support::{metric, state, within, TestServer};

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let response = within(
        "POST",
        reqwest::Client::new()
            .post(format!("{}{path}", server.http()))
            .header("content-type", content_type)
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_precisely_and_the_server_keeps_serving() {
    let server = TestServer::with(|c| {
        c.producer.max_body_bytes = 64 << 10;
        c.producer.limits.max_oscillators = 1000;
    })
    .await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 8))
        .await
        .unwrap();
    let mut sub = server.subscribe(Encoding::Json, true).await;
    within("first", sub.next_frame()).await.unwrap().unwrap();

    let json = "application/json";
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        (json, b"{\"step\":1,\"phases\":[0.1".to_vec(), 400, None),
        (json, b"NaN".to_vec(), 400, None),
        (
            json,
            br#"{"step":1,"phases":[0.1,NaN],"energy":0}"#.to_vec(),
            400,
            None,
        ),
        (
            json,
            br#"{"step":"x","phases":[0.1],"energy":0}"#.to_vec(),
            422,
            Some("step"),
        ),
        (
            json,
            br#"{"step":1,"phases":[0.1,"a"],"energy":0}"#.to_vec(),
            422,
            Some("phases[1]"),
        ),
        (
            json,
            br#"{"step":1,"phases":[0.1],"energy":1e999}"#.to_vec(),
            400,
            None,
        ),
        (
            json,
            br#"{"step":1,"phases":[],"energy":0}"#.to_vec(),
            422,
            Some("phases"),
        ),
        (
            json,
            br#"{"step":1,"phases":[0.1,0.2],"spins":[1],"energy":0}"#.to_vec(),
            422,
            Some("spins"),
        ),
        (
            json,
            br#"{"step":1,"phases":[0.1],"spins":[2],"energy":0}"#.to_vec(),
            422,
            Some("spins[0]"),
        ),
        (
            json,
            br#"{"phases":[0.1],"energy":0}"#.to_vec(),
            422,
            Some("step"),
        ),
        (
            json,
            format!(
                "{{\"step\":1,\"phases\":[{}],\"energy\":0}}",
                vec!["0.5"; 1001].join(",")
            )
            .into_bytes(),
            422,
            Some("phases"),
        ),
        (json, vec![b' '; 65 << 10], 413, None),
        ("application/x-protobuf", vec![0xff, 0xff, 0xff], 400, None),
    ];
    for (content_type, body, status, field) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (got, reply, _) = post(&server, "/pcc_state", content_type, body).await;
        assert_eq!(got, status, "{preview}: {reply}");
        assert_eq!(reply["ok"], false);
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
        if let Some(f) = field {
            assert_eq!(reply["field"], f, "{preview}");
        }
    }
    // Non-finite numbers in protobuf: named by field.
    let mut s = state(2, 4);
    s.phases[2] = f64::INFINITY;
    let (got, reply, _) = post(
        &server,
        "/pcc_state",
        "application/x-protobuf",
        codec::encode_state(Encoding::Protobuf, &s).to_vec(),
    )
    .await;
    assert_eq!((got, reply["field"].as_str()), (422, Some("phases[2]")));
    let bad_energy = codec::pb::PccState {
        step: 1,
        phases: vec![0.1],
        energy: f64::NAN,
        ..Default::default()
    };
    let (got, reply, _) = post(
        &server,
        "/pcc_state",
        "application/x-protobuf",
        bad_energy.encode_to_vec(),
    )
    .await;
    assert_eq!((got, reply["field"].as_str()), (422, Some("energy")));

    // Nothing bad got through, and the subscriber still gets the next good state.
    assert_eq!(server.health().await["last_seq"], 1);
    server
        .publisher(Encoding::Protobuf)
        .publish(&state(3, 8))
        .await
        .unwrap();
    let r = within("next good state", sub.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.seq, 2);
    assert_eq!(sub.state().unwrap(), &state(3, 8));
    let scrape = server.metrics().await;
    assert_eq!(
        metric(
            &scrape,
            "phasecast_inputs_rejected_total{reason=\"malformed\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "phasecast_inputs_rejected_total{reason=\"too_large\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "phasecast_inputs_rejected_total{reason=\"invalid\"}"
        ),
        Some(9.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "mcp_pcc_messages_dropped_total{reason=\"rejected\"}"
        ),
        Some(15.0)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_429_with_retry_after_and_others_are_served() {
    // Five a second, five of burst. Post until three are refused: for none to be, each
    // request would have to take 200 ms, so the loop ends on events whatever the
    // machine's speed; how many were accepted is bounded by the time it took.
    let server = TestServer::with(|c| c.producer.rate_limit = 5).await;
    let body = codec::encode_state(Encoding::Json, &state(1, 4)).to_vec();
    let (mut accepted, mut limited) = (0, 0);
    let mut retry_after = None;
    let started = std::time::Instant::now();
    while limited < 3 {
        let (status, reply, headers) =
            post(&server, "/pcc_state", "application/json", body.clone()).await;
        match status {
            200 => accepted += 1,
            429 => {
                limited += 1;
                retry_after = headers.get("retry-after").cloned();
                assert_eq!(reply["ok"], false);
                assert!(
                    reply["error"]
                        .as_str()
                        .unwrap()
                        .contains("PCC_PRODUCER_RATE_LIMIT"),
                    "{reply}"
                );
            }
            other => panic!("{other}: {reply}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never limited");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst of 5, plus what the bucket refilled (5 a second) while the loop ran.
    let most = 5 + (5.0 * elapsed).ceil() as usize + 1;
    assert!(
        (5..=most).contains(&accepted),
        "the burst of 5 and {elapsed:.2} s of refill accepted, got {accepted} (at most {most})"
    );
    assert_eq!(retry_after.unwrap(), "1");
    // The limit refills: the producer is accepted again (within the second Retry-After
    // promises, and whenever this machine gets to it).
    within("accepted again", async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, _, _) =
                post(&server, "/pcc_state", "application/json", body.clone()).await;
            if status == 200 {
                return;
            }
            limited += 1;
        }
    })
    .await;
    let scrape = server.metrics().await;
    assert_eq!(
        metric(
            &scrape,
            "phasecast_inputs_rejected_total{reason=\"rate_limited\"}"
        ),
        Some(limited as f64)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_streams_are_separate_and_limited() {
    let server = TestServer::with(|c| c.stream.max_streams = 3).await;
    let a = phasecast_client::Publisher::builder(server.http())
        .stream("lab-a")
        .build();
    let b = phasecast_client::Publisher::builder(server.http())
        .stream("lab-b")
        .encoding(Encoding::Protobuf)
        .build();
    assert_eq!(a.publish(&state(1, 4)).await.unwrap().seq, 1);
    assert_eq!(a.publish(&state(2, 4)).await.unwrap().seq, 2);
    assert_eq!(b.publish(&state(9, 6)).await.unwrap().seq, 1);
    let mut options = phasecast_client::SubscribeOptions::new(server.ws());
    options.stream = Some("lab-b".into());
    let mut sub = phasecast_client::Subscriber::connect(&options)
        .await
        .unwrap();
    within("lab-b", sub.next_frame()).await.unwrap().unwrap();
    assert_eq!(sub.state().unwrap(), &state(9, 6));

    let (status, reply, _) = post(
        &server,
        "/streams/lab-c/state",
        "application/json",
        codec::encode_state(Encoding::Json, &state(1, 4)).to_vec(),
    )
    .await;
    assert_eq!(status, 503, "{reply}");
    let (status, reply, _) = post(
        &server,
        "/streams/bad%20name/state",
        "application/json",
        codec::encode_state(Encoding::Json, &state(1, 4)).to_vec(),
    )
    .await;
    assert_eq!((status, reply["field"].as_str()), (400, Some("stream")));
    let health = server.health().await;
    let names: Vec<_> = health["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["default", "lab-a", "lab-b"]);
    assert_eq!(health["streams"][1]["seq"], 2);
    let _: State = state(0, 1);
    server.shutdown().await;
}
