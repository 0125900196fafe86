//! The write side of a subscriber's socket, shared by the stream's dispatch and the
//! session. The dispatch writes frames straight to the TCP socket (one
//! non-blocking vectored write per state: the WebSocket header and the shared encoded
//! payload, never copied); what the socket does not take at once is queued, whole
//! frames only, and the session, woken for it, writes the queue out as the socket
//! drains. The session's own frames (pongs, pings, close) go through the same queue
//! (as tungstenite's writes, see [`SessionIo`]), so frames never interleave.
//!
//! Over TLS there is no socket to write to directly: everything is queued and the
//! session writes it.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{ready, Context, Poll},
    time::Instant,
};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
    sync::Notify,
};

use crate::transport::upgrade::{Connection, Io};

/// WebSocket opcodes the server writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opcode {
    Text = 1,
    Binary = 2,
    Ping = 9,
}

/// The most bufs one vectored write takes (Linux's `IOV_MAX` is 1,024).
const MAX_SLICES: usize = 64;

/// A subscriber's socket, write side.
pub(super) struct Wire {
    inner: Mutex<Inner>,
    /// Wakes the session: bytes are queued, or its deadlines may have changed.
    wake: Notify,
}

struct Inner {
    sink: Sink,
    /// Bytes the socket has not taken yet, oldest first, whole frames.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// When the queue last went from empty to not: the write has waited since.
    since: Option<Instant>,
    /// A close frame was written: nothing may follow it.
    closed: bool,
}

enum Sink {
    Tcp(OwnedWriteHalf),
    Stream(WriteHalf<Io>),
}

/// How a [`Wire::send`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Every byte is in the socket.
    Written,
    /// Some bytes wait in the queue, for the session to write.
    Queued,
}

/// The read side of the socket, for tungstenite, which writes through the wire.
pub(super) struct SessionIo {
    read: Reader,
    wire: Arc<Wire>,
}

enum Reader {
    Tcp(OwnedReadHalf),
    Stream(ReadHalf<Io>),
}

impl Wire {
    /// Splits an upgraded connection into the wire and the session's side of it.
    pub(super) fn split(connection: Connection) -> (Arc<Wire>, SessionIo, Vec<u8>) {
        let (read, sink, early) = match connection {
            Connection::Tcp { stream, read } => {
                let (r, w) = stream.into_split();
                (Reader::Tcp(r), Sink::Tcp(w), read.to_vec())
            }
            Connection::Other(io) => {
                let (r, w) = tokio::io::split(io);
                (Reader::Stream(r), Sink::Stream(w), Vec::new())
            }
        };
        let wire = Arc::new(Wire {
            inner: Mutex::new(Inner {
                sink,
                queue: VecDeque::new(),
                queued: 0,
                since: None,
                closed: false,
            }),
            wake: Notify::new(),
        });
        let io = SessionIo {
            read,
            wire: wire.clone(),
        };
        (wire, io, early)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("wire lock")
    }

    /// Writes `frames` (opcode and payload each) now, as far as the socket takes
    /// them without waiting; the rest is queued. Frames go behind anything queued.
    pub(super) fn send(&self, frames: &[(Opcode, &[u8], Option<&Bytes>)]) -> Sent {
        let mut headers = BytesMut::with_capacity(frames.len() * 10);
        let mut spans = Vec::with_capacity(frames.len());
        for (opcode, small, payload) in frames {
            let len = small.len() + payload.map_or(0, |p| p.len());
            let start = headers.len();
            put_header(&mut headers, *opcode, len);
            headers.put_slice(small);
            spans.push((start..headers.len(), *payload));
        }
        let headers = headers.freeze();
        let pieces: Vec<Bytes> = spans
            .into_iter()
            .flat_map(|(span, payload)| {
                std::iter::once(headers.slice(span)).chain(payload.cloned())
            })
            .collect();
        let mut inner = self.lock();
        if inner.closed {
            return Sent::Written;
        }
        let mut written = 0;
        if inner.queue.is_empty() {
            if let Sink::Tcp(tcp) = &inner.sink {
                written = write_now(tcp, &pieces);
            }
        }
        if written < pieces.iter().map(Bytes::len).sum() {
            // What the socket did not take goes behind the queue, as if all of it
            // had been queued and `written` bytes of it then written.
            for piece in pieces {
                inner.push(piece);
            }
            inner.consume(written);
        }
        if inner.queue.is_empty() {
            Sent::Written
        } else {
            Sent::Queued
        }
    }

    /// Bytes queued, and since when the oldest of them waits.
    pub(super) fn backlog(&self) -> (usize, Option<Instant>) {
        let inner = self.lock();
        (inner.queued, inner.since)
    }

