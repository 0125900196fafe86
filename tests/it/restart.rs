//! A restarted server numbers its stream from seq 1 again, under a new epoch. A
//! client that resumes with a seq from before the restart must get a full frame and
//! the new state, never a delta built on the new server's state of the same seq: in
//! every client language (Rust here; Python with `PHASECAST_PYTHON` and
//! `resume_client.py`; TypeScript on Node with `PHASECAST_NODE_CONFORMANCE` and
//! `resume_client.mjs`) and for a plain socket.
//!
//! The clients reach the servers through one proxy address, which the test points at
//! the second server before stopping the first: a restart behind one address, with
//! the new server already past the seq the clients hold, so every reconnection tests
//! the epoch (not an empty history).

use futures_util::StreamExt;
use phasecast::{
    codec::{self, Encoding, Frame, FrameKind},
    model::State,
};
use phasecast_client::{SubscribeOptions, Subscription};
use tokio::io::AsyncBufReadExt;

use crate::support::{metric, state, within, Proxy, TestServer};

/// Oscillators per state.
const N: usize = 16;
/// States the first server has when it stops.
const BEFORE: u64 = 20;
/// States the second server has when the clients reconnect: past `BEFORE`.
const AFTER: u64 = 30;
/// Producer steps of the second server's states start here, so no state of one
/// server equals one of the other.
const SECOND_STEPS: u64 = 1000;

/// One external client process and the lines it prints, one JSON object per state.
struct External {
    name: String,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    child: tokio::process::Child,
}

impl External {
    fn spawn(name: &str, mut command: tokio::process::Command) -> External {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} client: {e}"));
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        External {
            name: name.to_owned(),
            lines,
            child,
        }
    }

    /// The next state it yielded.
    async fn next(&mut self) -> serde_json::Value {
        let what = format!("a state from the {} client", self.name);
        let line = within(&what, self.lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the {} client stopped", self.name));
        serde_json::from_str(&line).unwrap()
    }
}

