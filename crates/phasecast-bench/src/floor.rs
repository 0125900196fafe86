//! The floor server: the least a WebSocket fan-out server can do per frame, to
//! measure how far above it phasecast (and nats-server) are on the same machine.
//!
//! One thread reads the producer's states (NATS-style `PUB subject length`, the
//! payload, as `loadgen` sends to nats-server), builds one WebSocket text frame per
//! state and writes it to every subscriber with one `write` system call each, from
//! that same thread: no queue, no task wake, no second thread, no reads of the
//! subscribers' sockets, no timers, no metrics, no freshness bound. A subscriber whose
//! socket does not take a whole frame at once is dropped (the load benchmark then
//! shows it as frames not delivered). A second thread accepts connections and
//! answers WebSocket handshakes.
//!
//! ```sh
//! target/release/phasecast-bench loadgen --system floor --subscribers 100
//! ```

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use clap::Args;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// `phasecast-bench floor-server` options.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long)]
    pub port: u16,
    /// Write one WebSocket ping to each subscriber after its `101` (its pong is
    /// never read). A reader's TCP that has sent anything since it last received
    /// (the pong) takes the connection for an interactive one and from then on
    /// acknowledges frames as they arrive, inside the server's write on loopback,
    /// instead of when it reads them: what every server with keep-alive pings, or a
    /// protocol where clients talk (nats-server's `CONNECT`), runs into.
    #[arg(long)]
    pub ping_on_join: bool,
}

/// Subscribers' sockets, non-blocking, in the order they joined.
type Subscribers = Arc<Mutex<Vec<TcpStream>>>;

/// Serves until killed: accepts on `127.0.0.1:port`; a connection that starts with
/// `GET` is a WebSocket subscriber, any other a producer.
///
/// # Errors
/// When the port cannot be bound.
pub fn serve(args: &FloorArgs) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    let subscribers: Subscribers = Arc::default();
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        if starts_with_get(&tcp) {
            let _ = handshake(tcp, &subscribers, args.ping_on_join);
        } else {
            let subscribers = subscribers.clone();
            std::thread::spawn(move || produce(tcp, &subscribers));
        }
    }
    Ok(())
}

/// Whether the connection's first bytes are `GET` (a WebSocket handshake), waiting
/// for three bytes however they arrive.
fn starts_with_get(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 3];
    loop {
        match tcp.peek(&mut first) {
            Ok(n) if n < first.len() && first[..n] == b"GET"[..n] && n > 0 => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(_) | Err(_) => return &first == b"GET",
        }
    }
}

/// Answers a WebSocket opening handshake (with a ping after it when `ping`) and lists
/// the socket (non-blocking) among the subscribers, under the list's lock: every
/// state published after the client read its `101` is written to it.
fn handshake(tcp: TcpStream, subscribers: &Subscribers, ping: bool) -> io::Result<()> {
    let mut reader = BufReader::new(tcp);
    let mut key = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("sec-websocket-key") {
                key = Some(value.trim().to_owned());
            }
        }
    }
    let key = key.ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))?;
    let mut tcp = reader.into_inner();
    let mut list = subscribers.lock().expect("subscriber list");
    write!(
        tcp,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )?;
    if ping {
        tcp.write_all(&[0x89, 0])?;
    }
    tcp.set_nodelay(true)?;
    tcp.set_nonblocking(true)?;
    list.push(tcp);
    Ok(())
}

/// Reads states from the producer and writes each to every subscriber, until the
/// producer goes.
fn produce(tcp: TcpStream, subscribers: &Subscribers) {
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    let mut frame = Vec::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // `PUB subject length`; anything else (the producer's CONNECT) is skipped.
        let Some(len) = line
            .strip_prefix("PUB ")
            .and_then(|rest| rest.trim_end().rsplit(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        frame.clear();
        text_frame_header(len, &mut frame);
        let start = frame.len();
        frame.resize(start + len + 2, 0);
        if reader.read_exact(&mut frame[start..]).is_err() {
            return;
        }
        frame.truncate(start + len); // the payload's trailing CRLF
        let mut list = subscribers.lock().expect("subscriber list");
        list.retain_mut(|tcp| matches!(tcp.write(&frame), Ok(n) if n == frame.len()));
    }
}

/// A server's (unmasked) text frame header for a payload of `len` bytes (RFC 6455 5.2).
fn text_frame_header(len: usize, out: &mut Vec<u8>) {
    out.push(0x81);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        let header = |len| {
            let mut out = Vec::new();
            text_frame_header(len, &mut out);
            out
        };
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(70_000), [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    /// Over real sockets: a subscriber's handshake is answered, and each state the
    /// producer publishes reaches it as one text frame of exactly that payload.
    #[tokio::test]
    async fn a_published_state_reaches_every_subscriber_whole() {
        states_reach_subscribers(false).await;
    }

    /// With `--ping-on-join`, a ping comes first, then the states as without it.
    #[tokio::test]
    async fn with_ping_on_join_a_ping_comes_before_the_states() {
        states_reach_subscribers(true).await;
    }

    async fn states_reach_subscribers(ping_on_join: bool) {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_tungstenite::tungstenite::Message;

        let port = crate::loadgen::free_port().unwrap();
        std::thread::spawn(move || serve(&FloorArgs { port, ping_on_join }));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        crate::loadgen::wait_for_port(addr).await.unwrap();
        let mut subscribers = Vec::new();
        for _ in 0..2 {
            let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
                .await
                .unwrap();
            subscribers.push(ws);
        }
        let mut producer = tokio::net::TcpStream::connect(addr).await.unwrap();
        producer.write_all(b"CONNECT {}\r\n").await.unwrap();
        let states: Vec<String> = (1..=3)
            .map(|step| {
                format!(
                    "{{\"step\":{step},\"phases\":[{}]}}",
                    "0.5,".repeat(40 * step).trim_end_matches(',')
                )
            })
            .collect();
        // Both were listed before their handshakes were answered.
        for state in &states {
            let message = format!("PUB pcc.state {}\r\n{state}\r\n", state.len());
            producer.write_all(message.as_bytes()).await.unwrap();
        }
        for ws in &mut subscribers {
            if ping_on_join {
                match ws.next().await {
                    Some(Ok(Message::Ping(payload))) => assert!(payload.is_empty()),
                    other => panic!("expected a ping, got {other:?}"),
                }
            }
            for state in &states {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), state),
                    other => panic!("expected the state, got {other:?}"),
                }
            }
        }
    }
}
