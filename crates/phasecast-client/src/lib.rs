//! A Rust client for phasecast: [`Subscriber`] keeps a live copy of a stream's state
//! from full and delta frames (verifying every delta's checksum and resyncing when it
//! fails), [`Subscription`] adds reconnection with resume, and [`Publisher`] /
//! [`IngestPublisher`] send states.
//!
//! Over TLS (`wss://`, `https://`) it trusts the system's roots, plus any given with
//! [`TlsConfig::add_root_pem`] (a private CA, or a server's self-signed certificate).
//!
//! ```no_run
//! # async fn demo() -> Result<(), phasecast_client::ClientError> {
//! use phasecast_client::{SubscribeOptions, Subscriber};
//! let mut sub = Subscriber::connect(&SubscribeOptions::new("ws://127.0.0.1:8787")).await?;
//! while let Some(frame) = sub.next_frame().await? {
//!     let state = sub.state().expect("a frame was applied");
//!     println!("seq {} step {} energy {}", frame.seq, state.step, state.energy);
//! }
//! # Ok(()) }
//! ```

mod tls;

use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use phasecast_wire::{
    codec::{self, ClientMessage, DecodeError, Encoding, Frame, FrameKind},
    delta,
    model::State,
};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{
        self, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame, Message,
    },
    MaybeTlsStream, WebSocketStream,
};

pub use tls::TlsConfig;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed (connect, handshake, I/O).
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// An HTTP request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused a request.
    #[error("server answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The server sent something that is not a frame.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// The server closed the connection.
    #[error("closed by the server: {0:?}")]
    Closed(Option<CloseFrame>),
    /// A URL could not be built.
    #[error("invalid url: {0}")]
    Url(String),
    /// A TLS root certificate could not be read.
    #[error("tls: {0}")]
    Tls(String),
}

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Server base URL, `ws://host:port` (or a full `/ws` URL).
    pub url: String,
    /// Encoding; `None` takes the server's default.
    pub encoding: Option<Encoding>,
    /// Ask for deltas (`false`: full frames only).
    pub deltas: bool,
    /// At most this many frames a second.
    pub max_hz: Option<f64>,
    /// Stream name; `None` is the default stream.
    pub stream: Option<String>,
    /// Subscriber key, when the server requires one.
    pub key: Option<String>,
    /// Seq of a state already held, to resume from.
    pub resume: Option<u64>,
    /// Other nodes serving the same streams: a [`Subscription`] that loses its
    /// connection tries the next URL in turn (`url` first, then these).
    pub fallback_urls: Vec<String>,
    /// Roots trusted for `wss://`.
    pub tls: TlsConfig,
}

impl SubscribeOptions {
    /// Defaults: server encoding, deltas on, default stream.
    pub fn new(url: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions {
            url: url.into(),
            encoding: None,
            deltas: true,
            max_hz: None,
            stream: None,
            key: None,
            resume: None,
            fallback_urls: Vec::new(),
            tls: TlsConfig::default(),
        }
    }

    /// With this encoding.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
    }

    /// With (or without) deltas.
    pub fn deltas(mut self, deltas: bool) -> Self {
        self.deltas = deltas;
        self
    }

    /// The `/ws` URL with its query.
    pub fn ws_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        let mut url = if base.ends_with("/ws") {
            base.to_owned()
        } else {
            format!("{base}/ws")
        };
        let mut query = Vec::new();
        if let Some(e) = self.encoding {
            query.push(format!("format={e}"));
        }
        if !self.deltas {
            query.push("delta=false".to_owned());
        }
        if let Some(hz) = self.max_hz {
            query.push(format!("max_hz={hz}"));
        }
        if let Some(s) = &self.stream {
            query.push(format!("stream={s}"));
        }
        if let Some(r) = self.resume {
            query.push(format!("resume={r}"));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }
}

