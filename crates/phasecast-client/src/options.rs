//! [`SubscribeOptions`]: every option a subscriber takes, with builder methods, and
//! the `/ws` URL they make.

use std::{fmt, sync::Arc, time::Duration};

use phasecast_wire::{codec::Encoding, projection::Projection};

use crate::{backoff::Backoff, url, Event, TlsConfig};

/// A callback for connection events (see [`Event`]).
pub type EventHandler = Arc<dyn Fn(&Event) + Send + Sync>;

/// How to subscribe. Start with [`SubscribeOptions::new`] and chain the builders.
#[derive(Clone)]
pub struct SubscribeOptions {
    /// The `/ws` URL (`ws://host:8787/ws`, `wss://…`); an empty path or `/` gets
    /// `/ws`. Parameters in it are kept unless an option below sets the same one.
    pub url: String,
    /// Encoding; `None` keeps the URL's `format` or the server's default.
    pub encoding: Option<Encoding>,
    /// Ask for deltas (`false`: full frames only); `None` keeps the URL's or the default.
    pub deltas: Option<bool>,
    /// At most this many frames a second.
    pub max_hz: Option<f64>,
    /// Precision class: phases held within this many radians of the producer's (one
    /// of the server's classes, `/health` `precision_classes`); `None` keeps the URL's
    /// or the server's default.
    pub epsilon: Option<f64>,
    /// The parts of each state to take (`?fields=`); `None` keeps the URL's or the
    /// whole state.
    pub fields: Option<Projection>,
    /// Stream name; `None` keeps the URL's `stream` or the default stream.
    pub stream: Option<String>,
    /// Subscriber key, sent as `X-API-Key`.
    pub key: Option<String>,
    /// Seq of a state already held, to resume from (with
    /// [`Subscriber::connect_holding`](crate::Subscriber::connect_holding), which is
    /// given the state).
    pub resume: Option<u64>,
    /// The epoch that seq belongs to (from the full frame that brought the state):
    /// the server resumes only within it.
    pub resume_epoch: Option<String>,
    /// Other nodes serving the same streams: a [`Subscription`](crate::Subscription)
    /// that loses its connection tries the next URL in turn (`url` first, then these).
    pub fallback_urls: Vec<String>,
    /// Roots trusted for `wss://`.
    pub tls: TlsConfig,
    /// Tries for the first connection before giving up (later reconnections retry
    /// without limit).
    pub first_connect_tries: u32,
    /// Time for each connection and handshake.
    pub connect_timeout: Duration,
    /// Waits between reconnection tries.
    pub backoff: Backoff,
    /// Called on every connection event.
    pub on_event: Option<EventHandler>,
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("url", &self.url)
            .field("encoding", &self.encoding)
            .field("deltas", &self.deltas)
            .field("max_hz", &self.max_hz)
            .field("epsilon", &self.epsilon)
            .field("fields", &self.fields)
            .field("stream", &self.stream)
            .field("key", &self.key.as_ref().map(|_| "…"))
            .field("resume", &self.resume)
            .field("resume_epoch", &self.resume_epoch)
            .field("fallback_urls", &self.fallback_urls)
            .field("first_connect_tries", &self.first_connect_tries)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl SubscribeOptions {
    /// Defaults: what the URL says, else the server's encoding, deltas on, the default
    /// stream; 5 first-connect tries of 4 s each; back-off from 250 ms to 10 s.
    pub fn new(url: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions {
            url: url.into(),
            encoding: None,
            deltas: None,
            max_hz: None,
            epsilon: None,
            fields: None,
            stream: None,
            key: None,
            resume: None,
            resume_epoch: None,
            fallback_urls: Vec::new(),
            tls: TlsConfig::default(),
            first_connect_tries: 5,
            connect_timeout: Duration::from_secs(4),
            backoff: Backoff::default(),
            on_event: None,
        }
    }

    /// With this encoding.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
    }

    /// With (or without) deltas.
    pub fn deltas(mut self, deltas: bool) -> Self {
        self.deltas = Some(deltas);
        self
    }

    /// At most `hz` frames a second.
    pub fn max_hz(mut self, hz: f64) -> Self {
        self.max_hz = Some(hz);
        self
    }

