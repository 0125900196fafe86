//! `phasecast soak`: a bounded run of a real server under a realistic mess. A producer
//! at 200 Hz; steady subscribers that check every delta's checksum; slow readers; a
//! churn of short-lived subscribers; and subscribers that stop reading (the server must
//! drop them). Every second it samples the server's resident memory, open file
//! descriptors and threads from `/proc`, keeping one sample in ten as a series. At the
//! end it checks that every steady subscriber holds exactly the producer's last state
//! (and each slow reader, unless the server dropped it as too slow), that the server's
//! connection gauge is back to the subscribers still open, and that once every client
//! left the server runs as many tasks as before the first one came; it reports memory
//! and descriptors at the start, peak and end.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use phasecast::{codec::Encoding, model::State, workload::Workload};
use phasecast_client::{IngestPublisher, SubscribeOptions, Subscriber};

use crate::loadgen::{
    free_port, proc_sample, raise_fd_limit, server_binary, wait_for_port, Spawned,
};

/// `phasecast soak` options.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The `phasecast` server binary to run (default: the one beside this tool).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
    /// How long the producer runs.
    #[arg(long, default_value = "10m")]
    pub duration: String,
    /// Subscribers that read every frame and verify every checksum.
    #[arg(long, default_value_t = 200)]
    pub steady: usize,
    /// Subscribers that read slowly (20 ms per frame) and so skip frames.
    #[arg(long, default_value_t = 20)]
    pub slow: usize,
    /// Short-lived subscribers opened per second (each reads 0.2–2 s, then leaves).
    #[arg(long, default_value_t = 20)]
    pub churn_per_second: u32,
    /// A subscriber that stops reading is opened every this many seconds.
    #[arg(long, default_value_t = 5)]
    pub stuck_every: u64,
    /// States per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Start, peak and end of one sampled quantity.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Span {
    /// After the subscribers connected, before the producer started.
    pub start: f64,
    /// Largest sample.
    pub peak: f64,
    /// After the producer stopped and the churn ended.
    pub end: f64,
}

/// One sample of the server, taken every 10 s while the producer runs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Point {
    /// Seconds since the producer started.
    pub seconds: f64,
    /// Resident memory, MB.
    pub rss_mb: f64,
    /// Open file descriptors.
    pub fds: f64,
    /// Threads.
    pub threads: f64,
}

/// How often the series is sampled.
const SERIES_EVERY: Duration = Duration::from_secs(10);

/// What a soak run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakResult {
    /// Seconds the producer ran.
    pub seconds: f64,
    /// States published.
    pub states: u64,
    /// Server resident memory, MB.
    pub rss_mb: Span,
    /// Server open file descriptors.
    pub fds: Span,
    /// Server threads.
    pub threads: Span,
    /// Short-lived subscribers opened and closed.
    pub churned: u64,
    /// Stuck subscribers opened (the server must drop each).
    pub stuck: u64,
    /// Steady subscribers (in step: they must all end exact and connected).
    pub steady: usize,
    /// Steady subscribers that ended with exactly the last state.
    pub steady_exact: usize,
    /// Slow readers.
    pub slow: usize,
    /// Slow readers that ended with exactly the last state.
    pub slow_exact: usize,
    /// Slow readers the server closed as too slow (their socket stayed unwritable past
    /// the send timeout).
    pub slow_dropped: usize,
    /// Checksum failures seen by steady subscribers (each one a resync).
    pub resyncs: u64,
    /// `mcp_ws_connections_current` at the end, and the subscribers still connected
    /// then as the clients see it.
    pub connections_end: (i64, usize),
    /// `phasecast_tasks` of the idle server before the first client, and after every
    /// client left: equal unless tasks leak.
    pub tasks: (f64, f64),
    /// The server every 10 s, to show whether memory and descriptors grow.
    pub series: Vec<Point>,
}

/// What a steady or slow subscriber ended with.
struct Held {
    slow: bool,
    dropped: bool,
    exact_state: Option<State>,
    resyncs: u64,
    /// Kept open until the end, so the connection gauge can be checked.
    subscriber: Subscriber,
}

fn fd_count(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(f64::NAN, |d| d.count() as f64)
}

