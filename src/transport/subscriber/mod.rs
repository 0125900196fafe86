//! `GET /ws`: a subscriber's negotiation (origin, key, query parameters and
//! subprotocol, the stream, a subscriber slot), then one [`session`] per socket.

mod delivery;
mod session;
mod wire;

use std::time::Duration;

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    Extension,
};
use serde::Deserialize;
use tracing::{debug, warn};

use self::session::Session;
use super::{
    access::{origin_allowed, subscriber_authorized},
    client_addr::ClientAddr,
    peer::close_within,
    upgrade::Upgrade,
    ApiError, AppState,
};
use crate::{
    codec::Encoding,
    fanout::{Resume, Wants},
    hub::DEFAULT_STREAM,
    projection::Projection,
    stream::Classes,
};

/// Read buffer per subscriber: they send only tiny control messages, and
/// tungstenite's 128 KiB default would be held (and zeroed) for every socket.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// The least backlog cap: a subscriber's writes may always leave this much waiting.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// `/ws` query parameters, all optional and checked by hand so that an error names
/// the parameter.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SubscribeQuery {
    format: Option<String>,
    delta: Option<String>,
    max_hz: Option<String>,
    resume: Option<String>,
    epoch: Option<String>,
    stream: Option<String>,
    key: Option<String>,
    epsilon: Option<String>,
    fields: Option<String>,
}

/// What a subscriber asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Format, deltas and rate: what its feed needs.
    pub wants: Wants,
    /// The state the subscriber holds: its seq and epoch.
    pub resume: Option<Resume>,
    /// Stream name.
    pub stream: String,
}

/// Parses a `/ws` query string (and the requested subprotocols) as the server does.
///
/// # Errors
/// [`ApiError::BadParameter`] naming the parameter at fault.
pub fn parse_subscription(
    query: &str,
    default: Encoding,
    classes: &Classes,
    requested_protocols: &[String],
) -> Result<Subscription, ApiError> {
    let query: SubscribeQuery =
        serde_urlencoded::from_str(query).map_err(|e| bad("query", e.to_string()))?;
    query.into_subscription(default, classes, requested_protocols)
}

fn bad(name: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        name,
        reason: reason.into(),
    }
}

impl SubscribeQuery {
    fn into_subscription(
        self,
        default: Encoding,
        classes: &Classes,
        requested_protocols: &[String],
    ) -> Result<Subscription, ApiError> {
        let encoding = match &self.format {
            Some(f) => f.parse().map_err(|e| bad("format", format!("{e}")))?,
            None => requested_protocols
                .iter()
                .find_map(|p| Encoding::from_subprotocol(p))
                .unwrap_or(default),
        };
        let deltas = match self.delta.as_deref() {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => return Err(bad("delta", format!("{other:?} is not true or false"))),
        };
        let min_interval = match &self.max_hz {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(hz) if hz.is_finite() && hz >= MIN_MAX_HZ => {
                    Some(Duration::from_secs_f64(1.0 / hz))
                }
                _ => {
                    return Err(bad(
                        "max_hz",
                        format!("{text:?} is not a rate of at least {MIN_MAX_HZ} frames a second"),
                    ))
                }
            },
        };
        let resume = match (&self.resume, self.epoch) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(bad(
                    "epoch",
                    "is only meaningful with resume (?resume=SEQ&epoch=EPOCH)",
                ))
            }
            (Some(text), epoch) => {
                let seq = text
                    .parse::<u64>()
                    .map_err(|_| bad("resume", format!("{text:?} is not a seq")))?;
                if let Some(e) = &epoch {
                    if e.is_empty() || e.len() > MAX_EPOCH_LEN {
                        return Err(bad(
                            "epoch",
                            format!(
                                "must be 1 to {MAX_EPOCH_LEN} characters, as a full frame gave it"
                            ),
                        ));
                    }
                }
                Some(Resume { seq, epoch })
            }
        };
        let class = match &self.epsilon {
            None => classes.default_class(),
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|e| classes.find(e))
                .ok_or_else(|| {
                    let offered: Vec<String> = classes.epsilons().map(|e| e.to_string()).collect();
                    bad(
                        "epsilon",
                        format!(
                            "{text:?} is not a precision class of this server: use one of {} \
                             (PCC_PRECISION_CLASSES)",
                            offered.join(", ")
                        ),
                    )
                })?,
        };
        let projection = match &self.fields {
            None => Projection::DEFAULT,
            Some(text) => text
                .parse::<Projection>()
                .map_err(|e| bad("fields", e.to_string()))?,
        };
        Ok(Subscription {
            wants: Wants {
                encoding,
                deltas,
                min_interval,
                class,
                projection,
            },
            resume,
            stream: self.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned()),
        })
    }
}

/// The longest epoch a subscriber may send (the server's are far shorter).
const MAX_EPOCH_LEN: usize = 64;

/// The lowest `max_hz`: one frame every 100 s. (Far lower rates made an interval too
/// long for a `Duration`, a panic the fuzzer found with `max_hz=5e-55`.)
const MIN_MAX_HZ: f64 = 0.01;

