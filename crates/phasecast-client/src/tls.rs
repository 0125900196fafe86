//! TLS for `wss://` and `https://`: rustls with the ring provider, trusting the
//! system's root certificates plus any the user adds.

use std::sync::{Arc, OnceLock};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};
use tokio_tungstenite::Connector;

use crate::ClientError;

/// Which servers to trust over TLS. The default trusts the system's roots.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        // Reading the system's roots takes a while: once per process.
        static SYSTEM: OnceLock<TlsConfig> = OnceLock::new();
        SYSTEM.get_or_init(|| TlsConfig::from_roots(&[])).clone()
    }
}

impl TlsConfig {
    /// The system's roots plus the certificates in `pem` (one or more PEM
    /// certificates: a private CA, or a server's self-signed certificate).
    ///
    /// # Errors
    /// When `pem` holds no certificate or one that cannot be read.
    pub fn add_root_pem(&self, pem: &[u8]) -> Result<TlsConfig, ClientError> {
        let added = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Tls(format!("reading a PEM certificate: {e}")))?;
        if added.is_empty() {
            return Err(ClientError::Tls("no certificate in the PEM given".into()));
        }
        Ok(TlsConfig::from_roots(&added))
    }

    fn from_roots(extra: &[CertificateDer<'static>]) -> TlsConfig {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as a browser would.
        let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let _ = roots.add_parsable_certificates(extra.iter().cloned());
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        TlsConfig {
            config: Arc::new(config),
        }
    }

    /// The WebSocket connector (used for `wss://` URLs only).
    pub(crate) fn connector(&self) -> Connector {
        Connector::Rustls(self.config.clone())
    }

    /// An HTTP client that keeps connections alive and uses these roots for `https://`,
    /// with `timeout` for each request.
    pub(crate) fn http_client(&self, timeout: std::time::Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.config.as_ref().clone())
            .timeout(timeout)
            .build()
            .expect("a preconfigured rustls client builds")
    }
}
