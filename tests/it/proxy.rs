//! Per-IP limits behind a reverse proxy: `X-Forwarded-For` names the client only when
//! the TCP peer is in `PCC_TRUSTED_PROXIES`. The test process is the proxy (every
//! request comes from 127.0.0.1) and writes the header a proxy would.
//!
//! The limits are token buckets refilled in real time, so the tests use a rate of one
//! a second and decide by answers: a budget is drained by requesting until refused,
//! and "still refused" is only concluded within the second before a token comes back
//! (past it the round is tried again, never failed).

use std::time::{Duration, Instant};

use phasecast::{
    codec::{self, Encoding},
    config::Config,
};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::support::{metric, state, within, TestServer};

/// Requests a drain may take before the budget is declared unlimited (with a rate of
/// one a second, the second request is refused unless a second has passed).
const MOST_TRIES: usize = 50;

/// One token a second: the refill that "still refused" must beat.
const REFILL: Duration = Duration::from_secs(1);

fn trusting_loopback(c: &mut Config) {
    c.connection.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// `POST /pcc_state` with `X-Forwarded-For: xff` (none when empty); the status.
async fn post_as(server: &TestServer, http: &reqwest::Client, xff: &str) -> u16 {
    let body = codec::encode_state(Encoding::Json, &state(1, 4)).to_vec();
    let mut request = http
        .post(format!("{}/pcc_state", server.http()))
        .header("content-type", "application/json")
        .body(body);
    if !xff.is_empty() {
        request = request.header("x-forwarded-for", xff);
    }
    let response = within("POST", request.send()).await.expect("POST");
    let status = response.status().as_u16();
    if status == 429 {
        let reply: serde_json::Value = response.json().await.unwrap();
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("PCC_PRODUCER_RATE_LIMIT"),
            "{reply}"
        );
    }
    status
}

