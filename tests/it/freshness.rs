//! The freshness bound (`PCC_FRESHNESS`): a subscriber whose reader falls behind gets
//! the newest state, not the frames that piled up; one that stops reading is still
//! closed by the send timeout.
//!
//! The slow-reader tests run the demo producer at 200 Hz for 20 s and read one frame
//! every 50 ms in four readers: a plain `websockets` client with a one-frame queue and
//! phasecast's Python client (`slow_reader.py`, with `PHASECAST_PYTHON`), phasecast's
//! TypeScript client on Node (`slow_reader.mjs`, with `PHASECAST_NODE_CONFORMANCE`),
//! and phasecast's Rust client; 100 subscribers beside them read as fast as they can.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use phasecast::{
    codec::Encoding, config::DemoConfig, delta::Tolerance, model::State, workload::Workload,
};
use phasecast_client::{Publisher, Subscriber};

use crate::support::{metric, wait_for_metric, within, TestServer};

/// How long each slow reader reads.
const READ_FOR: Duration = Duration::from_secs(20);
/// Its pause between two frames.
const READ_EVERY: Duration = Duration::from_millis(50);

/// p99 and max of `ages`, in milliseconds.
fn p99_and_max(ages: &mut [f64]) -> (f64, f64) {
    ages.sort_by(f64::total_cmp);
    let n = ages.len();
    (ages[(n * 99 / 100).min(n - 1)], ages[n - 1])
}

/// The ages (ms) a slow-reader script reported, once it exited well (it fails on a
/// state that was not exact).
fn reported_ages(name: &str, out: &std::process::Output) -> Vec<f64> {
    assert!(
        out.status.success(),
        "the {name} reader (a state that was not exact fails it): {}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["ages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap() * 1000.0)
        .collect()
}

fn age_ms(timestamp: Option<f64>) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    (now - timestamp.expect("the demo stamps every state")) * 1000.0
}

