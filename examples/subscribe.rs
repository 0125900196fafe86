//! A subscriber: keeps the live state of a stream from full and delta frames, resumes
//! after disconnections (restart the server while it runs: it reconnects and carries
//! on from the seq it holds), and prints one line a second: seq, step, energy, the
//! Kuramoto order parameter r, and frames and bytes received.
//!
//! ```sh
//! cargo run --release -- serve --demo               # in one terminal
//! cargo run --release --example subscribe -- --format protobuf
//! cargo run --release --example subscribe -- --url ws://127.0.0.1:8787/ws --stream default --full
//! cargo run --release --example subscribe -- --help # every option
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use phasecast::{codec::Encoding, workload::order_parameter};
use phasecast_client::{Event, SubscribeOptions, Subscription};

/// Watch a phasecast stream.
#[derive(Debug, Parser)]
struct Args {
    /// The server's `/ws` URL.
    #[arg(long, default_value = "ws://127.0.0.1:8787/ws")]
    url: String,
    /// Encoding: json or protobuf (default: the server's).
    #[arg(long)]
    format: Option<Encoding>,
    /// Stream name.
    #[arg(long)]
    stream: Option<String>,
    /// At most this many frames a second.
    #[arg(long)]
    max_hz: Option<f64>,
    /// Subscriber key.
    #[arg(long, env = "PCC_SUBSCRIBE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Full frames only.
    #[arg(long)]
    full: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut options = SubscribeOptions::new(&args.url)
        .deltas(!args.full)
        .on_event(|event| {
            if let Event::Connected { url } = event {
                println!("connected to {url}");
            }
        });
    options.encoding = args.format;
    options.stream = args.stream;
    options.max_hz = args.max_hz;
    options.key = args.key.filter(|k| !k.is_empty());
    let mut subscription = Subscription::new(options);
    let (mut frames, mut bytes_then, mut last_print) = (0u64, 0u64, Instant::now());
    while let Some(update) = subscription.next().await {
        // Permanent errors (a wrong key, a wrong path) and a server that cannot be
        // reached for the first connection end here, with the server's reason.
        let update = update?;
        let stats = subscription.stats();
        frames += 1;
        if last_print.elapsed() >= Duration::from_secs(1) {
            let kb = (stats.bytes - bytes_then) as f64 / 1000.0;
            let (r, _) = order_parameter(&update.state.phases);
            println!(
                "seq {} step {} energy {:.4} r {:.3} | {frames} frames/s, {kb:.1} KB/s | {} full, {} delta, {} reconnects in all",
                update.seq,
                update.state.step,
                update.state.energy,
                r,
                stats.full,
                stats.delta,
                stats.reconnects,
            );
            (frames, bytes_then, last_print) = (0, stats.bytes, Instant::now());
        }
    }
    Ok(())
}
