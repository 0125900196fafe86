//! A producer: streams a Kuramoto simulation with coupled spins to phasecast at a
//! chosen rate, over HTTP (`POST /pcc_state`) or the producer WebSocket (`/ingest`).
//! The replacement for the old `pcc_sample.py`.
//!
//! ```sh
//! cargo run --release -- serve                      # in one terminal
//! cargo run --release --example publish -- --hz 200 --oscillators 32 --via ingest
//! cargo run --release --example publish -- --via http --format protobuf --count 1000
//! ```
//! Options: `--url http://127.0.0.1:8787`, `--stream NAME`, `--key KEY` (or MCP_API_KEY),
//! `--workload kuramoto-N|sparse|static|random`, `--seed N`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use phasecast::{codec::Encoding, workload::Workload};
use phasecast_client::{IngestPublisher, Publisher};

struct Args {
    url: String,
    hz: f64,
    count: Option<u64>,
    via_ingest: bool,
    encoding: Encoding,
    stream: Option<String>,
    key: Option<String>,
    workload: Workload,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        url: "http://127.0.0.1:8787".into(),
        hz: 200.0,
        count: None,
        via_ingest: true,
        encoding: Encoding::Json,
        stream: None,
        key: std::env::var("MCP_API_KEY").ok().filter(|k| !k.is_empty()),
        workload: Workload::kuramoto(32, 1),
    };
    let (mut workload, mut seed, mut oscillators) = (None, 1, 32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--hz" => args.hz = value()?.parse()?,
            "--count" => args.count = Some(value()?.parse()?),
            "--via" => {
                args.via_ingest = match value()?.as_str() {
                    "ingest" => true,
                    "http" => false,
                    other => bail!("--via {other}: use http or ingest"),
                }
            }
            "--format" => args.encoding = value()?.parse()?,
            "--stream" => args.stream = Some(value()?),
            "--key" => args.key = Some(value()?),
            "--workload" => workload = Some(value()?),
            "--seed" => seed = value()?.parse()?,
            "--oscillators" => oscillators = value()?.parse()?,
            other => bail!("unknown option {other} (see the header of examples/publish.rs)"),
        }
    }
    if !args.hz.is_finite() || args.hz <= 0.0 {
        bail!("--hz must be above 0");
    }
    args.workload = match workload {
        Some(name) => Workload::named(&name, seed).map_err(anyhow::Error::msg)?,
        None => Workload::kuramoto(oscillators, seed),
    };
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = parse()?;
    let ws_url = args.url.replacen("http", "ws", 1);
    let mut ingest = if args.via_ingest {
        Some(
            IngestPublisher::connect(
                &ws_url,
                args.stream.as_deref(),
                args.encoding,
                args.key.as_deref(),
            )
            .await
            .context("connecting to /ingest")?,
        )
    } else {
        None
    };
    let http = Publisher::new(
        &args.url,
        args.stream.as_deref(),
        args.encoding,
        args.key.clone(),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.hz));
    let started = Instant::now();
    let mut sent = 0u64;
    println!(
        "publishing {} at {} Hz via {}",
        args.workload.name(),
        args.hz,
        if args.via_ingest { "/ingest" } else { "POST" }
    );
    loop {
        tick.tick().await;
        let mut state = args.workload.next_state();
        state.timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        match &mut ingest {
            Some(socket) => socket.send(&state).await?,
            None => {
                http.publish(&state).await?;
            }
        }
        sent += 1;
        if sent % (args.hz as u64).max(1) == 0 {
            println!(
                "{sent} states, {:.1}/s",
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
        if args.count.is_some_and(|c| sent >= c) {
            break;
        }
    }
    if let Some(socket) = ingest {
        socket.close().await?;
    }
    Ok(())
}
