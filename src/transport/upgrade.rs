//! The WebSocket handshake (RFC 6455, HTTP/1.1): checks an upgrade request (a JSON
//! error naming the header at fault when it is not one), answers it with 101 and the
//! subprotocol chosen, and runs the session on the upgraded connection.

use std::future::Future;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig},
    WebSocketStream,
};
use tracing::debug;

use super::ApiError;

/// The connection hyper upgraded.
pub(super) type Io = TokioIo<Upgraded>;

/// A WebSocket over it.
pub(super) type Socket = WebSocketStream<Io>;

/// An upgraded connection as the socket it is, where that is known.
pub(super) enum Connection {
    /// A plain TCP connection, with the bytes the client sent after its request that
    /// hyper already read.
    Tcp {
        /// The socket.
        stream: TcpStream,
        /// Bytes read past the request.
        read: Bytes,
    },
    /// Anything else (TLS).
    Other(Io),
}

impl Connection {
    /// Moves a TCP connection's socket to the reactor of the runtime this is called
    /// on (the fan-out's), so its readiness is not waited for on the one that
    /// accepted it. Must be called from within a runtime.
    pub(super) fn rehome(self) -> std::io::Result<Connection> {
        match self {
            Connection::Tcp { stream, read } => Ok(Connection::Tcp {
                stream: TcpStream::from_std(stream.into_std()?)?,
                read,
            }),
            other @ Connection::Other(_) => Ok(other),
        }
    }

    fn of(upgraded: Upgraded) -> Connection {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Connection::Tcp {
                stream: parts.io.into_inner(),
                read: parts.read_buf,
            },
            Err(upgraded) => Connection::Other(TokioIo::new(upgraded)),
        }
    }
}

/// A WebSocket upgrade request that passed the handshake's checks.
pub(super) struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The subprotocols the client offered, in its order.
    requested: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Upgrade, Response> {
        use axum::response::IntoResponse;
        Upgrade::check(parts).map_err(IntoResponse::into_response)
    }
}

impl Upgrade {
    fn check(parts: &mut Parts) -> Result<Upgrade, ApiError> {
        let refuse = |name, reason: &str| ApiError::NotWebSocket {
            name,
            reason: reason.to_owned(),
        };
        if parts.method != Method::GET {
            return Err(refuse("method", "a WebSocket upgrade is a GET"));
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(refuse("connection", "must include \"upgrade\""));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse("upgrade", "must be \"websocket\""));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or_else(|| refuse("sec-websocket-key", "is missing"))?;
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refuse("sec-websocket-version", "must be 13"));
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse("connection", "this connection cannot be upgraded"))?;
        let requested = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Upgrade {
            key,
            on_upgrade,
            requested,
        })
    }

    /// The subprotocols the client offered.
    pub(super) fn requested_protocols(&self) -> &[String] {
        &self.requested
    }

    /// Answers 101 and, once hyper has upgraded the connection, runs `session` on it
    /// as a WebSocket with `config`.
    pub(super) fn on_upgrade<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.upgrade(None, move |upgraded| async move {
            let io = TokioIo::new(upgraded);
            session(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await).await
        })
    }

    /// Answers 101 (naming `protocol` if the client offered it) and, once hyper has
    /// upgraded the connection, runs `session` on it as the socket it is.
    pub(super) fn on_connection<F, Fut>(self, protocol: &str, session: F) -> Response
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.upgrade(Some(protocol), move |upgraded| {
            session(Connection::of(upgraded))
        })
    }

    fn upgrade<F, Fut>(self, protocol: Option<&str>, session: F) -> Response
    where
        F: FnOnce(Upgraded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => session(upgraded).await,
                Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                derive_accept_key(self.key.as_bytes()),
            );
        if let Some(protocol) = protocol.filter(|p| self.requested.iter().any(|r| r == p)) {
            response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        response
            .body(Body::empty())
            .expect("the handshake's headers are valid")
    }
}

/// Whether a comma-separated header holds `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_request_that_is_not_an_upgrade_is_refused_naming_the_header() {
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let field = |method, skip: &str, replace: Option<(&str, &str)>| {
            let mut headers: Vec<(&str, &str)> =
                good.iter().copied().filter(|(n, _)| *n != skip).collect();
            headers.extend(replace);
            let error = Upgrade::check(&mut parts(method, &headers)).err().unwrap();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            error.field().unwrap().to_owned()
        };
        assert_eq!(field("POST", "", None), "method");
        assert_eq!(field("GET", "connection", None), "connection");
        assert_eq!(field("GET", "upgrade", Some(("upgrade", "h2c"))), "upgrade");
        assert_eq!(field("GET", "sec-websocket-key", None), "sec-websocket-key");
        let old = Some(("sec-websocket-version", "8"));
        assert_eq!(
            field("GET", "sec-websocket-version", old),
            "sec-websocket-version"
        );
        // Every header right, but no connection hyper could upgrade behind it.
        assert_eq!(field("GET", "", None), "connection");
    }

    #[test]
    fn the_accept_key_is_the_rfcs_example() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
