//! Configuration: the `phasecast serve` flags (each mirrored by an environment
//! variable; the old server's names keep their meaning), turned into a validated
//! [`Config`] tree that the server takes by value.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use clap::Args;

use crate::{codec::Encoding, delta::Tolerance, model::Limits};

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (when `main` binds the listener).
    pub listen: SocketAddr,
    /// Default encoding for subscribers that do not choose one.
    pub wire_format: Encoding,
    /// Producer side.
    pub producer: ProducerConfig,
    /// Subscriber side.
    pub subscriber: SubscriberConfig,
    /// Per-stream sequencing and history.
    pub stream: StreamConfig,
    /// Collect and export metrics (off only to measure their cost).
    pub metrics: bool,
    /// How long shutdown waits for sessions to close.
    pub shutdown_timeout: Duration,
    /// Run the built-in demo producer.
    pub demo: Option<DemoConfig>,
    /// Share streams with other nodes over NATS; `None` runs a single node.
    pub bus: Option<BusConfig>,
    /// Connection-level limits and TLS.
    pub connection: ConnectionConfig,
    /// Bytes that what producers send may occupy: retained views and cached frames
    /// (`memory.rs`).
    pub memory_limit: usize,
}

/// Limits applied to every TCP connection before HTTP, and TLS.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// New connections per second per client IP (one second of burst); 0: no limit.
    pub rate_limit: u32,
    /// Deadline for a request's headers, the TLS handshake included: half-open
    /// sockets and handshakes that never complete are closed after it.
    pub handshake_timeout: Duration,
    /// Interval between keep-alive pings on every WebSocket (subscribers and
    /// producers); a peer silent for two intervals is closed (1008).
    pub ping_interval: Duration,
    /// Messages a second a subscriber may send (pings and pongs included; one second
    /// of burst), and control messages (pings, pongs) a producer may; a peer over it is
    /// closed with 1008. 0: no limit.
    pub client_message_rate: u32,
    /// Certificate chain and key (PEM) to serve HTTPS / WSS; `None` is plain TCP.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Proxies whose `X-Forwarded-For` names the client: per-IP limits, logs and
    /// origin checks then use the client's address. Empty: trust no proxy.
    pub trusted_proxies: Vec<Cidr>,
}

/// Producer-side settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Key producers must present (`X-API-Key`), if any.
    pub api_key: Option<String>,
    /// States per second allowed per producer (per client IP over HTTP, per
    /// connection on `/ingest`); 0 disables the limit.
    pub rate_limit: u32,
    /// Largest request body or ingest message.
    pub max_body_bytes: usize,
    /// Limits on a state's content.
    pub limits: Limits,
    /// Largest number of producer WebSockets at once.
    pub max_producers: usize,
}

/// Subscriber-side settings.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// Browser origins allowed (`Origin` header): the CORS answers of every HTTP route,
    /// and who may open `/ws`; `None` allows all (CORS mirrors any origin).
    pub allowed_origins: Option<Vec<String>>,
    /// Key subscribers must present, if any.
    pub subscribe_key: Option<String>,
    /// Largest number of subscribers at once.
    pub max_subscribers: usize,
    /// How many frames a subscriber may fall behind before it skips to the newest.
    pub outbox_frames: usize,
    /// A write that takes longer than this closes the subscriber as too slow.
    pub send_timeout: Duration,
    /// Unsent bytes past which a subscriber is closed as too slow.
    pub max_backlog_bytes: usize,
    /// Largest message a subscriber may send.
    pub max_client_message_bytes: usize,
    /// Worker threads of the fan-out's runtime (dispatch and subscriber sessions); 0:
    /// one per core.
    pub fanout_threads: usize,
    /// Kernel send buffer per connection (`SO_SNDBUF`); `None` keeps the OS default.
    /// Smaller means a slow subscriber is noticed sooner and skips ahead to fresher
    /// state instead of reading seconds-old frames out of a deep buffer.
    pub socket_send_buffer: Option<usize>,
    /// How old the states waiting for a subscriber whose reader is behind may get
    /// before only the newest goes (followed by probes: pings written behind the
    /// frames); `None` writes frames as fast as the socket takes them.
    pub freshness: Option<Duration>,
}

/// Per-stream settings.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How far a subscriber's phases may be from the truth.
    pub tolerance: Tolerance,
    /// A full frame every this many seqs.
    pub keyframe_interval: u64,
    /// States kept per stream for resuming subscribers.
    pub history: usize,
    /// Largest number of streams.
    pub max_streams: usize,
    /// Bytes of encoded frames a stream keeps for its newest updates, past the two
    /// newest (which always keep theirs).
    pub frame_cache_bytes: usize,
    /// Tolerances subscribers may choose (`?epsilon=`) besides lossless and the
    /// default `tolerance`, which are always offered.
    pub precision_classes: Vec<Tolerance>,
    /// Bins of the phase histogram in summaries (`?fields=summary`).
    pub summary_bins: usize,
}

