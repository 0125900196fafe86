//! Publishing states: [`Publisher`] over HTTP (`POST /pcc_state` or
//! `/streams/{name}/state`, one kept-alive connection), [`IngestPublisher`] over the
//! producer WebSocket (`/ingest`). Every refusal is a [`ClientError::Refused`] with the
//! server's status, reason, field and `Retry-After`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phasecast_wire::{
    codec::{self, Encoding},
    model::State,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

use crate::{error, subscriber::message, subscriber::Socket, ClientError, TlsConfig};

/// What the server answered to a published state.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PublishReply {
    /// Accepted.
    pub ok: bool,
    /// The seq the state got.
    pub seq: u64,
    /// Its step.
    pub step: u64,
    /// Subscribers of the stream.
    pub clients: usize,
    /// Server time spent on it.
    pub processing_time_ms: f64,
}

/// Publishes states over HTTP. Build one with [`Publisher::builder`]; it keeps its
/// connection alive across states.
#[derive(Debug, Clone)]
pub struct Publisher {
    http: reqwest::Client,
    url: String,
    encoding: Encoding,
    key: Option<String>,
}

/// Options of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherBuilder {
    base: String,
    stream: Option<String>,
    encoding: Encoding,
    key: Option<String>,
    tls: TlsConfig,
    timeout: Duration,
}

impl PublisherBuilder {
    /// On the stream `name` (default: the default stream, `POST /pcc_state`).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// Sending states in this encoding (default JSON).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// With the producer key (`MCP_API_KEY`), sent as `X-API-Key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With the producer key, if any.
    pub fn key_opt(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    /// Trusting the roots of `tls` for `https://`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// With this time for each request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The publisher.
    pub fn build(self) -> Publisher {
        let base = self.base.trim_end_matches('/');
        let url = match &self.stream {
            None => format!("{base}/pcc_state"),
            Some(s) => format!(
                "{base}/streams/{}/state",
                form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            ),
        };
        Publisher {
            http: self.tls.http_client(self.timeout),
            url,
            encoding: self.encoding,
            key: self.key,
        }
    }
}

impl Publisher {
    /// A publisher to `base` (`http://host:8787` or `https://…`).
    pub fn builder(base: impl Into<String>) -> PublisherBuilder {
        PublisherBuilder {
            base: base.into(),
            stream: None,
            encoding: Encoding::Json,
            key: None,
            tls: TlsConfig::default(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Publishes one state.
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the server refuses it (with its status, reason,
    /// field and `Retry-After`), or a transport error.
    pub async fn publish(&self, state: &State) -> Result<PublishReply, ClientError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", self.encoding.content_type())
            .body(codec::encode_state(self.encoding, state));
        if let Some(k) = &self.key {
            request = request.header("x-api-key", k);
        }
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = error::retry_after(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
            );
            let body = response.bytes().await.unwrap_or_default();
            return Err(ClientError::refused(status.as_u16(), &body, retry_after));
        }
        Ok(response.json().await?)
    }
}

/// Publishes states over the producer WebSocket (`/ingest`).
#[derive(Debug)]
pub struct IngestPublisher {
    socket: Socket,
    encoding: Encoding,
}

impl IngestPublisher {
    /// Connects to `base` (`ws://host:8787` or `wss://…`) for `stream` (`None`: the
    /// default), with the producer key if one is given.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the server's status and reason (a wrong key: 401;
    /// the producer limit: 503), or [`ClientError::Connect`].
    pub async fn connect(
        base: &str,
        stream: Option<&str>,
        encoding: Encoding,
        key: Option<&str>,
    ) -> Result<IngestPublisher, ClientError> {
        IngestPublisher::connect_with(base, stream, encoding, key, &TlsConfig::default()).await
    }

    /// Like [`IngestPublisher::connect`], trusting the roots of `tls` for `wss://`.
    ///
    /// # Errors
    /// As [`IngestPublisher::connect`].
    pub async fn connect_with(
        base: &str,
        stream: Option<&str>,
        encoding: Encoding,
        key: Option<&str>,
        tls: &TlsConfig,
    ) -> Result<IngestPublisher, ClientError> {
        let base = base.trim_end_matches('/');
        let url = match stream {
            None => format!("{base}/ingest"),
            Some(s) => format!(
                "{base}/ingest?stream={}",
                form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            ),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Url(e.to_string()))?;
        if let Some(key) = key {
            let value = HeaderValue::from_str(key).map_err(|e| ClientError::Url(e.to_string()))?;
            request.headers_mut().insert("x-api-key", value);
        }
        // Nagle off: a state is one small write, and with Nagle on it waits for the
        // server's delayed ACK of the one before (up to 40 ms on Linux).
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            Some(tls.connector()),
        )
        .await
        .map_err(|e| ClientError::from_handshake(&url, e))?;
        Ok(IngestPublisher { socket, encoding })
    }

    /// Sends one state (no answer unless it is rejected: see
    /// [`IngestPublisher::rejection`]).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send(&mut self, state: &State) -> Result<(), ClientError> {
        let bytes = codec::encode_state(self.encoding, state);
        self.socket.send(message(self.encoding, bytes)).await?;
        Ok(())
    }

    /// Sends bytes that are already an encoded state, as one message (text when
    /// `text`): for producers that encode states themselves.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_encoded(&mut self, bytes: Vec<u8>, text: bool) -> Result<(), ClientError> {
        let message = if text {
            Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
        } else {
            Message::Binary(bytes.into())
        };
        self.socket.send(message).await?;
        Ok(())
    }

    /// Waits for the server's next rejection, its JSON reply
    /// (`{"ok":false,"error":…,"field":…,"step":…}`). `Ok(None)` when the connection
    /// closes.
    ///
    /// # Errors
    /// I/O errors, or a reply that is not the server's JSON.
    pub async fn rejection(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        while let Some(message) = self.socket.next().await {
            match message? {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str())
                        .map(Some)
                        .map_err(|e| ClientError::Url(e.to_string()))
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Closes the connection.
    ///
    /// # Errors
    /// I/O errors while closing.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await?;
        Ok(())
    }
}