/// What one frame did to the subscriber's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Seq of the state now held.
    pub seq: u64,
    /// Full or delta.
    pub kind: FrameKind,
    /// For a delta, the seq it applied to.
    pub base_seq: Option<u64>,
    /// Size of the frame on the wire.
    pub bytes: usize,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Encoded bytes as a WebSocket message: text for JSON, binary for protobuf.
fn message(encoding: Encoding, bytes: bytes::Bytes) -> Message {
    match encoding {
        Encoding::Json => Message::Text(
            String::from_utf8(bytes.to_vec())
                .expect("the JSON encoder writes UTF-8")
                .into(),
        ),
        Encoding::Protobuf => Message::Binary(bytes),
    }
}

/// One connection to `/ws`, holding the state its frames build.
#[derive(Debug)]
pub struct Subscriber {
    socket: Socket,
    encoding: Encoding,
    state: Option<State>,
    seq: Option<u64>,
    resyncs: u64,
    /// A resync was sent; deltas are ignored until the full frame comes, and no
    /// further request is sent for them (the server counts a subscriber's messages).
    resync_pending: bool,
}

/// Reads from the socket in 16 KiB gulps (tungstenite's default is 128 KiB). A
/// consumer slower than the stream then drains its socket a little at a time, so the
/// server sees steady progress and skips it ahead to fresh state, instead of seeing no
/// progress for seconds while hundreds of buffered frames are worked through, and
/// closing it as stuck.
fn subscriber_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 << 10)
}

impl Subscriber {
    /// Connects and completes the WebSocket handshake.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the upgrade.
    pub async fn connect(options: &SubscribeOptions) -> Result<Subscriber, ClientError> {
        let mut request = options.ws_url().into_client_request()?;
        if let Some(key) = &options.key {
            let value = HeaderValue::from_str(key).map_err(|e| ClientError::Url(e.to_string()))?;
            request.headers_mut().insert("x-api-key", value);
        }
        let connector = options.tls.connector();
        let (socket, response) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(subscriber_config()),
            false,
            Some(connector),
        )
        .await?;
        let encoding = options.encoding.unwrap_or_else(|| {
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|p| p.to_str().ok())
                .and_then(Encoding::from_subprotocol)
                .unwrap_or_default()
        });
        Ok(Subscriber {
            socket,
            encoding,
            state: None,
            seq: None,
            resyncs: 0,
            resync_pending: false,
        })
    }

    /// The encoding of this connection's frames. With no `format` asked for, it is
    /// found from the first frame (text is JSON, binary is protobuf).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The state held, once a full frame has arrived.
    pub fn state(&self) -> Option<&State> {
        self.state.as_ref()
    }

    /// Seq of the state held.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// How many times this subscriber had to resync.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Reads frames until one changes the state held, and applies it. A delta that
    /// does not fit (another base, a checksum mismatch) drops the state and asks
    /// the server for a full frame. `Ok(None)` when the server closed normally.
    ///
    /// # Errors
    /// I/O errors, a close with an error code, or an undecodable frame.
    pub async fn next_frame(&mut self) -> Result<Option<Received>, ClientError> {
        loop {
            let message = match self.socket.next().await {
                None => return Ok(None),
                Some(m) => m?,
            };
            let (encoding, bytes) = match message {
                Message::Text(t) => (Encoding::Json, t.as_bytes().to_vec()),
                Message::Binary(b) => (Encoding::Protobuf, b.to_vec()),
                Message::Close(frame) => {
                    return match frame {
                        Some(f)
                            if f.code
                                != tungstenite::protocol::frame::coding::CloseCode::Normal =>
                        {
                            Err(ClientError::Closed(Some(f)))
                        }
                        _ => Ok(None),
                    }
                }
                _ => continue,
            };
            self.encoding = encoding;
            let frame = match codec::decode_frame(encoding, &bytes) {
                Ok(f) => f,
                Err(_) => {
                    self.request_full_frame().await?;
                    continue;
                }
            };
            if self.resync_pending && matches!(frame, Frame::Delta(_)) {
                continue;
            }
            match self.apply(frame, bytes.len()) {
                Some(received) => return Ok(Some(received)),
                None => self.request_full_frame().await?,
            }
        }
    }

    /// Applies a frame; `None` when it does not fit the state held (no state, another
    /// base, a checksum mismatch), which leaves the state unusable.
    fn apply(&mut self, frame: Frame, bytes: usize) -> Option<Received> {
        match frame {
            Frame::Full { seq, state } => {
                self.state = Some(state);
                self.seq = Some(seq);
                self.resync_pending = false;
                Some(Received {
                    seq,
                    kind: FrameKind::Full,
                    base_seq: None,
                    bytes,
                })
            }
            Frame::Delta(d) => {
                let held = self.state.as_mut()?;
                if self.seq != Some(d.base_seq) {
                    return None;
                }
                delta::apply(held, &d).ok()?;
                self.seq = Some(d.seq);
                Some(Received {
                    seq: d.seq,
                    kind: FrameKind::Delta,
                    base_seq: Some(d.base_seq),
                    bytes,
                })
            }
        }
    }

    /// Drops the state held and asks the server for a full frame.
    ///
    /// # Errors
    /// When the request cannot be sent.
    pub async fn resync(&mut self) -> Result<(), ClientError> {
        self.state = None;
        self.seq = None;
        self.resyncs += 1;
        self.resync_pending = true;
        let bytes = codec::encode_client_message(self.encoding, ClientMessage::Resync);
        self.socket.send(message(self.encoding, bytes)).await?;
        Ok(())
    }

    /// Resyncs unless a request is already on its way (the state is dropped then).
    async fn request_full_frame(&mut self) -> Result<(), ClientError> {
        if self.resync_pending {
            return Ok(());
        }
        self.resync().await
    }

    /// Closes the connection politely.
    ///
    /// # Errors
    /// I/O errors while closing.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await?;
        Ok(())
    }

    /// The raw socket, for tests that misbehave on purpose.
    pub fn socket_mut(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.socket
    }
}

