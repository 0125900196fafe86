//! The accept loop: every TCP connection goes through here before HTTP. It refuses
//! clients over the per-IP connection rate, sets the socket options, terminates TLS
//! when configured, and serves HTTP/1.1 (with WebSocket upgrades) with a deadline for
//! the request headers, so half-open sockets and handshakes that never complete are
//! closed instead of holding a slot forever. Each request gets its [`ClientAddr`].
//!
//! A trusted proxy (`PCC_TRUSTED_PROXIES`) carries many clients, so its connections
//! are not counted at accept, where only the proxy's address is known. Instead each
//! WebSocket upgrade it forwards counts against the forwarded client's connection rate
//! (429 past it): an upgrade is one new client connection whatever the proxy does,
//! while plain requests may share a proxy's keep-alive connection or each open one of
//! their own, so they are not counted (producers' states have their own per-IP rate).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::header,
    response::{IntoResponse, Response},
    Router,
};
use hyper::{body::Incoming, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::{
    client_addr::{ClientAddr, TrustedProxies},
    limit::RateLimiter,
    ApiError,
};
use crate::metrics::{Metrics, RefusedConnection};

/// What the accept loop needs.
pub struct Listen {
    /// The routes.
    pub router: Router,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// New connections per second per client IP (0: no limit): checked at accept for
    /// direct clients, at the upgrade for clients of a trusted proxy.
    pub connection_rate: Arc<RateLimiter>,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Deadline for a request's headers (and the TLS handshake).
    pub handshake_timeout: Duration,
    /// `SO_SNDBUF` for accepted sockets.
    pub send_buffer: Option<usize>,
    /// Instruments.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listen")
            .field("tls", &self.tls.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Listen {
    /// Accepts until `shutdown` is cancelled. Connections run on `tracker` and finish
    /// their current request (HTTP) or close their session (WebSocket) on shutdown.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off, do not spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let proxy = this.trusted_proxies.contains(peer.ip());
            if !proxy
                && this
                    .connection_rate
                    .check(peer.ip().to_canonical())
                    .is_err()
            {
                this.metrics
                    .connection_refused(RefusedConnection::RateLimited);
                debug!(%peer, "connection refused: over PCC_CONNECTION_RATE_LIMIT");
                continue;
            }
            this.tune(&tcp);
            let this = this.clone();
            let token = shutdown.clone();
            tracker.spawn(async move { this.connection(tcp, peer, token).await });
        }
    }

    fn tune(&self, tcp: &TcpStream) {
        // Small frames must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "could not set TCP_NODELAY");
        }
        if let Some(size) = self.send_buffer {
            if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(size) {
                warn!(error = %e, "could not set the socket send buffer");
            }
        }
    }

    async fn connection(&self, tcp: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        match &self.tls {
            None => self.serve(tcp, peer, shutdown).await,
            Some(acceptor) => {
                match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.serve(tls, peer, shutdown).await,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        self.metrics.connection_refused(RefusedConnection::Tls);
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        self.metrics
                            .connection_refused(RefusedConnection::HandshakeTimeout);
                    }
                }
            }
        }
    }

    async fn serve<IO>(&self, io: IO, peer: SocketAddr, shutdown: CancellationToken)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let admission = Admission {
            trusted_proxies: self.trusted_proxies.clone(),
            connection_rate: self.connection_rate.clone(),
            metrics: self.metrics.clone(),
        };
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            let client = admission.trusted_proxies.resolve(peer, request.headers());
            let refused = admission.refuse_upgrade(client, &request);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(client);
            let router = router.clone();
            async move {
                match refused {
                    Some(response) => Ok(response),
                    None => router.oneshot(request).await,
                }
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout);
        let connection = http
            .serve_connection(
                TokioIo::new(io),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        self.metrics.connection_refused(RefusedConnection::HandshakeTimeout);
                    }
                    debug!(%peer, error = %e, "connection ended");
                }
            }
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// What each request of a connection is checked with before the router sees it.
#[derive(Clone)]
struct Admission {
    trusted_proxies: Arc<TrustedProxies>,
    /// Shared with the accept loop: one budget per client, however it connects.
    connection_rate: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// The answer to a WebSocket upgrade through a trusted proxy from a client over
    /// the connection rate; `None` lets the request through.
    fn refuse_upgrade(&self, client: ClientAddr, request: &Request<Body>) -> Option<Response> {
        if !client.is_proxied() || !request.headers().contains_key(header::UPGRADE) {
            return None;
        }
        let retry_after = self.connection_rate.check(client.ip()).err()?;
        self.metrics
            .connection_refused(RefusedConnection::RateLimited);
        debug!(peer = %client, "upgrade refused: over PCC_CONNECTION_RATE_LIMIT");
        Some(
            ApiError::ConnectionRateLimited {
                rate: self.connection_rate.rate(),
                retry_after,
            }
            .into_response(),
        )
    }
}

/// A TLS acceptor from PEM files: the certificate chain and its private key.
///
/// # Errors
/// Unreadable files, no certificate, or a key that does not fit.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("--tls-cert / --tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
