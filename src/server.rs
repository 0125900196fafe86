//! Wiring: builds the metrics, the hub and the router, runs them on an
//! already-bound listener, and owns shutdown: stop accepting, close every session
//! with a close frame, wait for them (bounded), return.

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    bus::{self, Bus},
    config::{ByteSize, Config},
    demo,
    hub::Hub,
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
    let (bus, inbound) = match config.bus.clone() {
        Some(bus_config) => {
            let (bus, queued) = Bus::new(bus_config.queue, metrics.clone());
            let inbound = bus::nats::spawn(
                bus_config,
                queued,
                metrics.clone(),
                token.child_token(),
                &tracker,
            )
            .await?;
            (Some(bus), Some(inbound))
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
    if let Some(inbound) = inbound {
        let hub = hub.clone();
        tracker.spawn(async move { hub.apply_remote(inbound).await });
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
    let app = AppState::new(hub, config.clone(), token.clone(), tracker.clone());
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