/// A subscription that survives disconnections: it reconnects with exponential
/// back-off and resumes from the seq it holds, so its state is right again with the
/// first frame after the gap.
#[derive(Debug)]
pub struct Subscription {
    options: SubscribeOptions,
    current: Option<Subscriber>,
    state: Option<State>,
    seq: Option<u64>,
    backoff: Duration,
    /// Index into `url` + `fallback_urls` of the node to try next.
    node: usize,
    /// Reconnections so far.
    pub reconnects: u64,
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Subscription {
    /// A subscription; it connects on the first call to [`Subscription::next_state`].
    pub fn new(options: SubscribeOptions) -> Subscription {
        Subscription {
            options,
            current: None,
            state: None,
            seq: None,
            backoff: Duration::from_millis(50),
            node: 0,
            reconnects: 0,
        }
    }

    /// The state held and its seq.
    pub fn state(&self) -> Option<(u64, &State)> {
        Some((self.seq?, self.state.as_ref()?))
    }

    /// The next state, reconnecting and resuming as needed. Never returns an error
    /// for a lost connection: it retries, waiting up to 5 s between attempts.
    pub async fn next_state(&mut self) -> (u64, State) {
        loop {
            if self.current.is_none() {
                let mut options = self.options.clone();
                options.resume = self.seq;
                let nodes = 1 + self.options.fallback_urls.len();
                if self.node % nodes > 0 {
                    options.url = self.options.fallback_urls[self.node % nodes - 1].clone();
                }
                match Subscriber::connect(&options).await {
                    Ok(mut s) => {
                        // Carry the state over: a resumed connection starts with a delta.
                        s.state = self.state.clone();
                        s.seq = self.seq;
                        self.current = Some(s);
                        self.backoff = Duration::from_millis(50);
                    }
                    Err(_) => {
                        // Try the next node; back off once every node has been tried.
                        self.node += 1;
                        if self.node % nodes == 0 {
                            tokio::time::sleep(self.backoff).await;
                            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        }
                        continue;
                    }
                }
            }
            let sub = self.current.as_mut().expect("connected above");
            match sub.next_frame().await {
                Ok(Some(r)) => {
                    self.seq = Some(r.seq);
                    self.state = sub.state.clone();
                    return (r.seq, self.state.clone().expect("a frame was applied"));
                }
                Ok(None) | Err(_) => {
                    self.current = None;
                    self.reconnects += 1;
                }
            }
        }
    }

    /// The states as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = (u64, State)> {
        futures_util::stream::unfold(self, |mut s| async move {
            let next = s.next_state().await;
            Some((next, s))
        })
    }
}

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