/// Settings for the shared log on NATS JetStream (`bus/`).
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// This node's id: its broker connection's name and its appends' ids.
    pub node_id: String,
    /// Copies JetStream keeps of each new log; `None`: 3 on a clustered broker, 1
    /// on a single server.
    pub replicas: Option<usize>,
    /// Where JetStream keeps the logs.
    pub storage: LogStorage,
    /// Log entries older than this are dropped (besides the count the history needs).
    pub max_age: Option<Duration>,
    /// How long an append may wait for the log's confirmation before the producer is
    /// refused.
    pub append_timeout: Duration,
}

impl BusConfig {
    /// The defaults for a broker at `url`, this node being `node_id`.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            node_id: node_id.into(),
            replicas: None,
            storage: LogStorage::File,
            max_age: None,
            append_timeout: defaults::NATS_APPEND_TIMEOUT,
        }
    }
}

/// Where JetStream keeps the logs: `File`, on disk (the logs survive a restart of the
/// broker), or `Memory` (faster, lost when every broker server restarts).
// The variants have no doc comments: clap would list them as help for each value, and
// that switches `serve --help` to its long layout for every flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum LogStorage {
    File,
    Memory,
}

/// The built-in demo producer.
#[derive(Debug, Clone, Copy)]
pub struct DemoConfig {
    /// States per second.
    pub hz: f64,
    /// Oscillators in the simulation.
    pub oscillators: usize,
}

/// The default of every setting, written once: [`Config::default`] and the `serve`
/// flags (whose `--help` shows them) both read these.
pub mod defaults {
    use std::time::Duration;

    /// `--port` / `MCP_SERVER_PORT`: the old server's port.
    pub const PORT: u16 = 8787;
    /// `--host` / `PCC_HOST`.
    pub const HOST: &str = "0.0.0.0";
    /// `--producer-rate-limit`.
    pub const PRODUCER_RATE_LIMIT: u32 = 1000;
    /// `--max-body-bytes`.
    pub const MAX_BODY_BYTES: usize = 4 << 20;
    /// `--max-oscillators`.
    pub const MAX_OSCILLATORS: usize = 65_536;
    /// `--max-producers`.
    pub const MAX_PRODUCERS: usize = 64;
    /// `--max-subscribers`.
    pub const MAX_SUBSCRIBERS: usize = 20_000;
    /// `--outbox-frames`.
    pub const OUTBOX_FRAMES: usize = 64;
    /// `--send-timeout`.
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
    /// `--freshness`: how old the state a reader holds may get before it is skipped
    /// to the newest (`fanout/pace.rs`).
    pub const FRESHNESS: Duration = Duration::from_millis(100);
    /// `--max-backlog-bytes`.
    pub const MAX_BACKLOG_BYTES: usize = 4 << 20;
    /// `--max-client-message-bytes`.
    pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4 << 10;
    /// `--keyframe-interval`: once a second at 200 Hz.
    pub const KEYFRAME_INTERVAL: u64 = 200;
    /// `--history`.
    pub const HISTORY: usize = 1024;
    /// `--max-streams`.
    pub const MAX_STREAMS: usize = 64;
    /// `--memory-limit`: what a small machine can give to producers' data.
    pub const MEMORY_LIMIT: usize = 512 << 20;
    /// `--frame-cache`.
    pub const FRAME_CACHE_BYTES: usize = 16 << 20;
    /// `--precision-classes`.
    pub const PRECISION_CLASSES: &str = "0,0.0001,0.001,0.01";
    /// `--summary-bins`.
    pub const SUMMARY_BINS: usize = 16;
    /// Most bins `--summary-bins` may ask for.
    pub const MAX_SUMMARY_BINS: usize = 4096;
    /// `--shutdown-timeout`.
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// `--connection-rate-limit`.
    pub const CONNECTION_RATE_LIMIT: u32 = 200;
    /// `--handshake-timeout`.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `--ping-interval`.
    pub const PING_INTERVAL: Duration = Duration::from_secs(20);
    /// `--client-message-rate`.
    pub const CLIENT_MESSAGE_RATE: u32 = 20;
    /// `--nats-append-timeout`.
    pub const NATS_APPEND_TIMEOUT: Duration = Duration::from_secs(2);
    /// `--demo-hz`.
    pub const DEMO_HZ: f64 = 200.0;
    /// `--demo-oscillators`.
    pub const DEMO_OSCILLATORS: usize = 32;
    /// `--trusted-proxies`: none, every forwarding header is ignored.
    pub const TRUSTED_PROXIES: &[super::Cidr] = &[];
}

