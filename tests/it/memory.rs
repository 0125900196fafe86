//! The memory budget (`PCC_MEMORY_LIMIT`): what producers send stays within it, and
//! near it phasecast degrades in the documented order, each step with its status and
//! reason: shorter history, then no new streams (503), then no state that does not fit
//! (507; 413 past the whole budget). Then the largest legal input against the real
//! binary, with its resident memory read from /proc.

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use phasecast::{
    codec::{self, Encoding},
    model::State,
};
use phasecast_client::{SubscribeOptions, Subscriber};
use serde_json::Value;

use crate::support::{self, metric, within, RawWs, TestServer};

/// A state of `n` oscillators whose phases all move with `step`.
fn moving(step: u64, n: usize) -> State {
    State {
        step,
        phases: (0..n)
            .map(|i| (i as f64 * 0.001 + step as f64 * 0.01) % std::f64::consts::TAU)
            .collect(),
        spins: (0..n)
            .map(|i| if (i + step as usize) % 3 == 0 { -1 } else { 1 })
            .collect(),
        energy: -(step as f64),
        timestamp: None,
    }
}

/// Posts `state` to stream `stream` as protobuf; the status, `Retry-After` and JSON body.
async fn post(
    client: &reqwest::Client,
    base: &str,
    stream: &str,
    state: &State,
) -> (u16, Option<String>, Value) {
    let response = within(
        "POST a state",
        client
            .post(format!("{base}/streams/{stream}/state"))
            .header("content-type", "application/x-protobuf")
            .body(codec::encode_state(Encoding::Protobuf, state).to_vec())
            .send(),
    )
    .await
    .expect("POST");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.expect("a JSON answer");
    (status, retry_after, body)
}

