//! Every metric phasecast exports: OpenTelemetry instruments, rendered in Prometheus
//! text format on `GET /metrics` by the `opentelemetry-prometheus` exporter.
//!
//! The rest of the code records through the named methods of [`Metrics`]; no metric
//! name appears anywhere else. Counters on the per-frame, per-subscriber path are plain
//! atomics read by observable OpenTelemetry counters at scrape time, so recording a
//! frame costs a few relaxed atomic adds: no lock, no allocation, no attribute lookup.
//!
//! Names are chosen so that the exporter's suffixes (`_total` for counters, the unit
//! for instruments that have one) give exactly the names existing dashboards use.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use opentelemetry::{
    metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter},
    KeyValue,
};
use opentelemetry_sdk::{metrics::SdkMeterProvider, Resource};
use prometheus::{Encoder as _, TextEncoder};

use tokio_util::task::TaskTracker;

use crate::{
    codec::{Encoding, FrameKind},
    memory::Budget,
};

/// A metric label's values as an enum: each variant with its label value, and `ALL`
/// in a fixed order (so every value can be exported at zero from the start).
macro_rules! label_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

label_enum! {
    /// Why frames meant for a subscriber were not sent to it.
    pub enum DropReason {
        /// The subscriber fell behind; it skipped to the newest state by a delta.
        Conflated => "conflated",
        /// The subscriber was closed for being too slow.
        Disconnected => "disconnected",
        /// A producer's state was refused.
        Rejected => "rejected",
    }
}

label_enum! {
    /// Why a producer's input was refused.
    pub enum RejectReason {
        /// Not JSON / protobuf.
        Malformed => "malformed",
        /// A field missing, of the wrong type, or out of range.
        Invalid => "invalid",
        /// Missing or wrong API key.
        Unauthorized => "unauthorized",
        /// Body over the size limit.
        TooLarge => "too_large",
        /// Over the producer rate limit.
        RateLimited => "rate_limited",
        /// A new stream past the stream limit.
        StreamLimit => "stream_limit",
        /// The memory budget has no room for it (`PCC_MEMORY_LIMIT`).
        MemoryLimit => "memory_limit",
        /// Nodes on a broker: the stream's log did not take it (broker unreachable,
        /// or no confirmation within `PCC_NATS_APPEND_TIMEOUT`).
        LogUnavailable => "log_unavailable",
    }
}

impl RejectReason {
    /// Whether the input was refused for a limit reached rather than for what it is.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            RejectReason::RateLimited
                | RejectReason::StreamLimit
                | RejectReason::MemoryLimit
                | RejectReason::LogUnavailable
        )
    }
}

label_enum! {
    /// Why states meant for a subscriber were skipped (it got the newest as one delta).
    pub enum ConflateReason {
        /// It fell more than the outbox (`PCC_OUTBOX_FRAMES`) behind.
        Outbox => "outbox",
        /// Its reader was behind and the states waiting for it were older than the
        /// freshness bound (`PCC_FRESHNESS`).
        Freshness => "freshness",
    }
}

label_enum! {
    /// What the hub did to stay within the memory budget.
    pub enum MemoryAction {
        /// Histories were shortened (oldest states and cached frames given back).
        HistoryShortened => "history_shortened",
        /// A state that would have created a stream was refused (503).
        StreamRefused => "stream_refused",
        /// A state for an existing stream was refused (507, or 413 past the budget).
        StateRefused => "state_refused",
    }
}

label_enum! {
    /// Why a subscriber connection ended.
    pub enum CloseReason {
        /// The client closed it with a close frame.
        Client => "client",
        /// The client went away without a close frame: a TCP FIN or reset (a browser
        /// tab closed, a process killed, a network gone). A departure, not a violation.
        Reset => "reset",
        /// Closed for being too slow (send timeout or backlog).
        Slow => "slow",
        /// No pong within the keep-alive window.
        PingTimeout => "ping_timeout",
        /// The server is shutting down.
        Shutdown => "shutdown",
        /// A protocol or I/O error.
        Error => "error",
        /// Refused by policy: a flood, an oversized message, a WebSocket protocol
        /// violation, or a control message naming an unknown op.
        Policy => "policy",
    }
}

label_enum! {
    /// Why a slow subscriber was disconnected.
    pub enum SlowReason {
        /// Its socket stayed unwritable past the send timeout.
        Timeout => "timeout",
        /// Its unsent backlog passed the byte limit.
        Backlog => "backlog",
    }
}

