//! A producer: streams a Kuramoto simulation with coupled spins to phasecast at a
//! chosen rate, over HTTP (`POST /pcc_state`) or the producer WebSocket (`/ingest`).
//! The replacement for the old `pcc_sample.py`.
//!
//! ```sh
//! cargo run --release -- serve                      # in one terminal
//! cargo run --release --example publish -- --hz 200 --oscillators 32 --via ingest
//! cargo run --release --example publish -- --via http --format protobuf --count 1000
//! cargo run --release --example publish -- --help   # every option
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use phasecast::{codec::Encoding, workload::Workload};
use phasecast_client::{IngestPublisher, Publisher};

/// How states travel to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// The producer WebSocket, for 200 Hz and more.
    Ingest,
    /// One `POST` per state, over one kept-alive connection.
    Http,
}

/// Stream a simulation to phasecast.
#[derive(Debug, Parser)]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    url: String,
    /// States per second.
    #[arg(long, default_value_t = 200.0)]
    hz: f64,
    /// Stop after this many states.
    #[arg(long)]
    count: Option<u64>,
    /// How to send.
    #[arg(long, value_enum, default_value = "ingest")]
    via: Via,
    /// Encoding: json or protobuf.
    #[arg(long, default_value = "json")]
    format: Encoding,
    /// Stream name (default: the default stream).
    #[arg(long)]
    stream: Option<String>,
    /// Producer key.
    #[arg(long, env = "MCP_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Workload: kuramoto-N, sparse, static, random (default kuramoto with --oscillators).
    #[arg(long)]
    workload: Option<String>,
    /// Oscillators of the default kuramoto workload.
    #[arg(long, default_value_t = 32)]
    oscillators: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.hz.is_finite() && args.hz > 0.0, "--hz must be above 0");
    let mut workload = match &args.workload {
        Some(name) => Workload::named(name, args.seed).map_err(anyhow::Error::msg)?,
        None => Workload::kuramoto(args.oscillators, args.seed),
    };
    let key = args.key.clone().filter(|k| !k.is_empty());
    let mut ingest = match args.via {
        Via::Ingest => Some(
            IngestPublisher::connect(
                &args.url.replacen("http", "ws", 1),
                args.stream.as_deref(),
                args.format,
                key.as_deref(),
            )
            .await
            .context("connecting to /ingest")?,
        ),
        Via::Http => None,
    };
    let mut http = Publisher::builder(&args.url)
        .encoding(args.format)
        .key_opt(key);
    if let Some(stream) = &args.stream {
        http = http.stream(stream);
    }
    let http = http.build();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.hz));
    let started = Instant::now();
    let mut sent = 0u64;
    println!(
        "publishing {} at {} Hz via {:?}",
        workload.name(),
        args.hz,
        args.via
    );
    loop {
        tick.tick().await;
        let mut state = workload.next_state();
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
