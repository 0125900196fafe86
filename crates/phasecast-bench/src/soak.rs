//! `phasecast soak`: a bounded run of a real server under a realistic mess. A producer
//! of `kuramoto-N` at 200 Hz (N = `--oscillators`, 32 by default); steady subscribers
//! that check every delta's checksum and every state they hold against the producer's,
//! and must miss no state; slow readers; a churn of short-lived subscribers;
//! subscribers that stop reading (the server must drop them); and resuming subscribers
//! that leave and come back with `?resume=` ([`resuming`]). Every second it samples the
//! server's resident memory, open file descriptors and threads from `/proc`, keeping
//! one sample in ten as a series. At the end it checks that every steady subscriber
//! holds exactly the producer's last state (and each slow reader, unless the server
//! dropped it as too slow), that the server's connection gauge is back to the
//! subscribers still open, and that once every client left the server runs as many
//! tasks as before the first one came; it reports memory (start, median, peak, end) and
//! descriptors and the states steady subscribers skipped, and lists every failure: a
//! steady subscriber that did not end exact or was closed, a resume never answered, any
//! checksum failure. `phasecast-bench soak` exits non-zero when there is one.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use phasecast::{codec::Encoding, config::defaults, model::State, workload::Workload};
use phasecast_client::{IngestPublisher, SubscribeOptions, Subscriber};

use crate::{
    loadgen::{free_port, raise_fd_limit, server_binary, wait_for_port, Spawned},
    median,
};

mod probe;
pub mod resuming;
mod truth;

use truth::{Truth, Verdict};

/// `phasecast soak` options.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The `phasecast` server binary to run (default: the one beside this tool).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
    /// How long the producer runs (longer, by at most two minutes, until every
    /// resuming subscriber has resumed both from inside the history and from past it).
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
    /// Subscribers that read a while (200–600 frames), leave, and come back with
    /// `?resume=` after the producer has sent 20–400 more states, or, every third
    /// absence, more than the server's history holds.
    #[arg(long, default_value_t = 10)]
    pub resuming: usize,
    /// Oscillators per state: the producer streams `kuramoto-N`. Past the server's
    /// defaults, the server is started with the oscillator and body limits it needs.
    #[arg(long, default_value_t = 32)]
    pub oscillators: usize,
    /// States per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Start, median, peak and end of one sampled quantity.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Span {
    /// After the subscribers connected, before the producer started.
    pub start: f64,
    /// Largest sample (start and end included).
    pub peak: f64,
    /// After the producer stopped and the churn ended.
    pub end: f64,
    /// Median of the samples taken once a second while the producer ran.
    pub median: f64,
}

impl Span {
    fn of(start: f64, run: &[f64], end: f64) -> Span {
        Span {
            start,
            peak: run.iter().fold(start.max(end), |m, x| m.max(*x)),
            end,
            median: median(run.to_vec()),
        }
    }
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
    /// The anonymous part of resident memory (the heap), MB.
    pub rss_anon_mb: f64,
}

/// How often the series is sampled.
const SERIES_EVERY: Duration = Duration::from_secs(10);

/// How often the server is sampled (peak, median, and every tenth sample in the series).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long the producer may run past `--duration` while a resuming subscriber has not
/// yet resumed both from inside the history and from past it.
const RESUME_GRACE: Duration = Duration::from_secs(120);

/// What the resuming subscribers saw, and the server's count of their resumes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Resuming {
    /// Resuming subscribers.
    pub subscribers: usize,
    /// What they saw, all together.
    #[serde(flatten)]
    pub seen: resuming::Tally,
    /// `phasecast_resumes_total{result="hit"}`: resumes from a state still in the
    /// server's history.
    pub server_hits: f64,
    /// `phasecast_resumes_total{result="miss"}`.
    pub server_misses: f64,
}