label_enum! {
    /// Why a state was not appended to its log, or a log entry not applied here.
    pub enum BusDrop {
        /// The log did not take a producer's state (the producer was refused).
        PublishFailed => "publish_failed",
        /// A log entry could not be decoded.
        Undecodable => "undecodable",
        /// A log entry at or below the stream's newest seq (read again after an error).
        Stale => "stale",
        /// A log entry for a stream past the stream limit.
        StreamLimit => "stream_limit",
        /// The memory budget had no room for a log entry.
        MemoryLimit => "memory_limit",
    }
}

label_enum! {
    /// Why a connection was refused before HTTP.
    pub enum RefusedConnection {
        /// Over the per-IP connection rate.
        RateLimited => "rate_limited",
        /// No complete request headers (or TLS handshake) in time.
        HandshakeTimeout => "handshake_timeout",
        /// The TLS handshake failed.
        Tls => "tls",
    }
}

/// Latency buckets, in seconds: resolve 50 µs up to 2.5 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// State age buckets, in seconds: a freshness bound of tens of milliseconds to
/// readers seconds behind.
const AGE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Frame size buckets, in bytes.
const SIZE_BUCKETS: [f64; 13] = [
    32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0, 262144.0,
    1048576.0,
];

/// Hot-path counters: atomics, read by observable instruments at scrape time.
#[derive(Default)]
struct Hot {
    connections: AtomicI64,
    producers: AtomicI64,
    broadcast: AtomicU64,
    dropped: [AtomicU64; 3],
    frames: [[AtomicU64; 2]; 2],
    bytes: [[AtomicU64; 2]; 2],
    /// What the frames sent would have cost as full frames: the saving ratio's denominator.
    full_equivalent_bytes: AtomicU64,
    /// 1 while the bus is connected.
    bus_connected: AtomicI64,
    /// The server's connection, session and background tasks.
    tasks: TaskTracker,
}

/// All of phasecast's instruments, and the registry `/metrics` renders.
pub struct Metrics {
    registry: prometheus::Registry,
    /// Keeps the pipeline alive; dropping it would stop collection.
    _provider: Option<SdkMeterProvider>,
    hot: Arc<Hot>,
    received: Counter<u64>,
    rejected_inputs: Counter<u64>,
    opened: Counter<u64>,
    closed: Counter<u64>,
    old_connections: Counter<u64>,
    old_disconnections: Counter<u64>,
    ignored_messages: Counter<u64>,
    keyframes: Counter<u64>,
    slow_disconnects: Counter<u64>,
    resumes: Counter<u64>,
    streams: UpDownCounter<i64>,
    bus_published: Counter<u64>,
    bus_received: Counter<u64>,
    bus_dropped: Counter<u64>,
    refused: Counter<u64>,
    memory_actions: Counter<u64>,
    conflated: Counter<u64>,
    history_shed: Counter<u64>,
    state_size: Histogram<u64>,
    frame_size: Histogram<u64>,
    processing: Histogram<f64>,
    decode: Histogram<f64>,
    latency: Histogram<f64>,
    state_age: Histogram<f64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Builds every instrument on a meter provider whose resource has
    /// `service.name = phasecast`, exported to a fresh Prometheus registry.
    ///
    /// With `enabled = false` the instruments are no-ops and `/metrics` is empty: the
    /// load benchmark's baseline for the cost of metrics. `tasks` is the tracker every
    /// connection, session and background task runs on (`phasecast_tasks`).
    ///
    /// # Errors
    /// When the Prometheus exporter cannot be built.
    pub fn new(
        enabled: bool,
        tasks: TaskTracker,
    ) -> Result<Metrics, opentelemetry_sdk::error::OTelSdkError> {
        Metrics::build(enabled, tasks, None)
    }

    /// [`Metrics::new`] for a server whose default subscriber format is `wire_format`:
    /// `mcp_service_info` (the old server's info metric) carries it as a label.
    ///
    /// # Errors
    /// When the Prometheus exporter cannot be built.
    pub fn for_server(
        enabled: bool,
        tasks: TaskTracker,
        wire_format: Encoding,
    ) -> Result<Metrics, opentelemetry_sdk::error::OTelSdkError> {
        Metrics::build(enabled, tasks, Some(wire_format))
    }

