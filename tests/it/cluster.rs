//! Several nodes sharing streams through real nats-server processes with JetStream:
//! the log orders every stream, so every node holds the same view at every seq,
//! whoever produced it; subscribers resume on any node, also after every node
//! restarted; a broker that is away refuses producers instead of losing their states;
//! a broker cluster loses a server without losing anything acknowledged.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use phasecast::{codec::Encoding, config::BusConfig, delta::Tolerance, model::State};
use phasecast_client::{FrameKind, Publisher, SubscribeOptions, Subscriber, Subscription};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    install_crypto_provider, metric, nats_available, within, NatsCluster, NatsServer, Proxy,
    TestServer,
};

/// A node on the broker at `urls`, its subscribers never skipped ahead (they read
/// after bursts of states: the freshness bound, tests/it/freshness.rs, would rightly
/// skip them), views within `eps` of the states.
async fn node(urls: &str, id: &str, eps: f64) -> TestServer {
    let bus = BusConfig::new(urls, id);
    let server = TestServer::with(move |c| {
        c.bus = Some(bus);
        c.subscriber.freshness = None;
        c.stream.tolerance = Tolerance::new(eps).unwrap();
        c.stream.keyframe_interval = 50;
        c.stream.history = 8192;
        // Subscribers take every state, however far behind they read.
        c.subscriber.outbox_frames = 8192;
        c.stream.frame_cache_bytes = 256 << 20;
    })
    .await;
    server
        .wait_for_health("bus connected", |h| h["bus"]["connected"] == true)
        .await;
    server
}

/// A state in which four phases move by 0.01 a step and four creep by 4·10⁻⁴ (below
/// ε = 10⁻³, so views at that ε lag the states), the rest still: a delta from any
/// earlier seq is smaller than a full frame, so a resume gets one.
fn state(step: u64) -> State {
    State {
        step,
        phases: (0..64)
            .map(|i| {
                i as f64 * 0.1
                    + match i {
                        0..4 => step as f64 * 0.01,
                        4..8 => step as f64 * 4e-4,
                        _ => 0.0,
                    }
            })
            .collect(),
        spins: (0..64)
            .map(|i| if i == 0 && step % 2 == 1 { -1 } else { 1 })
            .collect(),
        energy: step as f64,
        timestamp: Some(step as f64),
    }
}

/// Publishes `steps` on `node`; returns each state by the seq the log gave it.
async fn publish(node: &TestServer, steps: std::ops::RangeInclusive<u64>) -> BTreeMap<u64, State> {
    let publisher = node.publisher(Encoding::Protobuf);
    let mut truth = BTreeMap::new();
    for step in steps {
        let s = state(step);
        let reply = within("publish", publisher.publish(&s)).await.unwrap();
        truth.insert(reply.seq, s);
    }
    truth
}

/// Reads frames until the subscriber holds `last`; returns each state by seq.
async fn read_until(s: &mut Subscriber, last: u64) -> BTreeMap<u64, State> {
    let mut held = BTreeMap::new();
    while s.seq() < Some(last) {
        let at = s.seq();
        let r = within(
            &format!("next frame after {at:?} of {last}"),
            s.next_frame(),
        )
        .await
        .unwrap()
        .expect("still connected");
        held.insert(r.seq, s.state().unwrap().clone());
    }
    held
}

/// Reads `s` as frames come (so it answers pings however long the producer takes)
/// until it holds the seq `last` is set to, keeping each state it held.
fn read_in_background(
    mut s: Subscriber,
    mut last: tokio::sync::watch::Receiver<u64>,
) -> tokio::task::JoinHandle<(Subscriber, BTreeMap<u64, State>)> {
    tokio::spawn(async move {
        let mut held = BTreeMap::new();
        loop {
            let target = *last.borrow_and_update();
            if target > 0 && s.seq() >= Some(target) {
                return (s, held);
            }
            tokio::select! {
                r = s.next_frame() => {
                    let r = r.unwrap().expect("still connected");
                    held.insert(r.seq, s.state().unwrap().clone());
                }
                _ = last.changed() => {}
            }
        }
    })
}