/// `GET /ws`: checks origin, key and parameters, then upgrades.
pub(super) async fn subscribe(
    State(app): State<AppState>,
    Extension(peer): Extension<ClientAddr>,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
    upgrade: Upgrade,
) -> Response {
    let prepared = (|| {
        origin_allowed(
            app.config.subscriber.allowed_origins.as_deref(),
            &headers,
            peer.forwarded_host(&headers),
        )?;
        let Query(query) = query.map_err(|e| bad("query", e.body_text()))?;
        let expected = app.config.subscriber.subscribe_key.as_deref();
        if !subscriber_authorized(expected, &headers, query.key.as_deref()) {
            return Err(ApiError::Unauthorized);
        }
        let subscription = query.into_subscription(
            app.config.wire_format,
            &Classes::of(&app.config.stream),
            upgrade.requested_protocols(),
        )?;
        let stream = app.hub.subscribe_to(&subscription.stream)?;
        Ok((subscription, stream))
    })();
    let (subscription, stream) = match prepared {
        Ok(p) => p,
        Err(e) => {
            debug!(%peer, error = %e, "subscriber refused");
            return e.into_response();
        }
    };
    let protocol = subscription.wants.encoding.subprotocol();
    // Joined now, before the 101: every state published after the client saw it is
    // the client's, however long its session takes to start.
    let session = app
        .subscriber_slots
        .clone()
        .try_acquire_owned()
        .ok()
        .map(|permit| Session::new(app.clone(), peer, stream, subscription, permit));
    let tracker = app.tracker.clone();
    let fanout = app.fanout.handle().clone();
    upgrade.on_connection(protocol, move |connection| {
        // The session runs on the fan-out's runtime, its socket on that runtime's
        // reactor: nothing a subscriber does waits on the runtime that takes states.
        tracker.spawn_on(
            async move {
                let connection = match connection.rehome() {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(%peer, error = %e, "subscriber socket could not be moved");
                        return;
                    }
                };
                let Some(session) = session else {
                    warn!(%peer, "subscriber refused: subscriber limit reached");
                    let (_, mut socket) = session::socket(connection, &app.config.subscriber).await;
                    close_within(
                        &mut socket,
                        1013,
                        "subscriber limit reached (PCC_MAX_SUBSCRIBERS)",
                        Duration::from_secs(1),
                    )
                    .await;
                    return;
                };
                session.run(connection).await;
            },
            &fanout,
        );
        std::future::ready(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lossless (the default), 10⁻³ and 10⁻².
    fn classes() -> Classes {
        let t = |e| crate::delta::Tolerance::new(e).unwrap();
        Classes::new(t(0.0), &[t(0.001), t(0.01)])
    }

    fn query(pairs: &[(&str, &str)]) -> SubscribeQuery {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_urlencoded::from_str(&text.join("&")).unwrap()
    }

    #[test]
    fn parameters_are_parsed_and_errors_name_them() {
        let s = query(&[
            ("format", "proto"),
            ("delta", "false"),
            ("max_hz", "30"),
            ("resume", "9"),
            ("epoch", "19b2c3d4e5f60718"),
            ("stream", "lab"),
        ])
        .into_subscription(Encoding::Json, &classes(), &[])
        .unwrap();
        assert_eq!(s.wants.encoding, Encoding::Protobuf);
        assert!(!s.wants.deltas);
        assert_eq!(
            s.resume,
            Some(Resume {
                seq: 9,
                epoch: Some("19b2c3d4e5f60718".into())
            })
        );
        assert_eq!(s.stream, "lab");
        assert!((s.wants.min_interval.unwrap().as_secs_f64() - 1.0 / 30.0).abs() < 1e-9);

        let d = query(&[])
            .into_subscription(Encoding::Protobuf, &classes(), &[])
            .unwrap();
        assert_eq!(
            (d.wants.encoding, d.wants.deltas, d.stream.as_str()),
            (Encoding::Protobuf, true, "default")
        );

        let via_protocol = query(&[])
            .into_subscription(Encoding::Json, &classes(), &["pcc.v1.protobuf".to_owned()])
            .unwrap();
        assert_eq!(via_protocol.wants.encoding, Encoding::Protobuf);

        for (name, value) in [
            ("format", "xml"),
            ("delta", "maybe"),
            ("max_hz", "0"),
            ("max_hz", "fast"),
            // Found by the fuzzer: the interval overflowed a Duration and panicked.
            ("max_hz", "5e-55"),
            ("max_hz", "0.009"),
            ("resume", "-1"),
            // An epoch names the numbering of a seq: alone it says nothing.
            ("epoch", "19b2c3d4e5f60718"),
            ("epsilon", "0.002"),
            ("epsilon", "NaN"),
            ("epsilon", "fine"),
            ("fields", ""),
            ("fields", "phases,colour"),
        ] {
            let err = query(&[(name, value)])
                .into_subscription(Encoding::Json, &classes(), &[])
                .unwrap_err();
            assert_eq!(err.field(), Some(name), "{name}={value}");
        }
        let err = query(&[("epsilon", "0.5")])
            .into_subscription(Encoding::Json, &classes(), &[])
            .unwrap_err();
        assert!(err.to_string().contains("0, 0.001, 0.01"), "{err}");

        let shaped = query(&[("epsilon", "1e-3"), ("fields", "summary,phases")])
            .into_subscription(Encoding::Json, &classes(), &[])
            .unwrap();
        assert_eq!(shaped.wants.class, 1);
        assert_eq!(shaped.wants.projection.to_string(), "phases,summary");
        assert_eq!(d.wants.class, 0);
        assert!(d.wants.projection.is_default());

        let long = "e".repeat(MAX_EPOCH_LEN + 1);
        let err = query(&[("resume", "3"), ("epoch", &long)])
            .into_subscription(Encoding::Json, &classes(), &[])
            .unwrap_err();
        assert_eq!(err.field(), Some("epoch"));
    }
}
