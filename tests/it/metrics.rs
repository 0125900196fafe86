//! `/metrics` after real traffic: every name exists with plausible values; the
//! scrape passes `promtool check metrics`; the dashboard and alert rules only use
//! names the server exports.

use std::{collections::BTreeSet, process::Command};

use phasecast::codec::Encoding;

use crate::support::{metric, state, wait_for_metric, within, RawFrame, RawWs, TestServer};

/// Metric names (without histogram suffixes) declared in a scrape.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `mcp_*` / `phasecast_*` names used in a file's queries.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.split(|c: char| !word(c))
        .filter(|w| w.starts_with("mcp_") || w.starts_with("phasecast_"))
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_traffic() {
    let server = TestServer::start().await;
    let mut json = server.subscribe(Encoding::Json, true).await;
    let mut proto = server.subscribe(Encoding::Protobuf, false).await;
    let publisher = server.publisher(Encoding::Json);
    for step in 1..=20 {
        publisher.publish(&state(step, 16)).await.unwrap();
    }
    for sub in [&mut json, &mut proto] {
        while sub.seq() != Some(20) {
            within("frames", sub.next_frame()).await.unwrap().unwrap();
        }
    }
    let bad = reqwest::Client::new()
        .post(format!("{}/pcc_state", server.http()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A frame can reach the client a moment before its session records the write's
    // latency (after the flush returns): wait for the last of those records.
    let scrape = wait_for_metric(&server, "mcp_pcc_broadcast_latency_seconds_count", |n| {
        n == 40.0
    })
    .await;

    let expect = |name: &str, want: f64| {
        assert_eq!(metric(&scrape, name), Some(want), "{name}\n{scrape}");
    };
    expect("mcp_ws_connections_current", 2.0);
    expect("mcp_pcc_messages_received_total", 20.0);
    expect("mcp_pcc_messages_broadcast_total", 40.0);
    expect("mcp_pcc_messages_dropped_total{reason=\"rejected\"}", 1.0);
    expect("mcp_pcc_messages_dropped_total{reason=\"conflated\"}", 0.0);
    expect("mcp_pcc_message_processing_seconds_count", 20.0);
    expect("phasecast_state_decode_seconds_count", 20.0);
    // The old meaning: the size of each state as received, once per state.
    expect("mcp_pcc_message_size_bytes_count", 20.0);
    expect("mcp_pcc_broadcast_latency_seconds_count", 40.0);
    expect("phasecast_ws_connections_opened_total", 2.0);
    expect(
        "phasecast_frames_sent_total{format=\"json\",kind=\"full\"}",
        1.0,
    );
    expect(
        "phasecast_frames_sent_total{format=\"json\",kind=\"delta\"}",
        19.0,
    );
    expect(
        "phasecast_frames_sent_total{format=\"protobuf\",kind=\"full\"}",
        20.0,
    );
    expect(
        "phasecast_frames_sent_total{format=\"protobuf\",kind=\"delta\"}",
        0.0,
    );
    expect("phasecast_inputs_rejected_total{reason=\"malformed\"}", 1.0);
    expect("phasecast_keyframes_total", 1.0);
    expect("phasecast_streams", 1.0);
    expect("phasecast_build_info{version=\"0.1.0\"}", 1.0);
    // Each encoded frame is measured once, not once per subscriber.
    let sizes = metric(
        &scrape,
        "phasecast_frame_encoded_size_bytes_count{format=\"json\",kind=\"delta\"}",
    )
    .unwrap();
    assert_eq!(sizes, 19.0);
    let ratio = metric(&scrape, "phasecast_delta_saving_ratio").unwrap();
    let sent: f64 = [
        "json\",kind=\"full",
        "json\",kind=\"delta",
        "protobuf\",kind=\"full",
        "protobuf\",kind=\"delta",
    ]
    .iter()
    .map(|l| {
        metric(
            &scrape,
            &format!("phasecast_frame_sent_bytes_total{{format=\"{l}\"}}"),
        )
        .unwrap()
    })
    .sum();
    let full = metric(&scrape, "phasecast_frame_full_equivalent_bytes_total").unwrap();
    assert!(
        sent > 0.0 && sent < full,
        "deltas saved bytes: {sent} of {full}"
    );
    assert!(
        (ratio - (1.0 - sent / full)).abs() < 1e-9,
        "saving ratio {ratio}"
    );
    let p = metric(
        &scrape,
        "mcp_pcc_broadcast_latency_seconds_bucket{le=\"0.1\"}",
    )
    .unwrap();
    assert!(p >= 39.0, "latencies under 100 ms on loopback: {p}");
    assert!(
        scrape.contains("service_name=\"phasecast\""),
        "resource has service.name"
    );
    for doubled in ["_total_total", "_bytes_bytes", "_seconds_seconds"] {
        assert!(!scrape.contains(doubled), "{doubled}");
    }

    // promtool accepts the exposition (installed by the test command).
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(scrape.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) if std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some() => {
            panic!("promtool is required: {e}")
        }
        Err(e) => eprintln!("skipping promtool check: {e}"),
    }

    // Everything the dashboard and the alerts query is exported.
    let exported = exported_names(&scrape);
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "deploy/grafana/phasecast.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let used = referenced_names(&text);
        assert!(used.len() >= 5, "{file} uses {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics the server does not export: {missing:?}"
        );
    }
    server.shutdown().await;
}