    /// In the precision class `epsilon` (radians; 0 is lossless).
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = Some(epsilon);
        self
    }

    /// Taking only the parts in `fields` (`"summary,phases".parse()`): the state held
    /// has the others empty (no phases, no spins, energy 0, no timestamp).
    pub fn fields(mut self, fields: Projection) -> Self {
        self.fields = Some(fields);
        self
    }

    /// On the stream `name`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// With the subscriber key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Holding the state with seq `seq` of the stream's epoch `epoch` already (both
    /// from the frames that built it): the first frame is then a delta from it while
    /// the server still has it. The server resumes only within the epoch.
    pub fn resume(mut self, epoch: impl Into<String>, seq: u64) -> Self {
        self.resume = Some(seq);
        self.resume_epoch = Some(epoch.into());
        self
    }

    /// Another node to try when the connection is lost.
    pub fn fallback_url(mut self, url: impl Into<String>) -> Self {
        self.fallback_urls.push(url.into());
        self
    }

    /// Trusting the roots of `tls` for `wss://`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// With `tries` tries for the first connection (at least one).
    pub fn first_connect_tries(mut self, tries: u32) -> Self {
        self.first_connect_tries = tries.max(1);
        self
    }

    /// With this time for each connection and handshake.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// With this back-off between reconnection tries.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff { base, cap };
        self
    }

    /// Calling `handler` on every connection event.
    pub fn on_event(mut self, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(handler));
        self
    }

    /// The `/ws` URL for the first node, with its query.
    pub fn ws_url(&self) -> String {
        self.url_for(&self.url)
    }

    /// The `/ws` URL for `base`: its own parameters, with every option given replacing
    /// the parameter of the same name.
    pub(crate) fn url_for(&self, base: &str) -> String {
        let mut set: Vec<(&str, Option<String>)> = Vec::new();
        if let Some(e) = self.encoding {
            set.push(("format", Some(e.to_string())));
        }
        if let Some(d) = self.deltas {
            set.push(("delta", Some(d.to_string())));
        }
        if let Some(hz) = self.max_hz {
            set.push(("max_hz", Some(hz.to_string())));
        }
        if let Some(e) = self.epsilon {
            set.push(("epsilon", Some(e.to_string())));
        }
        if let Some(f) = self.fields {
            set.push(("fields", Some(f.to_string())));
        }
        if let Some(s) = &self.stream {
            set.push(("stream", Some(s.clone())));
        }
        // The client's own: always from the state it holds.
        set.push(("resume", self.resume.map(|r| r.to_string())));
        let epoch = self.resume.and(self.resume_epoch.clone());
        set.push(("epoch", epoch));
        url::with_query(base, &set)
    }

    /// The encoding asked for: the option, else the URL's `format`.
    pub(crate) fn asked_encoding(&self) -> Option<Encoding> {
        self.encoding
            .or_else(|| url::param(&self.url, "format").and_then(|f| f.parse().ok()))
    }

    pub(crate) fn emit(&self, event: &Event) {
        if let Some(handler) = &self.on_event {
            handler(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_win_over_url_parameters_and_none_are_dropped() {
        let o = SubscribeOptions::new("ws://h:8787/ws?stream=lab1&format=json&x=1")
            .encoding(Encoding::Protobuf)
            .max_hz(30.0)
            .resume("e9", 7);
        assert_eq!(
            o.ws_url(),
            "ws://h:8787/ws?stream=lab1&x=1&format=protobuf&max_hz=30&resume=7&epoch=e9"
        );
        let shaped = SubscribeOptions::new("ws://h/ws?epsilon=0.01")
            .epsilon(0.001)
            .fields("summary,phases".parse().unwrap());
        assert_eq!(
            shaped.ws_url(),
            "ws://h/ws?epsilon=0.001&fields=phases%2Csummary"
        );
        let resumed = SubscribeOptions::new("ws://h/ws?epoch=old&resume=1").resume("e9", 12);
        assert_eq!(resumed.ws_url(), "ws://h/ws?resume=12&epoch=e9");
        // No seq held: neither is sent, whatever the URL said.
        assert_eq!(
            SubscribeOptions::new("ws://h/ws?epoch=old&resume=1").ws_url(),
            "ws://h/ws"
        );
        let kept = SubscribeOptions::new("ws://h:8787?stream=lab1");
        assert_eq!(kept.ws_url(), "ws://h:8787/ws?stream=lab1");
        assert_eq!(
            SubscribeOptions::new("ws://h/ws?format=proto").asked_encoding(),
            Some(Encoding::Protobuf)
        );
        let encoded = SubscribeOptions::new("ws://h").stream("a&b");
        assert_eq!(encoded.ws_url(), "ws://h/ws?stream=a%26b");
    }
}