    /// Wakes the session.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until woken by [`Wire::wake`] (a wake before the wait counts).
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Writes the queue out; ready once it is empty and flushed.
    pub(super) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        while !inner.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = inner
                .queue
                .iter()
                .take(MAX_SLICES)
                .map(|b| IoSlice::new(b))
                .collect();
            let n = match &mut inner.sink {
                Sink::Tcp(w) => ready!(Pin::new(w).poll_write_vectored(cx, &slices))?,
                Sink::Stream(w) => ready!(Pin::new(w).poll_write_vectored(cx, &slices))?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            inner.consume(n);
        }
        match &mut inner.sink {
            Sink::Tcp(w) => Pin::new(w).poll_flush(cx),
            Sink::Stream(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        match &mut self.lock().sink {
            Sink::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Sink::Stream(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

impl Inner {
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.queue.is_empty() {
            self.since = Some(Instant::now());
        }
        self.queued += bytes.len();
        self.queue.push_back(bytes);
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front = self.queue.front_mut().expect("written bytes were queued");
            if n < front.len() {
                let _ = front.split_to(n);
                return;
            }
            n -= front.len();
            self.queue.pop_front();
        }
        if self.queue.is_empty() {
            self.since = None;
        }
    }
}

/// Writes as much of `pieces` as the socket takes now; returns the bytes written.
/// A failed socket writes nothing more: the session's drain or read sees it end.
fn write_now(tcp: &OwnedWriteHalf, pieces: &[Bytes]) -> usize {
    let (mut piece, mut offset, mut written) = (0, 0, 0);
    while piece < pieces.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&pieces[piece][offset..])
            .chain(pieces[piece + 1..].iter().map(|p| &p[..]))
            .take(MAX_SLICES)
            .map(IoSlice::new)
            .collect();
        let mut n = match tcp.try_write_vectored(&slices) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        written += n;
        while n > 0 {
            let left = pieces[piece].len() - offset;
            if n < left {
                offset += n;
                break;
            }
            n -= left;
            piece += 1;
            offset = 0;
        }
    }
    written
}

/// Whether server frames (unmasked, whole) hold a close frame.
fn holds_close(mut frames: &[u8]) -> bool {
    while frames.len() >= 2 {
        if frames[0] & 0x0f == 8 {
            return true;
        }
        let (header, len) = match frames[1] & 0x7f {
            126 if frames.len() >= 4 => (4, u64::from(u16::from_be_bytes([frames[2], frames[3]]))),
            127 if frames.len() >= 10 => (
                10,
                u64::from_be_bytes(frames[2..10].try_into().expect("8 bytes")),
            ),
            126 | 127 => return false,
            len => (2, u64::from(len)),
        };
        let end = usize::try_from(len).map_or(usize::MAX, |len| len.saturating_add(header));
        frames = frames.get(end..).unwrap_or_default();
    }
    false
}

/// A server frame's header (unmasked, final): opcode and payload length.
fn put_header(buf: &mut BytesMut, opcode: Opcode, len: usize) {
    buf.put_u8(0x80 | opcode as u8);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(len);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

impl AsyncRead for SessionIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().read {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Stream(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// tungstenite writes whole frames (pongs, pings, close) into its buffer and then the
/// buffer: each write is taken whole, into the queue, so a frame is never split
/// around one the dispatch writes.
impl AsyncWrite for SessionIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let wire = &self.wire;
        {
            let mut inner = wire.lock();
            inner.push(Bytes::copy_from_slice(buf));
            inner.closed |= holds_close(buf);
        }
        // Written out now if the socket takes it; what it does not waits for a flush.
        let _ = wire.poll_drain(cx);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_each_length_form() {
        for (len, expected) in [
            (5usize, vec![0x81, 5]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut buf = BytesMut::new();
            put_header(&mut buf, Opcode::Text, len);
            assert_eq!(&buf[..], &expected[..], "{len}");
        }
        let mut buf = BytesMut::new();
        put_header(&mut buf, Opcode::Ping, 8);
        assert_eq!(&buf[..], &[0x89, 8]);
    }

    #[test]
    fn a_close_frame_is_found_behind_others() {
        let mut frames = BytesMut::new();
        for len in [3, 300, 70_000] {
            put_header(&mut frames, Opcode::Binary, len);
            frames.put_bytes(0x88, len);
        }
        assert!(!holds_close(&frames), "payload bytes are not frames");
        frames.put_slice(&[0x88, 2, 0x03, 0xe9]);
        assert!(holds_close(&frames));
        assert!(holds_close(&[0x8a, 0, 0x88, 0]), "a pong, then a close");
        assert!(!holds_close(&[0x8a, 0]));
    }

    /// Two frames larger than the socket takes while its reader does not read: the
    /// part not written is queued (not the whole), and drained it ends the stream of
    /// bytes exactly where the written part stopped.
    #[tokio::test]
    async fn what_the_socket_does_not_take_is_queued_and_drained_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, (server, _)) = (client.unwrap(), accepted.unwrap());
        let read = Bytes::new();
        let (wire, _io, _) = Wire::split(Connection::Tcp {
            stream: server,
            read,
        });
        let payload = Bytes::from((0..8 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let mut expected = BytesMut::new();
        for _ in 0..2 {
            put_header(&mut expected, Opcode::Binary, payload.len());
            expected.put_slice(&payload);
        }
        let frame = (Opcode::Binary, &[][..], Some(&payload));
        assert_eq!(wire.send(&[frame, frame]), Sent::Queued);
        let (queued, since) = wire.backlog();
        assert!(since.is_some());
        assert!(
            queued > 0 && queued < expected.len(),
            "{queued} of {}",
            expected.len()
        );
        let total = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; total];
            client.read_exact(&mut got).await.map(|_| got)
        });
        std::future::poll_fn(|cx| wire.poll_drain(cx))
            .await
            .unwrap();
        assert_eq!(wire.backlog(), (0, None));
        assert!(reader.await.unwrap().unwrap() == expected, "bytes in order");
    }
}
