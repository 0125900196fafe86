//! `TestServer`: the real server on 127.0.0.1:0, in this process, with a shutdown
//! trigger the test controls; and small helpers shared by every test file.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use phasecast::{codec::Encoding, config::Config, model::State};
use phasecast_client::{Publisher, SubscribeOptions, Subscriber};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Every await in a test goes through this, so a hang fails fast.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

pub struct TestServer {
    addr: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), phasecast::server::Error>>,
}

/// phasecast-client builds reqwest with rustls and no crypto provider of its own
/// choosing; a program that also makes plain `reqwest` clients (as these tests do)
/// installs one first, as the client's README says.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    /// Starts a server with the default config changed by `change`.
    pub async fn with(change: impl FnOnce(&mut Config)) -> TestServer {
        install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            listen: addr,
            ..Config::default()
        };
        config.shutdown_timeout = Duration::from_secs(3);
        change(&mut config);
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let handle = tokio::spawn(phasecast::server::run(listener, config, async move {
            trigger.cancelled().await
        }));
        TestServer { addr, stop, handle }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn publisher(&self, encoding: Encoding) -> Publisher {
        Publisher::builder(self.http()).encoding(encoding).build()
    }

    pub async fn subscribe(&self, encoding: Encoding, deltas: bool) -> Subscriber {
        let options = SubscribeOptions::new(self.ws())
            .encoding(encoding)
            .deltas(deltas);
        within("subscribe", Subscriber::connect(&options))
            .await
            .expect("subscribe")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = within("GET", reqwest::get(format!("{}{path}", self.http())))
            .await
            .expect("GET");
        response.json().await.expect("JSON body")
    }

    pub async fn health(&self) -> serde_json::Value {
        self.get_json("/health").await
    }

    pub async fn metrics(&self) -> String {
        let response = within(
            "GET /metrics",
            reqwest::get(format!("{}/metrics", self.http())),
        )
        .await
        .expect("GET /metrics");
        assert!(response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        response.text().await.unwrap()
    }

    /// Waits until `/health` satisfies `ok`.
    pub async fn wait_for_health(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
        within(what, async {
            loop {
                if ok(&self.health().await) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(self) {
        self.stop.cancel();
        within("server shutdown", self.handle)
            .await
            .expect("server task")
            .expect("server run");
    }
}

/// The value of a metric line `name{labels} value` in a Prometheus scrape (labels
/// must match exactly as rendered, e.g. `{reason="conflated"}`; "" for none).
pub fn metric(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A valid state; from one step to the next a quarter of the phases move.
pub fn state(step: u64, n: usize) -> State {
    State {
        step,
        phases: (0..n)
            .map(|i| (i as f64 * 0.1 + 0.01 * ((step + i as u64) / 4) as f64) % 6.0)
            .collect(),
        spins: (0..n)
            .map(|i| {
                if (i as u64 + step / 7) % 3 == 0 {
                    -1
                } else {
                    1
                }
            })
            .collect(),
        energy: -(step as f64) * 0.5,
        timestamp: Some(1_764_000_000.0 + step as f64 * 0.005),
    }
}

/// A TCP proxy in front of a server whose connections the test can cut, and which
/// can be pointed at another server (a restart behind one address).
pub struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    target: Arc<std::sync::Mutex<SocketAddr>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        let target = Arc::new(std::sync::Mutex::new(target));
        let targets = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                watch.borrow_and_update();
                let target = *targets.lock().unwrap();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, cut, target }
    }

    /// New connections go to `target` from now on (those open now stay where they are).
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open now; new ones are accepted.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real nats-server with JetStream on a free loopback port, keeping its store in a
/// directory of its own (removed on drop); killed on drop. It can be stopped and
/// started again on the same port and store (the broker fault tests), alone or as one
/// server of a [`NatsCluster`].
pub struct NatsServer {
    port: u16,
    store: std::path::PathBuf,
    /// Extra arguments: the cluster's name, listen address and routes.
    cluster_args: Vec<String>,
    child: Option<std::process::Child>,
}

impl NatsServer {
    /// Starts a single nats-server with JetStream (installed by scripts/test.sh).
    pub async fn start() -> NatsServer {
        let mut server = NatsServer::new(Vec::new());
        server.restart().await;
        server
    }

    fn new(cluster_args: Vec<String>) -> NatsServer {
        let port = free_port();
        let store =
            std::env::temp_dir().join(format!("phasecast-test-nats-{}-{port}", std::process::id()));
        NatsServer {
            port,
            store,
            cluster_args,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut command = std::process::Command::new("nats-server");
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.cluster_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = command
            .spawn()
            .expect("nats-server (scripts/test.sh installs Debian's nats-server)");
        self.child = Some(child);
    }

    async fn wait_up(&self) {
        within("nats-server up", async {
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_up().await;
    }

    /// Kills it (SIGKILL: no goodbye to clients or the cluster).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Three nats-servers clustered on loopback with JetStream: logs there keep three
/// replicas, and any one server may die.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start() -> NatsCluster {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let mut servers: Vec<NatsServer> = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                NatsServer::new(vec![
                    "-n".into(),
                    format!("phasecast-test-{i}"),
                    "--cluster_name".into(),
                    "phasecast-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".into(),
                    all.join(","),
                ])
            })
            .collect();
        for s in &mut servers {
            s.spawn();
        }
        for s in &servers {
            s.wait_up().await;
        }
        NatsCluster { servers }
    }

    /// Every server's URL, comma-separated: what a node's PCC_NATS_URL lists.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Whether the tests that need nats-server can run.
pub fn nats_available() -> bool {
    let found = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found && std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some() {
        panic!("nats-server is required (scripts/test.sh installs it)");
    }
    if !found {
        eprintln!("skipping: nats-server is not installed (scripts/test.sh installs it)");
    }
    found
}

/// Waits until the metric line `name_and_labels` (as [`metric`] reads it) satisfies
/// `ok`, scraping again and again: tests decide on what the server has counted, not
/// on how long it usually takes to count it. Returns the scrape that satisfied it.
pub async fn wait_for_metric(
    server: &TestServer,
    name_and_labels: &str,
    ok: impl Fn(f64) -> bool,
) -> String {
    within(&format!("metric {name_and_labels}"), async {
        loop {
            let scrape = server.metrics().await;
            if metric(&scrape, name_and_labels).is_some_and(&ok) {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A WebSocket client on a bare TCP socket that only reads: it never answers a ping
/// (tungstenite answers them whenever it is polled), so a test can be a peer that is
/// silent for certain, and can end the connection without a close frame (FIN, reset).
pub struct RawWs {
    pub tcp: tokio::net::TcpStream,
    buffered: Vec<u8>,
}

/// A frame read by [`RawWs`]: its opcode and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub const TEXT: u8 = 0x1;
    pub const CLOSE: u8 = 0x8;

    /// A close frame's code and reason.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == RawFrame::CLOSE && self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8_lossy(&self.payload[2..]).into_owned(),
            )
        })
    }
}

impl RawWs {
    /// Opens `path` (e.g. `/ws?format=json`) on `addr` and reads the 101 answer.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = within("connect", tokio::net::TcpStream::connect(addr))
            .await
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buffered = Vec::new();
        let end = within("101 Switching Protocols", async {
            loop {
                if let Some(i) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed during the handshake");
                buffered.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buffered.drain(..end);
        RawWs { tcp, buffered }
    }

    /// The next frame from the server; `None` once the server has closed the socket.
    pub async fn next(&mut self) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        within("raw frame", async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buffered) {
                    self.buffered.drain(..used);
                    return Some(frame);
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }

    /// Reads (without answering anything) until the server's close frame.
    pub async fn close_frame(&mut self) -> (u16, String) {
        while let Some(frame) = self.next().await {
            if let Some(close) = frame.close() {
                return close;
            }
        }
        panic!("the server closed the socket without a close frame");
    }
}

/// One unmasked server frame at the start of `bytes`, and how many bytes it took.
fn parse_frame(bytes: &[u8]) -> Option<(RawFrame, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    let opcode = bytes[0] & 0x0f;
    let (len, header) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => (
            u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let end = header + len;
    (bytes.len() >= end).then(|| {
        (
            RawFrame {
                opcode,
                payload: bytes[header..end].to_vec(),
            },
            end,
        )
    })
}

/// What a [`GatedProxy`] does with the bytes a server sends to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Forward them.
    Flow,
    /// Read nothing: the server's socket fills and its writes block, as if the client
    /// had stopped reading. (The proxy's own receive buffer is small.)
    Hold,
    /// Read them (so the server's writes complete) but keep them; they are forwarded,
    /// in order, once the gate is `Flow` again.
    Buffer,
}

/// A TCP proxy in front of a server whose server-to-client direction the test gates:
/// a reader that stalls exactly when, and for as long as, the test says, whatever the
/// process behind it (a Python or Node client) does.
pub struct GatedProxy {
    addr: SocketAddr,
    gate: tokio::sync::watch::Sender<Gate>,
}

impl GatedProxy {
    pub async fn start(target: SocketAddr) -> GatedProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, watch) = tokio::sync::watch::channel(Gate::Flow);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    // Small and fixed (no autotuning): while held, little of what
                    // the server writes fits anywhere.
                    socket.set_recv_buffer_size(4096).unwrap();
                    let Ok(outbound) = socket.connect(target).await else {
                        return;
                    };
                    let (mut client_read, client_write) = inbound.into_split();
                    let (server_read, mut server_write) = outbound.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    gated_copy(server_read, client_write, watch).await;
                });
            }
        });
        GatedProxy { addr, gate }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, gate: Gate) {
        self.gate.send_replace(gate);
    }
}

async fn gated_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<Gate>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let now = *gate.borrow_and_update();
        if now == Gate::Hold {
            if gate.changed().await.is_err() {
                return;
            }
            continue;
        }
        if now == Gate::Flow && !kept.is_empty() {
            if to.write_all(&kept).await.is_err() {
                return;
            }
            kept.clear();
        }
        tokio::select! {
            read = from.read(&mut chunk) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.write_all(&kept).await;
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) if now == Gate::Buffer => kept.extend_from_slice(&chunk[..n]),
                Ok(n) => {
                    if to.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = gate.changed() => if changed.is_err() { return },
        }
    }
}
