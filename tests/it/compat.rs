//! The old server's clients work unchanged.

use futures_util::StreamExt;

use crate::support::{within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_client_behaviour_works_unchanged() {
    let server = TestServer::start().await;
    // The old browser page: /ws with no parameters, JSON text frames.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", server.ws()))
        .await
        .unwrap();
    server
        .wait_for_health("one client", |h| h["websocket_clients"] == 1)
        .await;

    // The old producer: POST the old body to /pcc_state.
    let body = r#"{"step": 42, "phases": [0.1, 1.2, 2.3], "spins": [1, -1, 1], "energy": -1.75, "timestamp": 1764000000.5}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/pcc_state", server.http()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["step"], 42);
    assert_eq!(reply["clients"], 1);
    assert!(reply["processing_time_ms"].as_f64().unwrap() >= 0.0);

    let message = within("frame", ws.next()).await.unwrap().unwrap();
    let text = message.into_text().expect("JSON frames are text messages");
    let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(frame["step"], 42);
    assert_eq!(frame["phases"], serde_json::json!([0.1, 1.2, 2.3]));
    assert_eq!(frame["spins"], serde_json::json!([1, -1, 1]));
    assert_eq!(frame["energy"], -1.75);
    assert_eq!(frame["timestamp"], 1764000000.5);
    assert!(frame.get("is_delta").is_none() || frame["is_delta"] == false);

    // A second state arrives as a delta the old browser code understands.
    let body = r#"{"step": 43, "phases": [0.1, 1.25, 2.3], "spins": [1, 1, 1], "energy": -1.5}"#;
    reqwest::Client::new()
        .post(format!("{}/pcc_state", server.http()))
        .body(body)
        .send()
        .await
        .unwrap();
    let text = within("delta", ws.next())
        .await
        .unwrap()
        .unwrap()
        .into_text()
        .unwrap();
    let delta: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(delta["is_delta"], true);
    assert_eq!(delta["step"], 43);
    assert_eq!(delta["phases_delta"], serde_json::json!({"1": 1.25}));
    assert_eq!(delta["spins_delta"], serde_json::json!({"1": 1}));

    let health = server.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["wire_format"], "json");
    assert_eq!(health["websocket_clients"], 1);
    assert_eq!(health["last_step"], 43);
    server.shutdown().await;
}