/// What a soak run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakResult {
    /// Seconds the producer ran.
    pub seconds: f64,
    /// States published.
    pub states: u64,
    /// The producer's workload (`kuramoto-N`).
    pub workload: String,
    /// Oscillators per state.
    pub oscillators: usize,
    /// Flags the server was started with, beyond host and port.
    pub serve_args: Vec<String>,
    /// Server resident memory (`VmRSS`), MB.
    pub rss_mb: Span,
    /// Its anonymous part (`RssAnon`: the heap), MB.
    pub rss_anon_mb: Span,
    /// The server's own high-water mark of resident memory (`VmHWM`) at the end, MB:
    /// the peak between samples too.
    pub rss_hwm_mb: f64,
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
    /// Checksum failures seen by steady subscribers and slow readers (each one a
    /// resync).
    pub resyncs: u64,
    /// Frames read by steady subscribers.
    pub steady_frames: u64,
    /// States a steady subscriber skipped between two frames it read (it must skip
    /// none).
    pub steady_lost_frames: u64,
    /// Steady subscribers that skipped at least one state.
    pub steady_skipping: usize,
    /// Steady subscribers the server closed.
    pub steady_dropped: usize,
    /// `mcp_pcc_messages_dropped_total{reason="conflated"}` at the end: states the
    /// server skipped for subscribers behind (slow readers and churn included).
    pub server_conflated: f64,
    /// `phasecast_slow_client_disconnects_total` by reason at the end: subscribers the
    /// server closed as too slow because their socket stayed unwritable past the send
    /// timeout, and because their unsent backlog passed its byte limit.
    pub server_slow_disconnects: (f64, f64),
    /// States held by steady subscribers or slow readers after a frame that were not
    /// the producer's (compared by checksum).
    pub wrong_states: u64,
    /// The resuming subscribers.
    pub resuming: Resuming,
    /// Every checksum failure: resyncs, wrong states, and the resuming subscribers'.
    pub checksum_failures: u64,
    /// What went wrong, one line each; empty for a clean run.
    pub failures: Vec<String>,
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
    frames: u64,
    /// States skipped between two frames read.
    skipped: u64,
    /// States held after a frame that were not the producer's.
    wrong: u64,
    /// Kept open until the end, so the connection gauge can be checked.
    subscriber: Subscriber,
}

