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
    if let Err(e) = phasecast::allocator::map_large_blocks(phasecast::allocator::LARGE_BLOCK) {
        tracing::debug!(error = %e, "large blocks stay with the allocator's defaults");
    }
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

/// The multi-threaded runtime the server accepts connections and states on (the
/// fan-out has its own). Its threads ask for a short scheduler slice, so a state
/// arriving is taken up promptly even while fan-out work keeps the cores busy.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    prefer_prompt_wakeups();
    tokio::runtime::Builder::new_multi_thread()
        .on_thread_start(prefer_prompt_wakeups)
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn prefer_prompt_wakeups() {
    if let Err(e) = phasecast::sched::request_slice(phasecast::sched::INGEST_SLICE) {
        tracing::debug!(error = %e, "the scheduler refused a short slice; states wait their turn");
    }
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