fn assert_within(view: &State, truth: &State, eps: f64, seq: u64) {
    assert_eq!(view.step, truth.step, "seq {seq}");
    assert_eq!(view.spins, truth.spins, "seq {seq}");
    for (v, t) in view.phases.iter().zip(&truth.phases) {
        assert!((v - t).abs() <= eps, "seq {seq}: {v} vs {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_follow_one_log_and_subscribers_resume_on_another_node() {
    if !nats_available() {
        return;
    }
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a", 0.0).await;
    let b = node(&nats.url(), "b", 0.0).await;
    let c = node(&nats.url(), "c", 0.0).await;
    let mut truth = publish(&a, 1..=1).await;
    for n in [&b, &c] {
        n.wait_for_health("first state", |h| h["last_seq"] == 1)
            .await;
    }
    // Every node names the stream by the log's epoch.
    let epoch = a.health().await["streams"][0]["epoch"].clone();
    assert_eq!(epoch.as_str().map(str::len), Some(8));
    for n in [&b, &c] {
        assert_eq!(n.health().await["streams"][0]["epoch"], epoch);
    }

    // Subscribers on B (through a proxy we can cut: the node "dies") and on C.
    let b_proxy = Proxy::start(b.addr()).await;
    let mut on_b = Vec::new();
    for encoding in Encoding::ALL {
        let mut options =
            SubscribeOptions::new(format!("ws://{}", b_proxy.addr())).encoding(encoding);
        options.fallback_urls = vec![c.ws()];
        let mut s = Subscription::new(options);
        assert_eq!(within("first on B", s.next_state()).await.unwrap().0, 1);
        on_b.push(s);
    }
    let mut on_c = Vec::new();
    for encoding in Encoding::ALL {
        let mut s = Subscriber::connect(&SubscribeOptions::new(c.ws()).encoding(encoding))
            .await
            .unwrap();
        assert_eq!(read_until(&mut s, 1).await.len(), 1);
        on_c.push(s);
    }

    truth.extend(publish(&a, 2..=150).await);
    assert_eq!(
        truth.keys().copied().collect::<Vec<_>>(),
        (1..=150).collect::<Vec<_>>()
    );
    // Every state, in order, exact, on B and on C.
    for s in &mut on_b {
        for seq in 2..=150 {
            let (got, state) = within("B follows the log", s.next_state()).await.unwrap();
            assert_eq!(got, seq);
            assert_eq!(state, truth[&seq]);
        }
    }
    for s in &mut on_c {
        let held = read_until(s, 150).await;
        assert_eq!(
            held.keys().copied().collect::<Vec<_>>(),
            (2..=150).collect::<Vec<_>>()
        );
        for (seq, state) in held {
            assert_eq!(state, truth[&seq]);
        }
        assert_eq!(s.resyncs(), 0);
    }

    // B dies: its sockets drop and it stops. Its subscribers fail over to C.
    b_proxy.cut();
    b.shutdown().await;
    truth.extend(publish(&a, 151..=260).await);
    for s in &mut on_b {
        let mut last = 150;
        while last < 260 {
            let (seq, state) = within("resumed on C", s.next_state()).await.unwrap();
            assert!(seq > last, "seqs move forward across the failover");
            assert_eq!(state, truth[&seq], "exact state at seq {seq}");
            last = seq;
        }
        assert!(s.stats().reconnects >= 1);
    }
    let scrape = c.metrics().await;
    assert_eq!(
        metric(&scrape, "phasecast_resumes_total{result=\"hit\"}"),
        Some(2.0),
        "resumed with a delta on C"
    );
    assert!(metric(&scrape, "phasecast_bus_received_total").unwrap() >= 260.0);
    a.shutdown().await;
    c.shutdown().await;
}

/// Two producers on two nodes, interleaved into one stream for 10 s at 200 Hz each,
/// through a three-server broker cluster: the log orders them, and three nodes hold
/// the same view at every seq (within ε of the state the log holds there); a client
/// holding any node's state at a seq resumes on any other node with a delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_on_two_nodes_give_every_node_the_same_views() {
    if !nats_available() {
        return;
    }
    const EPS: f64 = 1e-3;
    const SECONDS: u64 = 10;
    const HZ: u64 = 200;
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    let nodes = [
        node(&urls, "a", EPS).await,
        node(&urls, "b", EPS).await,
        node(&urls, "c", EPS).await,
    ];
    // The default stream's log is made by every node at start, in three replicas.
    for n in &nodes {
        n.wait_for_health("default stream", |h| h["streams"][0]["name"] == "default")
            .await;
    }
    let mut subscribers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let encoding = Encoding::ALL[i % 2];
        subscribers.push(
            Subscriber::connect(&SubscribeOptions::new(n.ws()).encoding(encoding))
                .await
                .unwrap(),
        );
    }

    // Producer 1 on A sends even steps, producer 2 on B odd ones, each at 200 Hz.
    let run = |publisher: Publisher, parity: u64| async move {
        let mut truth = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / HZ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = Instant::now();
        let mut step = parity;
        while started.elapsed() < Duration::from_secs(SECONDS) {
            tick.tick().await;
            let s = state(step);
            let reply = within("publish", publisher.publish(&s)).await.unwrap();
            truth.insert(reply.seq, s);
            step += 2;
        }
        truth
    };
    let (one, two) = tokio::join!(
        run(nodes[0].publisher(Encoding::Protobuf), 0),
        run(nodes[1].publisher(Encoding::Json), 1),
    );
    let produced = one.len() + two.len();
    eprintln!(
        "two producers: {} + {} states in {SECONDS} s ({:.0} Hz together)",
        one.len(),
        two.len(),
        produced as f64 / SECONDS as f64
    );
    // Each seq went to exactly one producer, and the log has no hole.
    let mut truth = one;
    for (seq, s) in two {
        assert!(truth.insert(seq, s).is_none(), "seq {seq} given twice");
    }
    // The resumes below end at the newest seq: it must not be a keyframe (which
    // every subscriber gets as a full frame).
    if phasecast::stream::is_scheduled_keyframe(*truth.keys().last().unwrap(), 50) {
        truth.extend(publish(&nodes[0], 1_000_000..=1_000_000).await);
    }
    let last = *truth.keys().last().unwrap();
    assert_eq!(truth.len() as u64, last, "seqs 1..={last}, none missing");

    // Every node's subscriber got every seq, in order, and all three agree.
    let mut views = Vec::new();
    for s in &mut subscribers {
        let held = read_until(s, last).await;
        assert_eq!(s.resyncs(), 0, "every checksum matched");
        views.push(held);
    }
    for seq in 1..=last {
        let on_a = views[0]
            .get(&seq)
            .unwrap_or_else(|| panic!("node a: no state at seq {seq}"));
        assert_within(on_a, &truth[&seq], EPS, seq);
        for (i, other) in views.iter().enumerate().skip(1) {
            assert_eq!(other.get(&seq), Some(on_a), "node {i} differs at seq {seq}");
        }
    }

    // A client holding seq S from one node resumes on another with a delta. (Not
    // from `last` itself: a client holding the newest state gets nothing until the
    // next, and how many states the producers made depends on the machine.)
    let epoch = subscribers[0].epoch().unwrap().to_owned();
    for (k, seq) in (1..last).step_by((last as usize / 12).max(1)).enumerate() {
        let from = k % 3;
        let to = (k + 1) % 3;
        let options = SubscribeOptions::new(nodes[to].ws())
            .encoding(Encoding::ALL[k % 2])
            .resume(epoch.clone(), seq);
        let mut s = Subscriber::connect_holding(&options, views[from][&seq].clone())
            .await
            .unwrap();
        let first = within("resumed", s.next_frame()).await.unwrap().unwrap();
        assert_eq!(first.seq, last);
        assert_eq!(
            first.kind,
            FrameKind::Delta,
            "seq {seq} from node {from} on node {to}"
        );
        assert_eq!(first.base_seq, Some(seq));
        assert_eq!(s.resyncs(), 0);
        assert_eq!(s.state(), views[to].get(&last));
    }
    for n in nodes {
        n.shutdown().await;
    }
    drop(cluster);
}

