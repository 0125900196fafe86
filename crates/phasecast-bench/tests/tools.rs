//! Smoke runs of the benchmark tools (seconds, few clients), so they cannot rot:
//! `loadgen` against phasecast, its old API and nats-server, idle mode, `bench-report`
//! on their output, `bandwidth`, the 30-second soak, and a short soak of
//! 1,024-oscillator states with resuming subscribers. `loadgen` and `soak` start the
//! `phasecast` binary that cargo builds beside `phasecast-bench`
//! (`cargo test --workspace` builds both).

#![allow(missing_docs)]

use std::process::Command;

/// Whether nats-server is installed; with `PHASECAST_REQUIRE_TOOLS` set it must be.
fn nats_available() -> bool {
    let found = Command::new("nats-server")
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

fn phasecast(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phasecast-bench"))
        .args(args)
        .output()
        .expect("run phasecast-bench");
    assert!(
        out.status.success(),
        "phasecast {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn loadgen_and_report_smoke() {
    let dir = std::env::temp_dir().join(format!("phasecast-loadgen-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("results.jsonl");
    let out_s = out.to_str().unwrap();
    let common = [
        "loadgen",
        "--subscribers",
        "5",
        "--rate",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--quiet",
        "--out",
        out_s,
        "--json",
    ];
    let mut systems = vec![
        vec!["--system", "phasecast", "--format", "protobuf"],
        vec![
            "--system",
            "phasecast",
            "--format",
            "json",
            "--delta",
            "false",
        ],
        vec!["--system", "old-api"],
    ];
    if nats_available() {
        systems.push(vec!["--system", "nats"]);
    }
    for extra in &systems {
        let mut args = common.to_vec();
        args.extend(extra);
        let result: serde_json::Value = serde_json::from_str(&phasecast(&args)).unwrap();
        assert_eq!(result["subscribers"], 5, "{extra:?}");
        assert!(
            result["sent"].as_u64().unwrap() >= 80,
            "{extra:?}: {result}"
        );
        assert!(
            result["delivered_ratio"].as_f64().unwrap() >= 0.99,
            "{extra:?}: {result}"
        );
        let p99 = result["latency_ms"]["p99"].as_f64().unwrap();
        assert!(p99 > 0.0 && p99.is_finite(), "{extra:?}: {result}");
        assert!(result["server_cpu_percent"].as_f64().unwrap() >= 0.0);
        assert!(result["server_rss_mb"].as_f64().unwrap() > 1.0);
        assert!(result["bytes_per_frame"].as_f64().unwrap() > 10.0);
    }
    // With hostile clients: a baseline without, and one attack.
    for attack in ["none", "garbage"] {
        let mut args = common.to_vec();
        args.extend(["--attack", attack, "--attackers", "2"]);
        let result: serde_json::Value = serde_json::from_str(&phasecast(&args)).unwrap();
        assert_eq!(result["attack"], attack);
        let opened = result["attack_connections"].as_u64().unwrap();
        if attack == "none" {
            assert_eq!(opened, 0);
        } else {
            assert!(opened >= 2, "{result}");
        }
        assert!(
            result["delivered_ratio"].as_f64().unwrap() >= 0.99,
            "{attack}: {result}"
        );
    }
    let idle: serde_json::Value = serde_json::from_str(&phasecast(&[
        "loadgen", "--idle", "50", "--quiet", "--json", "--out", out_s,
    ]))
    .unwrap();
    assert!(idle["rss_kb_per_connection"].as_f64().is_some(), "{idle}");

    let report = phasecast(&["bench-report", out_s, "--svg-dir", dir.to_str().unwrap()]);
    assert!(
        report.contains("| phasecast protobuf delta | 5 | 1 |"),
        "{report}"
    );
    assert!(report.contains("| old API (json full) | 5 |"), "{report}");
    assert!(
        report.contains("| phasecast json delta | 50 | 1 |"),
        "idle row: {report}"
    );
    assert!(
        report.contains("while hostile clients attack")
            && report.contains("| none | 1 | 0 |")
            && report.contains("| garbage | 1 |"),
        "hostile table: {report}"
    );
    for svg in ["latency.svg", "cpu.svg", "memory.svg"] {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("<polyline"),
            "{svg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nodes on a broker: a load run over three nodes, and the replay measurement, whose
/// every replayed view the tool compares with the first node's.
#[test]
fn nodes_on_a_broker_smoke() {
    if !nats_available() {
        return;
    }
    let result: serde_json::Value = serde_json::from_str(&phasecast(&[
        "loadgen",
        "--nodes",
        "3",
        "--subscribers",
        "6",
        "--rate",
        "100",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--quiet",
        "--json",
    ]))
    .unwrap();
    assert_eq!(result["nodes"], 3, "{result}");
    assert!(
        result["delivered_ratio"].as_f64().unwrap() >= 0.99,
        "{result}"
    );
    let replay: serde_json::Value = serde_json::from_str(&phasecast(&[
        "replay",
        "--oscillators",
        "64",
        "--keyframe-interval",
        "20",
        "--history",
        "50",
        "--runs",
        "2",
        "--json",
    ]))
    .unwrap();
    let runs = replay["start_to_serve_ms"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{replay}");
    assert!(runs.iter().all(|t| t.as_f64().unwrap() > 0.0), "{replay}");
    assert_eq!(replay["states"], 70);
}

#[test]
fn bandwidth_smoke() {
    let table = phasecast(&["bandwidth", "--states", "100", "--seeds", "1"]);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| `")).count(),
        5,
        "{table}"
    );
    assert!(table.contains("`kuramoto-32` | 32 |"), "{table}");
}

/// Runs `phasecast-bench soak --json` with `args`; its result (the run must pass:
/// the tool exits non-zero on a lost frame or a checksum failure).
fn soak(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phasecast-bench"))
        .arg("soak")
        .args(args)
        .arg("--json")
        .output()
        .expect("run phasecast soak");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    eprintln!("{r}");
    assert!(
        out.status.success(),
        "{}\n{r}",
        String::from_utf8_lossy(&out.stderr)
    );
    r
}

/// What every soak must show of its resuming subscribers: each resumed both from inside
/// the server's history and from past it (the run lasts until they have), the server
/// counted every resume, each was answered, and nothing failed a check.
fn assert_resumed(r: &serde_json::Value, subscribers: u64) {
    let q = &r["resuming"];
    let n = |k: &str| q[k].as_u64().unwrap_or_else(|| panic!("resuming.{k}: {r}"));
    assert_eq!(n("subscribers"), subscribers, "{r}");
    assert!(n("resumes") >= 2 * subscribers, "both ways each: {r}");
    assert!(n("resumes_past_history") >= subscribers, "{r}");
    assert_eq!(
        n("resumed_with_delta") + n("resumed_with_full"),
        n("resumes"),
        "every resume answered: {r}"
    );
    let server = |k: &str| q[k].as_f64().unwrap() as u64;
    assert_eq!(
        server("server_hits") + server("server_misses"),
        n("resumes"),
        "the server counted every resume: {r}"
    );
    assert!(
        server("server_misses") >= n("resumes_past_history"),
        "a resume from past the history is a miss: {r}"
    );
    assert!(server("server_hits") >= 1, "{r}");
    assert_eq!(n("checksum_failures"), 0, "{r}");
    assert_eq!(n("unanswered"), 0, "{r}");
    assert!(n("frames") > 0, "{r}");
}

/// The 30-second soak (`phasecast soak`; the 10-minute run is in docs/benchmarks.md):
/// churn, slow readers, readers that stop and resuming subscribers (the default 10);
/// at the end every steady subscriber is exact (states it skipped are reported, not
/// failed: that is the machine's speed), every slow reader
/// is exact or was dropped as too slow, no checksum failed, the connection gauge
/// matches the clients still connected, and descriptors are back down.
#[test]
fn thirty_second_soak() {
    let r = soak(&["--duration", "30s", "--steady", "100", "--slow", "10"]);
    assert_eq!(r["workload"], "kuramoto-32", "{r}");
    assert_eq!(
        r["steady_exact"], 100,
        "every steady subscriber ends exact: {r}"
    );
    assert!(r["steady_lost_frames"].is_u64(), "reported: {r}");
    assert!(r["steady_frames"].as_u64().unwrap() >= 100, "{r}");
    let slow = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(
        slow("slow_exact") + slow("slow_dropped"),
        10,
        "a slow reader ends exact or dropped, never wrong: {r}"
    );
    assert_eq!(r["resyncs"], 0);
    assert_eq!(r["checksum_failures"], 0, "{r}");
    assert_eq!(r["failures"], serde_json::json!([]), "{r}");
    assert_resumed(&r, 10);
    assert!(r["churned"].as_u64().unwrap() > 100, "{r}");
    assert!(r["stuck"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(
        r["connections_end"][0], r["connections_end"][1],
        "no connection left over: {r}"
    );
    assert_eq!(
        r["tasks"][0], r["tasks"][1],
        "as many server tasks after every client left as before the first: {r}"
    );
    assert!(
        r["series"].as_array().unwrap().len() >= 3,
        "a sample every 10 s: {r}"
    );
    let fds = &r["fds"];
    assert!(
        fds["end"].as_f64().unwrap() <= fds["start"].as_f64().unwrap() + 2.0,
        "descriptors back down: {r}"
    );
    let rss = &r["rss_mb"];
    for k in ["start", "median", "peak", "end"] {
        assert!(rss[k].as_f64().unwrap() > 1.0, "rss_mb.{k}: {r}");
    }
    assert!(rss["peak"].as_f64() >= rss["median"].as_f64(), "{r}");
    assert!(r["rss_hwm_mb"].as_f64().unwrap() > 1.0, "{r}");
}

/// A short soak of larger states: 1,024 oscillators, two resuming subscribers. It lasts
/// until both have resumed from inside the history and from past it; the protobuf one
/// is answered at least once with a delta it must apply to the state it held.
#[test]
fn short_soak_of_1024_oscillators_with_resuming_subscribers() {
    let r = soak(&[
        "--duration",
        "5s",
        "--oscillators",
        "1024",
        "--resuming",
        "2",
        "--steady",
        "4",
        "--slow",
        "2",
        "--churn-per-second",
        "4",
    ]);
    assert_eq!(r["workload"], "kuramoto-1024", "{r}");
    assert_eq!(r["oscillators"], 1024, "{r}");
    assert_eq!(r["steady_exact"], 4, "{r}");
    assert!(r["steady_lost_frames"].is_u64(), "reported: {r}");
    assert_eq!(r["checksum_failures"], 0, "{r}");
    assert_eq!(r["failures"], serde_json::json!([]), "{r}");
    assert_resumed(&r, 2);
    assert!(
        r["resuming"]["resumed_with_delta"].as_u64().unwrap() >= 1,
        "a resume answered with a delta: {r}"
    );
    assert_eq!(
        r["connections_end"][0], r["connections_end"][1],
        "no connection left over: {r}"
    );
}