impl Default for Config {
    fn default() -> Self {
        let host: std::net::IpAddr = defaults::HOST.parse().expect("a valid default host");
        Config {
            listen: SocketAddr::new(host, defaults::PORT),
            wire_format: Encoding::Json,
            producer: ProducerConfig {
                api_key: None,
                rate_limit: defaults::PRODUCER_RATE_LIMIT,
                max_body_bytes: defaults::MAX_BODY_BYTES,
                limits: Limits {
                    max_oscillators: defaults::MAX_OSCILLATORS,
                },
                max_producers: defaults::MAX_PRODUCERS,
            },
            subscriber: SubscriberConfig {
                allowed_origins: None,
                subscribe_key: None,
                max_subscribers: defaults::MAX_SUBSCRIBERS,
                outbox_frames: defaults::OUTBOX_FRAMES,
                send_timeout: defaults::SEND_TIMEOUT,
                max_backlog_bytes: defaults::MAX_BACKLOG_BYTES,
                max_client_message_bytes: defaults::MAX_CLIENT_MESSAGE_BYTES,
                fanout_threads: 0,
                socket_send_buffer: None,
                freshness: Some(defaults::FRESHNESS).filter(|f| !f.is_zero()),
            },
            stream: StreamConfig {
                tolerance: Tolerance::LOSSLESS,
                keyframe_interval: defaults::KEYFRAME_INTERVAL,
                history: defaults::HISTORY,
                max_streams: defaults::MAX_STREAMS,
                frame_cache_bytes: defaults::FRAME_CACHE_BYTES,
                precision_classes: parse_classes(defaults::PRECISION_CLASSES)
                    .expect("the default classes parse"),
                summary_bins: defaults::SUMMARY_BINS,
            },
            metrics: true,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            demo: None,
            bus: None,
            connection: ConnectionConfig {
                rate_limit: defaults::CONNECTION_RATE_LIMIT,
                handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
                ping_interval: defaults::PING_INTERVAL,
                client_message_rate: defaults::CLIENT_MESSAGE_RATE,
                tls: None,
                trusted_proxies: defaults::TRUSTED_PROXIES.to_vec(),
            },
            memory_limit: defaults::MEMORY_LIMIT,
        }
    }
}

/// Who may use a server listening on some address with this configuration's keys,
/// from [`Config::exposure`]; the server says it at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// Producers need no key and the address is beyond loopback: anyone who can reach
    /// the port can publish states (and create streams up to the limit). Warned about.
    pub open_publish: bool,
    /// Subscribers need no key: anyone who can reach the port can subscribe.
    pub open_subscribe: bool,
    /// The address is reachable from other machines (not a loopback address; the
    /// unspecified `0.0.0.0` and `::` are every interface).
    pub beyond_loopback: bool,
}

impl Config {
    /// What this configuration exposes on `listening` (the address actually bound,
    /// which may differ from [`Config::listen`] when the caller binds).
    pub fn exposure(&self, listening: SocketAddr) -> Exposure {
        let beyond_loopback = !listening.ip().to_canonical().is_loopback();
        Exposure {
            open_publish: beyond_loopback && self.producer.api_key.is_none(),
            open_subscribe: self.subscriber.subscribe_key.is_none(),
            beyond_loopback,
        }
    }
}

/// A byte size on the command line: a number with an optional unit (B, KB, KiB, MB,
/// MiB, GB, GiB); shown in the largest binary unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        parse_bytes(text).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= scale && n % scale == 0 {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}B")
    }
}

/// A range of addresses in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`; a bare
/// address is a range of one (`/32`, `/128`). An IPv4-mapped IPv6 range
/// (`::ffff:10.0.0.0/104`) is kept as the IPv4 range it maps, and addresses are
/// compared the same way, so a dual-stack listener's `::ffff:a.b.c.d` peers match
/// IPv4 ranges. Bits past the prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    /// The range of `prefix` bits from `ip`, host bits cleared.
    fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let network = match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Cidr { network, prefix }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits => n,
                _ => {
                    return Err(format!(
                        "{text:?}: the prefix length must be a number from 0 to {bits}"
                    ))
                }
            },
        };
        // `::ffff:a.b.c.d/n` with n ≥ 96 is the IPv4 range a.b.c.d/(n - 96).
        let cidr = match ip {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr::new(IpAddr::V4(v4), prefix - 96),
                None => Cidr::new(ip, prefix),
            },
            _ => Cidr::new(ip, prefix),
        };
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A comma-separated list of [`Cidr`]s on the command line; empty entries are
/// skipped, so an empty value is an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = String;

    fn from_str(text: &str) -> Result<CidrList, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|e| {
                    format!(
                        "{e}; PCC_TRUSTED_PROXIES is addresses or CIDR ranges, \
                         comma-separated (e.g. 10.0.0.0/8,192.0.2.7,::1)"
                    )
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(CidrList)
    }
}

/// A duration on the command line (`5s`, `250ms`, `1m`).
fn duration(text: &str) -> Result<humantime::Duration, String> {
    text.parse()
        .map_err(|e| format!("{text:?}: {e} (e.g. 5s, 250ms)"))
}

