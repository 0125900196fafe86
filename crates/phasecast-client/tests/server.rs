//! The client against a real phasecast server (the binary in `PHASECAST_BIN`; the test
//! command sets it): what docs/clients.md promises about failing fast and clearly,
//! retrying what is transient, and surviving a restart.

#![allow(missing_docs)]

use std::{
    future::Future,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use phasecast_client::{
    ClientError, ConnectionState, Encoding, Event, Publisher, State, SubscribeOptions, Subscription,
};

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The server binary, or `None` (the test is skipped) when it is not given.
fn server_binary() -> Option<String> {
    match std::env::var("PHASECAST_BIN") {
        Ok(bin) => Some(bin),
        Err(_) if std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some() => {
            panic!("PHASECAST_BIN must name the server binary (scripts/test.sh sets it)")
        }
        Err(_) => {
            eprintln!("skipping: PHASECAST_BIN is not set (scripts/test.sh sets it)");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process on 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(bin: &str, port: u16, args: &[&str]) -> Server {
        let child = Command::new(bin)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server");
        let server = Server { child, port };
        // Ready once /health answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state(step: u64) -> State {
    State {
        step,
        phases: (0..8)
            .map(|i| i as f64 * 0.5 + step as f64 * 0.01)
            .collect(),
        spins: vec![1, -1, 1, -1, 1, -1, 1, -1],
        energy: -(step as f64),
        timestamp: None,
    }
}

/// `a` is `b` but for the timestamp (the server fills in its accept time when the
/// producer sends none).
fn same(a: &State, b: &State) -> bool {
    (a.step, &a.phases, &a.spins, a.energy) == (b.step, &b.phases, &b.spins, b.energy)
}

/// Records every event of a subscription.
fn recorded(options: SubscribeOptions) -> (SubscribeOptions, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = options.on_event(move |e| sink.lock().unwrap().push(e.clone()));
    (options, events)
}

fn retries(events: &Mutex<Vec<Event>>) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Reconnecting { .. }))
        .count()
}

#[tokio::test]
async fn a_wrong_port_fails_the_first_connect_after_its_tries() {
    if server_binary().is_none() {
        return;
    }
    let port = free_port(); // nothing listens here
    let (options, events) =
        recorded(SubscribeOptions::new(format!("ws://127.0.0.1:{port}/ws")).first_connect_tries(3));
    let mut sub = Subscription::new(options);
    let started = Instant::now();
    let error = within("give up", sub.next()).await.unwrap().unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert_eq!(retries(&events), 2, "three tries, two waits");
    assert_eq!(sub.status(), ConnectionState::Closed);
    assert!(within("closed", sub.next()).await.is_none());
    // With the defaults (five tries) it gives up well within 30 s.
    let mut defaults = Subscription::new(SubscribeOptions::new(format!("ws://127.0.0.1:{port}")));
    assert!(within("defaults give up", defaults.next())
        .await
        .unwrap()
        .is_err());
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_wrong_key_or_path_fails_at_once_with_the_servers_reason() {
    let Some(bin) = server_binary() else { return };
    let server = Server::start(&bin, free_port(), &["--subscribe-key", "viewer"]).await;

    let (options, events) = recorded(SubscribeOptions::new(server.ws()).key("wrong"));
    let error = within("401", Subscription::new(options).next())
        .await
        .unwrap()
        .unwrap_err();
    match &error {
        ClientError::Refused { status, error, .. } => {
            assert_eq!(*status, 401);
            assert!(error.contains("API key"), "the server's reason: {error}");
        }
        other => panic!("{other}"),
    }
    assert!(error.is_permanent());
    assert_eq!(retries(&events), 0, "not retried");

    // A page, not the WebSocket.
    let page = format!("ws://127.0.0.1:{}/index.html", server.port);
    let error = within(
        "page",
        Subscription::new(SubscribeOptions::new(page).key("viewer")).next(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(error, ClientError::NotWebSocket { status: 200, .. }),
        "{error}"
    );
    // No such path.
    let nowhere = format!("ws://127.0.0.1:{}/nope", server.port);
    let error = within(
        "404",
        Subscription::new(SubscribeOptions::new(nowhere)).next(),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(error.is_permanent());
    // A bad parameter names it.
    let options = SubscribeOptions::new(server.ws()).key("viewer").max_hz(0.0);
    match within("400", Subscription::new(options).next())
        .await
        .unwrap()
    {
        Err(ClientError::Refused {
            status: 400, field, ..
        }) => assert_eq!(field.as_deref(), Some("max_hz")),
        other => panic!("{other:?}"),
    }
    server.stop();
}

#[tokio::test]
async fn a_restart_mid_stream_is_survived_with_a_resume() {
    let Some(bin) = server_binary() else { return };
    let port = free_port();
    let server = Server::start(&bin, port, &[]).await;
    let publisher = Publisher::builder(server.http())
        .encoding(Encoding::Protobuf)
        .build();
    for step in 1..=5 {
        publisher.publish(&state(step)).await.unwrap();
    }
    let options = SubscribeOptions::new(server.ws())
        .encoding(Encoding::Protobuf)
        .backoff(Duration::from_millis(50), Duration::from_millis(500));
    let mut sub = Subscription::new(options);
    let first = within("first", sub.next()).await.unwrap().unwrap();
    assert_eq!(first.seq, 5);
    assert!(same(&first.state, &state(5)), "{:?}", first.state);

    server.stop();
    let server = Server::start(&bin, port, &[]).await;
    let publisher = Publisher::builder(server.http())
        .encoding(Encoding::Protobuf)
        .build();
    for step in 100..=110 {
        publisher.publish(&state(step)).await.unwrap();
    }
    // Whatever the new server's seqs, the client ends holding its newest state.
    loop {
        let update = within("after the restart", sub.next())
            .await
            .unwrap()
            .unwrap();
        if same(&update.state, &state(110)) {
            break;
        }
    }
    assert!(sub.stats().reconnects >= 1);
    assert_eq!(sub.status(), ConnectionState::Connected);
    server.stop();
}

#[tokio::test]
async fn a_429_surfaces_retry_after() {
    let Some(bin) = server_binary() else { return };
    let server = Server::start(&bin, free_port(), &["--producer-rate-limit", "1"]).await;
    let publisher = Publisher::builder(server.http()).build();
    // One state a second is allowed: of twenty sent at once, some are refused.
    let mut refused = None;
    for step in 1..=20 {
        match publisher.publish(&state(step)).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(e @ ClientError::Refused { status: 429, .. }) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
            assert!(!e.is_permanent());
        }
        other => panic!("{other:?}"),
    }
    server.stop();
}