#[test]
fn referenced_names_strip_histogram_suffixes() {
    let names = referenced_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(mcp_pcc_broadcast_latency_seconds_bucket[5m]))) / rate(phasecast_frames_sent_total[1m]) x_mcp_no"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "mcp_pcc_broadcast_latency_seconds",
            "phasecast_frames_sent_total"
        ]
    );
}

/// A subscriber that leaves without a close frame, by a TCP FIN (its process ends, its
/// tab closes) or a reset, has left: `reason="reset"`, never `policy`. One that closes
/// with a close frame is `client`. All three count in the old `mcp_ws_disconnections_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fin_or_a_reset_counts_as_the_client_leaving() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;

    let server = TestServer::start().await;
    server
        .publisher(Encoding::Json)
        .publish(&state(1, 4))
        .await
        .unwrap();
    let mut fin = RawWs::connect(server.addr(), "/ws").await;
    let mut reset = RawWs::connect(server.addr(), "/ws").await;
    let (mut clean, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
        .await
        .unwrap();
    // Each has its first frame: the sessions are running, nothing is left unread.
    assert_eq!(fin.next().await.unwrap().opcode, RawFrame::TEXT);
    assert_eq!(reset.next().await.unwrap().opcode, RawFrame::TEXT);
    within("first", clean.next()).await.unwrap().unwrap();

    // FIN: shut the write side; the socket stays open until the server has seen it.
    fin.tcp.shutdown().await.unwrap();
    wait_for_metric(
        &server,
        "phasecast_ws_connections_closed_total{reason=\"reset\"}",
        |n| n == 1.0,
    )
    .await;
    // Reset: linger 0, then close: the kernel sends RST.
    socket2::SockRef::from(&reset.tcp)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(reset);
    wait_for_metric(
        &server,
        "phasecast_ws_connections_closed_total{reason=\"reset\"}",
        |n| n == 2.0,
    )
    .await;
    clean
        .send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .unwrap();
    let scrape = wait_for_metric(
        &server,
        "phasecast_ws_connections_closed_total{reason=\"client\"}",
        |n| n == 1.0,
    )
    .await;
    for (name, want) in [
        (
            "phasecast_ws_connections_closed_total{reason=\"policy\"}",
            0.0,
        ),
        (
            "phasecast_ws_connections_closed_total{reason=\"error\"}",
            0.0,
        ),
        ("mcp_ws_connections_total", 3.0),
        ("mcp_ws_disconnections_total", 3.0),
        ("mcp_ws_connections_current", 0.0),
    ] {
        assert_eq!(metric(&scrape, name), Some(want), "{name}\n{scrape}");
    }
    drop(fin);
    server.shutdown().await;
}
