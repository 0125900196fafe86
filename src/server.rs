//! Wiring: builds the metrics, the hub and the router, runs them on an
//! already-bound listener, and owns shutdown: stop accepting, close every session
//! with a close frame, wait for them (bounded), return.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    bus,
    config::{ByteSize, Config},
    demo,
    fanout::FanoutRuntime,
    hub::{Hub, DEFAULT_STREAM},
    memory::Budget,
    metrics::Metrics,
    transport::{self, AppState, Listen, RateLimiter, TrustedProxies},
};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metrics exporter could not be built.
    #[error("metrics: {0}")]
    Metrics(#[from] opentelemetry_sdk::error::OTelSdkError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The NATS URL is invalid.
    #[error("bus: {0}")]
    Bus(#[from] async_nats::ConnectError),
    /// The TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The fan-out runtime's threads could not be started.
    #[error("fan-out runtime: {0}")]
    Runtime(std::io::Error),
}

/// Logs who may publish and subscribe on `addr` without a key: a warning when anyone
/// who can reach the port can publish ([`Config::exposure`] decides), and the trusted
/// proxies, if any.
fn say_what_is_open(config: &Config, addr: std::net::SocketAddr) {
    let exposure = config.exposure(addr);
    if exposure.open_publish {
        warn!(
            %addr,
            "producers need no key and the server listens beyond loopback: anyone who can \
             reach this port can publish states and create streams. Set MCP_API_KEY \
             (--api-key) to require a key, or listen on 127.0.0.1 (PCC_HOST, --host) \
             behind a proxy (docs/security.md)"
        );
    }
    if exposure.open_subscribe {
        info!(
            %addr,
            "subscribers need no key: anyone who can reach this port can subscribe \
             (set PCC_SUBSCRIBE_KEY to require one)"
        );
    }
    let proxies = &config.connection.trusted_proxies;
    if !proxies.is_empty() {
        let list: Vec<String> = proxies.iter().map(ToString::to_string).collect();
        info!(
            trusted_proxies = %list.join(","),
            "X-Forwarded-For from these peers names the client (PCC_TRUSTED_PROXIES)"
        );
    }
}

/// How long a starting node on a broker waits for the logs to be replayed before it
/// serves anyway (the broker may be away; it catches up once it is back).
const REPLAY_WAIT: Duration = Duration::from_secs(10);

/// Nodes on a broker: makes the default stream's log (so `/ws` has a stream, as on a
/// single node), follows every log on the broker, and waits until each is replayed
/// up to the entry that was newest at start, so the first subscriber gets the same
/// view as on every other node.
async fn replay(hub: &Arc<Hub>, tracker: &TaskTracker, shutdown: CancellationToken) {
    let Some(bus) = hub.bus().cloned() else {
        return;
    };
    let started = tokio::time::Instant::now();
    let replayed = async {
        loop {
            let listed = match bus.ensure_log(DEFAULT_STREAM).await {
                Ok(()) => bus.follow_existing().await,
                Err(e) => Err(e),
            };
            match listed {
                Ok(logs) => return logs,
                Err(e) => {
                    debug!(error = %e, "the logs cannot be listed yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    let caught_up = async {
        let logs = replayed.await;
        for (name, last) in &logs {
            hub.wait_applied(name, *last).await;
        }
        logs.len()
    };
    match tokio::time::timeout(REPLAY_WAIT, caught_up).await {
        Ok(logs) => info!(logs, took = ?started.elapsed(), "logs replayed"),
        Err(_) => {
            warn!(
                "the logs were not replayed within {REPLAY_WAIT:?} (is the broker reachable?): \
                 serving, and catching up as they come"
            );
            // Other logs are found by discovery once the broker answers; the default
            // stream's log is made by this node as soon as it can be.
            tracker.spawn(async move {
                while bus.ensure_log(DEFAULT_STREAM).await.is_err() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            });
        }
    }
}

/// Runs the server on `listener` until `shutdown` completes, then drains.
///
/// Returns once every session has closed or `config.shutdown_timeout` has passed.
///
/// # Errors
/// When metrics cannot be set up or the listener fails.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // Built in dependency order: tasks and metrics, then the bus, then the hub it
    // feeds, then the transport.
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Arc::new(Metrics::for_server(
        config.metrics,
        tracker.clone(),
        config.wire_format,
    )?);
    let budget = Budget::new(config.memory_limit);
    metrics.observe_memory(&budget);
    let (bus, logs) = match config.bus.clone() {
        Some(bus_config) => {
            let spawned = bus::nats::spawn(
                bus_config,
                &config.stream,
                metrics.clone(),
                token.child_token(),
                &tracker,
            )
            .await?;
            (Some(spawned.bus), Some(spawned.logs))
        }
        None => (None, None),
    };
    let hub = Arc::new(Hub::new(
        config.stream.clone(),
        config.subscriber.outbox_frames,
        metrics,
        budget,
        bus,
    ));
    if let Some(logs) = logs {
        let following = hub.clone();
        let stop = token.child_token();
        tracker.spawn(async move { following.follow_logs(logs, stop).await });
        replay(&hub, &tracker, token.child_token()).await;
    }
    let config = Arc::new(config);
    if let Some(demo) = config.demo {
        tracker.spawn(demo::run(hub.clone(), demo, token.child_token()));
    }
    let tls = match &config.connection.tls {
        Some((cert, key)) => Some(transport::tls_acceptor(cert, key).map_err(Error::Tls)?),
        None => None,
    };
    let metrics = hub.metrics().clone();
    let fanout =
        Arc::new(FanoutRuntime::start(config.subscriber.fanout_threads).map_err(Error::Runtime)?);
    let app = AppState::new(hub, config.clone(), token.clone(), tracker.clone(), fanout);
    let addr = listener.local_addr()?;
    info!(
        %addr,
        wire_format = %config.wire_format,
        tls = tls.is_some(),
        memory_limit = %ByteSize(config.memory_limit),
        "phasecast listening"
    );
    say_what_is_open(&config, addr);
    let listen = Listen {
        router: transport::router(app),
        tls,
        connection_rate: Arc::new(RateLimiter::new(config.connection.rate_limit)),
        trusted_proxies: Arc::new(TrustedProxies::new(&config.connection.trusted_proxies)),
        handshake_timeout: config.connection.handshake_timeout,
        send_buffer: config.subscriber.socket_send_buffer,
        metrics,
    };
    let stop = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down: closing sessions");
        stop.cancel();
    });
    listen.run(listener, token.clone(), tracker.clone()).await;

    // Wait for every connection and session to close.
    tracker.close();
    if tokio::time::timeout(config.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tracker.len(),
            "shutdown timeout passed with sessions still open"
        );
    }
    info!("phasecast stopped");
    Ok(())
}
