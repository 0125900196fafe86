//! TLS with a self-signed certificate made here: HTTPS and WSS work, plain TCP to the
//! TLS port does not get in.

use std::sync::Arc;

use futures_util::StreamExt;
use phasecast::codec::{self, Encoding, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{rustls, TlsConnector};

use crate::support::{metric, state, within, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_self_signed_certificate() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("phasecast-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let server = TestServer::with(move |config| config.connection.tls = Some((c, k))).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    // HTTPS: publish a state.
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut tls = within("tls handshake", connector.connect(name.clone(), tcp))
        .await
        .unwrap();
    let body = codec::encode_state(Encoding::Json, &state(1, 8));
    let request = format!("POST /pcc_state HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    tls.write_all(request.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut response = String::new();
    within("https response", tls.read_to_string(&mut response))
        .await
        .ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"seq\":1"), "{response}");

    // WSS: subscribe and get the state.
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut ws, _) = within(
        "wss upgrade",
        tokio_tungstenite::client_async("wss://localhost/ws?format=protobuf", tls),
    )
    .await
    .unwrap();
    let message = within("frame", ws.next()).await.unwrap().unwrap();
    match codec::decode_frame(Encoding::Protobuf, &message.into_data()).unwrap() {
        Frame::Full { seq, state: s, .. } => assert_eq!((seq, s), (1, state(1, 8))),
        other => panic!("{other:?}"),
    }

    // Plain HTTP to the TLS port: no way in.
    let mut plain = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within("plain refused", plain.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("\"status\""),
        "no health over plain TCP"
    );
    drop(ws);
    // The failed handshake is counted (metrics are behind TLS too).
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut scrape = String::new();
    within("metrics over https", tls.read_to_string(&mut scrape))
        .await
        .ok();
    let body = scrape.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        metric(body, "phasecast_connections_refused_total{reason=\"tls\"}"),
        Some(1.0),
        "{scrape}"
    );
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Rust client over TLS: `https://` to publish, `wss://` to subscribe, trusting a
/// self-signed certificate given as PEM; and refusing the same server without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_publishes_over_https_and_subscribes_over_wss() {
    use phasecast_client::{Publisher, SubscribeOptions, Subscriber, TlsConfig};

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("phasecast-tls-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let server = TestServer::with(move |config| config.connection.tls = Some((c, k))).await;
    let port = server.addr().port();
    let tls = TlsConfig::default()
        .add_root_pem(cert.cert.pem().as_bytes())
        .unwrap();

    let publisher = Publisher::builder(format!("https://localhost:{port}"))
        .encoding(Encoding::Protobuf)
        .tls(tls.clone())
        .build();
    let reply = within("https publish", publisher.publish(&state(1, 8)))
        .await
        .unwrap();
    assert_eq!(reply.seq, 1);

    let mut options =
        SubscribeOptions::new(format!("wss://localhost:{port}")).encoding(Encoding::Protobuf);
    options.tls = tls;
    let mut sub = within("wss connect", Subscriber::connect(&options))
        .await
        .unwrap();
    let first = within("frame", sub.next_frame()).await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(sub.state(), Some(&state(1, 8)));
    within("publish", publisher.publish(&state(2, 8)))
        .await
        .unwrap();
    let second = within("frame", sub.next_frame()).await.unwrap().unwrap();
    assert_eq!(second.seq, 2);
    assert_eq!(sub.state(), Some(&state(2, 8)));

    // Without the certificate the client does not trust the server.
    let untrusted = SubscribeOptions::new(format!("wss://localhost:{port}"));
    assert!(within("untrusted", Subscriber::connect(&untrusted))
        .await
        .is_err());
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