    fn build(
        enabled: bool,
        tasks: TaskTracker,
        wire_format: Option<Encoding>,
    ) -> Result<Metrics, opentelemetry_sdk::error::OTelSdkError> {
        let registry = prometheus::Registry::new();
        let provider = if enabled {
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .scope_info_enabled(false)
                .build()?;
            Some(
                SdkMeterProvider::builder()
                    .with_reader(exporter)
                    .with_resource(Resource::builder().with_service_name("phasecast").build())
                    .build(),
            )
        } else {
            None
        };
        let meter = match &provider {
            Some(p) => p.meter("phasecast"),
            None => opentelemetry::metrics::noop::NoopMeterProvider::new().meter("phasecast"),
        };
        let hot = Arc::new(Hot {
            tasks,
            ..Hot::default()
        });
        register_hot(&meter, &hot);
        meter
            .u64_observable_gauge("phasecast_build_info")
            .with_description("Build of the running server; always 1")
            .with_callback(|o| o.observe(1, &[KeyValue::new("version", env!("CARGO_PKG_VERSION"))]))
            .build();
        let mut info = vec![
            KeyValue::new("service", "phasecast"),
            KeyValue::new("version", env!("CARGO_PKG_VERSION")),
        ];
        if let Some(format) = wire_format {
            info.push(KeyValue::new("wire_format", format.as_str()));
        }
        meter
            .u64_observable_gauge("mcp_service_info")
            .with_description("The service (the old server's info metric); always 1")
            .with_callback(move |o| o.observe(1, &info))
            .build();
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let metrics = Metrics {
            registry,
            received: counter("mcp_pcc_messages_received", "Producer states accepted"),
            rejected_inputs: counter(
                "phasecast_inputs_rejected",
                "Producer inputs refused, by reason",
            ),
            opened: counter(
                "phasecast_ws_connections_opened",
                "Subscriber WebSocket connections opened",
            ),
            closed: counter(
                "phasecast_ws_connections_closed",
                "Subscriber WebSocket connections closed, by reason",
            ),
            old_connections: counter(
                "mcp_ws_connections",
                "Subscriber WebSocket connections accepted (the old server's name)",
            ),
            old_disconnections: counter(
                "mcp_ws_disconnections",
                "Subscriber WebSocket connections ended, for any reason (the old server's name)",
            ),
            ignored_messages: counter(
                "phasecast_client_messages_ignored",
                "Text messages from subscribers that are not control messages (keep-alives and the like), read and ignored",
            ),
            keyframes: counter(
                "phasecast_keyframes",
                "Keyframes produced by streams, in every precision class",
            ),
            slow_disconnects: counter(
                "phasecast_slow_client_disconnects",
                "Subscribers closed for being too slow, by reason",
            ),
            resumes: counter(
                "phasecast_resumes",
                "Subscribers that asked to resume, by whether the state they held was still known",
            ),
            bus_published: counter(
                "phasecast_bus_published",
                "Producer states this node appended to their streams' logs (nodes on a broker)",
            ),
            bus_received: counter(
                "phasecast_bus_received",
                "Log entries this node read from the broker, whoever appended them",
            ),
            bus_dropped: counter(
                "phasecast_bus_dropped",
                "States not appended to their log, or log entries not applied here, by reason",
            ),
            refused: counter(
                "phasecast_connections_refused",
                "TCP connections closed before HTTP, by reason",
            ),
            memory_actions: counter(
                "phasecast_memory_actions",
                "What was done to stay within the memory budget (PCC_MEMORY_LIMIT), by action",
            ),
            conflated: counter(
                "phasecast_conflated_frames",
                "States a subscriber skipped to get the newest one as a single delta, by reason",
            ),
            history_shed: counter(
                "phasecast_history_shed",
                "Retained states dropped from histories early to stay within the memory budget",
            ),
            streams: meter
                .i64_up_down_counter("phasecast_streams")
                .with_description("Streams known")
                .build(),
            state_size: meter
                .u64_histogram("mcp_pcc_message_size")
                .with_description(
                    "Size of each producer state accepted, as received (the JSON body, or the protobuf one)",
                )
                .with_unit("By")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            frame_size: meter
                .u64_histogram("phasecast_frame_encoded_size")
                .with_description(
                    "Size of each encoded outgoing frame (once per encoding, not per subscriber)",
                )
                .with_unit("By")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            processing: meter
                .f64_histogram("mcp_pcc_message_processing")
                .with_description("Time to process one producer state and hand it off to the subscribers' fan-out (what the reply's processing_time_ms reports)")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            decode: meter
                .f64_histogram("phasecast_state_decode")
                .with_description("Time to decode and validate one producer state")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            latency: meter
                .f64_histogram("mcp_pcc_broadcast_latency")
                .with_description("From state accepted to frame written to a subscriber's socket")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            state_age: meter
                .f64_histogram("phasecast_subscriber_state_age")
                .with_description("How old the newest state a subscriber's reader has reached was when it reached it (at the pong of a probe written behind the frames)")
                .with_unit("s")
                .with_boundaries(AGE_BUCKETS.to_vec())
                .build(),
            _provider: provider,
            hot,
        };
        metrics.create_series();
        Ok(metrics)
    }

