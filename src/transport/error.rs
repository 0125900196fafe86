//! [`ApiError`]: the one error type every HTTP answer and every refused upgrade is
//! made from, with a precise status and a JSON body naming the field at fault.

use std::time::Duration;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::{codec::DecodeError, hub::HubError, metrics::RejectReason, model::InvalidState};

/// Every error a route can answer with: a precise status and a JSON body
/// `{"ok":false,"error":"…","field":"…"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key or a wrong key.
    #[error("missing or invalid API key (send it as X-API-Key)")]
    Unauthorized,
    /// The browser origin is not in `ALLOWED_ORIGINS`.
    #[error("origin {0:?} is not allowed (ALLOWED_ORIGINS)")]
    Forbidden(String),
    /// The body is over the size limit.
    #[error("body is larger than the limit of {0} bytes (PCC_MAX_BODY_BYTES)")]
    PayloadTooLarge(usize),
    /// Over the producer rate limit.
    #[error("rate limited: more than {rate} states per second from this producer (PCC_PRODUCER_RATE_LIMIT)")]
    RateLimited {
        /// The limit.
        rate: u32,
        /// When to try again.
        retry_after: Duration,
    },
    /// A WebSocket upgrade through a trusted proxy from a client over the per-IP
    /// connection rate (a direct client over it is closed at accept instead).
    #[error("rate limited: more than {rate} new connections per second from this client (PCC_CONNECTION_RATE_LIMIT)")]
    ConnectionRateLimited {
        /// The limit.
        rate: u32,
        /// When to try again.
        retry_after: Duration,
    },
    /// Not JSON / protobuf at all, or a body that could not be read.
    #[error("{0}")]
    Malformed(String),
    /// A field is missing, of the wrong type or invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidState),
    /// A query parameter is invalid.
    #[error("{name}: {reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A request to a WebSocket endpoint that is not a WebSocket upgrade.
    #[error("not a WebSocket upgrade: {name} {reason}")]
    NotWebSocket {
        /// The header (or `method`) at fault.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stream problem.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A limit on connections is reached.
    #[error("{0}")]
    Unavailable(String),
    /// No such route.
    #[error("no such endpoint; see GET / for the list")]
    NotFound,
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Invalid(i) => ApiError::Invalid(i),
            m @ DecodeError::Malformed { .. } => ApiError::Malformed(m.to_string()),
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::ConnectionRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Malformed(_)
            | ApiError::BadParameter { .. }
            | ApiError::NotWebSocket { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Hub(HubError::InvalidStreamName(_)) => StatusCode::BAD_REQUEST,
            ApiError::Hub(
                HubError::TooManyStreams(_) | HubError::NoMemoryForStream { .. } | HubError::Log(_),
            )
            | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Hub(HubError::OverBudget { .. } | HubError::OverShare { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::Hub(HubError::LargerThanBudget { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Hub(HubError::UnknownStream(_)) | ApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The field or parameter at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid(i) => Some(&i.field),
            ApiError::BadParameter { name, .. } | ApiError::NotWebSocket { name, .. } => Some(name),
            ApiError::Hub(HubError::InvalidStreamName(_) | HubError::UnknownStream(_)) => {
                Some("stream")
            }
            _ => None,
        }
    }

    /// How this error counts among rejected producer inputs.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        Some(match self {
            ApiError::Unauthorized => RejectReason::Unauthorized,
            ApiError::PayloadTooLarge(_) => RejectReason::TooLarge,
            ApiError::RateLimited { .. } => RejectReason::RateLimited,
            ApiError::Malformed(_) => RejectReason::Malformed,
            ApiError::Invalid(_) | ApiError::Hub(HubError::InvalidStreamName(_)) => {
                RejectReason::Invalid
            }
            ApiError::Hub(HubError::TooManyStreams(_)) => RejectReason::StreamLimit,
            ApiError::Hub(
                HubError::NoMemoryForStream { .. }
                | HubError::OverBudget { .. }
                | HubError::OverShare { .. }
                | HubError::LargerThanBudget { .. },
            ) => RejectReason::MemoryLimit,
            ApiError::Hub(HubError::Log(_)) => RejectReason::LogUnavailable,
            _ => return None,
        })
    }

    /// The JSON body: `error` says what happened; `field` names the field at fault,
    /// `reason` the limit reached (`memory_limit`, `stream_limit`, `rate_limited`…),
    /// where there is one.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"ok": false, "error": self.to_string()});
        if let Some(f) = self.field() {
            body["field"] = f.into();
        }
        if let Some(r) = self.reject_reason().filter(|r| r.is_limit()) {
            body["reason"] = r.as_str().into();
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::ConnectionRateLimited { retry_after, .. } => Some(*retry_after),
            // Memory comes back as histories shorten and subscribers leave.
            ApiError::Hub(
                HubError::NoMemoryForStream { .. }
                | HubError::OverBudget { .. }
                | HubError::OverShare { .. },
            ) => Some(Duration::from_secs(1)),
            // The broker client reconnects by itself.
            ApiError::Hub(HubError::Log(_)) => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(after) = retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_fields() {
        let e = ApiError::from(DecodeError::Invalid(InvalidState::new("phases[2]", "bad")));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body()["field"], "phases[2]");
        assert_eq!(e.body()["ok"], false);
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::Hub(HubError::TooManyStreams(3)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let limited = ApiError::RateLimited {
            rate: 5,
            retry_after: Duration::from_millis(200),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
        let upgrade = ApiError::ConnectionRateLimited {
            rate: 2,
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(upgrade.reject_reason(), None, "not a producer input");
        let upgrade = upgrade.into_response();
        assert_eq!(upgrade.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(upgrade.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn memory_refusals_name_their_limit() {
        let cases = [
            (
                HubError::NoMemoryForStream {
                    used: 95,
                    limit: 100,
                    ceiling: crate::memory::Fraction(90),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                HubError::OverBudget {
                    bytes: 10,
                    used: 95,
                    limit: 100,
                },
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (
                HubError::OverShare {
                    held: 80,
                    used: 91,
                    limit: 100,
                    ceiling: crate::memory::Fraction(90),
                },
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (
                HubError::LargerThanBudget {
                    bytes: 200,
                    limit: 100,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (e, status) in cases {
            let e = ApiError::Hub(e);
            assert_eq!(e.status(), status);
            assert_eq!(e.body()["reason"], "memory_limit", "{e}");
            assert!(e.to_string().contains("PCC_MEMORY_LIMIT"), "{e}");
        }
    }
}
