//! `TestServer`: the real server on 127.0.0.1:0, in this process, with a shutdown
//! trigger the test controls; and small helpers shared by every test file.

use std::{future::Future, net::SocketAddr, time::Duration};

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
        Publisher::new(&self.http(), None, encoding, None)
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

/// A TCP proxy in front of a server whose connections the test can cut.
pub struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                watch.borrow_and_update();
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
        Proxy { addr, cut }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open now; new ones are accepted.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A real nats-server on a free loopback port; killed on drop. It can be stopped and
/// started again on the same port (the broker fault test).
pub struct NatsServer {
    port: u16,
    child: Option<std::process::Child>,
}

impl NatsServer {
    /// Starts nats-server (installed by scripts/test.sh).
    pub async fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = NatsServer { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (scripts/test.sh installs Debian's nats-server)");
        self.child = Some(child);
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

    /// Kills it.
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
