//! `phasecast-bench replay`: how long a node on a broker takes from its start to
//! serving its first subscriber. It starts a nats-server with JetStream and one node,
//! fills the default stream's log (a producer on `/ingest`), then starts a second node
//! again and again: each time, from the moment the process is spawned until a
//! subscriber on it holds the newest state, which the node has replayed from the log
//! (from the keyframe before its history). Every replayed view is compared with the
//! first node's, bit for bit.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clap::Args;
use phasecast::{codec::Encoding, workload::Workload};
use phasecast_client::{FrameKind, IngestPublisher, SubscribeOptions, Subscriber};

use crate::{
    loadgen::{free_port, server_binary, spawn_nats, wait_for_port, Spawned},
    median,
};

/// `phasecast-bench replay` options.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The `phasecast` server binary to run (default: the one beside this tool).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
    /// The nats-server binary.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: String,
    /// Oscillators per state.
    #[arg(long, default_value_t = 1024)]
    pub oscillators: usize,
    /// The nodes' keyframe interval (`--keyframe-interval`).
    #[arg(long, default_value_t = 200)]
    pub keyframe_interval: u64,
    /// The nodes' history (`--history`): the log keeps it plus a keyframe interval.
    #[arg(long, default_value_t = 1024)]
    pub history: u64,
    /// States in the log before the restarts (default: history + keyframe interval,
    /// a full log).
    #[arg(long)]
    pub states: Option<u64>,
    /// Node starts measured.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Replay {
    /// Oscillators per state.
    pub oscillators: usize,
    /// The keyframe interval.
    pub keyframe_interval: u64,
    /// The history.
    pub history: u64,
    /// States published to the log.
    pub states: u64,
    /// Each start: spawn to the first subscriber holding the newest state, ms.
    pub start_to_serve_ms: Vec<f64>,
    /// Their median, ms.
    pub median_ms: f64,
    /// The slowest, ms.
    pub max_ms: f64,
}

fn node(args: &ReplayArgs, url: &str, id: &str) -> anyhow::Result<(Command, u16)> {
    let port = free_port()?;
    let mut command = Command::new(server_binary(&args.server_bin)?);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--nats-url", url, "--node-id", id])
        .arg(format!("--keyframe-interval={}", args.keyframe_interval))
        .arg(format!("--history={}", args.history))
        .args(["--producer-rate-limit", "0", "--max-body-bytes", "64MiB"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    Ok((command, port))
}

/// Connects to `ws` until it answers, then reads until the newest state, `last`, is
/// held; returns that state. With `replayed`, the first frame must already be it (the
/// node replayed the log before serving).
async fn first_state(
    ws: &str,
    last: u64,
    replayed: bool,
) -> anyhow::Result<phasecast::model::State> {
    let options = SubscribeOptions::new(ws).encoding(Encoding::Protobuf);
    let mut sub = loop {
        match Subscriber::connect(&options).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let mut first = true;
    loop {
        let r = sub
            .next_frame()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the node closed the subscriber"))?;
        anyhow::ensure!(r.seq <= last, "seq {} past the log's newest {last}", r.seq);
        if replayed && first {
            anyhow::ensure!(
                r.seq == last && r.kind == FrameKind::Full,
                "the first frame is seq {} ({:?}), not the replayed newest {last}",
                r.seq,
                r.kind
            );
        }
        first = false;
        if r.seq == last {
            return Ok(sub.state().expect("a state").clone());
        }
    }
}

/// Runs the measurement.
///
/// # Errors
/// When a process cannot be started, a client cannot connect, or a replayed view
/// differs from the first node's.
pub async fn run(args: &ReplayArgs) -> anyhow::Result<Replay> {
    let (_broker, tcp, _) = spawn_nats(&args.nats_server, true).await?;
    let url = format!("nats://{tcp}");
    let (mut first, port) = node(args, &url, "replay-origin")?;
    let _origin = Spawned::new(first.spawn()?);
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let origin_ws = format!("ws://127.0.0.1:{port}");
    let states = args.states.unwrap_or(args.history + args.keyframe_interval);
    let mut workload = Workload::kuramoto(args.oscillators, 1);
    let mut producer = IngestPublisher::connect(&origin_ws, None, Encoding::Protobuf, None).await?;
    for _ in 0..states {
        producer.send(&workload.next_state()).await?;
    }
    let truth = tokio::time::timeout(
        Duration::from_secs(120),
        first_state(&origin_ws, states, false),
    )
    .await??;
    let mut took = Vec::new();
    for run in 0..args.runs {
        let (mut command, port) = node(args, &url, &format!("replay-{run}"))?;
        let started = Instant::now();
        let restarted = Spawned::new(command.spawn()?);
        let ws = format!("ws://127.0.0.1:{port}");
        let view =
            tokio::time::timeout(Duration::from_secs(60), first_state(&ws, states, true)).await??;
        took.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            view == truth,
            "run {run}: the replayed view differs from the first node's"
        );
        drop(restarted);
    }
    Ok(Replay {
        oscillators: args.oscillators,
        keyframe_interval: args.keyframe_interval,
        history: args.history,
        states,
        median_ms: median(took.clone()),
        max_ms: took.iter().copied().fold(f64::NAN, f64::max),
        start_to_serve_ms: took,
    })
}

/// The result as a markdown table row with its header.
pub fn markdown(r: &Replay) -> String {
    let runs: Vec<String> = r
        .start_to_serve_ms
        .iter()
        .map(|t| format!("{t:.0}"))
        .collect();
    format!(
        "| oscillators | keyframe interval | history | log entries | runs | start to serving, median ms | max ms | each run ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|\n\
         | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |\n",
        r.oscillators,
        r.keyframe_interval,
        r.history,
        r.states,
        r.start_to_serve_ms.len(),
        r.median_ms,
        r.max_ms,
        runs.join(", ")
    )
}
