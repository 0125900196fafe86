//! The rules docs/clients.md sets for every client, checked in all three against one
//! live server: a wrong key fails at once (not after a timeout), a wrong path too, a
//! wrong port fails the first connect after its tries, and a parameter given in the
//! URL (`?stream=`) is honoured. Python and TypeScript run through their conformance
//! tools (exit 0: reached the seq; 1: refused or gave up; 3: timed out); Rust through
//! its `Subscription`.

use std::process::Stdio;

use phasecast::codec::Encoding;
use phasecast_client::{ClientError, SubscribeOptions, Subscription};
use tokio::process::Command;

use crate::support::{state, within, TestServer};

/// The Python interpreter and the Node conformance script, as scripts/test.sh sets them.
fn external_clients() -> Option<(String, String)> {
    match (
        std::env::var("PHASECAST_PYTHON"),
        std::env::var("PHASECAST_NODE_CONFORMANCE"),
    ) {
        (Ok(p), Ok(n)) => Some((p, n)),
        _ if std::env::var_os("PHASECAST_REQUIRE_TOOLS").is_some() => {
            panic!("PHASECAST_PYTHON and PHASECAST_NODE_CONFORMANCE must be set (scripts/test.sh sets them)")
        }
        _ => None,
    }
}

/// What a conformance tool did: its exit code, its last frame line, what it printed
/// to stderr.
struct Outcome {
    code: Option<i32>,
    last: Option<serde_json::Value>,
    stderr: String,
}

async fn run_tool(lang: &str, tools: &(String, String), url: &str, extra: &[&str]) -> Outcome {
    let mut command = if lang == "python" {
        let mut c = Command::new(&tools.0);
        c.args(["-m", "phasecast.conformance"]);
        c
    } else {
        let mut c = Command::new("node");
        c.arg(&tools.1);
        c
    };
    let output = command
        .args(["--url", url, "--format", "json", "--until-seq", "3"])
        .args(["--timeout", "40"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = within(&format!("{lang} conformance tool"), output)
        .await
        .expect("the tool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        code: output.status.code(),
        last: stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok()),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_fails_fast_on_permanent_errors_and_keeps_url_parameters() {
    let tools = external_clients();
    if tools.is_none() {
        eprintln!("skipping the Python and TypeScript clients: run scripts/test.sh");
    }
    let server = TestServer::with(|c| c.subscriber.subscribe_key = Some("viewer".into())).await;
    let publisher = server.publisher(Encoding::Json);
    // Three states on "lab1", with steps no other stream has.
    let lab1 = phasecast_client::Publisher::builder(server.http())
        .stream("lab1")
        .build();
    for step in 1..=3 {
        lab1.publish(&state(1000 + step, 4)).await.unwrap();
        publisher.publish(&state(step, 4)).await.unwrap();
    }
    let ws = format!("{}/ws", server.ws());
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("ws://127.0.0.1:{free_port}/ws");
    let wrong_path = format!("{}/nope", server.ws());
    let lab1_url = format!("{ws}?stream=lab1");

    // Rust.
    let first = |url: &str, key: &str| {
        let options = SubscribeOptions::new(url).key(key);
        async move { Subscription::new(options).next().await.expect("an outcome") }
    };
    match within("rust: wrong key", first(&ws, "wrong")).await {
        Err(ClientError::Refused { status: 401, .. }) => {}
        other => panic!("rust, wrong key: {other:?}"),
    }
    match within("rust: wrong path", first(&wrong_path, "viewer")).await {
        Err(e) => assert!(e.is_permanent() && e.status() == Some(404), "rust: {e}"),
        Ok(u) => panic!("rust, wrong path: {u:?}"),
    }
    match within("rust: wrong port", first(&nowhere, "viewer")).await {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("rust, wrong port: {other:?}"),
    }
    let update = within("rust: lab1", first(&lab1_url, "viewer"))
        .await
        .unwrap();
    assert_eq!(update.state.step, 1003, "rust kept ?stream=lab1");

    let Some(tools) = tools else { return };
    for lang in ["python", "node"] {
        let wrong_key = run_tool(lang, &tools, &ws, &["--key", "wrong"]).await;
        assert_eq!(
            wrong_key.code,
            Some(1),
            "{lang}: a wrong key is refused at once, not timed out: {}",
            wrong_key.stderr
        );
        assert!(
            wrong_key.stderr.contains("401"),
            "{lang} says why: {}",
            wrong_key.stderr
        );
        let path = run_tool(lang, &tools, &wrong_path, &["--key", "viewer"]).await;
        assert_eq!(path.code, Some(1), "{lang}, wrong path: {}", path.stderr);
        assert!(path.stderr.contains("404"), "{lang}: {}", path.stderr);
        let port = run_tool(lang, &tools, &nowhere, &[]).await;
        assert_eq!(
            port.code,
            Some(1),
            "{lang}: a wrong port gives up after its tries, before the tool's own timeout: {}",
            port.stderr
        );
        let lab = run_tool(lang, &tools, &lab1_url, &["--key", "viewer"]).await;
        assert_eq!(lab.code, Some(0), "{lang}, ?stream=lab1: {}", lab.stderr);
        let last = lab.last.expect("frame lines");
        assert_eq!(last["step"], 1003, "{lang} kept ?stream=lab1: {last}");
    }
    server.shutdown().await;
}
