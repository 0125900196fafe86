//! Cross-language conformance: a live server, a producer streaming a known sequence
//! (keyframes, length changes), and the Python, TypeScript and Rust clients in both
//! formats with deltas on and off, plus slow readers that the server skips ahead.
//! Every state any client holds equals the producer's at that seq, within ε (exactly
//! at ε = 0).
//!
//! The slow readers are made slow by events, not by hoping the machine is fast: each
//! has a server of its own (a tiny outbox, a small send buffer) and reads through a
//! [`GatedProxy`] that stops reading for it while the whole sequence is published, so
//! the server's writes to it block; the proxy then takes the server's bytes without
//! delivering them until `/metrics` shows the server skipped that reader ahead
//! (`mcp_pcc_messages_dropped_total{reason="conflated"}` > 0), and only then lets the
//! reader have them. It gets a delta over skipped frames, for certain.
//!
//! The Python and TypeScript clients come from the test command (`scripts/test.sh`):
//! `PHASECAST_PYTHON` is a venv's python with `./clients/python` installed,
//! `PHASECAST_NODE_CONFORMANCE` is `clients/typescript/dist/conformance.js`.

use std::{
    collections::HashMap,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use phasecast::{codec::Encoding, model::State};
use phasecast_client::{SubscribeOptions, Subscriber};
use tokio::{io::AsyncReadExt, process::Command};

use crate::support::{metric, wait_for_metric, within, Gate, GatedProxy, TestServer};

/// What the producer sent at each seq, and when (seconds since the epoch) it was
/// published: a state sent without a timestamp is given its accept time, which lies
/// between the two.
struct Truth {
    states: HashMap<u64, State>,
    sent: HashMap<u64, (f64, f64)>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The producer's sequence: 1024 oscillators, a few phases and spins changing per
/// step, 24 oscillators for a while (length changes force keyframes).
fn sequence(len: u64) -> Vec<State> {
    let mut s = State {
        step: 0,
        phases: (0..1024).map(|i| (i as f64 * 0.37) % 6.2).collect(),
        spins: (0..1024).map(|i| if i % 3 == 0 { -1 } else { 1 }).collect(),
        energy: 0.0,
        timestamp: Some(1_764_000_000.0),
    };
    let mut out = Vec::new();
    for step in 1..=len {
        s.step = step;
        let n = if (120..140).contains(&step) { 24 } else { 1024 };
        s.phases.resize(n, 1.0);
        s.spins.resize(n, 1);
        for k in 0..40 {
            let i = ((step * 7919 + k * 104_729) % n as u64) as usize;
            // Small moves (quantised steps at ε > 0) and occasionally a big one.
            s.phases[i] += if k % 10 == 0 {
                1.3
            } else {
                0.004 * (k as f64 - 20.0)
            };
        }
        let flip = (step * 31 % n as u64) as usize;
        s.spins[flip] = -s.spins[flip];
        s.energy = -0.25 * step as f64;
        s.timestamp = (step % 50 != 0).then_some(1_764_000_000.0 + step as f64 * 0.005);
        out.push(s.clone());
    }
    out
}

struct Runner {
    label: String,
    child: tokio::process::Child,
}

pub(crate) fn external_clients() -> Option<(String, String)> {
    let python = std::env::var("PHASECAST_PYTHON").ok();
    let node = std::env::var("PHASECAST_NODE_CONFORMANCE").ok();
    match (python, node) {
        (Some(p), Some(n)) => Some((p, n)),
        _ if std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some() => {
            panic!("PHASECAST_PYTHON and PHASECAST_NODE_CONFORMANCE must be set (scripts/test.sh sets them)")
        }
        _ => None,
    }
}

async fn conformance(eps: f64) {
    let Some((python, node)) = external_clients() else {
        eprintln!("skipping cross-language conformance: run scripts/test.sh");
        return;
    };
    let last = 400u64;
    let tolerance = phasecast::delta::Tolerance::new(eps).unwrap();
    let server = TestServer::with(|c| {
        c.stream.tolerance = tolerance;
        c.stream.keyframe_interval = 100;
        c.subscriber.outbox_frames = 4;
        c.subscriber.socket_send_buffer = Some(16 << 10);
        c.subscriber.send_timeout = Duration::from_secs(20);
    })
    .await;
    let url = format!("{}/ws", server.ws());

    let mut runners = Vec::new();
    let mut spawn = |lang: &str, url: &str, format: &str, delta: bool, slow_ms: u64| {
        let mut command = match lang {
            "python" => {
                let mut c = Command::new(&python);
                c.args(["-m", "phasecast.conformance"]);
                c
            }
            _ => {
                let mut c = Command::new("node");
                c.arg(&node);
                c
            }
        };
        command
            .args([
                "--url",
                url,
                "--format",
                format,
                "--delta",
                &delta.to_string(),
            ])
            .args(["--until-seq", &last.to_string(), "--timeout", "60"])
            .args(["--slow-ms", &slow_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        runners.push(Runner {
            label: format!("{lang} {format} delta={delta} slow_ms={slow_ms}"),
            child: command.spawn().unwrap_or_else(|e| panic!("{lang}: {e}")),
        });
    };
    let mut fast = 0;
    for lang in ["python", "node"] {
        for format in ["json", "protobuf"] {
            for delta in [true, false] {
                spawn(lang, &url, format, delta, 0);
                fast += 1;
            }
        }
    }

    // The slow readers: each on a server of its own (so its conflation counter is its
    // own), behind a proxy the test gates. A tiny outbox: two frames behind and it is
    // skipped ahead; a small send buffer: the writes to it block soon once it is held.
    let mut slow = Vec::new();
    for (lang, format) in [("python", "json"), ("node", "protobuf")] {
        let own = TestServer::with(|c| {
            c.stream.tolerance = tolerance;
            c.stream.keyframe_interval = 100;
            c.subscriber.outbox_frames = 2;
            c.subscriber.socket_send_buffer = Some(4 << 10);
            // Held for as long as the sequence takes to publish: not "too slow".
            c.subscriber.send_timeout = Duration::from_secs(60);
            // Skipped ahead by the outbox (what this test checks), not by the
            // freshness bound, which waits for the held reader's pong.
            c.subscriber.freshness = None;
        })
        .await;
        let proxy = GatedProxy::start(own.addr()).await;
        spawn(lang, &format!("ws://{}/ws", proxy.addr()), format, true, 15);
        slow.push((own, proxy));
    }

    // The Rust client, in this process, reading from the start.
    let mut rust = Vec::new();
    for encoding in Encoding::ALL {
        for deltas in [true, false] {
            let options = SubscribeOptions::new(server.ws())
                .encoding(encoding)
                .deltas(deltas);
            rust.push((
                format!("rust {encoding} delta={deltas}"),
                Subscriber::connect(&options).await.unwrap(),
            ));
        }
    }
    let total = fast + rust.len();
    server
        .wait_for_health("every client subscribed", |h| {
            h["subscribers"] == total as u64
        })
        .await;
    for (own, proxy) in &slow {
        own.wait_for_health("the slow reader subscribed", |h| h["subscribers"] == 1)
            .await;
        // From now on the reader gets nothing: the server's socket to it fills.
        proxy.set(Gate::Hold);
    }
    let rust_tasks: Vec<_> = rust
        .into_iter()
        .map(|(label, mut sub)| {
            tokio::spawn(async move {
                let mut lines = Vec::new();
                while sub.seq().is_none_or(|s| s < last) {
                    sub.next_frame().await.unwrap().expect("frame");
                    lines.push((sub.seq().unwrap(), sub.state().unwrap().clone()));
                }
                (label, lines)
            })
        })
        .collect();

    // The same sequence to every server: the same seqs.
    let states = sequence(last);
    let publishers: Vec<_> = std::iter::once(&server)
        .chain(slow.iter().map(|(own, _)| own))
        .map(|s| s.publisher(Encoding::Protobuf))
        .collect();
    let mut truth = Truth {
        states: HashMap::new(),
        sent: HashMap::new(),
    };
    for s in &states {
        let before = unix_now();
        let mut seqs = Vec::new();
        for publisher in &publishers {
            seqs.push(within("publish", publisher.publish(s)).await.unwrap().seq);
        }
        assert!(seqs.iter().all(|&q| q == seqs[0]), "seqs agree: {seqs:?}");
        truth.states.insert(seqs[0], s.clone());
        truth.sent.insert(seqs[0], (before, unix_now()));
    }
    assert_eq!(truth.states.len() as u64, last);

    // Each held reader: let the server's writes complete (the proxy keeps the bytes),
    // wait until the server has skipped the reader ahead, then deliver.
    for (own, proxy) in &slow {
        proxy.set(Gate::Buffer);
        wait_for_metric(
            own,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}",
            |n| n > 0.0,
        )
        .await;
        proxy.set(Gate::Flow);
    }

    let mut report = Vec::new();
    for mut runner in runners {
        let mut stdout = runner.child.stdout.take().unwrap();
        let mut stderr = runner.child.stderr.take().unwrap();
        let (out, err, status) = within(&runner.label, async {
            let mut out = String::new();
            let mut err = String::new();
            let (a, b) = tokio::join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            );
            a.unwrap();
            b.unwrap();
            (out, err, runner.child.wait().await.unwrap())
        })
        .await;
        assert!(status.success(), "{}: {status}\n{err}", runner.label);
        let held: Vec<(u64, State)> = out.lines().map(parse_line).collect();
        let skipped = check(&runner.label, &held, &truth, last, eps);
        if runner.label.ends_with("slow_ms=15") {
            assert!(
                skipped > 0,
                "{}: a slow reader gets deltas over skipped frames",
                runner.label
            );
        }
        report.push(format!(
            "{}: {} frames, {skipped} seqs skipped",
            runner.label,
            held.len()
        ));
    }
    for task in rust_tasks {
        let (label, held) = within("rust client", task).await.unwrap();
        check(&label, &held, &truth, last, eps);
    }
    eprintln!("ε = {eps}:\n  {}", report.join("\n  "));
    for (own, proxy) in slow {
        let scrape = own.metrics().await;
        assert_eq!(
            metric(
                &scrape,
                "phasecast_ws_connections_closed_total{reason=\"slow\"}"
            ),
            Some(0.0),
            "the held reader was skipped ahead, not closed"
        );
        own.shutdown().await;
        drop(proxy);
    }
    server.shutdown().await;
}

/// Checks one client's states; returns how many seqs it skipped.
fn check(label: &str, held: &[(u64, State)], truth: &Truth, last: u64, eps: f64) -> u64 {
    assert!(!held.is_empty(), "{label}: no state");
    let mut previous = 0;
    let mut skipped = 0;
    for (seq, state) in held {
        assert!(*seq > previous, "{label}: seq {seq} after {previous}");
        skipped += seq - previous - 1;
        previous = *seq;
        let want = &truth.states[seq];
        assert_eq!(state.len(), want.len(), "{label} seq {seq}: length");
        assert_eq!(
            (state.step, state.energy, &state.spins),
            (want.step, want.energy, &want.spins),
            "{label} seq {seq}"
        );
        match want.timestamp {
            Some(t) => assert_eq!(state.timestamp, Some(t), "{label} seq {seq}"),
            // Sent without one: the server's accept time (with a second of slack for
            // the wall clock's own steps).
            None => {
                let (before, after) = truth.sent[seq];
                let t = state
                    .timestamp
                    .expect("the accept time fills the timestamp");
                assert!(
                    (before - 1.0..=after + 1.0).contains(&t),
                    "{label} seq {seq}: timestamp {t} not within {before}..{after}"
                );
            }
        }
        for (i, (h, w)) in state.phases.iter().zip(&want.phases).enumerate() {
            let ok = if eps == 0.0 {
                h.to_bits() == w.to_bits()
            } else {
                (h - w).abs() <= eps
            };
            assert!(ok, "{label} seq {seq} phase {i}: {h} vs {w} (ε {eps})");
        }
    }
    assert_eq!(previous, last, "{label}: ends at the newest state");
    skipped
}

pub(crate) fn parse_line(line: &str) -> (u64, State) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let numbers = |key: &str| -> Vec<f64> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    (
        v["seq"].as_u64().unwrap(),
        State {
            step: v["step"].as_u64().unwrap(),
            phases: numbers("phases"),
            spins: numbers("spins").into_iter().map(|s| s as i8).collect(),
            energy: v["energy"].as_f64().unwrap(),
            timestamp: v["timestamp"].as_f64(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_in_every_format_rebuilds_the_exact_state() {
    conformance(0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_in_every_format_stays_within_epsilon() {
    conformance(1e-3).await;
}
