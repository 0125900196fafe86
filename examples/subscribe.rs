//! A subscriber: connects to `/ws`, keeps the live state from full and delta frames
//! (resuming after disconnections), and prints one line a second: seq, step, energy,
//! the Kuramoto order parameter r, and frames and bytes received.
//!
//! ```sh
//! cargo run --release -- serve --demo               # in one terminal
//! cargo run --release --example subscribe -- --format protobuf
//! cargo run --release --example subscribe -- --url ws://127.0.0.1:8787 --stream default --full
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use phasecast::workload::order_parameter;
use phasecast_client::{SubscribeOptions, Subscriber};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut options = SubscribeOptions::new("ws://127.0.0.1:8787");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--format" => options.encoding = Some(value()?.parse()?),
            "--stream" => options.stream = Some(value()?),
            "--max-hz" => options.max_hz = Some(value()?.parse()?),
            "--key" => options.key = Some(value()?),
            "--full" => options.deltas = false,
            other => bail!("unknown option {other} (see the header of examples/subscribe.rs)"),
        }
    }
    let mut sub = Subscriber::connect(&options)
        .await
        .with_context(|| format!("connecting to {}", options.ws_url()))?;
    println!("subscribed to {}", options.ws_url());
    let (mut frames, mut bytes, mut last_print) = (0u64, 0u64, Instant::now());
    while let Some(frame) = sub.next_frame().await? {
        frames += 1;
        bytes += frame.bytes as u64;
        if last_print.elapsed() >= Duration::from_secs(1) {
            let state = sub.state().expect("a frame was applied");
            let (r, _) = order_parameter(&state.phases);
            println!(
                "seq {} step {} energy {:.4} r {:.3} | {frames} frames/s, {:.1} KB/s, {} B/frame ({})",
                frame.seq,
                state.step,
                state.energy,
                r,
                bytes as f64 / 1000.0,
                bytes / frames.max(1),
                sub.encoding(),
            );
            (frames, bytes, last_print) = (0, 0, Instant::now());
        }
    }
    println!("the server closed the connection");
    Ok(())
}