fn as_state(v: &serde_json::Value) -> State {
    State {
        step: v["step"].as_u64().unwrap(),
        phases: v["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect(),
        spins: v["spins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_i64().unwrap() as i8)
            .collect(),
        energy: v["energy"].as_f64().unwrap(),
        // The clients print no timestamp; it is not part of what is compared.
        timestamp: None,
    }
}

fn without_timestamp(mut s: State) -> State {
    s.timestamp = None;
    s
}

fn epoch_of(health: &serde_json::Value) -> String {
    health["streams"][0]["epoch"]
        .as_str()
        .expect("/health names each stream's epoch")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_before_a_restart_gets_a_full_frame_of_the_new_epoch() {
    let python = std::env::var("PHASECAST_PYTHON").ok();
    let node = std::env::var("PHASECAST_NODE_CONFORMANCE").ok();
    if (python.is_none() || node.is_none()) && std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some()
    {
        panic!("PHASECAST_PYTHON and PHASECAST_NODE_CONFORMANCE must be set (scripts/test.sh sets them)");
    }
    let first = TestServer::start().await;
    let proxy = Proxy::start(first.addr()).await;
    let ws = format!("ws://{}/ws", proxy.addr());
    let final_step = SECOND_STEPS + AFTER;

    let mut external = Vec::new();
    if let Some(python) = &python {
        let mut command = tokio::process::Command::new(python);
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/resume_client.py"
            ))
            .arg(&ws)
            .arg(final_step.to_string());
        external.push(External::spawn("python", command));
    }
    if let Some(conformance) = &node {
        let index = std::path::Path::new(conformance).with_file_name("index.js");
        let mut command = tokio::process::Command::new("node");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/resume_client.mjs"
            ))
            .arg(index)
            .arg(&ws)
            .arg(final_step.to_string());
        external.push(External::spawn("typescript", command));
    }
    let mut rust = Subscription::new(SubscribeOptions::new(&ws).encoding(Encoding::Protobuf));

    // The first server: BEFORE states, each client follows them to the last.
    let publisher = first.publisher(Encoding::Json);
    publisher.publish(&state(1, N)).await.unwrap();
    // Every client is connected once it holds seq 1.
    for client in &mut external {
        assert_eq!(client.next().await["seq"], 1);
    }
    assert_eq!(
        within("rust: seq 1", rust.next())
            .await
            .unwrap()
            .unwrap()
            .seq,
        1
    );
    for step in 2..=BEFORE {
        publisher.publish(&state(step, N)).await.unwrap();
    }
    let old_epoch = epoch_of(&first.health().await);
    for client in &mut external {
        loop {
            let s = client.next().await;
            assert_eq!(s["epoch"], old_epoch.as_str(), "{}: {s}", client.name);
            if s["seq"] == BEFORE {
                break;
            }
        }
    }
    while within("rust: before", rust.next())
        .await
        .unwrap()
        .unwrap()
        .seq
        < BEFORE
    {}
    assert_eq!(rust.epoch(), Some(old_epoch.as_str()));

    // The second server, already past BEFORE with other states, behind the same
    // address; the first stops and its subscribers reconnect.
    let second = TestServer::start().await;
    let publisher = second.publisher(Encoding::Json);
    for i in 1..=AFTER {
        publisher
            .publish(&state(SECOND_STEPS + i, N))
            .await
            .unwrap();
    }
    let new_epoch = epoch_of(&second.health().await);
    assert_ne!(new_epoch, old_epoch, "a new process, a new epoch");
    proxy.retarget(second.addr());
    first.shutdown().await;
    proxy.cut();

    let newest = without_timestamp(state(final_step, N));
    for client in &mut external {
        let s = client.next().await;
        assert_eq!(
            (s["seq"].as_u64(), s["kind"].as_str(), s["epoch"].as_str()),
            (Some(AFTER), Some("full"), Some(new_epoch.as_str())),
            "{}: {s}",
            client.name
        );
        assert_eq!(as_state(&s), newest, "{}", client.name);
    }
    let update = within("rust: after", rust.next()).await.unwrap().unwrap();
    assert_eq!((update.seq, update.kind), (AFTER, FrameKind::Full));
    assert_eq!(without_timestamp(update.state), newest);
    assert_eq!(rust.epoch(), Some(new_epoch.as_str()));
    assert_eq!(rust.stats().resyncs, 0, "nothing had to be repaired");

    // A plain socket resuming with the old (epoch, seq): a full frame of the new epoch.
    let url = format!("{ws}?format=protobuf&resume={BEFORE}&epoch={old_epoch}");
    let (mut plain, _) = within("plain connect", tokio_tungstenite::connect_async(url))
        .await
        .unwrap();
    let message = within("plain frame", plain.next()).await.unwrap().unwrap();
    match codec::decode_frame(Encoding::Protobuf, &message.into_data()).unwrap() {
        Frame::Full { seq, epoch, state } => {
            assert_eq!((seq, epoch.as_str()), (AFTER, new_epoch.as_str()));
            assert_eq!(without_timestamp(state), newest);
        }
        other => panic!("expected a full frame, got {other:?}"),
    }

    // Every client exits cleanly (a resync would have failed it).
    let externals = external.len() as f64;
    for client in external {
        let status = within("client exit", client.child.wait_with_output())
            .await
            .unwrap()
            .status;
        assert!(status.success(), "{} client: {status}", client.name);
    }
    // Each reconnection with the old epoch was a miss; none was a hit.
    let scrape = second.metrics().await;
    let misses = metric(&scrape, "phasecast_resumes_total{result=\"miss\"}").unwrap();
    assert!(misses >= 2.0 + externals, "{misses} misses");
    let hits = metric(&scrape, "phasecast_resumes_total{result=\"hit\"}").unwrap_or(0.0);
    assert_eq!(hits, 0.0);
    second.shutdown().await;
}
