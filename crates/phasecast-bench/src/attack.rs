//! Hostile clients for `phasecast loadgen --attack`: while the measured subscribers
//! receive, a number of attackers misbehave in one chosen way, each opening a new
//! connection as soon as the server has closed its last one. Comparing the measured
//! subscribers' latency with a run without attack shows what the attack costs the
//! others.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::ws_config;

/// How the attackers misbehave.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// No attackers: the baseline.
    None,
    /// TCP connections that never send a byte (a peer that went away, or never
    /// meant to speak).
    HalfOpen,
    /// A WebSocket upgrade request sent one header line a second, never finished.
    SlowHandshake,
    /// Subscribers that send bytes that are not a control message.
    Garbage,
    /// Subscribers that send a 1 MiB message.
    HugeFrames,
    /// Subscribers that send pings as fast as the server takes them (and read the
    /// pongs and frames).
    PingFlood,
    /// Subscribers that never read; each is replaced after 10 s.
    NeverReads,
}

impl Attack {
    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::HalfOpen => "half-open",
            Attack::SlowHandshake => "slow-handshake",
            Attack::Garbage => "garbage",
            Attack::HugeFrames => "huge-frames",
            Attack::PingFlood => "ping-flood",
            Attack::NeverReads => "never-reads",
        }
    }
}

/// Running attackers. Every connection that reached the server counts as opened,
/// including those it refused at once (e.g. over the per-IP connection rate).
///
/// They run on a runtime of their own, one thread: sharing the measured subscribers'
/// scheduler, a busy attacker would delay them inside the load generator and the
/// latency would no longer be the server's alone.
pub struct Attackers {
    stop: CancellationToken,
    opened: Arc<AtomicU64>,
    tasks: JoinSet<()>,
    runtime: tokio::runtime::Runtime,
}

impl Attackers {
    /// Starts `count` attackers against the server at `ws_base` (`ws://host:port`).
    ///
    /// # Errors
    /// When their runtime cannot be started.
    pub fn spawn(attack: Attack, count: usize, ws_base: &str) -> std::io::Result<Attackers> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("attacker")
            .enable_all()
            .build()?;
        let stop = CancellationToken::new();
        let opened = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        if attack != Attack::None {
            for _ in 0..count {
                let (stop, opened, base) = (stop.clone(), opened.clone(), ws_base.to_owned());
                tasks.spawn_on(
                    async move {
                        while !stop.is_cancelled() {
                            let failed = tokio::select! {
                                _ = stop.cancelled() => break,
                                r = one_connection(attack, &base, &opened) => r.is_err(),
                            };
                            if failed {
                                // Refused or reset: do not spin.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    },
                    runtime.handle(),
                );
            }
        }
        Ok(Attackers {
            stop,
            opened,
            tasks,
            runtime,
        })
    }

    /// Stops every attacker; returns how many connections they opened.
    pub async fn stop(mut self) -> u64 {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.runtime.shutdown_background();
        self.opened.load(Relaxed)
    }
}

/// One attacking connection, from connect until the server closes it.
async fn one_connection(attack: Attack, base: &str, opened: &AtomicU64) -> anyhow::Result<()> {
    let host = base.trim_start_matches("ws://");
    match attack {
        Attack::None => Ok(()),
        Attack::HalfOpen => {
            let mut tcp = TcpStream::connect(host).await?;
            opened.fetch_add(1, Relaxed);
            let mut buf = [0u8; 512];
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            Ok(())
        }
        Attack::SlowHandshake => {
            let mut tcp = TcpStream::connect(host).await?;
            opened.fetch_add(1, Relaxed);
            tcp.write_all(
                format!("GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n").as_bytes(),
            )
            .await?;
            let (mut read, mut write) = tcp.split();
            let trickle = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if write.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return;
                    }
                }
            };
            let mut buf = [0u8; 512];
            let closed = async { while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {} };
            tokio::select! { () = trickle => {}, () = closed => {} }
            Ok(())
        }
        Attack::Garbage | Attack::HugeFrames => {
            let mut ws = open_websocket(format!("{base}/ws"), opened).await?;
            let message = if attack == Attack::Garbage {
                Message::Binary(vec![0xff, 0x00, 0x13, 0x37].into())
            } else {
                Message::Binary(vec![0x5a; 1 << 20].into())
            };
            // The server may close while the message is still going out.
            let _ = ws.send(message).await;
            while let Some(Ok(_)) = ws.next().await {}
            Ok(())
        }
        Attack::PingFlood => {
            let ws = open_websocket(format!("{base}/ws"), opened).await?;
            let (mut sink, mut source) = ws.split();
            let flood = async {
                loop {
                    for _ in 0..64 {
                        if sink
                            .feed(Message::Ping(vec![1, 2, 3, 4].into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            };
            let read = async { while let Some(Ok(_)) = source.next().await {} };
            tokio::select! { () = flood => {}, () = read => {} }
            Ok(())
        }
        Attack::NeverReads => {
            let ws = open_websocket(format!("{base}/ws?format=json&delta=false"), opened).await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(ws);
            Ok(())
        }
    }
}

/// A WebSocket connection to `url`, counted as opened once the handshake is done.
async fn open_websocket(
    url: String,
    opened: &AtomicU64,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>
{
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
    opened.fetch_add(1, Relaxed);
    Ok(ws)
}