fn threads(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// One unlabelled metric from the server's `/metrics`.
async fn scrape(http: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs the soak.
///
/// # Errors
/// When the server cannot be started or a steady subscriber cannot connect.
pub async fn run(args: &SoakArgs) -> anyhow::Result<SoakResult> {
    let duration = humantime::parse_duration(&args.duration)?;
    raise_fd_limit(args.steady + args.slow + 4096);
    let port = free_port()?;
    let child = std::process::Command::new(server_binary(&args.server_bin)?)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--producer-rate-limit", "0", "--connection-rate-limit", "0"])
        .args(["--socket-send-buffer", "64KiB"])
        .stdout(std::fs::File::create(
            std::env::temp_dir().join("phasecast-soak-server.log"),
        )?)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()?;
    let pid = child.id();
    let _server = Spawned::new(child);
    wait_for_port(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let ws = format!("ws://127.0.0.1:{port}");
    let http = format!("http://127.0.0.1:{port}");
    let stop = Arc::new(AtomicBool::new(false));
    // Tasks of an idle server (the scrape's own connection included, as at the end):
    // the lowest of ten scrapes over a second, since the readiness probe's connection
    // may take a moment to wind down.
    let mut tasks_start = f64::INFINITY;
    for _ in 0..10 {
        if let Some(tasks) = scrape(&http, "phasecast_tasks").await {
            tasks_start = tasks_start.min(tasks);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        tasks_start.is_finite(),
        "no phasecast_tasks in {http}/metrics"
    );

    // The first state, so every subscriber starts from a full frame.
    let mut producer = IngestPublisher::connect(&ws, None, Encoding::Protobuf, None).await?;
    let mut workload = Workload::kuramoto(32, 3);
    let mut last = workload.next_state();
    producer.send(&last).await?;

    let mut holders = Vec::new();
    for i in 0..args.steady + args.slow {
        let encoding = if i % 2 == 0 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        let slow = i >= args.steady;
        let mut sub =
            Subscriber::connect(&SubscribeOptions::new(ws.clone()).encoding(encoding)).await?;
        let stop = stop.clone();
        holders.push(tokio::spawn(async move {
            // Reads until told to stop and no frame came for a second, or until the
            // server closes the connection (a slow reader may be dropped as too slow).
            let mut dropped = false;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), sub.next_frame()).await {
                    Ok(Ok(Some(_))) => {
                        if slow {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Ok(_) => {
                        dropped = true;
                        break;
                    }
                    Err(_) if stop.load(Relaxed) => break,
                    Err(_) => {}
                }
            }
            Held {
                slow,
                dropped,
                exact_state: sub.state().cloned(),
                resyncs: sub.resyncs(),
                subscriber: sub,
            }
        }));
    }

    let sample = || {
        let (_, rss) = proc_sample(Some(pid)).unwrap_or((f64::NAN, f64::NAN));
        (rss, fd_count(pid), threads(pid))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = sample();
    let (mut rss, mut fds, mut thr) = (
        Span {
            start: first.0,
            peak: first.0,
            end: 0.0,
        },
        Span {
            start: first.1,
            peak: first.1,
            end: 0.0,
        },
        Span {
            start: first.2,
            peak: first.2,
            end: 0.0,
        },
    );

    // Churn and stuck subscribers, until the producer stops.
    let churned = Arc::new(AtomicU64::new(0));
    let stuck = Arc::new(AtomicU64::new(0));
    let churn = {
        let (ws, stop, churned, stuck) = (ws.clone(), stop.clone(), churned.clone(), stuck.clone());
        let (per_second, stuck_every) = (args.churn_per_second.max(1), args.stuck_every.max(1));
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(9);
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
            let mut n = 0u64;
            let mut in_flight = tokio::task::JoinSet::new();
            while !stop.load(Relaxed) {
                tick.tick().await;
                n += 1;
                let encoding = if n % 2 == 0 {
                    Encoding::Json
                } else {
                    Encoding::Protobuf
                };
                let url = format!("{ws}/ws?format={encoding}");
                if n % (u64::from(per_second) * stuck_every) == 0 {
                    // Connects, then never reads again: the server must drop it.
                    if let Ok((socket, _)) = tokio_tungstenite::connect_async(url).await {
                        stuck.fetch_add(1, Relaxed);
                        in_flight.spawn(async move {
                            tokio::time::sleep(Duration::from_secs(15)).await;
                            drop(socket);
                        });
                    }
                    continue;
                }
                let reading = Duration::from_millis(rng.random_range(200..2000));
                let churned = churned.clone();
                let ws = ws.clone();
                in_flight.spawn(async move {
                    let options = SubscribeOptions::new(ws).encoding(encoding);
                    if let Ok(mut sub) = Subscriber::connect(&options).await {
                        let until = Instant::now() + reading;
                        while Instant::now() < until {
                            if tokio::time::timeout(Duration::from_millis(200), sub.next_frame())
                                .await
                                .is_ok_and(|r| r.is_err())
                            {
                                break;
                            }
                        }
                        let _ = sub.close().await;
                        churned.fetch_add(1, Relaxed);
                    }
                });
                while in_flight.try_join_next().is_some() {}
            }
            while in_flight.join_next().await.is_some() {}
        })
    };

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut states = 1u64;
    let mut last_sample = Instant::now();
    let mut series = Vec::new();
    let mut next_point = started;
    while started.elapsed() < duration {
        tick.tick().await;
        last = workload.next_state();
        producer.send(&last).await?;
        states += 1;
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            let (r, f, t) = sample();
            rss.peak = rss.peak.max(r);
            fds.peak = fds.peak.max(f);
            thr.peak = thr.peak.max(t);
            if last_sample >= next_point {
                next_point += SERIES_EVERY;
                series.push(Point {
                    seconds: started.elapsed().as_secs_f64().round(),
                    rss_mb: r,
                    fds: f,
                    threads: t,
                });
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    churn.await?;
    producer.close().await?;

    let (mut steady_exact, mut slow_exact, mut slow_dropped, mut resyncs) = (0, 0, 0, 0);
    let mut open = Vec::new();
    for h in holders {
        let held = h.await?;
        resyncs += held.resyncs;
        let exact = held.exact_state.as_ref() == Some(&last as &State);
        match (held.slow, exact) {
            (false, true) => steady_exact += 1,
            (true, true) => slow_exact += 1,
            _ => {}
        }
        if held.dropped {
            slow_dropped += usize::from(held.slow);
        } else {
            open.push(held.subscriber);
        }
    }
    let checked = open.len();
    // Churn is over and stuck sockets are gone: wait (up to 5 s) until the server's
    // gauge has counted every close.
    let mut connections = -1;
    for _ in 0..50 {
        connections = scrape(&http, "mcp_ws_connections_current")
            .await
            .map_or(-1, |c| c as i64);
        if connections == checked as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = sample();
    rss.end = end.0;
    fds.end = end.1;
    thr.end = end.2;
    // Everyone leaves: the server's task count must come back to where it was before
    // the first client (wait up to 5 s for the last sessions to wind down).
    drop(open);
    let mut tasks_end = f64::NAN;
    for _ in 0..50 {
        tasks_end = scrape(&http, "phasecast_tasks").await.unwrap_or(f64::NAN);
        if tasks_end == tasks_start {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(SoakResult {
        seconds,
        states,
        rss_mb: rss,
        fds,
        threads: thr,
        churned: churned.load(Relaxed),
        stuck: stuck.load(Relaxed),
        steady: args.steady,
        steady_exact,
        slow: args.slow,
        slow_exact,
        slow_dropped,
        resyncs,
        connections_end: (connections, checked),
        tasks: (tasks_start, tasks_end),
        series,
    })
}

/// A one-paragraph summary.
pub fn summary(r: &SoakResult) -> String {
    let line = format!(
        "soak {:.0} s, {} states: RSS {:.1} / {:.1} / {:.1} MB (start / peak / end), fds {} / {} / {}, threads {} / {} / {}; {} churned and {} stuck subscribers; {} of {} steady subscribers exact at the end ({} resyncs); slow readers: {} of {} exact, {} dropped as too slow; connections at the end {} (clients still connected {}); server tasks idle before {} and after {}",
        r.seconds, r.states, r.rss_mb.start, r.rss_mb.peak, r.rss_mb.end,
        r.fds.start, r.fds.peak, r.fds.end, r.threads.start, r.threads.peak, r.threads.end,
        r.churned, r.stuck, r.steady_exact, r.steady, r.resyncs, r.slow_exact, r.slow, r.slow_dropped,
        r.connections_end.0, r.connections_end.1, r.tasks.0, r.tasks.1,
    );
    let minutes: Vec<String> = r
        .series
        .iter()
        // The first sample of each minute (samples are 10 s apart, give or take one).
        .filter(|p| (p.seconds as u64) % 60 < 10)
        .map(|p| {
            format!(
                "{:.0} min: {:.1} MB, {} fds",
                p.seconds / 60.0,
                p.rss_mb,
                p.fds
            )
        })
        .collect();
    if minutes.is_empty() {
        line
    } else {
        format!("{line}\nby minute: {}", minutes.join("; "))
    }
}