    /// Adds zero to every counter series, so each is exported from the start: a
    /// dashboard sees 0 rather than no data, and `rate()` does not miss the first event.
    fn create_series(&self) {
        let label = |k: &'static str, v: &'static str| [KeyValue::new(k, v)];
        self.received.add(0, &[]);
        self.opened.add(0, &[]);
        self.old_connections.add(0, &[]);
        self.old_disconnections.add(0, &[]);
        self.ignored_messages.add(0, &[]);
        self.keyframes.add(0, &[]);
        self.streams.add(0, &[]);
        for r in RejectReason::ALL {
            self.rejected_inputs.add(0, &label("reason", r.as_str()));
        }
        for r in CloseReason::ALL {
            self.closed.add(0, &label("reason", r.as_str()));
        }
        for r in SlowReason::ALL {
            self.slow_disconnects.add(0, &label("reason", r.as_str()));
        }
        for result in ["hit", "miss"] {
            self.resumes.add(0, &label("result", result));
        }
        self.bus_published.add(0, &[]);
        self.bus_received.add(0, &[]);
        for r in BusDrop::ALL {
            self.bus_dropped.add(0, &label("reason", r.as_str()));
        }
        for r in RefusedConnection::ALL {
            self.refused.add(0, &label("reason", r.as_str()));
        }
        for a in MemoryAction::ALL {
            self.memory_actions.add(0, &label("action", a.as_str()));
        }
        for r in ConflateReason::ALL {
            self.conflated.add(0, &label("reason", r.as_str()));
        }
        self.history_shed.add(0, &[]);
    }

    /// Exports `budget`: its limit, the bytes accounted in total and per stream.
    pub fn observe_memory(&self, budget: &Arc<Budget>) {
        let Some(provider) = &self._provider else {
            return;
        };
        let meter = provider.meter("phasecast");
        let b = budget.clone();
        meter
            .u64_observable_gauge("phasecast_memory_limit")
            .with_description("The memory budget for producers' data (PCC_MEMORY_LIMIT)")
            .with_unit("By")
            .with_callback(move |o| o.observe(b.limit() as u64, &[]))
            .build();
        let b = budget.clone();
        meter
            .u64_observable_gauge("phasecast_memory_accounted")
            .with_description("Bytes of producers' data held now (views, cached frames, bus queue), against the memory budget")
            .with_unit("By")
            .with_callback(move |o| o.observe(b.used() as u64, &[]))
            .build();
        let b = budget.clone();
        meter
            .u64_observable_gauge("phasecast_stream_memory")
            .with_description("Bytes of producers' data held now, per stream")
            .with_unit("By")
            .with_callback(move |o| {
                for (stream, bytes) in b.accounts() {
                    o.observe(bytes as u64, &[KeyValue::new("stream", stream)]);
                }
            })
            .build();
    }

    /// The hub did `action` to stay within the memory budget.
    pub fn memory_action(&self, action: MemoryAction) {
        self.memory_actions
            .add(1, &[KeyValue::new("action", action.as_str())]);
    }

    /// `states` retained states were dropped from a history early.
    pub fn history_shed(&self, states: usize) {
        if states > 0 {
            self.history_shed.add(states as u64, &[]);
        }
    }

