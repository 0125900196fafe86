//! `phasecast loadgen`: end-to-end load on real sockets. It starts (or targets) a
//! server, opens N subscribers in a chosen format and mode, streams a workload at a
//! chosen rate, and reports the achieved rate, the delivered ratio, latency from
//! producer send to subscriber receipt (matched by step), server CPU and memory read
//! from `/proc`, its own CPU, and bytes per frame and per second.
//!
//! Three systems are measured the same way:
//! - `phasecast`: producer on `/ingest`, subscribers on `/ws?format=…&delta=…`;
//! - `old-api`: the old server's API (`POST /pcc_state` JSON, `/ws` JSON), so the old
//!   Python server (or phasecast in its place) can be measured by the same tool;
//! - `nats`: nats-server with its WebSocket listener, full JSON states published on a
//!   subject, subscribers over WebSocket: the reference a user would otherwise pick.
//!
//! Idle mode (`--idle`) opens connections that receive nothing and reports the
//! server's resident memory per connection.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_tungstenite::tungstenite::Message;

use phasecast::{
    codec::{self, Encoding},
    workload::Workload,
};
use phasecast_client::{IngestPublisher, Publisher};

use crate::{
    attack::{Attack, Attackers},
    ws_config,
};

/// The system under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// phasecast with its own API.
    Phasecast,
    /// The old server's HTTP/JSON API (phasecast serves it too).
    OldApi,
    /// nats-server over its WebSocket listener.
    Nats,
    /// The floor server (`phasecast-bench floor-server`): one write per frame per
    /// subscriber and nothing else, the least any server can do.
    Floor,
}

/// `phasecast loadgen` options.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// The system to measure.
    #[arg(long, value_enum, default_value = "phasecast")]
    pub system: System,
    /// A running server (`http://host:port`) instead of starting one. Its CPU and
    /// memory are read only when --server-pid is given.
    #[arg(long)]
    pub target: Option<String>,
    /// PID of the --target server, for CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Subscribers (ignored with --idle).
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// phasecast nodes sharing a nats-server (this tool starts them all); the
    /// producer uses the first, subscribers are spread over all of them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Subscriber format (phasecast only; the others are JSON).
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Ask for deltas (phasecast only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub delta: bool,
    /// States per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Measured duration.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Unmeasured warm-up before it.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Workload (see `phasecast bandwidth`).
    #[arg(long, default_value = "kuramoto-32")]
    pub workload: String,
    /// Stamp each state with the wall clock when it is sent (instead of the
    /// workload's reproducible timestamps), so that a reader beside the load can tell
    /// how old the state it holds is.
    #[arg(long)]
    pub wall_clock: bool,
    /// ε for a server this tool starts.
    #[arg(long, default_value_t = 0.0)]
    pub epsilon: f64,
    /// Metrics on or off in a server this tool starts (to measure their cost).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub server_metrics: bool,
    /// Extra flags for a server this tool starts: `serve` flags for phasecast (e.g.
    /// --socket-send-buffer=256KiB), `floor-server` flags for the floor server
    /// (--ping-on-join).
    #[arg(long, allow_hyphen_values = true)]
    pub serve_arg: Vec<String>,
    /// Subscriber shapes, as query parameters (`epsilon=0.001&fields=summary`): the
    /// subscribers take them in turn (one shape: all of them). Only for phasecast.
    #[arg(long)]
    pub shape: Vec<String>,
    /// Idle mode: open this many connections that receive nothing; report memory.
    #[arg(long)]
    pub idle: Option<usize>,
    /// Hostile clients to run alongside the subscribers (`none` for the baseline to
    /// compare with); they start before the warm-up and stop after the measurement.
    #[arg(long, value_enum)]
    pub attack: Option<Attack>,
    /// How many hostile clients (with --attack).
    #[arg(long, default_value_t = 20)]
    pub attackers: usize,
    /// The `phasecast` server binary to start (default: the one beside this tool), so
    /// that two builds can be measured by the same load generator.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The nats-server binary.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// One run's result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadResult {
    /// System measured.
    pub system: System,
    /// Subscriber format.
    pub format: String,
    /// Deltas asked for.
    pub delta: bool,
    /// Workload.
    pub workload: String,
    /// Subscribers (or idle connections).
    pub subscribers: usize,
    /// Idle mode.
    pub idle: bool,
    /// Target rate, states per second.
    pub rate: f64,
    /// States sent in the measured window.
    pub sent: u64,
    /// Achieved rate.
    pub achieved_hz: f64,
    /// Frames received for measured states / (states × subscribers).
    pub delivered_ratio: f64,
    /// Producer send → subscriber receipt.
    pub latency_ms: Latency,
    /// Server CPU, percent of one core.
    pub server_cpu_percent: Option<f64>,
    /// Server CPU per delivered frame, microseconds.
    pub server_cpu_us_per_frame: Option<f64>,
    /// Server resident memory at the end, MB.
    pub server_rss_mb: Option<f64>,
    /// Server resident memory per connection, KB (idle mode).
    pub rss_kb_per_connection: Option<f64>,
    /// This tool's CPU, percent of one core.
    pub loadgen_cpu_percent: f64,
    /// Average frame size received.
    pub bytes_per_frame: f64,
    /// Bytes per second received, all subscribers together.
    pub bytes_per_second: f64,
    /// Server metrics on.
    pub server_metrics: bool,
    /// phasecast nodes (1 without a bus).
    #[serde(default = "one")]
    pub nodes: usize,
    /// CPU of the broker between nodes, percent of one core.
    #[serde(default)]
    pub broker_cpu_percent: Option<f64>,
    /// Latency of subscribers on the producer's node (multi-node runs).
    #[serde(default)]
    pub latency_local_ms: Option<Latency>,
    /// Latency of subscribers on the other nodes: one NATS hop more.
    #[serde(default)]
    pub latency_remote_ms: Option<Latency>,
    /// Hostile clients run alongside (`none`: the baseline for them).
    #[serde(default)]
    pub attack: Option<Attack>,
    /// Connections the hostile clients opened during the run.
    #[serde(default)]
    pub attack_connections: Option<u64>,
    /// Extra `serve` flags of a server this tool started.
    #[serde(default)]
    pub serve_args: Vec<String>,
    /// The producer's send round trip in the measured window: for the old API one
    /// `POST /pcc_state` (one in flight), for `/ingest` and NATS the socket write.
    #[serde(default)]
    pub producer_send_ms: Option<Latency>,
    /// Slots (1 / rate apart) in the measured window whose send began a whole
    /// period or more after its slot: the producer fell behind its rate there.
    #[serde(default)]
    pub late_slots: Option<u64>,
    /// The subscribers' shapes (`--shape`), taken in turn.
    #[serde(default)]
    pub shapes: Vec<String>,
}