/// Runs the slow readers and the fast subscribers on a demo stream of `oscillators`
/// in `encoding`, at default settings but for `tolerance`, and checks what the
/// freshness bound promises.
async fn slow_readers_stay_fresh(oscillators: usize, encoding: Encoding, tolerance: f64) {
    let python = std::env::var("PHASECAST_PYTHON").ok();
    let node = std::env::var("PHASECAST_NODE_CONFORMANCE").ok();
    if (python.is_none() || node.is_none()) && std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some()
    {
        panic!("PHASECAST_PYTHON and PHASECAST_NODE_CONFORMANCE must be set (scripts/test.sh sets them)");
    }
    let server = TestServer::with(|c| {
        c.demo = Some(DemoConfig {
            hz: 200.0,
            oscillators,
        });
        c.stream.tolerance = Tolerance::new(tolerance).unwrap();
    })
    .await;
    let format = match encoding {
        Encoding::Json => "json",
        Encoding::Protobuf => "protobuf",
    };
    // The fast subscribers, each checking that every frame follows the one before
    // once they are all connected.
    let armed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut fast = Vec::new();
    for _ in 0..100 {
        let mut sub = server.subscribe(encoding, true).await;
        let (armed, stop) = (armed.clone(), stop.clone());
        fast.push(tokio::spawn(async move {
            let (mut frames, mut skipped) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let before = sub.seq();
                let got = within("fast frame", sub.next_frame())
                    .await
                    .unwrap()
                    .unwrap();
                if armed.load(Ordering::Relaxed) {
                    frames += 1;
                    if let Some(b) = before {
                        skipped += got.seq.saturating_sub(b + 1);
                    }
                }
            }
            assert_eq!(sub.resyncs(), 0, "a fast subscriber's state was not exact");
            (frames, skipped)
        }));
    }
    armed.store(true, Ordering::Relaxed);
    let url = format!("{}/ws?format={format}", server.ws());
    let reader_args = [
        url.clone(),
        READ_EVERY.as_secs_f64().to_string(),
        READ_FOR.as_secs_f64().to_string(),
    ];
    let mut commands = Vec::new();
    for mode in ["plain", "client"] {
        if let Some(python) = &python {
            let mut command = tokio::process::Command::new(python);
            command.arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/slow_reader.py"
            ));
            command.arg(mode);
            commands.push((format!("python {mode}"), command));
        }
    }
    if let Some(conformance) = &node {
        let index = std::path::Path::new(conformance).with_file_name("index.js");
        let mut command = tokio::process::Command::new("node");
        command.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/slow_reader.mjs"
        ));
        command.arg(index);
        commands.push(("typescript client".to_owned(), command));
    }
    let external: Vec<_> = commands
        .into_iter()
        .map(|(name, mut command)| {
            let child = command
                .args(&reader_args)
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("start the {name} reader: {e}"));
            (name, child)
        })
        .collect();
    // phasecast's Rust client, as slow.
    let mut rust = server.subscribe(encoding, true).await;
    let mut rust_ages = Vec::new();
    let end = tokio::time::Instant::now() + READ_FOR;
    while tokio::time::Instant::now() < end {
        within("slow frame", rust.next_frame())
            .await
            .unwrap()
            .unwrap();
        rust_ages.push(age_ms(rust.state().unwrap().timestamp));
        tokio::time::sleep(READ_EVERY).await;
    }
    assert_eq!(rust.resyncs(), 0, "the Rust reader's state was not exact");
    let mut readers = vec![("rust client".to_owned(), rust_ages)];
    for (name, child) in external {
        let out = within("a slow reader", child.wait_with_output())
            .await
            .unwrap();
        let ages = reported_ages(&name, &out);
        readers.push((name, ages));
    }
    stop.store(true, Ordering::Relaxed);
    for (name, mut ages) in readers {
        let frames = ages.len();
        let (p99, max) = p99_and_max(&mut ages);
        eprintln!("{oscillators} oscillators, {format}: {name}: {frames} frames, age p99 {p99:.0} ms, max {max:.0} ms");
        assert!(
            frames >= 100,
            "{name}: only {frames} frames in {READ_FOR:?}"
        );
        assert!(p99 <= 150.0, "{name}: state age p99 {p99:.0} ms");
        assert!(max <= 300.0, "{name}: state age max {max:.0} ms");
    }
    // A fast subscriber skips a state only when the server skipped it ahead and
    // counted it: one starved of CPU by a busy machine falls behind like any slow
    // reader. Nothing goes missing silently. (That readers which keep up get every
    // frame is measured where the machine is known: the load benchmark's
    // "delivered", docs/benchmarks.md.)
    let mut skipped = 0;
    for task in fast {
        let (frames, s) = within("fast subscriber", task).await.unwrap();
        assert!(frames > 0);
        skipped += s;
    }
    let scrape = server.metrics().await;
    let conflated: f64 = ["freshness", "outbox"]
        .iter()
        .filter_map(|r| {
            metric(
                &scrape,
                &format!("phasecast_conflated_frames_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert!(
        skipped as f64 <= conflated,
        "fast subscribers skipped {skipped} states, the server counted {conflated} skipped"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_json_stream_hold_fresh_states_and_fast_ones_get_every_frame() {
    slow_readers_stay_fresh(32, Encoding::Json, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_1024_oscillators_in_protobuf_deltas_hold_fresh_states() {
    slow_readers_stay_fresh(1024, Encoding::Protobuf, 1e-3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_fell_behind_reads_the_newest_state_next() {
    let server = TestServer::with(|c| {
        c.subscriber.freshness = Some(Duration::from_millis(50));
        c.subscriber.send_timeout = Duration::from_secs(60);
    })
    .await;
    let states: Vec<State> = Workload::named("random", 7).unwrap().take(300).collect();
    let publisher = server.publisher(Encoding::Protobuf);
    publisher.publish(&states[0]).await.unwrap();
    let mut sub = server.subscribe(Encoding::Json, true).await;
    within("first", sub.next_frame()).await.unwrap().unwrap();
    // Its reader is not polled while 299 states go in: only the first frame and the
    // probe after it were written; the rest wait for the probe's pong.
    for s in &states[1..] {
        publisher.publish(s).await.unwrap();
    }
    let mut frames = 0;
    while sub.seq() != Some(300) {
        within("catch up", sub.next_frame()).await.unwrap().unwrap();
        frames += 1;
    }
    assert_eq!(sub.state().unwrap(), &states[299], "exact");
    assert_eq!(sub.resyncs(), 0);
    assert!(
        frames <= 2,
        "the newest state came next, not the backlog: {frames} frames"
    );
    let scrape = server.metrics().await;
    let skipped: f64 = ["outbox", "freshness"]
        .iter()
        .map(|r| {
            metric(
                &scrape,
                &format!("phasecast_conflated_frames_total{{reason=\"{r}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(
        skipped,
        (299 - frames) as f64,
        "every skipped state counted"
    );
    // Its reader reached states and said so: their age was observed.
    assert!(
        metric(&scrape, "phasecast_subscriber_state_age_seconds_count").unwrap() >= 1.0,
        "no state age observed"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_closed_by_the_send_timeout() {
    let (server, states, publisher, stuck) = reading_the_first_of(20).await;
    // It never reads again (its socket is far from full: only a probe waits in it).
    for s in &states[1..] {
        publisher.publish(s).await.unwrap();
    }
    closed_once_by_the_send_timeout(&server).await;
    drop(stuck);
    server.shutdown().await;
}

/// A reader that kept up and then stops: the probes the dispatch writes with its frames
/// wake no session, and the last one unanswered still closes it at the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_kept_up_and_stops_is_closed_by_the_send_timeout() {
    let (server, states, publisher, mut reader) = reading_the_first_of(400).await;
    // Read (and so answer probes) while 200 states come, one every 2 ms.
    let reading = tokio::spawn(async move {
        while reader.seq() < Some(200) {
            reader.next_frame().await.unwrap().unwrap();
        }
        reader
    });
    for s in &states[1..200] {
        publisher.publish(s).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stopped = within("the reader reads 200 states", reading)
        .await
        .unwrap();
    // It stops reading; states go on, and with them the probes.
    let publishing = tokio::spawn(async move {
        for s in &states[200..] {
            if publisher.publish(s).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    closed_once_by_the_send_timeout(&server).await;
    drop(stopped);
    publishing.abort();
    server.shutdown().await;
}

/// For the send-timeout tests: a server with a 50 ms freshness bound and a 500 ms send
/// timeout, `n` random states, the first of them published, and a JSON reader that
/// has read it.
async fn reading_the_first_of(n: usize) -> (TestServer, Vec<State>, Publisher, Subscriber) {
    let server = TestServer::with(|c| {
        c.subscriber.freshness = Some(Duration::from_millis(50));
        c.subscriber.send_timeout = Duration::from_millis(500);
    })
    .await;
    let states: Vec<State> = Workload::named("random", 7).unwrap().take(n).collect();
    let publisher = server.publisher(Encoding::Protobuf);
    publisher.publish(&states[0]).await.unwrap();
    let mut reader = server.subscribe(Encoding::Json, true).await;
    within("first", reader.next_frame()).await.unwrap().unwrap();
    (server, states, publisher, reader)
}

/// Waits until one subscriber was closed as too slow, and checks it was by the send
/// timeout.
async fn closed_once_by_the_send_timeout(server: &TestServer) {
    let scrape = wait_for_metric(
        server,
        "phasecast_ws_connections_closed_total{reason=\"slow\"}",
        |n| n == 1.0,
    )
    .await;
    assert_eq!(
        metric(
            &scrape,
            "phasecast_slow_client_disconnects_total{reason=\"timeout\"}"
        ),
        Some(1.0)
    );
}

/// A network namespace of the test's own, removed on drop.
struct Namespace(String);

impl Namespace {
    /// A new namespace whose loopback is shaped to `rate` by a token bucket (`tbf`):
    /// `None` where namespaces cannot be made here (not root, no iproute2).
    fn shaped(rate: &str) -> Option<Namespace> {
        let name = format!("phasecast-fresh-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Namespace(name);
        let ok = ns.run(&["ip", "link", "set", "lo", "up"])
            // Packets no larger than an Ethernet link's: a token bucket of a few KB
            // never passes loopback's 64 KiB packets.
            && ns.run(&["ip", "link", "set", "lo", "mtu", "1500"])
            && ns.run(&[
                "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst",
                "32kbit", "latency", "400ms",
            ]);
        assert!(
            ok,
            "namespace {} made, but its loopback could not be shaped",
            ns.0
        );
        Some(ns)
    }

    fn run(&self, command: &[&str]) -> bool {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(command)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command.kill_on_drop(true);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_link_slower_than_the_stream_holds_fresh_states() {
    use tokio::io::AsyncBufReadExt;
    let Ok(python) = std::env::var("PHASECAST_PYTHON") else {
        assert!(
            std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_none(),
            "PHASECAST_PYTHON must be set (scripts/test.sh sets it)"
        );
        eprintln!("skipping the shaped-link test: PHASECAST_PYTHON is not set");
        return;
    };
    // 1 Mbit/s; kuramoto-1024 in JSON at 200 Hz needs about 35.
    let Some(ns) = Namespace::shaped("1mbit") else {
        eprintln!(
            "skipping the shaped-link test: no network namespace could be made here \
             (it needs root and iproute2)"
        );
        return;
    };
    let mut server = ns
        .command(env!("CARGO_BIN_EXE_phasecast"))
        .args([
            "serve",
            "--demo",
            "--demo-oscillators",
            "1024",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start phasecast in the namespace");
    // Its log names the port it was given.
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let mut errors = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = within("the server listens", async {
        loop {
            let line = tokio::select! {
                l = lines.next_line() => l,
                l = errors.next_line() => l,
            };
            let line = line.unwrap().expect("the server exited before listening");
            if let Some(rest) = line.split("phasecast listening addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    })
    .await;
    // Drained, so that its logging never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
    let reader = ns
        .command(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/slow_reader.py"
        ))
        .args(["plain", &format!("ws://{addr}/ws?format=json"), "0", "12"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start slow_reader.py in the namespace");
    let out = tokio::time::timeout(Duration::from_secs(40), reader.wait_with_output())
        .await
        .expect("the reader finishes")
        .unwrap();
    let mut ages = reported_ages("python plain (shaped link)", &out);
    let frames = ages.len();
    let (p99, max) = p99_and_max(&mut ages);
    eprintln!("1 Mbit/s link: {frames} frames, age p99 {p99:.0} ms, max {max:.0} ms");
    assert!(frames >= 20, "only {frames} frames in 12 s");
    assert!(p99 < 500.0, "state age p99 {p99:.0} ms on a 1 Mbit/s link");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
}
