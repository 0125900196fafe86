//! The `phasecast-bench` binary: the measuring tools behind `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p phasecast-bench -- bandwidth
//! cargo run --release -p phasecast-bench -- shaping
//! cargo build --release --workspace   # loadgen and soak start target/release/phasecast
//! target/release/phasecast-bench loadgen --subscribers 1000 --format protobuf
//! cargo run --release -p phasecast-bench -- bench-report target/bench/load.jsonl
//! target/release/phasecast-bench soak --duration 30s
//! target/release/phasecast-bench soak --duration 5m --oscillators 1024 --resuming 10
//! target/release/phasecast-bench replay --oscillators 1024 --keyframe-interval 200
//! ```
//!
//! `loadgen` and `soak` start the `phasecast` server binary that sits beside this one
//! (build both: `cargo build --release --workspace`), or the one `--server-bin` names.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use phasecast_bench::{bandwidth, floor, loadgen, replay, report, retention, shaping, soak};
use tracing_subscriber::EnvFilter;

/// Measure phasecast: bytes per frame, end-to-end load, soak; report the results.
#[derive(Parser)]
#[command(name = "phasecast-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print bytes per frame for every frame kind on the named workloads.
    Bandwidth(bandwidth::BandwidthArgs),
    /// Print bytes per frame per precision class, of summary-only frames, and a
    /// dashboard's bytes a second with summaries.
    Shaping(shaping::ShapingArgs),
    /// Load a server (or nats-server) with a producer and many subscribers; report
    /// latency, delivery, CPU and memory.
    Loadgen(loadgen::LoadgenArgs),
    /// Serve the least a fan-out server can do per frame, for `loadgen --system
    /// floor` (started by it).
    FloorServer(floor::FloorArgs),
    /// Reduce `loadgen --out` results to medians, markdown tables and SVG charts.
    BenchReport(report::ReportArgs),
    /// Run a server for a while under churn, slow, stuck and resuming subscribers;
    /// check memory, descriptors, every frame and every subscriber's final state; exit
    /// non-zero on a lost frame or a checksum failure.
    Soak(soak::SoakArgs),
    /// Measure the server's memory per retained state, at several state sizes.
    Retention(retention::RetentionArgs),
    /// Measure how long a node on a broker takes from its start to serving its first
    /// subscriber the view it replayed from the log.
    Replay(replay::ReplayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // phasecast-client leaves reqwest without a crypto provider; plain clients here need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let result = match cli.command {
        Command::Bandwidth(args) => bandwidth(args),
        Command::Shaping(args) => {
            let rows = shaping::measure(&args).map_err(anyhow::Error::msg);
            rows.map(|rows| print!("{}", shaping::markdown(&rows, &args)))
        }
        Command::Loadgen(args) => loadgen(args),
        Command::FloorServer(args) => floor::serve(&args).map_err(anyhow::Error::from),
        Command::BenchReport(args) => bench_report(args),
        Command::Soak(args) => soak(args),
        Command::Retention(args) => retention(args),
        Command::Replay(args) => replay(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phasecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bandwidth(args: bandwidth::BandwidthArgs) -> anyhow::Result<()> {
    let rows = bandwidth::measure(&args).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", bandwidth::markdown(&rows, &args));
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, bandwidth::svg(&rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn loadgen(args: loadgen::LoadgenArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(loadgen::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}", loadgen::summary(&result));
    }
    if let Some(path) = &args.out {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(&result)?)?;
    }
    // Subscriber tasks may still be closing: do not wait for them.
    runtime.shutdown_background();
    Ok(())
}

fn bench_report(args: report::ReportArgs) -> anyhow::Result<()> {
    let reports = report::load(&args.results)?;
    print!("{}", report::markdown(&reports));
    if let Some(dir) = &args.svg_dir {
        report::write_charts(&reports, dir)?;
    }
    Ok(())
}

fn soak(args: soak::SoakArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(soak::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}", soak::summary(&result));
    }
    runtime.shutdown_background();
    // Printed first, so a failed run still leaves its numbers.
    anyhow::ensure!(
        result.failures.is_empty(),
        "the soak failed: {}",
        result.failures.join("; ")
    );
    Ok(())
}

/// The multi-threaded runtime every async subcommand runs on.
fn retention(args: retention::RetentionArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let rows = runtime.block_on(retention::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", retention::markdown(&rows));
    }
    runtime.shutdown_background();
    Ok(())
}

fn replay(args: replay::ReplayArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(replay::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", replay::markdown(&result));
    }
    runtime.shutdown_background();
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}