/// One metric from the server's `/metrics`, named with its labels as rendered.
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
    anyhow::ensure!(args.oscillators > 0, "--oscillators must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above 0"
    );
    raise_fd_limit(args.steady + args.slow + args.resuming + 4096);
    let mut workload = Workload::kuramoto(args.oscillators, 3);
    let mut last = workload.next_state();
    let serve_args = serve_args(args.oscillators, &last);
    let port = free_port()?;
    let child = std::process::Command::new(server_binary(&args.server_bin)?)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(&serve_args)
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

    // Every state's checksum by step, for as many states as the run can send.
    let most = (duration + RESUME_GRACE).as_secs_f64() * args.rate;
    let truth = Arc::new(Truth::new(most as u64 + 16));
    // The first state, so every subscriber starts from a full frame.
    let mut producer = IngestPublisher::connect(&ws, None, Encoding::Protobuf, None).await?;
    truth.record(&last);
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
        let (stop, truth) = (stop.clone(), truth.clone());
        holders.push(tokio::spawn(async move {
            // Reads until told to stop and no frame came for a second, or until the
            // server closes the connection (a slow reader may be dropped as too slow).
            let mut dropped = false;
            let (mut frames, mut skipped, mut wrong) = (0, 0, 0);
            let mut seq: Option<u64> = None;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), sub.next_frame()).await {
                    Ok(Ok(Some(r))) => {
                        frames += 1;
                        if let Some(before) = seq {
                            skipped += r.seq.saturating_sub(before + 1);
                        }
                        seq = Some(r.seq);
                        if sub
                            .state()
                            .is_some_and(|s| truth.check(s) == Verdict::Wrong)
                        {
                            wrong += 1;
                        }
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
                frames,
                skipped,
                wrong,
                subscriber: sub,
            }
        }));
    }

    let resume = Arc::new(resuming::Shared {
        sent: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        both_ways: AtomicU64::new(0),
        truth: truth.clone(),
        history: defaults::HISTORY as u64,
    });
    let resumers: Vec<_> = (0..args.resuming)
        .map(|i| {
            let encoding = if i % 2 == 0 {
                Encoding::Json
            } else {
                Encoding::Protobuf
            };
            tokio::spawn(resuming::run(
                ws.clone(),
                encoding,
                100 + i as u64,
                resume.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = probe::read(pid);

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
    // The server once a second while the producer runs, on a task of its own so that
    // reading /proc never delays a state.
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = sampling.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at((started + SAMPLE_EVERY).into(), SAMPLE_EVERY);
            let mut samples = Vec::new();
            loop {
                tick.tick().await;
                if done.load(Relaxed) {
                    break;
                }
                samples.push((started.elapsed(), probe::read(pid)));
            }
            samples
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut states = 1u64;
    let resumed_both_ways = || resume.both_ways.load(Relaxed) >= args.resuming as u64;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration && (resumed_both_ways() || elapsed >= duration + RESUME_GRACE) {
            break;
        }
        tick.tick().await;
        last = workload.next_state();
        if !truth.record(&last) {
            break;
        }
        producer.send(&last).await?;
        states += 1;
        resume.sent.store(states, Relaxed);
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(true, Relaxed);
    stop.store(true, Relaxed);
    resume.stop.store(true, Relaxed);
    churn.await?;
    let mut seen = resuming::Tally::default();
    for r in resumers {
        seen += r.await?;
    }
    producer.close().await?;
    let samples = sampler.await?;

    let (mut steady_exact, mut slow_exact, mut slow_dropped, mut resyncs) = (0, 0, 0, 0);
    let (mut steady_frames, mut steady_lost, mut steady_dropped, mut wrong_states) = (0, 0, 0, 0);
    let mut steady_skipping = 0;
    let mut open = Vec::new();
    for h in holders {
        let held = h.await?;
        resyncs += held.resyncs;
        wrong_states += held.wrong;
        if !held.slow {
            steady_frames += held.frames;
            steady_lost += held.skipped;
            steady_skipping += usize::from(held.skipped > 0);
            steady_dropped += usize::from(held.dropped);
        }
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
    let end = probe::read(pid);
    let resuming = Resuming {
        subscribers: args.resuming,
        seen,
        server_hits: scrape(&http, "phasecast_resumes_total{result=\"hit\"}")
            .await
            .unwrap_or(0.0),
        server_misses: scrape(&http, "phasecast_resumes_total{result=\"miss\"}")
            .await
            .unwrap_or(0.0),
    };
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

    let run_values =
        |f: fn(&probe::Reading) -> f64| -> Vec<f64> { samples.iter().map(|(_, r)| f(r)).collect() };
    let mut series = Vec::new();
    let mut next_point = Duration::ZERO;
    for (at, r) in &samples {
        if *at >= next_point {
            next_point += SERIES_EVERY;
            series.push(Point {
                seconds: at.as_secs_f64().round(),
                rss_mb: r.rss_mb,
                fds: r.fds,
                threads: r.threads,
                rss_anon_mb: r.anon_mb,
            });
        }
    }
    let checksum_failures = resyncs + wrong_states + resuming.seen.checksum_failures;
    let mut result = SoakResult {
        seconds,
        states,
        workload: workload.name().to_owned(),
        oscillators: args.oscillators,
        serve_args,
        rss_mb: Span::of(first.rss_mb, &run_values(|r| r.rss_mb), end.rss_mb),
        rss_anon_mb: Span::of(first.anon_mb, &run_values(|r| r.anon_mb), end.anon_mb),
        rss_hwm_mb: end.hwm_mb,
        fds: Span::of(first.fds, &run_values(|r| r.fds), end.fds),
        threads: Span::of(first.threads, &run_values(|r| r.threads), end.threads),
        churned: churned.load(Relaxed),
        stuck: stuck.load(Relaxed),
        steady: args.steady,
        steady_exact,
        slow: args.slow,
        slow_exact,
        slow_dropped,
        resyncs,
        steady_frames,
        steady_lost_frames: steady_lost,
        steady_skipping,
        steady_dropped,
        server_conflated: scrape(
            &http,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}",
        )
        .await
        .unwrap_or(f64::NAN),
        server_slow_disconnects: (
            scrape(
                &http,
                "phasecast_slow_client_disconnects_total{reason=\"timeout\"}",
            )
            .await
            .unwrap_or(0.0),
            scrape(
                &http,
                "phasecast_slow_client_disconnects_total{reason=\"backlog\"}",
            )
            .await
            .unwrap_or(0.0),
        ),
        wrong_states,
        resuming,
        checksum_failures,
        failures: Vec::new(),
        connections_end: (connections, checked),
        tasks: (tasks_start, tasks_end),
        series,
    };
    result.failures = failures(&result);
    Ok(result)
}

/// The server's flags: today's soak flags, and the oscillator and body limits a
/// workload past the defaults needs (room for a JSON body twice the first state's).
fn serve_args(oscillators: usize, first: &State) -> Vec<String> {
    let mut args: Vec<String> = [
        "--producer-rate-limit",
        "0",
        "--connection-rate-limit",
        "0",
        "--socket-send-buffer",
        "64KiB",
    ]
    .map(String::from)
    .into();
    if oscillators > defaults::MAX_OSCILLATORS {
        args.extend(["--max-oscillators".into(), oscillators.to_string()]);
    }
    let body = 2 * phasecast::codec::encode_state(Encoding::Json, first).len();
    if body > defaults::MAX_BODY_BYTES {
        args.extend([
            "--max-body-bytes".into(),
            format!("{}MiB", body.div_ceil(1 << 20)),
        ]);
    }
    args
}

/// What went wrong in a run, one line each.
fn failures(r: &SoakResult) -> Vec<String> {
    // States a steady subscriber skipped are reported, not failed: whether a reader
    // keeps up is the machine's speed (latest wins lets it skip ahead), not a defect.
    let mut out = Vec::new();
    if r.steady_dropped > 0 {
        out.push(format!(
            "the server closed {} steady subscribers",
            r.steady_dropped
        ));
    }
    if r.steady_exact < r.steady {
        out.push(format!(
            "{} of {} steady subscribers did not end with the producer's last state",
            r.steady - r.steady_exact,
            r.steady
        ));
    }
    if r.resuming.seen.unanswered > 0 {
        out.push(format!(
            "{} resumes got no first frame",
            r.resuming.seen.unanswered
        ));
    }
    if r.checksum_failures > 0 {
        out.push(format!(
            "{} checksum failures ({} resyncs, {} wrong states held by steady and slow subscribers, {} seen by resuming subscribers)",
            r.checksum_failures, r.resyncs, r.wrong_states, r.resuming.seen.checksum_failures
        ));
    }
    out
}

/// A one-paragraph summary.
pub fn summary(r: &SoakResult) -> String {
    let q = &r.resuming;
    let line = format!(
        "soak {:.0} s, {} states of {}: RSS {:.1} / {:.1} / {:.1} / {:.1} MB (start / median / peak / end; heap {:.1} / {:.1} / {:.1} / {:.1}; high-water mark {:.1}), fds {} / {} / {}, threads {} / {} / {}; {} churned and {} stuck subscribers; {} of {} steady subscribers exact at the end ({} frames, {} states skipped by {} of them, {} resyncs, {} wrong states; the server conflated {} states for all subscribers); slow readers: {} of {} exact, {} dropped as too slow (the server closed {} subscribers on the send timeout and {} on the backlog limit); {} resuming subscribers: {} frames, {} resumes ({} past the history), first frame a delta {} times and full {} times, server hits {} and misses {}, {} checksum failures; connections at the end {} (clients still connected {}); server tasks idle before {} and after {}",
        r.seconds, r.states, r.workload,
        r.rss_mb.start, r.rss_mb.median, r.rss_mb.peak, r.rss_mb.end,
        r.rss_anon_mb.start, r.rss_anon_mb.median, r.rss_anon_mb.peak, r.rss_anon_mb.end, r.rss_hwm_mb,
        r.fds.start, r.fds.peak, r.fds.end, r.threads.start, r.threads.peak, r.threads.end,
        r.churned, r.stuck, r.steady_exact, r.steady, r.steady_frames, r.steady_lost_frames, r.steady_skipping, r.resyncs, r.wrong_states, r.server_conflated,
        r.slow_exact, r.slow, r.slow_dropped, r.server_slow_disconnects.0, r.server_slow_disconnects.1,
        q.subscribers, q.seen.frames, q.seen.resumes, q.seen.resumes_past_history, q.seen.resumed_with_delta,
        q.seen.resumed_with_full, q.server_hits, q.server_misses, q.seen.checksum_failures,
        r.connections_end.0, r.connections_end.1, r.tasks.0, r.tasks.1,
    );
    let line = if r.failures.is_empty() {
        line
    } else {
        format!("{line}\nFAILED: {}", r.failures.join("; "))
    };
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
