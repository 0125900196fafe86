//! [`Subscriber`]: one connection to `/ws`, holding the state its frames build. It
//! verifies every delta (base and checksum) and asks for a full frame when one does not
//! fit, so it never exposes a state it could not verify.

use futures_util::{SinkExt, StreamExt};
use phasecast_wire::{
    codec::{self, ClientMessage, Encoding, Extras, Frame, FrameKind},
    delta,
    model::State,
    summary::{Envelope, Summary},
};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{
        self, client::IntoClientRequest, http::HeaderValue, protocol::frame::coding::CloseCode,
        protocol::WebSocketConfig, Message,
    },
    MaybeTlsStream, WebSocketStream,
};

use crate::{ClientError, SubscribeOptions};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

/// Encoded bytes as the WebSocket message their encoding travels in: text for JSON,
/// binary for protobuf (the client's one place for this mapping). Public for programs
/// that speak to a server over their own socket (a control message, for example).
pub fn message(encoding: Encoding, bytes: bytes::Bytes) -> Message {
    if encoding.is_text() {
        Message::Text(
            String::from_utf8(bytes.to_vec())
                .expect("the JSON encoder writes UTF-8")
                .into(),
        )
    } else {
        Message::Binary(bytes)
    }
}

/// One connection to `/ws`, holding the state its frames build.
#[derive(Debug)]
pub struct Subscriber {
    socket: Socket,
    encoding: Encoding,
    pub(crate) state: Option<State>,
    pub(crate) seq: Option<u64>,
    /// The stream's epoch from the last full frame (`None` from a server that sends
    /// none): the numbering `seq` belongs to.
    pub(crate) epoch: Option<String>,
    resyncs: u64,
    /// What the last frame carried besides the state (`?fields=summary`).
    pub(crate) extras: Extras,
    /// A resync was sent; deltas are ignored until the full frame comes, and no
    /// further request is sent for them (the server counts a subscriber's messages).
    resync_pending: bool,
}

/// Reads from the socket in 16 KiB gulps (tungstenite's default is 128 KiB). A
/// consumer slower than the stream then drains its socket a little at a time, so the
/// server sees steady progress and skips it ahead to fresh state, instead of seeing no
/// progress for seconds while hundreds of buffered frames are worked through, and
/// closing it as stuck.
fn subscriber_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 << 10)
}

impl Subscriber {
    /// Connects to the first URL of `options` and completes the WebSocket handshake,
    /// within `options.connect_timeout`.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the server's status and reason (a wrong key: 401),
    /// [`ClientError::NotWebSocket`] for a URL that is a page, [`ClientError::Connect`]
    /// when the server cannot be reached in time.
    pub async fn connect(options: &SubscribeOptions) -> Result<Subscriber, ClientError> {
        Subscriber::connect_to(options, &options.url).await
    }

    /// Connects holding `state`, the state with seq `options.resume` of the epoch
    /// `options.resume_epoch` (as a previous connection left them: [`Subscriber::seq`],
    /// [`Subscriber::epoch`], [`Subscriber::state`]), so the first frame can be a
    /// delta from it. (A [`Subscription`](crate::Subscription) does this itself.)
    ///
    /// # Errors
    /// As [`Subscriber::connect`].
    pub async fn connect_holding(
        options: &SubscribeOptions,
        state: State,
    ) -> Result<Subscriber, ClientError> {
        let mut s = Subscriber::connect(options).await?;
        if options.resume.is_some() {
            s.state = Some(state);
            s.seq = options.resume;
            s.epoch = options.resume_epoch.clone();
        }
        Ok(s)
    }

    pub(crate) async fn connect_to(
        options: &SubscribeOptions,
        base: &str,
    ) -> Result<Subscriber, ClientError> {
        let url = options.url_for(base);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Url(e.to_string()))?;
        if let Some(key) = &options.key {
            let value = HeaderValue::from_str(key).map_err(|e| ClientError::Url(e.to_string()))?;
            request.headers_mut().insert("x-api-key", value);
        }
        // Nagle off: a pong waiting for the server's delayed ACK would tell the server
        // this reader is tens of milliseconds behind when it is not.
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(subscriber_config()),
            true,
            Some(options.tls.connector()),
        );
        let (socket, response) = match tokio::time::timeout(options.connect_timeout, connect).await
        {
            Ok(Ok(connected)) => connected,
            Ok(Err(e)) => return Err(ClientError::from_handshake(&url, e)),
            Err(_) => {
                return Err(ClientError::Connect {
                    url,
                    reason: format!("no handshake within {:?}", options.connect_timeout),
                })
            }
        };
        let encoding = options.asked_encoding().unwrap_or_else(|| {
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|p| p.to_str().ok())
                .and_then(Encoding::from_subprotocol)
                .unwrap_or_default()
        });
        tracing::debug!(%url, "subscriber connected");
        Ok(Subscriber {
            socket,
            encoding,
            state: None,
            seq: None,
            epoch: None,
            resyncs: 0,
            extras: Extras::default(),
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

    /// The stream's epoch, from the last full frame: resume with it and the seq.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The summary the last frame carried (with `fields` taking `summary`).
    pub fn summary(&self) -> Option<&Summary> {
        self.extras.summary.as_ref()
    }

    /// The envelope the last frame carried (with `max_hz` and `summary`): the range
    /// of each summary quantity since the frame before.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.extras.envelope.as_ref()
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
    /// I/O errors, or [`ClientError::Closed`] with the server's code and reason.
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
                        Some(f) if f.code != CloseCode::Normal => Err(ClientError::Closed {
                            code: f.code.into(),
                            reason: f.reason.to_string(),
                        }),
                        _ => Ok(None),
                    }
                }
                _ => continue,
            };
            self.encoding = encoding;
            let (frame, extras) = match codec::decode_frame_parts(encoding, &bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame: asking for a full frame");
                    self.request_full_frame().await?;
                    continue;
                }
            };
            if self.resync_pending && matches!(frame, Frame::Delta(_)) {
                continue;
            }
            match self.apply(frame, bytes.len()) {
                Some(received) => {
                    self.extras = extras;
                    tracing::trace!(seq = received.seq, kind = received.kind.as_str(), "frame");
                    return Ok(Some(received));
                }
                None => {
                    tracing::debug!("a delta did not fit the state held: asking for a full frame");
                    self.request_full_frame().await?
                }
            }
        }
    }

    /// Applies a frame; `None` when it does not fit the state held (no state, another
    /// base, a checksum mismatch), which leaves the state unusable.
    fn apply(&mut self, frame: Frame, bytes: usize) -> Option<Received> {
        match frame {
            Frame::Full { seq, epoch, state } => {
                self.state = Some(state);
                self.seq = Some(seq);
                // A full frame of another epoch replaces the state like any other.
                self.epoch = Some(epoch).filter(|e| !e.is_empty());
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
        match self.socket.close(None).await {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