fn one() -> usize {
    1
}

/// Sums the samples of several processes (all must be readable).
fn sample_all(pids: &[u32]) -> Option<Sample> {
    pids.iter().try_fold((0.0, 0.0), |(cpu, rss), pid| {
        let (c, r) = proc_sample(Some(*pid))?;
        Some((cpu + c, rss + r))
    })
}

/// CPU seconds and resident memory (MB) of a process.
pub(crate) type Sample = (f64, f64);

/// The measured window: when it began, and the server's and this tool's samples then.
struct Window {
    start: Instant,
    server: Option<Sample>,
    own: Option<Sample>,
    broker: Option<Sample>,
}

/// CPU seconds and resident memory of a process, from `/proc`.
pub(crate) fn proc_sample(pid: Option<u32>) -> Option<Sample> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let rss_pages: f64 = fields.get(21)?.parse().ok()?;
    // Linux: 100 ticks a second, 4 KiB pages on the machines this runs on.
    Some((ticks / 100.0, rss_pages * 4096.0 / 1e6))
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server this tool started; stopped on drop.
pub(crate) struct Spawned {
    child: Child,
    _dir: Option<PathBuf>,
}

impl Spawned {
    /// Owns `child`: it is killed when this is dropped.
    pub(crate) fn new(child: Child) -> Spawned {
        Spawned { child, _dir: None }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self._dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Where the system listens.
struct Endpoints {
    /// HTTP base of the node producers use.
    http: String,
    /// WebSocket base of every node; subscribers are spread over them, the producer
    /// uses the first.
    ws: Vec<String>,
    nats_tcp: Option<SocketAddr>,
    /// The server processes (one per node), for CPU and memory.
    pids: Vec<u32>,
    /// The broker between phasecast nodes, when there is one.
    broker_pid: Option<u32>,
    _spawned: Vec<Spawned>,
}

pub(crate) async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listens on {addr} after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts nats-server with a WebSocket listener (and, for phasecast nodes, JetStream,
/// keeping its store in the server's own directory); returns it, its TCP address and
/// its WebSocket URL.
pub(crate) async fn spawn_nats(
    binary: &str,
    jetstream: bool,
) -> anyhow::Result<(Spawned, SocketAddr, String)> {
    let (port, ws_port) = (free_port()?, free_port()?);
    let dir = std::env::temp_dir().join(format!(
        "phasecast-loadgen-nats-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nats.conf");
    let mut text = format!("listen: 127.0.0.1:{port}\nmax_payload: 8MB\nwebsocket {{\n  listen: 127.0.0.1:{ws_port}\n  no_tls: true\n}}\n");
    if jetstream {
        text.push_str(&format!(
            "jetstream {{\n  store_dir: {:?}\n}}\n",
            dir.join("jetstream")
        ));
    }
    std::fs::write(&conf, text)?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {binary}: {e} (install Debian's nats-server)"))?;
    let spawned = Spawned {
        child,
        _dir: Some(dir),
    };
    let tcp = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(tcp).await?;
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], ws_port))).await?;
    Ok((spawned, tcp, format!("ws://127.0.0.1:{ws_port}")))
}

/// The server binary to start: `chosen`, else `phasecast` beside the running tool
/// (cargo puts every binary of the workspace in the same target folder).
///
/// # Errors
/// When there is no such file.
pub fn server_binary(chosen: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match chosen {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("phasecast"),
    };
    anyhow::ensure!(
        path.is_file(),
        "no server binary at {} (build it: cargo build --release --bin phasecast, or pass --server-bin)",
        path.display()
    );
    Ok(path)
}

/// Starts one phasecast node; returns it and its port.
async fn spawn_phasecast(
    args: &LoadgenArgs,
    bus: Option<(&str, usize)>,
) -> anyhow::Result<(Spawned, u16)> {
    let port = free_port()?;
    let mut command = Command::new(server_binary(&args.server_bin)?);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(format!("--delta-epsilon={}", args.epsilon))
        .arg(format!("--metrics={}", args.server_metrics))
        .args(["--max-subscribers", "100000"]);
    // All load comes from one address: no per-IP limits, unless --serve-arg sets them.
    for flag in ["--producer-rate-limit", "--connection-rate-limit"] {
        if !args.serve_arg.iter().any(|a| a.starts_with(flag)) {
            command.args([flag, "0"]);
        }
    }
    command
        .args(&args.serve_arg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let Some((url, node)) = bus {
        command.args(["--nats-url", url, "--node-id", &format!("node{node}")]);
    }
    let child = command.spawn()?;
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    Ok((Spawned { child, _dir: None }, port))
}

async fn start(args: &LoadgenArgs) -> anyhow::Result<Endpoints> {
    if let Some(target) = &args.target {
        let http = target.trim_end_matches('/').to_owned();
        return Ok(Endpoints {
            ws: vec![http.replacen("http", "ws", 1)],
            http,
            nats_tcp: None,
            pids: args.server_pid.into_iter().collect(),
            broker_pid: None,
            _spawned: Vec::new(),
        });
    }
    match args.system {
        System::Phasecast | System::OldApi => {
            let mut spawned = Vec::new();
            let mut broker_pid = None;
            let mut bus_url = None;
            if args.nodes > 1 {
                let (broker, tcp, _) = spawn_nats(&args.nats_server, true).await?;
                broker_pid = Some(broker.child.id());
                bus_url = Some(format!("nats://{tcp}"));
                spawned.push(broker);
            }
            let (mut ws, mut pids) = (Vec::new(), Vec::new());
            for node in 0..args.nodes.max(1) {
                let (server, port) =
                    spawn_phasecast(args, bus_url.as_deref().map(|u| (u, node))).await?;
                pids.push(server.child.id());
                ws.push(format!("ws://127.0.0.1:{port}"));
                spawned.push(server);
            }
            if args.nodes > 1 {
                // Let every node follow the default stream's log before the first state.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(Endpoints {
                http: ws[0].replacen("ws", "http", 1),
                ws,
                nats_tcp: None,
                pids,
                broker_pid,
                _spawned: spawned,
            })
        }
        System::Floor => {
            let port = free_port()?;
            let child = Command::new(std::env::current_exe()?)
                .args(["floor-server", "--port", &port.to_string()])
                .args(&args.serve_arg)
                .stdout(Stdio::null())
                .spawn()?;
            let spawned = Spawned::new(child);
            let tcp = SocketAddr::from(([127, 0, 0, 1], port));
            wait_for_port(tcp).await?;
            Ok(Endpoints {
                http: String::new(),
                ws: vec![format!("ws://{tcp}")],
                nats_tcp: Some(tcp),
                pids: vec![spawned.child.id()],
                broker_pid: None,
                _spawned: vec![spawned],
            })
        }
        System::Nats => {
            let (spawned, tcp, ws) = spawn_nats(&args.nats_server, false).await?;
            Ok(Endpoints {
                http: String::new(),
                ws: vec![ws],
                nats_tcp: Some(tcp),
                pids: vec![spawned.child.id()],
                broker_pid: None,
                _spawned: vec![spawned],
            })
        }
    }
}

/// The step of a frame, read without decoding the rest.
fn frame_step(encoding: Encoding, payload: &[u8]) -> Option<u64> {
    match encoding {
        Encoding::Json => {
            let at = payload.windows(7).position(|w| w == b"\"step\":")? + 7;
            let mut digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
            digits.try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
        }
        Encoding::Protobuf => protobuf_step(payload),
    }
}

/// Parses complete NATS operations in `buf`: the steps of the `MSG` payloads, the
/// number of `PING`s, and how many bytes were consumed.
fn parse_nats(buf: &[u8]) -> (Vec<u64>, usize, usize) {
    let (mut steps, mut pings, mut at) = (Vec::new(), 0, 0);
    while let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[at..at + eol];
        if line.starts_with(b"MSG ") {
            let len: usize = match std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
            {
                Some(n) => n,
                None => {
                    at += eol + 2;
                    continue;
                }
            };
            let start = at + eol + 2;
            if buf.len() < start + len + 2 {
                break; // the payload has not fully arrived
            }
            if let Some(step) = frame_step(Encoding::Json, &buf[start..start + len]) {
                steps.push(step);
            }
            at = start + len + 2;
        } else {
            if line.starts_with(b"PING") {
                pings += 1;
            }
            at += eol + 2;
        }
    }
    (steps, pings, at)
}