    /// A connection was closed before HTTP.
    pub fn connection_refused(&self, reason: RefusedConnection) {
        self.refused
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// The bus connected (`true`) or lost its broker (`false`).
    pub fn bus_connected(&self, connected: bool) {
        self.hot.bus_connected.store(i64::from(connected), Relaxed);
    }

    /// Whether the bus is connected now.
    pub fn is_bus_connected(&self) -> bool {
        self.hot.bus_connected.load(Relaxed) == 1
    }

    /// An update was published to the other nodes.
    pub fn bus_published(&self) {
        self.bus_published.add(1, &[]);
    }

    /// An update arrived from another node.
    pub fn bus_received(&self) {
        self.bus_received.add(1, &[]);
    }

    /// An update between nodes was dropped.
    pub fn bus_dropped(&self, reason: BusDrop) {
        self.bus_dropped
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }

    /// The content type of [`Metrics::render`]'s output.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }

    /// A producer's state was accepted and handed off to the fan-out, `processing`
    /// after its request (or ingest message) was taken up.
    pub fn state_received(&self, processing: Duration) {
        self.received.add(1, &[]);
        self.processing.record(processing.as_secs_f64(), &[]);
    }

    /// A producer's state of `bytes` (as received) was accepted.
    pub fn state_size(&self, bytes: usize) {
        self.state_size.record(bytes as u64, &[]);
    }

    /// A producer's state was decoded and validated in `took`.
    pub fn state_decoded(&self, took: Duration) {
        self.decode.record(took.as_secs_f64(), &[]);
    }

    /// A subscriber sent a text message that is not a control message; it was ignored.
    pub fn client_message_ignored(&self) {
        self.ignored_messages.add(1, &[]);
    }

    /// A producer's input was refused.
    pub fn input_rejected(&self, reason: RejectReason) {
        self.rejected_inputs
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
        self.hot.dropped[DropReason::Rejected as usize].fetch_add(1, Relaxed);
    }

    /// A stream produced a keyframe.
    pub fn keyframe(&self) {
        self.keyframes.add(1, &[]);
    }

    /// A stream was created.
    pub fn stream_created(&self) {
        self.streams.add(1, &[]);
    }

    /// A frame was encoded (once per encoding and kind, shared by its subscribers).
    pub fn frame_encoded(&self, encoding: Encoding, kind: FrameKind, bytes: usize) {
        self.frame_size.record(
            bytes as u64,
            &[
                KeyValue::new("format", encoding.as_str()),
                KeyValue::new("kind", kind.as_str()),
            ],
        );
    }

    /// A frame of `bytes` was handed to a subscriber's socket; as a full frame it
    /// would have cost `full_bytes`.
    pub fn frame_sent(&self, encoding: Encoding, kind: FrameKind, bytes: usize, full_bytes: usize) {
        let (e, k) = (encoding.index(), kind as usize);
        self.hot.frames[e][k].fetch_add(1, Relaxed);
        self.hot.bytes[e][k].fetch_add(bytes as u64, Relaxed);
        self.hot
            .full_equivalent_bytes
            .fetch_add(full_bytes as u64, Relaxed);
        self.hot.broadcast.fetch_add(1, Relaxed);
    }

    /// A write to a subscriber completed; its newest frame was accepted `latency` ago.
    pub fn frames_written(&self, latency: Duration) {
        self.latency.record(latency.as_secs_f64(), &[]);
    }

    /// A subscriber skipped `states` states, for `reason`, to get the newest.
    pub fn conflated(&self, reason: ConflateReason, states: u64) {
        self.dropped(DropReason::Conflated, states);
        self.conflated
            .add(states, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// A subscriber's reader reached a state that was `age` old by then.
    pub fn state_reached(&self, age: Duration) {
        self.state_age.record(age.as_secs_f64(), &[]);
    }

    /// Frames meant for a subscriber were not sent to it.
    pub fn dropped(&self, reason: DropReason, frames: u64) {
        self.hot.dropped[reason as usize].fetch_add(frames, Relaxed);
    }

    /// A subscriber connected; `resumed` tells whether it asked to resume and whether
    /// the state it held was still known.
    pub fn subscriber_opened(&self, resumed: Option<bool>) {
        self.opened.add(1, &[]);
        self.old_connections.add(1, &[]);
        self.hot.connections.fetch_add(1, Relaxed);
        if let Some(hit) = resumed {
            let result = if hit { "hit" } else { "miss" };
            self.resumes.add(1, &[KeyValue::new("result", result)]);
        }
    }

    /// A subscriber's connection ended.
    pub fn subscriber_closed(&self, reason: CloseReason) {
        self.closed
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
        self.old_disconnections.add(1, &[]);
        self.hot.connections.fetch_sub(1, Relaxed);
    }

    /// A slow subscriber was disconnected.
    pub fn slow_disconnect(&self, reason: SlowReason) {
        self.slow_disconnects
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
        self.dropped(DropReason::Disconnected, 1);
    }

    /// A producer WebSocket opened (`true`) or closed (`false`).
    pub fn producer_connected(&self, connected: bool) {
        self.hot
            .producers
            .fetch_add(if connected { 1 } else { -1 }, Relaxed);
    }
}

/// Registers the observable instruments that read the hot-path atomics.
fn register_hot(meter: &Meter, hot: &Arc<Hot>) {
    let h = hot.clone();
    meter
        .i64_observable_up_down_counter("mcp_ws_connections_current")
        .with_description("Subscriber WebSocket connections open now")
        .with_callback(move |o| o.observe(h.connections.load(Relaxed), &[]))
        .build();
    let h = hot.clone();
    meter
        .i64_observable_up_down_counter("phasecast_producers_connected")
        .with_description("Producer WebSockets open now")
        .with_callback(move |o| o.observe(h.producers.load(Relaxed), &[]))
        .build();
    let h = hot.clone();
    meter
        .u64_observable_gauge("phasecast_tasks")
        .with_description("Connection, session and background tasks running now: back to its idle value once clients leave, or tasks leak")
        .with_callback(move |o| {
            o.observe(h.tasks.len() as u64, &[]);
        })
        .build();
    let h = hot.clone();
    meter
        .i64_observable_gauge("phasecast_bus_connected")
        .with_description("1 while this node is connected to the NATS bus (0 without one)")
        .with_callback(move |o| o.observe(h.bus_connected.load(Relaxed), &[]))
        .build();
    let h = hot.clone();
    meter
        .u64_observable_counter("mcp_pcc_messages_broadcast")
        .with_description("Frames delivered to subscribers (one per subscriber per frame)")
        .with_callback(move |o| o.observe(h.broadcast.load(Relaxed), &[]))
        .build();
    let h = hot.clone();
    meter
        .u64_observable_counter("mcp_pcc_messages_dropped")
        .with_description("States not delivered, by reason: conflated (a slow subscriber skipped it), disconnected, rejected")
        .with_callback(move |o| {
            for r in DropReason::ALL {
                o.observe(
                    h.dropped[*r as usize].load(Relaxed),
                    &[KeyValue::new("reason", r.as_str())],
                );
            }
        })
        .build();
    let h = hot.clone();
    meter
        .u64_observable_counter("phasecast_frames_sent")
        .with_description("Frames written to subscribers, by format and kind")
        .with_callback(move |o| {
            for e in Encoding::ALL {
                for k in FrameKind::ALL {
                    o.observe(h.frames[e.index()][k.index()].load(Relaxed), &labels(e, k));
                }
            }
        })
        .build();
    let h = hot.clone();
    meter
        .u64_observable_counter("phasecast_frame_sent")
        .with_description("Bytes of frames written to subscribers, by format and kind")
        .with_unit("By")
        .with_callback(move |o| {
            for e in Encoding::ALL {
                for k in FrameKind::ALL {
                    o.observe(h.bytes[e.index()][k.index()].load(Relaxed), &labels(e, k));
                }
            }
        })
        .build();
    let h = hot.clone();
    meter
        .u64_observable_counter("phasecast_frame_full_equivalent")
        .with_description("Bytes the frames written would have cost as full frames (for a saving ratio over any window)")
        .with_unit("By")
        .with_callback(move |o| o.observe(h.full_equivalent_bytes.load(Relaxed), &[]))
        .build();
    let h = hot.clone();
    meter
        .f64_observable_gauge("phasecast_delta_saving_ratio")
        .with_description("1 - bytes sent / bytes the same frames would have cost as full frames")
        .with_callback(move |o| {
            let full = h.full_equivalent_bytes.load(Relaxed);
            let sent: u64 = h.bytes.iter().flatten().map(|b| b.load(Relaxed)).sum();
            let ratio = if full == 0 {
                0.0
            } else {
                1.0 - sent as f64 / full as f64
            };
            o.observe(ratio, &[]);
        })
        .build();
}

fn labels(e: Encoding, k: FrameKind) -> [KeyValue; 2] {
    [
        KeyValue::new("format", e.as_str()),
        KeyValue::new("kind", k.as_str()),
    ]
}
