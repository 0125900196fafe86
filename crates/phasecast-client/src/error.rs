//! [`ClientError`]: everything a client call can fail with, sorted into permanent
//! outcomes (raised at once: retrying cannot help) and transient ones (retried with
//! back-off), as `docs/clients.md` lays down for all three clients.

use std::time::Duration;

use phasecast_wire::codec::DecodeError;
use tokio_tungstenite::tungstenite;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an HTTP error: its status and the reason it gave.
    #[error("server answered {status}: {error}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's reason (`error` in its JSON body, or the body itself).
        error: String,
        /// The field or parameter at fault, when the server names one.
        field: Option<String>,
        /// The producer's step, when the server names it (ingest rejections).
        step: Option<u64>,
        /// How long to wait before trying again (`Retry-After`), on 429.
        retry_after: Option<Duration>,
    },
    /// The URL answered, but not as a phasecast WebSocket endpoint (a page, a
    /// redirect): the path is wrong.
    #[error("{url} answered HTTP {status}, not a phasecast WebSocket endpoint (is the path /ws?)")]
    NotWebSocket {
        /// The URL tried.
        url: String,
        /// The HTTP status it answered with.
        status: u16,
    },
    /// The server closed the connection with this code and reason.
    #[error("closed by the server: {code} {reason}")]
    Closed {
        /// WebSocket close code.
        code: u16,
        /// The reason the server gave.
        reason: String,
    },
    /// The server could not be reached (refused, reset, unknown host, timed out).
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The WebSocket failed after it was open.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// An HTTP request failed in transport (not an answer from the server).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server sent something that is not a frame.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// A URL or an option is invalid.
    #[error("invalid url or option: {0}")]
    Url(String),
    /// A TLS root certificate could not be read.
    #[error("tls: {0}")]
    Tls(String),
}

/// A `Retry-After` header's value in seconds, as the server sends it.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs)
}

/// Close codes after which reconnecting cannot help: protocol error, unsupported
/// data, invalid payload, message too big, missing extension.
const PERMANENT_CLOSE_CODES: [u16; 5] = [1002, 1003, 1007, 1009, 1010];

impl ClientError {
    /// True for outcomes that retrying cannot change: a refused key, origin or
    /// parameter (400, 401, 403, 404), a URL that is not the WebSocket, a close code
    /// the server documents as permanent, a bad option, an unreadable certificate.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Refused { status, .. } => matches!(status, 400..=499) && *status != 429,
            ClientError::NotWebSocket { .. } | ClientError::Url(_) | ClientError::Tls(_) => true,
            ClientError::Closed { code, .. } => PERMANENT_CLOSE_CODES.contains(code),
            ClientError::WebSocket(tungstenite::Error::Tls(_)) => true,
            _ => false,
        }
    }

    /// The HTTP status, for refusals.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::NotWebSocket { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// How long the server asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// An HTTP answer that is an error: the status, the JSON reason, the field.
    pub(crate) fn refused(status: u16, body: &[u8], retry_after: Option<Duration>) -> ClientError {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let text = |key: &str| {
            json.as_ref()
                .and_then(|j| j.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        ClientError::Refused {
            status,
            error: text("error").unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned()),
            field: text("field"),
            step: json
                .as_ref()
                .and_then(|j| j.get("step"))
                .and_then(|v| v.as_u64()),
            retry_after,
        }
    }

    /// Sorts a failed WebSocket handshake to `url`.
    pub(crate) fn from_handshake(url: &str, error: tungstenite::Error) -> ClientError {
        match error {
            tungstenite::Error::Http(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                );
                let body = response.body().as_deref().unwrap_or_default();
                if status >= 400 {
                    ClientError::refused(status, body, retry_after)
                } else {
                    ClientError::NotWebSocket {
                        url: url.to_owned(),
                        status,
                    }
                }
            }
            tungstenite::Error::Io(e) => ClientError::Connect {
                url: url.to_owned(),
                reason: e.to_string(),
            },
            tungstenite::Error::Url(e) => ClientError::Url(e.to_string()),
            other => ClientError::WebSocket(other),
        }
    }
}