/// Field 2 (varint) of a `pcc.v1.Frame`, scanning top-level fields.
fn protobuf_step(mut bytes: &[u8]) -> Option<u64> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match (key >> 3, key & 7) {
            (2, 0) => return varint(&mut bytes),
            (_, 0) => {
                varint(&mut bytes)?;
            }
            (_, 1) => bytes = bytes.get(8..)?,
            (_, 5) => bytes = bytes.get(4..)?,
            (_, 2) => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            _ => return None,
        }
    }
    None
}

/// What all subscriber tasks share.
struct Shared {
    started: Instant,
    /// Send time (µs since `started`) by step; 0 = not sent or not measured.
    sent_at: Vec<AtomicU64>,
    stop: AtomicBool,
    connected: AtomicU64,
}

#[derive(Default)]
struct Tally {
    /// Index of the node this subscriber is on.
    node: usize,
    latencies_us: Vec<u32>,
    frames: u64,
    bytes: u64,
}

async fn subscriber(
    url: String,
    node: usize,
    system: System,
    encoding: Encoding,
    shared: Arc<Shared>,
) -> anyhow::Result<Tally> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
    if system == System::Nats {
        ws.send(Message::Text("CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nSUB pcc.state 1\r\nPING\r\n".into())).await?;
    }
    shared.connected.fetch_add(1, Relaxed);
    let mut tally = Tally {
        node,
        ..Tally::default()
    };
    // NATS protocol operations may be split over, or packed into, WebSocket messages.
    let mut nats_buffer = Vec::new();
    while !shared.stop.load(Relaxed) {
        let message = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(m)) => m?,
        };
        let now = shared.started.elapsed().as_micros() as u64;
        let payload = match &message {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            _ => continue,
        };
        let steps: Vec<u64> = if system == System::Nats {
            nats_buffer.extend_from_slice(payload);
            let (steps, pings, used) = parse_nats(&nats_buffer);
            nats_buffer.drain(..used);
            for _ in 0..pings {
                ws.send(Message::Text("PONG\r\n".into())).await?;
            }
            steps
        } else {
            frame_step(encoding, payload).into_iter().collect()
        };
        let size = payload.len() as u64 / steps.len().max(1) as u64;
        for step in steps {
            let sent = shared
                .sent_at
                .get(step as usize)
                .map_or(0, |s| s.load(Relaxed));
            if sent > 0 {
                tally
                    .latencies_us
                    .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                tally.frames += 1;
                tally.bytes += size;
            }
        }
    }
    Ok(tally)
}

