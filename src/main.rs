//! The `phasecast` binary: command line, logging, signals, exit code.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use phasecast::config::ServeArgs;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Broadcast a fast stream of PCC simulation state to many WebSocket subscribers.
#[derive(Parser)]
#[command(name = "phasecast", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (every flag also reads the environment variable shown).
    Serve(Box<ServeArgs>),
    /// Print bytes per frame for every frame kind on the named workloads.
    Bandwidth(phasecast::bench::bandwidth::BandwidthArgs),
    /// Load a server (or nats-server) with a producer and many subscribers; report
    /// latency, delivery, CPU and memory.
    Loadgen(phasecast::bench::loadgen::LoadgenArgs),
    /// Reduce `loadgen --out` results to medians, markdown tables and SVG charts.
    BenchReport(phasecast::bench::report::ReportArgs),
    /// Run a server for a while under churn, slow and stuck subscribers; check memory,
    /// descriptors and every subscriber's final state.
    Soak(phasecast::bench::soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Bandwidth(args) => bandwidth(args),
        Command::Loadgen(args) => loadgen(args),
        Command::BenchReport(args) => bench_report(args),
        Command::Soak(args) => soak(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phasecast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "could not listen on {} (is another server on that port? set MCP_SERVER_PORT or --port)",
                config.listen
            )
        })?;
        phasecast::server::run(listener, config, shutdown_signal()).await?;
        Ok(())
    })
}

fn bandwidth(args: phasecast::bench::bandwidth::BandwidthArgs) -> anyhow::Result<()> {
    use phasecast::bench::bandwidth;
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

fn loadgen(args: phasecast::bench::loadgen::LoadgenArgs) -> anyhow::Result<()> {
    use phasecast::bench::loadgen;
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

fn bench_report(args: phasecast::bench::report::ReportArgs) -> anyhow::Result<()> {
    use phasecast::bench::report;
    let reports = report::load(&args.results)?;
    print!("{}", report::markdown(&reports));
    if let Some(dir) = &args.svg_dir {
        report::write_charts(&reports, dir)?;
    }
    Ok(())
}

fn soak(args: phasecast::bench::soak::SoakArgs) -> anyhow::Result<()> {
    use phasecast::bench::soak;
    let runtime = runtime()?;
    let result = runtime.block_on(soak::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}", soak::summary(&result));
    }
    runtime.shutdown_background();
    Ok(())
}

/// The multi-threaded runtime every async subcommand runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