/// `phasecast serve` flags. Each has an environment variable; a flag wins over it.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port to listen on.
    #[arg(long, env = "MCP_SERVER_PORT", default_value_t = defaults::PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "PCC_HOST", default_value = defaults::HOST)]
    pub host: String,
    /// API key producers must send (X-API-Key). Unset: producers need no key.
    #[arg(long, env = "MCP_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Default wire format for subscribers: json or protobuf (alias proto).
    #[arg(long, env = "PCC_WIRE_FORMAT", default_value = "json")]
    pub wire_format: String,
    /// Comma-separated browser origins allowed: CORS answers on every HTTP route
    /// (POST /pcc_state, /health…), and who may open /ws; unset or * allows all.
    #[arg(long, env = "ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// Key subscribers must send (X-API-Key or ?key=). Unset: anyone may subscribe.
    #[arg(long, env = "PCC_SUBSCRIBE_KEY", hide_env_values = true)]
    pub subscribe_key: Option<String>,
    /// Tolerance ε in radians: a phase is sent only when the subscriber's copy is
    /// more than ε off. 0 is lossless.
    #[arg(long, env = "PCC_DELTA_EPSILON", default_value_t = 0.0)]
    pub delta_epsilon: f64,
    /// A full frame every this many states (200: once a second at 200 Hz).
    #[arg(long, env = "PCC_KEYFRAME_INTERVAL", default_value_t = defaults::KEYFRAME_INTERVAL)]
    pub keyframe_interval: u64,
    /// States kept per stream so reconnecting subscribers can resume with a delta.
    #[arg(long, env = "PCC_HISTORY", default_value_t = defaults::HISTORY)]
    pub history: usize,
    /// Largest number of oscillators in one state.
    #[arg(long, env = "PCC_MAX_OSCILLATORS", default_value_t = defaults::MAX_OSCILLATORS)]
    pub max_oscillators: usize,
    /// Largest request body or ingest message (e.g. 4MiB, 512KiB, 100000).
    #[arg(long, env = "PCC_MAX_BODY_BYTES", default_value_t = ByteSize(defaults::MAX_BODY_BYTES))]
    pub max_body_bytes: ByteSize,
    /// States per second per producer (client IP for HTTP, connection for /ingest); 0: no limit.
    #[arg(long, env = "PCC_PRODUCER_RATE_LIMIT", default_value_t = defaults::PRODUCER_RATE_LIMIT)]
    pub producer_rate_limit: u32,
    /// Largest number of producer WebSockets at once.
    #[arg(long, env = "PCC_MAX_PRODUCERS", default_value_t = defaults::MAX_PRODUCERS)]
    pub max_producers: usize,
    /// Largest number of subscribers at once; more are refused (close 1013).
    #[arg(long, env = "PCC_MAX_SUBSCRIBERS", default_value_t = defaults::MAX_SUBSCRIBERS)]
    pub max_subscribers: usize,
    /// Largest number of streams.
    #[arg(long, env = "PCC_MAX_STREAMS", default_value_t = defaults::MAX_STREAMS)]
    pub max_streams: usize,
    /// Memory that producers' data may occupy (retained states, cached frames), e.g.
    /// 512MiB, 2GiB. Near it, histories get shorter, then new
    /// streams are refused (503), then states that do not fit (507).
    #[arg(long, env = "PCC_MEMORY_LIMIT", default_value_t = ByteSize(defaults::MEMORY_LIMIT))]
    pub memory_limit: ByteSize,
    /// Bytes of encoded frames each stream keeps for subscribers a few frames behind.
    #[arg(long, env = "PCC_FRAME_CACHE", default_value_t = ByteSize(defaults::FRAME_CACHE_BYTES))]
    pub frame_cache: ByteSize,
    /// Tolerances in radians subscribers may choose with ?epsilon=, comma-separated;
    /// 0 (lossless) and PCC_DELTA_EPSILON (the default class) are always offered.
    #[arg(long, env = "PCC_PRECISION_CLASSES", default_value = defaults::PRECISION_CLASSES)]
    pub precision_classes: String,
    /// Bins of the phase histogram in summaries (?fields=summary).
    #[arg(long, env = "PCC_SUMMARY_BINS", default_value_t = defaults::SUMMARY_BINS)]
    pub summary_bins: usize,
    /// Frames a subscriber may fall behind before it skips to the newest state.
    #[arg(long, env = "PCC_OUTBOX_FRAMES", default_value_t = defaults::OUTBOX_FRAMES)]
    pub outbox_frames: usize,
    /// Threads that write to subscribers (0: one per core), beside the ones that
    /// accept connections and states.
    #[arg(long, env = "PCC_FANOUT_THREADS", default_value_t = 0)]
    pub fanout_threads: usize,
    /// A subscriber whose socket stays unwritable this long is closed (e.g. 5s, 500ms).
    #[arg(long, env = "PCC_SEND_TIMEOUT", value_parser = duration, default_value_t = (defaults::SEND_TIMEOUT).into())]
    pub send_timeout: humantime::Duration,
    /// A subscriber with more unsent bytes than this is closed.
    #[arg(long, env = "PCC_MAX_BACKLOG_BYTES", default_value_t = ByteSize(defaults::MAX_BACKLOG_BYTES))]
    pub max_backlog_bytes: ByteSize,
    /// Largest message a subscriber may send (at least 64B); larger ones close it with 1009.
    #[arg(long, env = "PCC_MAX_CLIENT_MESSAGE_BYTES", default_value_t = ByteSize(defaults::MAX_CLIENT_MESSAGE_BYTES))]
    pub max_client_message_bytes: ByteSize,
    /// Messages a second a subscriber may send, pings included (one second of burst),
    /// and pings/pongs a producer may; past it the peer is closed with 1008. 0 = no limit.
    #[arg(long, env = "PCC_CLIENT_MESSAGE_RATE", default_value_t = defaults::CLIENT_MESSAGE_RATE)]
    pub client_message_rate: u32,
    /// Kernel send buffer per connection (e.g. 256KiB); unset keeps the OS default.
    /// Smaller: slow subscribers skip ahead to fresh state sooner.
    #[arg(long, env = "PCC_SOCKET_SEND_BUFFER")]
    pub socket_send_buffer: Option<ByteSize>,
    /// A subscriber whose reader is behind gets only the newest state once the states
    /// waiting for it are older than this (e.g. 50ms), its reader followed by pings;
    /// 0 (the default for now) turns the bound off. Under heavy load it also skips
    /// states for readers that keep up.
    #[arg(long, env = "PCC_FRESHNESS", value_parser = duration, default_value_t = (defaults::FRESHNESS).into())]
    pub freshness: humantime::Duration,
    /// Keep-alive ping interval; a peer silent for two intervals is dropped.
    #[arg(long, env = "PCC_PING_INTERVAL", value_parser = duration, default_value_t = (defaults::PING_INTERVAL).into())]
    pub ping_interval: humantime::Duration,
    /// How long shutdown waits for subscribers to be closed.
    #[arg(long, env = "PCC_SHUTDOWN_TIMEOUT", value_parser = duration, default_value_t = (defaults::SHUTDOWN_TIMEOUT).into())]
    pub shutdown_timeout: humantime::Duration,
    /// Collect and export metrics (false only to measure their cost).
    #[arg(long, env = "PCC_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// New connections per second per client IP (one second of burst); 0: no limit.
    #[arg(long, env = "PCC_CONNECTION_RATE_LIMIT", default_value_t = defaults::CONNECTION_RATE_LIMIT)]
    pub connection_rate_limit: u32,
    /// Deadline for a connection's request headers and TLS handshake (e.g. 10s).
    #[arg(long, env = "PCC_HANDSHAKE_TIMEOUT", value_parser = duration, default_value_t = (defaults::HANDSHAKE_TIMEOUT).into())]
    pub handshake_timeout: humantime::Duration,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key).
    #[arg(long, env = "PCC_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PCC_TLS_KEY", hide_env_values = true)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Comma-separated proxy addresses or CIDR ranges (e.g. 10.0.0.0/8,::1) whose
    /// X-Forwarded-For names the client: per-IP limits, logs and origin checks then use
    /// the client's address. Unset: trust no proxy, the header is ignored.
    #[arg(long, env = "PCC_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<CidrList>,
    /// NATS server(s) to share streams with other phasecast nodes, e.g.
    /// nats://127.0.0.1:4222. Unset: a single node with no broker.
    #[arg(long, env = "PCC_NATS_URL")]
    pub nats_url: Option<String>,
    /// This node's id on the bus (default: hostname and process id).
    #[arg(long, env = "PCC_NODE_ID")]
    pub node_id: Option<String>,
    /// Copies JetStream keeps of each stream's log, 1 to 5 (default: 3 on a clustered
    /// broker, 1 on a single server). Set when a log is made.
    #[arg(long, env = "PCC_NATS_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: Option<u8>,
    /// Where JetStream keeps the logs: file (survives a broker restart) or memory.
    #[arg(long, env = "PCC_NATS_STORAGE", value_enum, default_value_t = LogStorage::File)]
    pub nats_storage: LogStorage,
    /// Drop log entries older than this, e.g. 1h (default: keep the newest
    /// PCC_HISTORY + PCC_KEYFRAME_INTERVAL, whatever their age). Set when a log is made.
    #[arg(long, env = "PCC_LOG_MAX_AGE", value_parser = duration)]
    pub log_max_age: Option<humantime::Duration>,
    /// How long a producer's state may wait for the log to confirm it before the
    /// producer is refused (503).
    #[arg(long, env = "PCC_NATS_APPEND_TIMEOUT", value_parser = duration, default_value_t = (defaults::NATS_APPEND_TIMEOUT).into())]
    pub nats_append_timeout: humantime::Duration,
    /// Run a built-in producer: a Kuramoto simulation with coupled spins.
    #[arg(long, env = "PCC_DEMO")]
    pub demo: bool,
    /// Demo producer rate, states per second.
    #[arg(long, env = "PCC_DEMO_HZ", default_value_t = defaults::DEMO_HZ)]
    pub demo_hz: f64,
    /// Demo producer size, oscillators.
    #[arg(long, env = "PCC_DEMO_OSCILLATORS", default_value_t = defaults::DEMO_OSCILLATORS)]
    pub demo_oscillators: usize,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct Error(pub Vec<String>);