/// Publishes states over HTTP (`POST /pcc_state` or `/streams/{name}/state`).
#[derive(Debug, Clone)]
pub struct Publisher {
    http: reqwest::Client,
    url: String,
    encoding: Encoding,
    key: Option<String>,
}

impl Publisher {
    /// A publisher to `base` (`http://host:port` or `https://…`), on `stream` (`None`:
    /// the default), trusting the system's TLS roots.
    pub fn new(
        base: &str,
        stream: Option<&str>,
        encoding: Encoding,
        key: Option<String>,
    ) -> Publisher {
        Publisher::with_tls(base, stream, encoding, key, &TlsConfig::default())
    }

    /// Like [`Publisher::new`], trusting the roots of `tls`.
    pub fn with_tls(
        base: &str,
        stream: Option<&str>,
        encoding: Encoding,
        key: Option<String>,
        tls: &TlsConfig,
    ) -> Publisher {
        let base = base.trim_end_matches('/');
        let url = match stream {
            None => format!("{base}/pcc_state"),
            Some(s) => format!("{base}/streams/{s}/state"),
        };
        Publisher {
            http: tls.http_client(),
            url,
            encoding,
            key,
        }
    }

    /// Publishes one state.
    ///
    /// # Errors
    /// Transport errors, or [`ClientError::Status`] when the server refuses it.
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
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: response.text().await.unwrap_or_default(),
            });
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
    /// Connects to `base` (`ws://host:port`) for `stream` (`None`: the default).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses (a wrong key: HTTP 401).
    pub async fn connect(
        base: &str,
        stream: Option<&str>,
        encoding: Encoding,
        key: Option<&str>,
    ) -> Result<IngestPublisher, ClientError> {
        let base = base.trim_end_matches('/');
        let url = match stream {
            None => format!("{base}/ingest"),
            Some(s) => format!("{base}/ingest?stream={s}"),
        };
        let mut request = url.into_client_request()?;
        if let Some(key) = key {
            let value = HeaderValue::from_str(key).map_err(|e| ClientError::Url(e.to_string()))?;
            request.headers_mut().insert("x-api-key", value);
        }
        let connector = TlsConfig::default().connector();
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
                .await?;
        Ok(IngestPublisher { socket, encoding })
    }

    /// Sends one state (no answer unless it is rejected: see [`IngestPublisher::rejection`]).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send(&mut self, state: &State) -> Result<(), ClientError> {
        let bytes = codec::encode_state(self.encoding, state);
        self.socket.send(message(self.encoding, bytes)).await?;
        Ok(())
    }

    /// Sends raw bytes as one message (text when `text`), for tests of bad input.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: Vec<u8>, text: bool) -> Result<(), ClientError> {
        let message = if text {
            Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
        } else {
            Message::Binary(bytes.into())
        };
        self.socket.send(message).await?;
        Ok(())
    }

    /// Waits for the server's next rejection message (JSON), if any arrives.
    ///
    /// # Errors
    /// I/O errors, or a reply that is not JSON.
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