enum Producer {
    Ingest(Box<IngestPublisher>),
    Http(Publisher),
    Nats(TcpStream),
}

impl Producer {
    async fn connect(targets: &Targets) -> anyhow::Result<Producer> {
        Ok(match targets.system {
            System::Phasecast => Producer::Ingest(Box::new(
                IngestPublisher::connect(&targets.ingest, None, Encoding::Protobuf, None).await?,
            )),
            System::OldApi => Producer::Http(Publisher::builder(&targets.http).build()),
            // The floor server reads what nats-server does.
            System::Nats | System::Floor => {
                let addr = targets
                    .nats_tcp
                    .ok_or_else(|| anyhow::anyhow!("no NATS address"))?;
                let mut tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                tcp.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
                    .await?;
                Producer::Nats(tcp)
            }
        })
    }

    async fn send(&mut self, state: &phasecast::model::State) -> anyhow::Result<()> {
        match self {
            Producer::Ingest(p) => p.send(state).await?,
            Producer::Http(p) => {
                p.publish(state).await?;
            }
            Producer::Nats(tcp) => {
                let body = codec::encode_state(Encoding::Json, state);
                let mut message = format!("PUB pcc.state {}\r\n", body.len()).into_bytes();
                message.extend_from_slice(&body);
                message.extend_from_slice(b"\r\n");
                tcp.write_all(&message).await?;
            }
        }
        Ok(())
    }
}