impl ServeArgs {
    /// Checks every setting and builds the [`Config`]. (Sizes and durations that do not
    /// parse at all are refused earlier, by the flag parser, naming the flag.)
    ///
    /// # Errors
    /// Lists every invalid setting, naming its flag and variable.
    pub fn into_config(self) -> Result<Config, Error> {
        let mut problems = Vec::new();
        let mut check = |result: Result<(), String>| {
            if let Err(p) = result {
                problems.push(p);
            }
        };
        let mut config = Config::default();

        match format!("{}:{}", self.host, self.port).parse::<SocketAddr>() {
            Ok(a) => config.listen = a,
            Err(_) => check(Err(format!(
                "--host / PCC_HOST: {:?} is not an IP address",
                self.host
            ))),
        }
        match self.wire_format.parse() {
            Ok(e) => config.wire_format = e,
            Err(e) => check(Err(format!("--wire-format / PCC_WIRE_FORMAT: {e}"))),
        }
        config.producer.api_key = self.api_key.filter(|k| !k.is_empty());
        config.subscriber.subscribe_key = self.subscribe_key.filter(|k| !k.is_empty());
        config.subscriber.allowed_origins = self.allowed_origins.and_then(|o| parse_origins(&o));
        match Tolerance::new(self.delta_epsilon) {
            Ok(t) => config.stream.tolerance = t,
            Err(e) => check(Err(format!("--delta-epsilon / PCC_DELTA_EPSILON: {e}"))),
        }
        let mut at_least = |flag: &str, value: u64, min: u64| {
            check(if value < min {
                Err(format!("{flag}: must be at least {min}, got {value}"))
            } else {
                Ok(())
            })
        };
        at_least(
            "--keyframe-interval / PCC_KEYFRAME_INTERVAL",
            self.keyframe_interval,
            1,
        );
        at_least("--history / PCC_HISTORY", self.history as u64, 1);
        at_least(
            "--max-oscillators / PCC_MAX_OSCILLATORS",
            self.max_oscillators as u64,
            1,
        );
        at_least(
            "--max-streams / PCC_MAX_STREAMS",
            self.max_streams as u64,
            1,
        );
        at_least(
            "--outbox-frames / PCC_OUTBOX_FRAMES",
            self.outbox_frames as u64,
            1,
        );
        at_least(
            "--max-body-bytes / PCC_MAX_BODY_BYTES",
            self.max_body_bytes.0 as u64,
            1,
        );
        at_least(
            "--memory-limit / PCC_MEMORY_LIMIT",
            self.memory_limit.0 as u64,
            1 << 20,
        );
        at_least(
            "--max-backlog-bytes / PCC_MAX_BACKLOG_BYTES",
            self.max_backlog_bytes.0 as u64,
            1,
        );
        at_least(
            "--max-client-message-bytes / PCC_MAX_CLIENT_MESSAGE_BYTES (a resync message must fit)",
            self.max_client_message_bytes.0 as u64,
            64,
        );
        for (flag, d) in [
            ("--send-timeout / PCC_SEND_TIMEOUT", *self.send_timeout),
            ("--ping-interval / PCC_PING_INTERVAL", *self.ping_interval),
            (
                "--shutdown-timeout / PCC_SHUTDOWN_TIMEOUT",
                *self.shutdown_timeout,
            ),
            (
                "--handshake-timeout / PCC_HANDSHAKE_TIMEOUT",
                *self.handshake_timeout,
            ),
        ] {
            if d.is_zero() {
                problems.push(format!("{flag}: must be more than 0"));
            }
        }
        config.stream.keyframe_interval = self.keyframe_interval;
        config.stream.history = self.history;
        config.producer.limits.max_oscillators = self.max_oscillators;
        config.stream.max_streams = self.max_streams;
        config.stream.frame_cache_bytes = self.frame_cache.0;
        match parse_classes(&self.precision_classes) {
            Ok(classes) => config.stream.precision_classes = classes,
            Err(e) => problems.push(format!("--precision-classes / PCC_PRECISION_CLASSES: {e}")),
        }
        if !(1..=defaults::MAX_SUMMARY_BINS).contains(&self.summary_bins) {
            problems.push(format!(
                "--summary-bins / PCC_SUMMARY_BINS: must be from 1 to {}, got {}",
                defaults::MAX_SUMMARY_BINS,
                self.summary_bins
            ));
        }
        config.stream.summary_bins = self.summary_bins;
        config.memory_limit = self.memory_limit.0;
        config.subscriber.outbox_frames = self.outbox_frames;
        config.subscriber.fanout_threads = self.fanout_threads;
        config.subscriber.max_subscribers = self.max_subscribers;
        config.connection.client_message_rate = self.client_message_rate;
        config.producer.max_producers = self.max_producers;
        config.producer.rate_limit = self.producer_rate_limit;
        config.metrics = self.metrics;
        config.producer.max_body_bytes = self.max_body_bytes.0;
        config.subscriber.max_backlog_bytes = self.max_backlog_bytes.0;
        config.subscriber.max_client_message_bytes = self.max_client_message_bytes.0;
        config.subscriber.socket_send_buffer =
            self.socket_send_buffer.map(|b| b.0).filter(|&n| n > 0);
        config.subscriber.send_timeout = *self.send_timeout;
        config.subscriber.freshness = Some(*self.freshness).filter(|f| !f.is_zero());
        config.connection.ping_interval = *self.ping_interval;
        config.shutdown_timeout = *self.shutdown_timeout;
        config.connection.handshake_timeout = *self.handshake_timeout;
        config.connection.rate_limit = self.connection_rate_limit;
        if let Some(CidrList(ranges)) = self.trusted_proxies {
            config.connection.trusted_proxies = ranges;
        }
        match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => config.connection.tls = Some((cert, key)),
            (None, None) => {}
            _ => problems.push(
                "--tls-cert / PCC_TLS_CERT and --tls-key / PCC_TLS_KEY go together: give both or neither".into(),
            ),
        }
        if self.demo {
            if !(self.demo_hz > 0.0 && self.demo_hz <= 10_000.0) {
                problems.push(format!(
                    "--demo-hz / PCC_DEMO_HZ: {} is not between 0 and 10000",
                    self.demo_hz
                ));
            }
            if self.demo_oscillators == 0 || self.demo_oscillators > self.max_oscillators {
                problems.push(format!(
                    "--demo-oscillators / PCC_DEMO_OSCILLATORS: {} is not between 1 and the oscillator limit {}",
                    self.demo_oscillators, self.max_oscillators
                ));
            }
            config.demo = Some(DemoConfig {
                hz: self.demo_hz,
                oscillators: self.demo_oscillators,
            });
        }
        if let Some(url) = self.nats_url.filter(|u| !u.trim().is_empty()) {
            if !url
                .split(',')
                .all(|u| u.trim().starts_with("nats://") || u.trim().starts_with("tls://"))
            {
                problems.push(format!(
                    "--nats-url / PCC_NATS_URL: {url:?}: expected nats://host:port (comma-separated for several)"
                ));
            }
            let node_id = self
                .node_id
                .filter(|n| !n.is_empty())
                .unwrap_or_else(default_node_id);
            if self.nats_append_timeout.is_zero() {
                problems.push(
                    "--nats-append-timeout / PCC_NATS_APPEND_TIMEOUT: must be above 0".to_owned(),
                );
            }
            config.bus = Some(BusConfig {
                url,
                node_id,
                replicas: self.nats_replicas.map(usize::from),
                storage: self.nats_storage,
                max_age: self
                    .log_max_age
                    .map(Into::into)
                    .filter(|a: &Duration| !a.is_zero()),
                append_timeout: *self.nats_append_timeout,
            });
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Error(problems))
        }
    }
}

