//! Several nodes on one real nats-server: every subscriber on every node sees every
//! state with the same seqs; subscribers of a node that dies resume on another; a
//! broker outage heals by itself.

use std::{collections::HashMap, time::Duration};

use phasecast::{codec::Encoding, config::BusConfig, model::State};
use phasecast_client::{SubscribeOptions, Subscriber, Subscription};

use crate::support::{metric, nats_available, within, NatsServer, Proxy, TestServer};

async fn node(nats: &NatsServer, id: &str) -> TestServer {
    let url = nats.url();
    let id = id.to_owned();
    let server = TestServer::with(move |c| {
        c.bus = Some(BusConfig {
            url,
            node_id: id,
            queue: 4096,
        });
        // Its subscribers read after each burst of states is published: the freshness
        // bound (tests/it/freshness.rs) would rightly skip them ahead.
        c.subscriber.freshness = None;
    })
    .await;
    server
        .wait_for_health("bus connected", |h| h["bus"]["connected"] == true)
        .await;
    server
}

/// States in which a few phases move each step (so deltas are smaller than full frames).
fn states(from: u64, to: u64) -> Vec<State> {
    (from..=to)
        .map(|step| State {
            step,
            phases: (0..64)
                .map(|i| {
                    i as f64 * 0.1
                        + if i as u64 % 8 == step % 8 {
                            step as f64 * 0.01
                        } else {
                            0.0
                        }
                })
                .collect(),
            spins: (0..64)
                .map(|i| if (i + step) % 17 == 0 { -1 } else { 1 })
                .collect(),
            energy: step as f64,
            timestamp: Some(step as f64),
        })
        .collect()
}

/// Publishes on `node` and records the truth by seq.
async fn publish(node: &TestServer, states: &[State], truth: &mut HashMap<u64, State>) {
    let publisher = node.publisher(Encoding::Protobuf);
    for s in states {
        let reply = within("publish", publisher.publish(s)).await.unwrap();
        truth.insert(reply.seq, s.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_and_subscribers_resume_on_another_node() {
    if !nats_available() {
        return;
    }
    let nats = NatsServer::start().await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let c = node(&nats, "c").await;
    let mut truth = HashMap::new();
    // A first state reaches every node: the bus subscriptions are in place.
    publish(&a, &states(1, 1), &mut truth).await;
    for n in [&b, &c] {
        n.wait_for_health("first state", |h| h["last_seq"] == 1)
            .await;
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
        assert_eq!(
            within("first on C", s.next_frame())
                .await
                .unwrap()
                .unwrap()
                .seq,
            1
        );
        on_c.push(s);
    }

    publish(&a, &states(2, 150), &mut truth).await;
    // Every state, in order, with the seqs A assigned, on B and on C.
    for s in &mut on_b {
        for seq in 2..=150 {
            let (got, state) = within("B follows A", s.next_state()).await.unwrap();
            assert_eq!(got, seq);
            assert_eq!(state, truth[&seq]);
        }
    }
    for s in &mut on_c {
        for seq in 2..=150 {
            let r = within("C follows A", s.next_frame())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.seq, seq);
            assert_eq!(s.state().unwrap(), &truth[&seq]);
        }
        assert_eq!(s.resyncs(), 0);
    }

    // B dies: its sockets drop and it stops. Its subscribers fail over to C.
    b_proxy.cut();
    b.shutdown().await;
    publish(&a, &states(151, 260), &mut truth).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_heals_by_itself() {
    if !nats_available() {
        return;
    }
    let mut nats = NatsServer::start().await;
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let mut truth = HashMap::new();
    publish(&a, &states(1, 1), &mut truth).await;
    b.wait_for_health("first state", |h| h["last_seq"] == 1)
        .await;
    let mut sub = Subscriber::connect(&SubscribeOptions::new(b.ws()).encoding(Encoding::Protobuf))
        .await
        .unwrap();
    assert_eq!(
        within("first", sub.next_frame())
            .await
            .unwrap()
            .unwrap()
            .seq,
        1
    );

    nats.stop();
    for n in [&a, &b] {
        n.wait_for_health("bus down", |h| h["bus"]["connected"] == false)
            .await;
    }
    // The producer keeps publishing to A while the broker is away.
    publish(&a, &states(2, 40), &mut truth).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart().await;
    for n in [&a, &b] {
        n.wait_for_health("bus back", |h| h["bus"]["connected"] == true)
            .await;
    }
    publish(&a, &states(41, 80), &mut truth).await;

    // B's subscriber never lost its connection, and its state is right again.
    let mut last = 1;
    while last < 80 {
        let r = within("after the outage", sub.next_frame())
            .await
            .unwrap()
            .expect("still connected");
        assert!(r.seq > last);
        assert_eq!(
            sub.state().unwrap(),
            &truth[&r.seq],
            "exact at seq {}",
            r.seq
        );
        last = r.seq;
    }
    assert_eq!(sub.resyncs(), 0);
    a.shutdown().await;
    b.shutdown().await;
}