fn assert_memory_refusal(
    what: &str,
    (status, retry_after, body): &(u16, Option<String>, Value),
    want: u16,
) {
    assert_eq!(*status, want, "{what}: {body}");
    assert_eq!(body["ok"], false, "{what}: {body}");
    assert_eq!(body["reason"], "memory_limit", "{what}: {body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("PCC_MEMORY_LIMIT"), "{what}: {error}");
    if want != 413 {
        assert_eq!(retry_after.as_deref(), Some("1"), "{what}");
    }
}

#[tokio::test]
async fn near_the_budget_histories_shorten_then_new_streams_then_states_are_refused() {
    const LIMIT: usize = 4 << 20;
    let server = TestServer::with(|c| {
        c.memory_limit = LIMIT;
        c.producer.limits.max_oscillators = 1 << 20;
        c.producer.max_body_bytes = 16 << 20;
        c.producer.rate_limit = 0;
    })
    .await;
    let base = server.http();
    let http = reqwest::Client::new();

    // 1. Shorter history first: 300 states of 2,048 oscillators are more than the budget
    // holds (about 18 KB each, with a history of 1,024); every one is accepted, and
    // the oldest are given back.
    for step in 1..=300 {
        let (status, _, body) = post(&http, &base, "a", &moving(step, 2048)).await;
        assert_eq!(status, 200, "state {step}: {body}");
    }
    let scrape = server.metrics().await;
    let shed = metric(&scrape, "phasecast_history_shed_total").unwrap();
    assert!(shed > 0.0, "no state was shed:\n{scrape}");
    assert!(
        metric(
            &scrape,
            r#"phasecast_memory_actions_total{action="history_shortened"}"#
        )
        .unwrap()
            > 0.0
    );
    let accounted = metric(&scrape, "phasecast_memory_accounted_bytes").unwrap();
    assert!(accounted <= LIMIT as f64, "{accounted} bytes accounted");
    assert_eq!(
        metric(&scrape, "phasecast_memory_limit_bytes"),
        Some(LIMIT as f64)
    );
    assert!(metric(&scrape, r#"phasecast_stream_memory_bytes{stream="a"}"#).unwrap() > 0.0);
    let health = server.health().await;
    assert_eq!(health["memory"]["limit_bytes"], LIMIT);
    assert!(health["memory"]["accounted_bytes"].as_u64().unwrap() <= LIMIT as u64);
    let a = health["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "a")
        .unwrap();
    let retained = a["retained"].as_u64().unwrap();
    assert!(retained < 300, "{health}");
    assert!(a["memory_bytes"].as_u64().unwrap() > 0);
    // What was shed can no longer be resumed from: a full frame, counted as a miss.
    let epoch = a["epoch"].as_str().unwrap();
    let mut resumed = Subscriber::connect(
        &SubscribeOptions::new(server.ws())
            .stream("a")
            .resume(epoch, 1)
            .encoding(Encoding::Protobuf),
    )
    .await
    .unwrap();
    let first = within("first frame", resumed.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 300);
    assert_eq!(first.kind, codec::FrameKind::Full);

    // 2. Then no new streams: each new stream's first state (16,384 oscillators) fits
    // until the budget is past 90%; then a new stream is refused with 503 and a reason.
    let mut created = 0;
    let refused = loop {
        let answer = post(&http, &base, &format!("s{created}"), &moving(1, 16_384)).await;
        if answer.0 != 200 {
            break answer;
        }
        created += 1;
        assert!(created < 40, "new streams were never refused");
    };
    assert!(created >= 2, "refused after {created} streams");
    assert_memory_refusal("a new stream", &refused, 503);
    // Existing streams still take their states.
    let (status, _, body) = post(&http, &base, "a", &moving(301, 2048)).await;
    assert_eq!(status, 200, "{body}");

    // 3. Then states that do not fit what is left: 262,144 oscillators (about 2.4 MB)
    // for an existing stream, with at most 10% of the budget and what the stream's
    // newest state frees left over.
    let too_big = post(&http, &base, "s0", &moving(2, 1 << 18)).await;
    assert_memory_refusal("a state past what is left", &too_big, 507);
    // And one larger than the whole budget: 413.
    let huge = post(&http, &base, "s0", &moving(3, 1 << 19)).await;
    assert_memory_refusal("a state past the whole budget", &huge, 413);

    let scrape = server.metrics().await;
    for action in ["stream_refused", "state_refused"] {
        let n = metric(
            &scrape,
            &format!(r#"phasecast_memory_actions_total{{action="{action}"}}"#),
        );
        assert!(n.unwrap() >= 1.0, "{action}:\n{scrape}");
    }
    assert!(
        metric(
            &scrape,
            r#"phasecast_inputs_rejected_total{reason="memory_limit"}"#
        )
        .unwrap()
            >= 3.0
    );
    // Nothing else was lost: stream a is still served, newest state and all.
    let (status, _, _) = post(&http, &base, "a", &moving(302, 2048)).await;
    assert_eq!(status, 200);
    let frame = within("the next frame on a", resumed.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(frame.seq > 300);
    within("the newest state on a", async {
        while resumed.seq() != Some(302) {
            resumed.next_frame().await.unwrap().unwrap();
        }
    })
    .await;
    assert_eq!(resumed.state().unwrap().phases, moving(302, 2048).phases);
    server.shutdown().await;
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib << 10
}

/// The memory budget of the RSS test, and what the server may use beyond it: the
/// process at rest, request bodies being read and decoded, frames being written to
/// sockets, and the allocator's slack (docs/security.md states it).
const RSS_BUDGET: usize = 192 << 20;
const RSS_OVERHEAD: usize = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_largest_states_to_several_streams_stay_within_the_budget() {
    support::install_crypto_provider();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_phasecast"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--memory-limit", &format!("{}B", RSS_BUDGET)])
        // Five streams: the default one, three big ones and the small one.
        .args(["--history", "200", "--max-streams", "5"])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ws = format!("ws://127.0.0.1:{port}");
    within("the server listens", async {
        while reqwest::get(format!("{base}/health")).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let at_rest = rss(pid);

    // RSS sampled through the run.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (done, peak) = (done.clone(), peak.clone());
        async move {
            while !done.load(Relaxed) {
                peak.fetch_max(rss(pid) as u64, Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    // Subscribers of the first big stream: JSON and protobuf deltas (each frame
    // checked by its checksum), one that stalls, one that keeps resuming.
    let http = reqwest::Client::new();
    const N: usize = 65_536;
    let first = post(&http, &base, "big-0", &moving(0, N)).await;
    assert_eq!(first.0, 200, "{}", first.2);
    let mut readers = Vec::new();
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let options = SubscribeOptions::new(format!("{ws}/ws?stream=big-0")).encoding(encoding);
        let mut s = Subscriber::connect(&options).await.unwrap();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut frames = 0u64;
            while !done.load(Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), s.next_frame()).await {
                    Ok(Ok(Some(_))) => frames += 1,
                    Ok(other) => panic!("{encoding:?} subscriber ended: {other:?}"),
                    Err(_) => {}
                }
            }
            assert_eq!(s.resyncs(), 0, "{encoding:?}: a checksum did not match");
            frames
        }));
    }
    let _stalled = RawWs::connect(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/ws?stream=big-0",
    )
    .await;
    let resumer = tokio::spawn({
        let (ws, done) = (ws.clone(), done.clone());
        async move {
            let mut held: Option<(String, u64, State)> = None;
            let mut resumes = 0u32;
            while !done.load(Relaxed) {
                let mut options = SubscribeOptions::new(format!("{ws}/ws?stream=big-0"))
                    .encoding(Encoding::Protobuf);
                let mut s = match held.take() {
                    Some((epoch, seq, state)) => {
                        options = options.resume(epoch, seq);
                        Subscriber::connect_holding(&options, state).await.unwrap()
                    }
                    None => Subscriber::connect(&options).await.unwrap(),
                };
                let mut read = 0;
                while read < 3 && !done.load(Relaxed) {
                    let next = tokio::time::timeout(Duration::from_millis(200), s.next_frame());
                    if let Ok(frame) = next.await {
                        frame.unwrap().unwrap();
                        read += 1;
                    }
                }
                held = match (s.epoch(), s.seq(), s.state()) {
                    (Some(e), Some(seq), Some(state)) => Some((e.to_owned(), seq, state.clone())),
                    _ => None,
                };
                assert_eq!(s.resyncs(), 0);
                s.close().await.unwrap();
                resumes += 1;
            }
            resumes
        }
    });

    // The small stream beside them: a 32-oscillator state every 5 ms, and a subscriber.
    let small_base = base.clone();
    let small_done = done.clone();
    let small_producer = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut step = 0;
        while !small_done.load(Relaxed) {
            tick.tick().await;
            step += 1;
            let (status, _, body) = post(&http, &small_base, "small", &moving(step, 32)).await;
            // The big streams hold more than their share of the budget: its last tenth
            // is kept for the small one, whose states are never refused.
            assert_eq!(status, 200, "small state {step}: {body}");
        }
        step
    });
    let small = within("the small stream", async {
        loop {
            let options = SubscribeOptions::new(format!("{ws}/ws?stream=small"));
            match Subscriber::connect(&options).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    // Read all along (a subscriber that is not read answers no ping), then up to the
    // last state the small producer sent.
    let (last_small, mut last_small_rx) = tokio::sync::watch::channel(u64::MAX);
    let small_reader = tokio::spawn(async move {
        let mut small = small;
        let mut frames = 0u64;
        loop {
            let target = *last_small_rx.borrow_and_update();
            if small.state().map(|s| s.step) == Some(target) {
                return (small, frames);
            }
            tokio::select! {
                frame = small.next_frame() => {
                    frame.unwrap().unwrap();
                    frames += 1;
                }
                _ = last_small_rx.changed() => {}
            }
        }
    });

    // Three producers, one per big stream, each posting 250 states (past the
    // history of 200) of 65,536 oscillators as JSON bodies of about 1.4 MB.
    let producers: Vec<_> = (0..3)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for step in 1..=250u64 {
                    // Encoded off the runtime, so the small producer keeps its pace.
                    let body = tokio::task::spawn_blocking(move || {
                        codec::encode_state(Encoding::Json, &moving(step, N))
                    })
                    .await
                    .unwrap();
                    let response = http
                        .post(format!("{base}/streams/big-{i}/state"))
                        .header("content-type", "application/json")
                        .body(body.to_vec())
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    // The budget may refuse a state (507) while the histories shrink:
                    // that is the documented degradation, not a loss.
                    assert!(
                        status == 200 || status == 507,
                        "big-{i} state {step}: {status}"
                    );
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for p in producers {
        tokio::time::timeout(Duration::from_secs(300), p)
            .await
            .expect("the producers finish within 5 minutes")
            .unwrap();
    }
    let took = started.elapsed();
    done.store(true, Relaxed);
    let small_published = small_producer.await.unwrap();
    let frames: Vec<u64> = futures_util::future::join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let resumes = resumer.await.unwrap();
    sampler.await.unwrap();
    // The small stream's subscriber ends on its newest state, exactly.
    last_small.send_replace(small_published);
    let (small, small_frames) = within("the small stream's newest state", small_reader)
        .await
        .unwrap();
    assert_eq!(
        small.state().unwrap().phases,
        moving(small_published, 32).phases
    );
    assert_eq!(small.resyncs(), 0);

    let peak = peak.load(Relaxed) as usize;
    let scrape = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accounted = metric(&scrape, "phasecast_memory_accounted_bytes").unwrap();
    eprintln!(
        "rss at rest {} MiB, peak {} MiB (budget {} MiB + overhead {} MiB); accounted at the end {:.1} MiB; \
         frames to the JSON and protobuf subscribers {frames:?}; {resumes} resumes; {small_published} small states ({small_frames} frames to its subscriber, {:.0} a second) in {took:.1?}",
        at_rest >> 20,
        peak >> 20,
        RSS_BUDGET >> 20,
        RSS_OVERHEAD >> 20,
        accounted / f64::from(1 << 20),
        small_published as f64 / took.as_secs_f64(),
    );
    assert!(frames.iter().all(|&f| f > 0), "{frames:?}");
    assert!(resumes > 0);
    assert!(
        peak <= RSS_BUDGET + RSS_OVERHEAD,
        "peak RSS {} MiB over the budget {} MiB + {} MiB",
        peak >> 20,
        RSS_BUDGET >> 20,
        RSS_OVERHEAD >> 20
    );
    child.kill().await.unwrap();
}