/// `hostname-pid`, unique enough among the nodes of one deployment.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    format!("{host}-{}", std::process::id())
}

/// `ALLOWED_ORIGINS`: comma-separated; empty or `*` means any origin.
fn parse_origins(text: &str) -> Option<Vec<String>> {
    let origins: Vec<String> = text
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        None
    } else {
        Some(origins)
    }
}

/// A byte size: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n =
        u64::from_str(digits).map_err(|_| format!("{text:?} is not a byte size (e.g. 4MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(scale)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A comma-separated list of tolerances in radians (empty entries ignored).
fn parse_classes(list: &str) -> Result<Vec<Tolerance>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let epsilon: f64 = e
                .parse()
                .map_err(|_| format!("{e:?} is not a number of radians"))?;
            Tolerance::new(epsilon)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let mut all = vec!["phasecast"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().serve.into_config()
    }

    #[test]
    fn defaults_are_valid_and_match_the_old_server() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.port(), 8787);
        assert_eq!(c.wire_format, Encoding::Json);
        assert_eq!(c.stream.tolerance, Tolerance::LOSSLESS);
        assert!(c.subscriber.allowed_origins.is_none());
    }

    #[test]
    fn every_problem_is_listed_with_its_flag() {
        let err = parse(&[
            "--wire-format",
            "xml",
            "--delta-epsilon=-1",
            "--max-body-bytes",
            "0",
            "--send-timeout",
            "0s",
            "--keyframe-interval",
            "0",
            "--max-client-message-bytes",
            "16",
        ])
        .unwrap_err();
        let text = err.to_string();
        for flag in [
            "PCC_WIRE_FORMAT",
            "PCC_DELTA_EPSILON",
            "PCC_MAX_BODY_BYTES",
            "PCC_SEND_TIMEOUT",
            "PCC_KEYFRAME_INTERVAL",
            "PCC_MAX_CLIENT_MESSAGE_BYTES",
        ] {
            assert!(text.contains(flag), "{flag} missing from:\n{text}");
        }
        assert_eq!(err.0.len(), 6);
    }

    /// Sizes and durations that do not parse are refused by the flag parser, which
    /// names the flag and says what it expected.
    #[test]
    fn unreadable_sizes_and_durations_name_their_flag() {
        for (flag, value, hint) in [
            ("--max-body-bytes", "lots", "byte size"),
            ("--send-timeout", "soon", "e.g. 5s"),
            ("--socket-send-buffer", "4 parsecs", "unknown unit"),
        ] {
            let err = match Cli::try_parse_from(["phasecast", flag, value]) {
                Ok(_) => panic!("{flag} {value} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(flag), "{flag}: {err}");
            assert!(err.contains(hint), "{flag}: {err}");
        }
    }

    /// The defaults are written once: the flags with nothing given build exactly
    /// `Config::default()`.
    #[test]
    fn flag_defaults_are_the_config_defaults() {
        assert_eq!(
            format!("{:?}", parse(&[]).unwrap()),
            format!("{:?}", Config::default())
        );
    }

    /// Operators configure from the environment: the example file and the README's
    /// table name every variable `serve` reads.
    #[test]
    fn every_variable_is_in_the_env_example_and_the_readme() {
        use clap::CommandFactory;
        let example = include_str!("../deploy/systemd/phasecast.env.example");
        let readme = include_str!("../README.md");
        let command = Cli::command();
        let names: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            assert!(
                example.contains(&format!("{name}=")),
                "{name} missing from deploy/systemd/phasecast.env.example"
            );
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} missing from the README"
            );
        }
    }

    #[test]
    fn cidr_ranges_parse_and_match() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cidr = |s: &str| s.parse::<Cidr>().unwrap();

        let lan = cidr("10.0.0.0/8");
        assert!(lan.contains(ip("10.0.0.0")) && lan.contains(ip("10.255.255.255")));
        assert!(!lan.contains(ip("11.0.0.0")) && !lan.contains(ip("9.255.255.255")));
        assert!(!lan.contains(ip("::a00:1")), "IPv6 is not in an IPv4 range");
        // A bare address is a range of one.
        assert_eq!(cidr("192.0.2.7"), cidr("192.0.2.7/32"));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        // Host bits are cleared.
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));

        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(cidr("::/0").contains(ip("fe80::1")));
        assert!(cidr("::1").contains(ip("::1")));

        // IPv4-mapped addresses are their IPv4 address, both as ranges and as peers.
        assert!(lan.contains(ip("::ffff:10.1.2.3")));
        assert_eq!(cidr("::ffff:10.0.0.0/104"), lan);
        assert_eq!(cidr("::ffff:192.0.2.7"), cidr("192.0.2.7/32"));

        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0",
            "example.net",
            "",
            "10.0.0.0 /8x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn trusted_proxies_are_a_comma_separated_list_and_errors_name_the_flag() {
        assert_eq!(parse(&[]).unwrap().connection.trusted_proxies, vec![]);
        let c = parse(&["--trusted-proxies", " 10.0.0.0/8, ,::1,192.0.2.7 "]).unwrap();
        assert_eq!(
            c.connection.trusted_proxies,
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert_eq!("".parse::<CidrList>(), Ok(CidrList(vec![])));
        let err = match Cli::try_parse_from([
            "phasecast",
            "--trusted-proxies",
            "10.0.0.0/8,10.0.0.300",
        ]) {
            Ok(_) => panic!("an invalid range was accepted"),
            Err(e) => e.to_string(),
        };
        for part in ["--trusted-proxies", "PCC_TRUSTED_PROXIES", "10.0.0.300"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }

    /// Producers with no key on an address beyond loopback is the case warned about;
    /// loopback (however written) is not. No test binds these addresses.
    #[test]
    fn an_open_port_is_told_apart_from_loopback() {
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 8787);
        let open = Config::default();
        for beyond in [
            "0.0.0.0",
            "::",
            "192.0.2.10",
            "2001:db8::5",
            "::ffff:192.0.2.10",
        ] {
            let e = open.exposure(addr(beyond));
            assert!(
                e.beyond_loopback && e.open_publish && e.open_subscribe,
                "{beyond}"
            );
        }
        for local in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            let e = open.exposure(addr(local));
            assert!(!e.beyond_loopback && !e.open_publish, "{local}");
            assert!(e.open_subscribe, "{local}: subscribers still need no key");
        }
        let mut keyed = Config::default();
        keyed.producer.api_key = Some("k".into());
        assert_eq!(
            keyed.exposure(addr("0.0.0.0")),
            Exposure {
                open_publish: false,
                open_subscribe: true,
                beyond_loopback: true
            }
        );
        keyed.subscriber.subscribe_key = Some("s".into());
        assert!(!keyed.exposure(addr("0.0.0.0")).open_subscribe);
        // The default configuration is the open case.
        assert!(open.exposure(open.listen).open_publish);
    }

    #[test]
    fn byte_sizes_and_origins() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(ByteSize(4 << 20).to_string(), "4MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!("1000".parse(), Ok(ByteSize(1000)));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(parse_origins("*"), None);
        assert_eq!(
            parse_origins("https://a.example/, http://b.example:8080"),
            Some(vec![
                "https://a.example".to_owned(),
                "http://b.example:8080".to_owned()
            ])
        );
        let c = parse(&["--wire-format", "proto", "--delta-epsilon", "0.001"]).unwrap();
        assert_eq!(c.wire_format, Encoding::Protobuf);
        assert_eq!(c.stream.tolerance.epsilon(), 0.001);
    }
}