/// Every node stops and starts again: the logs are on the broker, so a client
/// resumes with its (epoch, seq) and gets a delta; the nodes, replayed, agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_node_restarts_clients_resume_with_a_delta() {
    if !nats_available() {
        return;
    }
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a", 1e-3).await;
    let b = node(&nats.url(), "b", 1e-3).await;
    let truth = publish(&a, 1..=120).await;
    let mut sub = Subscriber::connect(&SubscribeOptions::new(b.ws()).encoding(Encoding::Protobuf))
        .await
        .unwrap();
    read_until(&mut sub, 120).await;
    let (epoch, seq, held) = (
        sub.epoch().unwrap().to_owned(),
        sub.seq().unwrap(),
        sub.state().unwrap().clone(),
    );
    assert_within(&held, &truth[&120], 1e-3, 120);
    sub.close().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;

    let a = node(&nats.url(), "a2", 1e-3).await;
    let b = node(&nats.url(), "b2", 1e-3).await;
    // Replayed before serving: the newest seq is there at once.
    for n in [&a, &b] {
        let health = n.health().await;
        assert_eq!(health["last_seq"], 120);
        assert_eq!(health["streams"][0]["epoch"], epoch.as_str());
    }
    publish(&a, 121..=121).await;
    let options = SubscribeOptions::new(b.ws())
        .encoding(Encoding::Json)
        .resume(epoch.clone(), seq);
    let mut resumed = Subscriber::connect_holding(&options, held).await.unwrap();
    let first = within("resumed", resumed.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.kind, first.base_seq), (FrameKind::Delta, Some(120)));
    assert_eq!(first.seq, 121);
    assert_eq!(resumed.resyncs(), 0);
    assert_within(resumed.state().unwrap(), &state(121), 1e-3, 121);
    assert_eq!(
        metric(
            &b.metrics().await,
            "phasecast_resumes_total{result=\"hit\"}"
        ),
        Some(1.0)
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A node started while its broker is down serves once its replay wait is over, and
/// makes the default stream's log when the broker comes: `/ws` then has a stream, as on
/// a single node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_broker_makes_the_default_log_when_it_comes() {
    if !nats_available() {
        return;
    }
    let mut nats = NatsServer::start().await;
    nats.stop();
    let bus = BusConfig::new(nats.url(), "early");
    let a = TestServer::with(move |c| {
        c.bus = Some(bus);
        c.subscriber.freshness = None;
    })
    .await;
    // It answers only once it stopped waiting for the logs.
    a.wait_for_health("serving without a broker", |h| {
        h["bus"]["connected"] == false && h["streams"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    nats.restart().await;
    a.wait_for_health("the default stream's log", |h| {
        h["bus"]["connected"] == true && h["streams"][0]["name"] == "default"
    })
    .await;
    let mut sub = Subscriber::connect(&SubscribeOptions::new(a.ws()).encoding(Encoding::Json))
        .await
        .unwrap();
    let truth = publish(&a, 1..=3).await;
    let held = read_until(&mut sub, 3).await;
    assert_eq!(held, truth);
    a.shutdown().await;
}

/// The broker goes away: producers are refused, with 503 and a reason over HTTP and
/// with a close on `/ingest`, within the append timeout; nothing is acknowledged and
/// then lost. When it is back (its file store kept the log), publishing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_away_producers_are_refused_and_nothing_acknowledged_is_lost() {
    if !nats_available() {
        return;
    }
    let mut nats = NatsServer::start().await;
    let a = node(&nats.url(), "a", 0.0).await;
    let b = node(&nats.url(), "b", 0.0).await;
    let mut truth = publish(&a, 1..=20).await;
    let mut sub = Subscriber::connect(&SubscribeOptions::new(b.ws()).encoding(Encoding::Protobuf))
        .await
        .unwrap();
    read_until(&mut sub, 20).await;
    let (mut ingest, _) = tokio_tungstenite::connect_async(format!("{}/ingest", a.ws()))
        .await
        .unwrap();

    nats.stop();
    let http = reqwest::Client::new();
    let asked = Instant::now();
    let refused = within(
        "refused",
        http.post(format!("{}/pcc_state", a.http()))
            .header("content-type", "application/json")
            .body(phasecast::codec::encode_state(Encoding::Json, &state(21)).to_vec())
            .send(),
    )
    .await
    .unwrap();
    let took = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "log_unavailable", "{body}");
    assert!(
        took < phasecast::config::defaults::NATS_APPEND_TIMEOUT + Duration::from_secs(3),
        "refused after {took:?}"
    );
    let text = phasecast::codec::encode_state(Encoding::Json, &state(21));
    ingest
        .send(Message::Text(
            String::from_utf8(text.to_vec()).unwrap().into(),
        ))
        .await
        .unwrap();
    let (code, reason) = within("ingest closed", async {
        while let Some(m) = ingest.next().await {
            if let Ok(Message::Close(Some(f))) = m {
                return Some((u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.starts_with("log unavailable"), "{reason}");

    nats.restart().await;
    for n in [&a, &b] {
        n.wait_for_health("bus back", |h| h["bus"]["connected"] == true)
            .await;
    }
    // A producer retries until the log takes its state again.
    let publisher = a.publisher(Encoding::Protobuf);
    let mut step = 21;
    while step <= 60 {
        match within("publish", publisher.publish(&state(step))).await {
            Ok(reply) => {
                truth.insert(reply.seq, state(step));
                step += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("503"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let last = *truth.keys().last().unwrap();
    // B's subscriber never lost its connection and holds every acknowledged state.
    let held = read_until(&mut sub, last).await;
    for (seq, s) in &truth {
        if *seq > 20 {
            assert_eq!(held.get(seq), Some(s), "seq {seq}");
        }
    }
    assert_eq!(sub.resyncs(), 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// One of three broker servers is killed mid-run: appends and delivery go on, and
/// every state acknowledged to the producer reaches the subscribers of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_server_dies_and_nothing_acknowledged_is_lost() {
    if !nats_available() {
        return;
    }
    let mut cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    let a = node(&urls, "a", 0.0).await;
    let b = node(&urls, "b", 0.0).await;
    let (set_last, last) = tokio::sync::watch::channel(0);
    let mut readers = Vec::new();
    for n in [&a, &b] {
        n.wait_for_health("default stream", |h| h["streams"][0]["name"] == "default")
            .await;
        let s = Subscriber::connect(&SubscribeOptions::new(n.ws()).encoding(Encoding::Protobuf))
            .await
            .unwrap();
        readers.push(read_in_background(s, last.clone()));
    }
    let publisher = a.publisher(Encoding::Protobuf);
    let mut truth = BTreeMap::new();
    let mut refused = 0;
    for step in 1..=400 {
        if step == 150 {
            cluster.servers[0].stop();
        }
        match within("publish", publisher.publish(&state(step))).await {
            Ok(reply) => {
                truth.insert(reply.seq, state(step));
            }
            // While the cluster moves a log's leader, an append may be refused: the
            // producer was told, nothing was taken.
            Err(e) => {
                assert!(e.to_string().contains("503"), "{e}");
                refused += 1;
            }
        }
    }
    eprintln!("broker server killed: {refused} of 400 appends refused while it failed over");
    assert!(truth.len() >= 300, "appends went on: {} taken", truth.len());
    set_last.send_replace(*truth.keys().last().unwrap());
    for reader in readers {
        // A node whose log consumer was placed on the dead server makes a new one
        // when it sees the log past what it read (a few seconds), then catches up.
        let (s, held) = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .expect("every state read within 2 minutes")
            .unwrap();
        for (seq, state) in &truth {
            assert_eq!(held.get(seq), Some(state), "seq {seq}");
        }
        assert_eq!(s.resyncs(), 0);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A phasecast node as its own process, so it can be killed with SIGKILL.
struct NodeProcess {
    port: u16,
    child: std::process::Child,
}

impl NodeProcess {
    async fn start(nats: &str, id: &str) -> NodeProcess {
        install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--nats-url", nats, "--node-id", id])
            .args(["--freshness", "0", "--producer-rate-limit", "0"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the phasecast binary");
        let node = NodeProcess { port, child };
        let health = format!("{}/health", node.http());
        within("node up", async {
            loop {
                if let Ok(r) = reqwest::get(&health).await {
                    if let Ok(h) = r.json::<serde_json::Value>().await {
                        if h["bus"]["connected"] == true && h["streams"][0]["name"] == "default" {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        node
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three node processes; the producer's node is killed with SIGKILL mid-run and the
/// producer moves to another node. Subscribers on the surviving nodes get every seq in
/// order, exact; the killed node's subscribers resume on another node with a delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_node_is_killed_and_nobody_loses_a_state() {
    if !nats_available() {
        return;
    }
    let nats = NatsServer::start().await;
    let mut a = NodeProcess::start(&nats.url(), "a").await;
    let b = NodeProcess::start(&nats.url(), "b").await;
    let c = NodeProcess::start(&nats.url(), "c").await;
    let mut survivors = Vec::new();
    for (i, n) in [&b, &c].into_iter().enumerate() {
        survivors.push(
            Subscriber::connect(&SubscribeOptions::new(n.ws()).encoding(Encoding::ALL[i]))
                .await
                .unwrap(),
        );
    }
    let mut on_a = Vec::new();
    for encoding in Encoding::ALL {
        let mut options = SubscribeOptions::new(a.ws()).encoding(encoding);
        options.fallback_urls = vec![b.ws()];
        on_a.push(Subscription::new(options));
    }

    let mut truth = BTreeMap::new();
    let mut producer_on = a.http();
    let mut moved_at = None;
    for step in 1..=300 {
        if step == 120 {
            // Subscribers of A hold a state before it dies.
            for s in &mut on_a {
                let (seq, _) = within("on A", s.next_state()).await.unwrap();
                assert!(seq >= 1);
            }
            a.kill();
        }
        let s = state(step);
        let reply = loop {
            let publisher = Publisher::builder(producer_on.clone())
                .encoding(Encoding::Protobuf)
                .build();
            match within("publish", publisher.publish(&s)).await {
                Ok(r) => break r,
                // A is gone: the producer moves to B.
                Err(_) if producer_on != b.http() => {
                    moved_at.get_or_insert(step);
                    producer_on = b.http();
                }
                Err(e) => panic!("publishing on B: {e}"),
            }
        };
        truth.insert(reply.seq, s);
    }
    assert!(moved_at.is_some(), "the producer moved to B");
    let last = *truth.keys().last().unwrap();
    for s in &mut survivors {
        let held = read_until(s, last).await;
        assert_eq!(
            held.keys().copied().collect::<Vec<_>>(),
            (held.keys().next().copied().unwrap()..=last).collect::<Vec<_>>(),
            "every seq, in order"
        );
        for (seq, state) in &truth {
            if held.contains_key(seq) {
                assert_eq!(&held[seq], state, "seq {seq}");
            }
        }
        assert_eq!(s.resyncs(), 0);
    }
    for s in &mut on_a {
        let mut seq = 0;
        while seq < last {
            let (got, state) = within("resumed on B", s.next_state()).await.unwrap();
            assert!(got > seq);
            if let Some(t) = truth.get(&got) {
                assert_eq!(&state, t, "seq {got}");
            }
            seq = got;
        }
        let stats = s.stats();
        assert!(stats.reconnects >= 1);
        assert_eq!(stats.resyncs, 0);
    }
    let scrape = reqwest::get(format!("{}/metrics", b.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&scrape, "phasecast_resumes_total{result=\"hit\"}"),
        Some(2.0),
        "A's two subscribers resumed on B with a delta"
    );
}