/// Where the producer sends, and whose CPU its window samples.
struct Targets {
    system: System,
    http: String,
    ingest: String,
    nats_tcp: Option<SocketAddr>,
    pids: Vec<u32>,
    broker_pid: Option<u32>,
}

/// What the producer measured.
struct Produced {
    window: Option<Window>,
    measured: u64,
    send_us: Vec<u32>,
    late_slots: u64,
}

/// Connects the producer (then says so on `connected`) and sends states at the rate
/// through the warm-up and the measured window, which it opens.
async fn produce(
    args: &LoadgenArgs,
    targets: &Targets,
    shared: &Shared,
    connected: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Produced> {
    let warmup = humantime::parse_duration(&args.warmup)?;
    let duration = humantime::parse_duration(&args.duration)?;
    let mut producer = Producer::connect(targets).await?;
    let _ = connected.send(());
    let mut workload = Workload::named(&args.workload, 1).map_err(anyhow::Error::msg)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    let mut window: Option<Window> = None;
    let mut measured = 0u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let (mut send_us, mut late_slots) = (Vec::<u32>::new(), 0u64);
    let mut last_progress = Instant::now();
    loop {
        let slot_at = tick.tick().await;
        let elapsed = began.elapsed();
        if elapsed >= warmup + duration {
            break;
        }
        let mut state = workload.next_state();
        if args.wall_clock {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            state.timestamp = Some(now.as_secs_f64());
        }
        let in_window = elapsed >= warmup;
        if in_window && window.is_none() {
            window = Some(Window {
                start: Instant::now(),
                server: sample_all(&targets.pids),
                own: proc_sample(None),
                broker: targets.broker_pid.and_then(|p| proc_sample(Some(p))),
            });
        }
        if let Some(slot) = shared.sent_at.get(state.step as usize) {
            if in_window {
                slot.store(shared.started.elapsed().as_micros().max(1) as u64, Relaxed);
                measured += 1;
            }
        }
        let send_began = tokio::time::Instant::now();
        producer.send(&state).await?;
        if in_window {
            send_us.push(send_began.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            late_slots += u64::from(send_began.duration_since(slot_at) >= period);
        }
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            let phase = if in_window { "measuring" } else { "warming up" };
            progress(
                args.quiet,
                elapsed.as_secs_f64() / (warmup + duration).as_secs_f64(),
                &format!("{phase}: {} states sent", state.step),
            );
        }
    }
    Ok(Produced {
        window,
        measured,
        send_us,
        late_slots,
    })
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn progress(quiet: bool, done: f64, text: &str) {
    if quiet {
        return;
    }
    let width = 30;
    let filled = ((done.clamp(0.0, 1.0)) * width as f64) as usize;
    eprint!(
        "\r[{}{}] {:>3.0}% {text}   ",
        "#".repeat(filled),
        "-".repeat(width - filled),
        done * 100.0
    );
    let _ = std::io::stderr().flush();
}

/// Runs one measurement.
///
/// # Errors
/// When the server cannot be started or reached.
pub async fn run(args: &LoadgenArgs) -> anyhow::Result<LoadResult> {
    let encoding: Encoding = match args.system {
        System::Phasecast => args.format.parse()?,
        _ => Encoding::Json,
    };
    let duration = humantime::parse_duration(&args.duration)?;
    let warmup = humantime::parse_duration(&args.warmup)?;
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above 0"
    );
    let endpoints = start(args).await?;
    let connections = args.idle.unwrap_or(args.subscribers);
    let attackers = if args.attack.is_some() {
        args.attackers
    } else {
        0
    };
    raise_fd_limit((connections + attackers) * 2 + 256);

    let total_steps = ((duration + warmup).as_secs_f64() * args.rate) as usize + 16;
    let shared = Arc::new(Shared {
        started: Instant::now(),
        sent_at: (0..total_steps + 1).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        connected: AtomicU64::new(0),
    });
    let url = |node: &str, i: usize| match args.system {
        System::Phasecast => {
            let shape = match args.shape.len() {
                0 => String::new(),
                n => format!("&{}", args.shape[i % n]),
            };
            format!("{node}/ws?format={}&delta={}{shape}", encoding, args.delta)
        }
        System::OldApi => format!("{node}/ws"),
        System::Nats | System::Floor => node.to_owned(),
    };
    let rss_before = sample_all(&endpoints.pids).map(|s| s.1);
    let mut tasks = Vec::with_capacity(connections);
    let opening = Instant::now();
    for i in 0..connections {
        let node = i % endpoints.ws.len();
        tasks.push(tokio::spawn(subscriber(
            url(&endpoints.ws[node], i),
            node,
            args.system,
            encoding,
            shared.clone(),
        )));
        if i % 64 == 63 {
            // Let the accept queue drain.
            while shared.connected.load(Relaxed) + 128 < i as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            progress(
                args.quiet,
                i as f64 / connections as f64,
                &format!("opening {i}/{connections}"),
            );
        }
    }
    while shared.connected.load(Relaxed) < connections as u64 {
        anyhow::ensure!(
            opening.elapsed() < Duration::from_secs(120),
            "only {} of {connections} connected",
            shared.connected.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Subscriptions settle (NATS SUB is asynchronous).
    tokio::time::sleep(Duration::from_millis(500)).await;

    if let Some(idle) = args.idle {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after = sample_all(&endpoints.pids).map(|s| s.1);
        shared.stop.store(true, Relaxed);
        let per = match (rss_before, rss_after) {
            (Some(b), Some(a)) => Some((a - b) * 1000.0 / idle as f64),
            _ => None,
        };
        if !args.quiet {
            eprintln!();
        }
        return Ok(LoadResult {
            system: args.system,
            format: encoding.to_string(),
            delta: args.delta,
            workload: args.workload.clone(),
            subscribers: idle,
            idle: true,
            rate: 0.0,
            sent: 0,
            achieved_hz: 0.0,
            delivered_ratio: 0.0,
            latency_ms: Latency::default(),
            server_cpu_percent: None,
            server_cpu_us_per_frame: None,
            server_rss_mb: rss_after,
            rss_kb_per_connection: per,
            loadgen_cpu_percent: 0.0,
            bytes_per_frame: 0.0,
            bytes_per_second: 0.0,
            server_metrics: args.server_metrics,
            nodes: endpoints.pids.len().max(1),
            broker_cpu_percent: None,
            latency_local_ms: None,
            latency_remote_ms: None,
            attack: None,
            attack_connections: None,
            serve_args: args.serve_arg.clone(),
            shapes: args.shape.clone(),
            producer_send_ms: None,
            late_slots: None,
        });
    }

    // The producer runs on its own thread and runtime, as a producer process would:
    // its sends never queue behind this tool's subscriber tasks, so what its round
    // trip measures is the server.
    let targets = Targets {
        system: args.system,
        http: endpoints.http.clone(),
        ingest: endpoints.ws[0].clone(),
        nats_tcp: endpoints.nats_tcp,
        pids: endpoints.pids.clone(),
        broker_pid: endpoints.broker_pid,
    };
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let producer = {
        let (args, shared) = (args.clone(), shared.clone());
        std::thread::Builder::new()
            .name("loadgen-producer".into())
            .spawn(move || {
                // A latency-sensitive producer process would ask the same; it keeps
                // this tool's own readers out of the round trip it measures.
                let _ = phasecast::sched::request_slice(phasecast::sched::INGEST_SLICE);
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(produce(&args, &targets, &shared, connected_tx))
            })?
    };
    // After the producer connected: attackers share its address and may exhaust the
    // per-IP connection rate.
    let attackers = match connected.await {
        Ok(()) => args
            .attack
            .map(|attack| Attackers::spawn(attack, args.attackers, &endpoints.ws[0]))
            .transpose()?,
        Err(_) => None,
    };
    let Produced {
        window,
        measured,
        send_us,
        late_slots,
    } = tokio::task::spawn_blocking(move || producer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let window = window.ok_or_else(|| anyhow::anyhow!("the measured window never started"))?;
    let wall = window.start.elapsed().as_secs_f64();
    let server_end = sample_all(&endpoints.pids);
    let self_end = proc_sample(None);
    let broker_end = endpoints.broker_pid.and_then(|p| proc_sample(Some(p)));
    // Frames still in flight arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    shared.stop.store(true, Relaxed);
    let attack_connections = match attackers {
        Some(a) => Some(a.stop().await),
        None => None,
    };
    let (mut latencies, mut local, mut remote) = (Vec::new(), Vec::new(), Vec::new());
    let (mut frames, mut bytes) = (0u64, 0u64);
    for t in tasks {
        if let Ok(Ok(tally)) = t.await {
            if tally.node == 0 {
                local.extend_from_slice(&tally.latencies_us);
            } else {
                remote.extend_from_slice(&tally.latencies_us);
            }
            latencies.extend(tally.latencies_us);
            frames += tally.frames;
            bytes += tally.bytes;
        }
    }
    if !args.quiet {
        eprintln!();
    }
    let multi_node = endpoints.ws.len() > 1;
    let latency = |mut v: Vec<u32>| {
        v.sort_unstable();
        Latency {
            p50: percentile(&v, 0.50),
            p95: percentile(&v, 0.95),
            p99: percentile(&v, 0.99),
            max: percentile(&v, 1.0),
        }
    };
    latencies.sort_unstable();
    let producer_send_ms = (!send_us.is_empty()).then(|| latency(send_us));
    let cpu = |a: Option<Sample>, b: Option<Sample>| Some((b?.0 - a?.0) / wall * 100.0);
    let server_cpu = cpu(window.server, server_end);
    Ok(LoadResult {
        system: args.system,
        format: encoding.to_string(),
        delta: args.delta,
        workload: args.workload.clone(),
        subscribers: connections,
        idle: false,
        rate: args.rate,
        sent: measured,
        achieved_hz: measured as f64 / wall,
        delivered_ratio: frames as f64 / (measured as f64 * connections as f64),
        latency_ms: Latency {
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            max: percentile(&latencies, 1.0),
        },
        server_cpu_us_per_frame: server_cpu.map(|c| c / 100.0 * wall / frames.max(1) as f64 * 1e6),
        server_cpu_percent: server_cpu,
        server_rss_mb: server_end.map(|s| s.1),
        rss_kb_per_connection: None,
        loadgen_cpu_percent: cpu(window.own, self_end).unwrap_or(f64::NAN),
        bytes_per_frame: bytes as f64 / frames.max(1) as f64,
        bytes_per_second: bytes as f64 / wall,
        server_metrics: args.server_metrics,
        nodes: endpoints.pids.len().max(1),
        broker_cpu_percent: cpu(window.broker, broker_end),
        latency_local_ms: multi_node.then(|| latency(local)),
        latency_remote_ms: multi_node.then(|| latency(remote)),
        attack: args.attack,
        attack_connections,
        serve_args: args.serve_arg.clone(),
        shapes: args.shape.clone(),
        producer_send_ms,
        late_slots: Some(late_slots),
    })
}

pub(crate) fn raise_fd_limit(want: usize) {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        let target = (want as u64).max(soft).min(hard);
        if target > soft {
            let _ = rlimit::Resource::NOFILE.set(target, hard);
        }
    }
}

/// A one-line summary of a result.
pub fn summary(r: &LoadResult) -> String {
    if r.idle {
        return format!(
            "{:?} {} idle connections: server RSS {:.1} MB, {:.1} KB per connection",
            r.system,
            r.subscribers,
            r.server_rss_mb.unwrap_or(f64::NAN),
            r.rss_kb_per_connection.unwrap_or(f64::NAN)
        );
    }
    let attack = match (r.attack, r.attack_connections) {
        (Some(a), Some(n)) if a != Attack::None => {
            format!(" under attack {} ({n} hostile connections)", a.name())
        }
        _ => String::new(),
    };
    let producer = match (&r.producer_send_ms, r.late_slots) {
        (Some(send), Some(late)) => format!(
            ", producer send p50 {:.2} ms p99 {:.2} ms, {late} late slots",
            send.p50, send.p99
        ),
        _ => String::new(),
    };
    format!(
        "{:?} {} delta={} {} subscribers @ {:.0} Hz ({}){attack}: delivered {:.4}, latency p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms max {:.2} ms, server CPU {:.1}% ({:.2} µs/frame), RSS {:.1} MB, loadgen CPU {:.1}%, {:.0} B/frame, {:.1} MB/s{producer}",
        r.system,
        r.format,
        r.delta,
        r.subscribers,
        r.achieved_hz,
        r.workload,
        r.delivered_ratio,
        r.latency_ms.p50,
        r.latency_ms.p95,
        r.latency_ms.p99,
        r.latency_ms.max,
        r.server_cpu_percent.unwrap_or(f64::NAN),
        r.server_cpu_us_per_frame.unwrap_or(f64::NAN),
        r.server_rss_mb.unwrap_or(f64::NAN),
        r.loadgen_cpu_percent,
        r.bytes_per_frame,
        r.bytes_per_second / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use phasecast::model::State;

    #[test]
    fn step_is_read_from_every_frame_form() {
        let s = State {
            step: 123_456,
            phases: vec![0.5; 4],
            spins: vec![1; 4],
            energy: 1.0,
            timestamp: Some(2.0),
        };
        for e in Encoding::ALL {
            let full = codec::encode_full(e, 99, "", &s);
            assert_eq!(frame_step(e, &full), Some(123_456), "{e}");
        }
        let body = codec::encode_state(Encoding::Json, &s);
        let mut nats = format!("MSG pcc.state 1 {}\r\n", body.len()).into_bytes();
        nats.extend_from_slice(&body);
        nats.extend_from_slice(b"\r\nPING\r\n");
        let half = nats.len() / 2;
        let mut both = nats.clone();
        both.extend_from_slice(&nats);
        assert_eq!(parse_nats(&both), (vec![123_456, 123_456], 2, both.len()));
        // A message cut in the middle: nothing is consumed until the rest arrives.
        assert_eq!(parse_nats(&nats[..half]), (vec![], 0, 0));
        assert_eq!(protobuf_step(&[0xff]), None);
    }

    #[test]
    fn proc_sample_reads_this_process() {
        let (cpu, rss) = proc_sample(None).expect("/proc is readable");
        assert!(cpu >= 0.0 && rss > 1.0, "{cpu} {rss}");
    }
}