/// Posts as `xff(i)` (the i-th request's header) until one is refused; the time of
/// the refusal. Panics when none is, within [`MOST_TRIES`].
async fn post_until_refused(
    server: &TestServer,
    http: &reqwest::Client,
    xff: impl Fn(usize) -> String,
) -> Instant {
    for i in 0..MOST_TRIES {
        match post_as(server, http, &xff(i)).await {
            200 => {}
            429 => return Instant::now(),
            other => panic!("POST as {}: {other}", xff(i)),
        }
    }
    panic!(
        "{MOST_TRIES} states posted as {:?}… and none refused: each got a budget of its own",
        xff(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_from_an_untrusted_peer_shares_one_budget() {
    // Nobody trusted (the default): the header is ignored and every request is
    // 127.0.0.1's.
    let server = TestServer::with(|c| c.producer.rate_limit = 1).await;
    let http = reqwest::Client::new();
    within("refused together", async {
        loop {
            let refused = post_until_refused(&server, &http, |_| "198.51.100.1".into()).await;
            let mut statuses = Vec::new();
            for forged in [
                "198.51.100.2",
                "203.0.113.9",
                "2001:db8::7",
                "203.0.113.66, 198.51.100.3",
                "",
            ] {
                statuses.push((forged, post_as(&server, &http, forged).await));
            }
            if statuses.iter().all(|(_, s)| *s == 429) {
                return;
            }
            assert!(
                refused.elapsed() >= REFILL,
                "a forged X-Forwarded-For got a budget of its own: {statuses:?}"
            );
            // A token came back meanwhile (a very busy machine): drain and try again.
        }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let server = TestServer::with(|c| {
        c.producer.rate_limit = 1;
        trusting_loopback(c);
    })
    .await;
    let http = reqwest::Client::new();

    // One forwarded client over its budget, another still accepted.
    post_until_refused(&server, &http, |_| "198.51.100.1".into()).await;
    assert_eq!(post_as(&server, &http, "198.51.100.2").await, 200);
    assert_eq!(post_as(&server, &http, "2001:db8::7").await, 200);

    // A forged chain `<spoof>, <real>` is the rightmost untrusted entry's: a new spoof
    // on every request does not buy a new budget.
    post_until_refused(&server, &http, |i| format!("203.0.113.{i}, 198.51.100.3")).await;
    // And the entry the proxy appended is the client, whatever is left of it.
    assert_eq!(
        post_as(&server, &http, "198.51.100.3, 198.51.100.4").await,
        200
    );
    // Trusted hops in the chain are skipped: the client is left of the proxy's own
    // address, not the proxy (whose budget nobody has touched).
    post_until_refused(&server, &http, |i| {
        format!("203.0.113.{i}, 198.51.100.5, 127.0.0.1")
    })
    .await;
    assert_eq!(
        post_as(&server, &http, "").await,
        200,
        "the proxy's own budget"
    );
    server.shutdown().await;
}

/// Opens `/ws` with `X-Forwarded-For: xff` and `extra` headers; the handshake's
/// status (101 on success), and the socket, kept open by the caller.
async fn upgrade_as(
    server: &TestServer,
    xff: &str,
    extra: &[(&'static str, &str)],
) -> (
    u16,
    Option<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
) {
    let mut request = format!("{}/ws", server.ws()).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", xff.parse().unwrap());
    for (name, value) in extra {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match within("upgrade", tokio_tungstenite::connect_async(request)).await {
        Ok((socket, response)) => (response.status().as_u16(), Some(socket)),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            if status == 429 {
                assert!(response.headers().contains_key("retry-after"));
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[])).into_owned();
                assert!(body.contains("PCC_CONNECTION_RATE_LIMIT"), "{body}");
            }
            (status, None)
        }
        Err(e) => panic!("upgrade as {xff}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_rate_counts_upgrades_per_forwarded_client() {
    let server = TestServer::with(|c| {
        c.connection.rate_limit = 1;
        trusting_loopback(c);
    })
    .await;

    // The proxy's own connections are not counted at accept: it carries every client.
    // (Direct, the second of these would be refused within the first second.)
    let fresh_connections = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..5 {
        let response = within(
            "GET /health",
            fresh_connections
                .get(format!("{}/health", server.http()))
                .send(),
        )
        .await
        .expect("a new connection from the trusted proxy is served");
        assert_eq!(response.status(), 200);
    }

    // Each upgrade is a new connection of the client the proxy names.
    let mut open = Vec::new();
    let mut refused = false;
    for _ in 0..MOST_TRIES {
        let (status, socket) = upgrade_as(&server, "198.51.100.1", &[]).await;
        match status {
            101 => open.extend(socket),
            429 => {
                refused = true;
                break;
            }
            other => panic!("upgrade: {other}"),
        }
    }
    assert!(
        refused,
        "{MOST_TRIES} upgrades as one client and none refused"
    );
    assert!(!open.is_empty(), "the first upgrade is within the burst");
    // Another client of the same proxy is not affected.
    let (status, socket) = upgrade_as(&server, "198.51.100.2", &[]).await;
    assert_eq!(status, 101);
    open.extend(socket);

    let scrape = server.metrics().await;
    assert!(
        metric(
            &scrape,
            "phasecast_connections_refused_total{reason=\"rate_limited\"}"
        )
        .unwrap()
            >= 1.0,
        "{scrape}"
    );
    drop(open);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_host_counts_as_the_servers_own_only_from_a_trusted_proxy() {
    // A proxy that rewrites Host (nginx without `proxy_set_header Host`) names the
    // host the page was loaded from in X-Forwarded-Host.
    let page = [
        ("origin", "https://phasecast.example"),
        ("x-forwarded-host", "phasecast.example"),
    ];
    let allow =
        |c: &mut Config| c.subscriber.allowed_origins = Some(vec!["https://ok.example".into()]);

    let proxied = TestServer::with(|c| {
        allow(c);
        trusting_loopback(c);
    })
    .await;
    let (status, socket) = upgrade_as(&proxied, "198.51.100.1", &page).await;
    assert_eq!(status, 101);
    drop(socket);
    let (status, _) = upgrade_as(
        &proxied,
        "198.51.100.1",
        &[
            ("origin", "https://evil.example"),
            ("x-forwarded-host", "phasecast.example"),
        ],
    )
    .await;
    assert_eq!(status, 403, "only the forwarded host's own origin");
    proxied.shutdown().await;

    let direct = TestServer::with(allow).await;
    let (status, _) = upgrade_as(&direct, "198.51.100.1", &page).await;
    assert_eq!(status, 403, "from an untrusted peer the header is ignored");
    direct.shutdown().await;
}
