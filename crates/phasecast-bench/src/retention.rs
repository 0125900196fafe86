//! `phasecast-bench retention`: what a server keeps per retained state. It starts a
//! server, subscribes one JSON and one protobuf reader that read every frame, publishes
//! a number of states of a given size over `/ingest`, and reads the server's resident
//! memory from `/proc` before and after: the growth divided by the states retained is
//! the cost of one history entry (with every encoding the server keeps for it). Servers
//! that account their memory (`/health` `memory_bytes`) also give what they charge per
//! retained state, frames included, and how many states keep frames.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use phasecast::{codec::Encoding, workload::Workload};
use phasecast_client::{IngestPublisher, SubscribeOptions, Subscriber};

use crate::loadgen::{free_port, proc_sample, server_binary, wait_for_port, Spawned};

/// `phasecast-bench retention` options.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// The `phasecast` server binary to run (default: the one beside this tool).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
    /// Oscillators per state; one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "32,1024,65536")]
    pub oscillators: Vec<usize>,
    /// States published per measurement (kept: below the server's history of 1,024).
    #[arg(long, default_value_t = 300)]
    pub states: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Oscillators per state.
    pub oscillators: usize,
    /// States published (and retained).
    pub states: u64,
    /// Resident memory before the first state, MB.
    pub rss_before_mb: f64,
    /// Resident memory after the last, MB.
    pub rss_after_mb: f64,
    /// Growth per retained state, bytes.
    pub bytes_per_state: f64,
    /// Size of one state's view on the wire in protobuf, bytes: the floor.
    pub protobuf_state_bytes: usize,
    /// Bytes the server accounts to the stream per retained state (views, the
    /// sequencer's copy, cached frames), from `/health`; `None` for servers without it.
    #[serde(default)]
    pub accounted_bytes_per_state: Option<f64>,
}

/// Runs one measurement per size.
///
/// # Errors
/// When the server cannot be started or a client cannot connect.
pub async fn run(args: &RetentionArgs) -> anyhow::Result<Vec<Retention>> {
    let mut results = Vec::new();
    for &n in &args.oscillators {
        results.push(measure(args, n).await?);
    }
    Ok(results)
}

async fn measure(args: &RetentionArgs, oscillators: usize) -> anyhow::Result<Retention> {
    let port = free_port()?;
    let child = std::process::Command::new(server_binary(&args.server_bin)?)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--producer-rate-limit", "0", "--history", "1024"])
        .args(["--max-body-bytes", "64MiB", "--send-timeout", "60s"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let _server = Spawned::new(child);
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let ws = format!("ws://127.0.0.1:{port}");
    let mut workload = Workload::kuramoto(oscillators, 1);
    let mut producer = IngestPublisher::connect(&ws, None, Encoding::Protobuf, None).await?;
    // A first state, so the stream exists and the readers start from it.
    producer.send(&workload.next_state()).await?;
    let mut readers = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let options = SubscribeOptions::new(ws.clone()).encoding(encoding);
        let mut sub = Subscriber::connect(&options).await?;
        let until = args.states + 1;
        readers.push(tokio::spawn(async move {
            while let Ok(Some(r)) = sub.next_frame().await {
                if r.seq >= until {
                    return Ok(());
                }
            }
            anyhow::bail!("a reader lost its connection")
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proc_sample(Some(pid)).map_or(f64::NAN, |s| s.1);
    let mut last = workload.next_state();
    for _ in 0..args.states {
        last = workload.next_state();
        producer.send(&last).await?;
        // At most 200 a second, as producers send.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(120), reader).await???;
    }
    let after = proc_sample(Some(pid)).map_or(f64::NAN, |s| s.1);
    let accounted = accounted_per_state(port).await;
    Ok(Retention {
        oscillators,
        states: args.states,
        rss_before_mb: before,
        rss_after_mb: after,
        bytes_per_state: (after - before) * 1e6 / args.states as f64,
        protobuf_state_bytes: phasecast::codec::encode_state(Encoding::Protobuf, &last).len(),
        accounted_bytes_per_state: accounted,
    })
}

/// The default stream's accounted bytes over its retained states, from `/health`.
async fn accounted_per_state(port: u16) -> Option<f64> {
    let health: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let stream = health["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "default")?;
    let bytes = stream["memory_bytes"].as_f64()?;
    let retained = stream["retained"].as_f64()?;
    (retained > 0.0).then(|| bytes / retained)
}

/// The results as a markdown table.
pub fn markdown(rows: &[Retention]) -> String {
    let mut out = String::from(
        "| oscillators | states | RSS before MB | RSS after MB | bytes per retained state | protobuf state bytes | ratio | accounted per state |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {} | {:.2} | {} |\n",
            r.oscillators,
            r.states,
            r.rss_before_mb,
            r.rss_after_mb,
            r.bytes_per_state,
            r.protobuf_state_bytes,
            r.bytes_per_state / r.protobuf_state_bytes as f64,
            r.accounted_bytes_per_state
                .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.0}")),
        ));
    }
    out
}
