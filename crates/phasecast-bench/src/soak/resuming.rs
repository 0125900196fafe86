//! The soak's resuming subscribers: each reads a while, disconnects, waits while the
//! producer moves on, and reconnects with `?resume=<seq it holds>&epoch=<its epoch>`. It applies every
//! frame itself (no client library in between, so nothing is retried behind its back):
//! a delta must name the seq it holds as its base and pass its checksum, and after every
//! frame the state held must be the producer's. Most waits stay well inside the
//! server's history, so the server can answer with a delta from the state held; every
//! third absence (the second, the fifth, …) is longer than the history, so the answer must be a full frame.
//!
//! Everything is counted in frames and states, not seconds: how many frames a
//! subscriber reads before leaving, how many states it waits for. A loaded machine makes
//! a run longer, not different.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio_tungstenite::tungstenite::Message;

use phasecast::{
    codec::{self, ClientMessage, Encoding, Frame},
    delta,
    model::State,
};

use super::truth::{Truth, Verdict};
use crate::ws_config;

/// Frames a resuming subscriber reads before it leaves (1–3 s at 200 Hz).
const READ_FRAMES: std::ops::RangeInclusive<u64> = 200..=600;
/// States it waits for before it comes back, on a short absence.
const SHORT_ABSENCE: std::ops::RangeInclusive<u64> = 20..=400;
/// How far past the server's history a long absence goes, in states.
const PAST_HISTORY: u64 = 256;

/// What the resuming subscribers share with the producer.
pub(crate) struct Shared {
    /// States the producer has sent (the newest seq: one producer, every state accepted).
    pub(crate) sent: AtomicU64,
    /// Set when the producer stopped: leave.
    pub(crate) stop: AtomicBool,
    /// Resuming subscribers that have resumed both ways (from inside the history and
    /// from past it); the producer runs until all have.
    pub(crate) both_ways: AtomicU64,
    /// The producer's states.
    pub(crate) truth: Arc<Truth>,
    /// The server's history, in states (`--history`).
    pub(crate) history: u64,
}

/// What one resuming subscriber saw.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Tally {
    /// Frames read, over every connection.
    pub frames: u64,
    /// Frames that skipped states while connected (the server conflated them).
    pub lost_frames: u64,
    /// Reconnections with `?resume=`.
    pub resumes: u64,
    /// Of those, after an absence longer than the server's history.
    pub resumes_past_history: u64,
    /// Resumes whose first frame was a delta from the seq held.
    pub resumed_with_delta: u64,
    /// Resumes whose first frame was a full frame (the state held was gone, or a
    /// delta would not have been smaller).
    pub resumed_with_full: u64,
    /// Deltas that did not apply to the state held (a base other than the seq held,
    /// an index out of range, a checksum mismatch), and states that were not the
    /// producer's after a frame.
    pub checksum_failures: u64,
    /// Resumes that got no first frame (the connection ended first, or none came within
    /// 10 s of the producer stopping).
    pub unanswered: u64,
    /// States held that could not be checked against the producer's (not recorded).
    pub unchecked: u64,
    /// Connections that could not be opened (each retried after the next absence).
    pub connect_failures: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.frames += o.frames;
        self.lost_frames += o.lost_frames;
        self.resumes += o.resumes;
        self.resumes_past_history += o.resumes_past_history;
        self.resumed_with_delta += o.resumed_with_delta;
        self.resumed_with_full += o.resumed_with_full;
        self.checksum_failures += o.checksum_failures;
        self.unchecked += o.unchecked;
        self.unanswered += o.unanswered;
        self.connect_failures += o.connect_failures;
    }
}

/// The state a subscriber holds and its seq.
struct Held {
    seq: u64,
    /// The stream's epoch from the full frame the state was built on.
    epoch: String,
    state: State,
}

/// Runs one resuming subscriber until `shared.stop`.
pub(crate) async fn run(ws: String, encoding: Encoding, seed: u64, shared: Arc<Shared>) -> Tally {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut held: Option<Held> = None;
    let (mut short_done, mut long_done, mut counted) = (false, false, false);
    for cycle in 0u64.. {
        if shared.stop.load(Relaxed) {
            break;
        }
        // Where this connection resumes from, and whether the server has sent more
        // states than its history holds since then.
        let resume = held.as_ref().map(|h| (h.seq, h.epoch.clone()));
        let past_history = resume.as_ref().is_some_and(|(seq, _)| {
            shared.sent.load(Relaxed).saturating_sub(*seq) > shared.history
        });
        let url = match &resume {
            Some((seq, epoch)) => format!("{ws}/ws?format={encoding}&resume={seq}&epoch={epoch}"),
            None => format!("{ws}/ws?format={encoding}"),
        };
        match tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), false).await {
            Ok((mut socket, _)) => {
                if resume.is_some() {
                    tally.resumes += 1;
                    if past_history {
                        tally.resumes_past_history += 1;
                        long_done = true;
                    } else {
                        short_done = true;
                    }
                }
                let frames = rng.random_range(READ_FRAMES);
                let answers = tally.resumed_with_delta + tally.resumed_with_full;
                let failures = tally.checksum_failures;
                read(
                    &mut socket,
                    encoding,
                    frames,
                    resume.as_ref().map(|(seq, _)| *seq),
                    &mut held,
                    &mut tally,
                    &shared,
                )
                .await;
                let answered = tally.resumed_with_delta + tally.resumed_with_full > answers
                    || tally.checksum_failures > failures;
                if resume.is_some() && !answered {
                    tally.unanswered += 1;
                }
                let _ = socket.close(None).await;
            }
            Err(_) => tally.connect_failures += 1,
        }
        if short_done && long_done && !counted {
            counted = true;
            shared.both_ways.fetch_add(1, Relaxed);
        }
        // Away: until the producer has sent this many more states; every third absence
        // (the second, the fifth, …) outlasts the history.
        let absence = if cycle % 3 == 1 {
            shared.history + PAST_HISTORY
        } else {
            rng.random_range(SHORT_ABSENCE)
        };
        let back_at = shared.sent.load(Relaxed) + absence;
        while shared.sent.load(Relaxed) < back_at && !shared.stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tally
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads `frames` frames (or until the producer stops and a second passes without
/// one, or the server closes), applying and checking each.
async fn read(
    socket: &mut Socket,
    encoding: Encoding,
    frames: u64,
    resume: Option<u64>,
    held: &mut Option<Held>,
    tally: &mut Tally,
    shared: &Shared,
) {
    let mut first = resume.is_some();
    // A full frame was asked for: deltas are ignored until it comes.
    let mut resync_pending = false;
    let mut read = 0;
    // Seconds without a frame since the producer stopped.
    let mut idle_after_stop = 0;
    while read < frames {
        let message = match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
            Err(_) if shared.stop.load(Relaxed) => {
                // The first frame of a resume comes at once; give it time on a busy
                // machine, so that every resume is answered or counted as a failure.
                idle_after_stop += 1;
                if !first || idle_after_stop >= 10 {
                    return;
                }
                continue;
            }
            Err(_) => continue,
            Ok(None | Some(Err(_))) => return,
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match &message {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            Message::Close(_) => return,
            _ => continue,
        };
        read += 1;
        tally.frames += 1;
        let frame = match codec::decode_frame(encoding, bytes) {
            Ok(f) => f,
            Err(_) => {
                // Undecodable: counted with the frames that did not apply.
                tally.checksum_failures += 1;
                *held = None;
                resync_pending = resync(socket, encoding, resync_pending).await;
                continue;
            }
        };
        let was = held.as_ref().map(|h| h.seq);
        let applied = match frame {
            Frame::Full { seq, epoch, state } => {
                if first {
                    tally.resumed_with_full += 1;
                }
                resync_pending = false;
                *held = Some(Held { seq, epoch, state });
                true
            }
            Frame::Delta(_) if resync_pending => continue,
            Frame::Delta(d) => match held.as_mut() {
                Some(h) if h.seq == d.base_seq => {
                    let fits = delta::apply(&mut h.state, &d).is_ok();
                    if fits && first {
                        tally.resumed_with_delta += 1;
                    }
                    h.seq = d.seq;
                    fits
                }
                _ => false,
            },
        };
        first = false;
        if !applied {
            tally.checksum_failures += 1;
            *held = None;
            resync_pending = resync(socket, encoding, resync_pending).await;
            continue;
        }
        let h = held.as_ref().expect("a frame was applied");
        if let Some(was) = was.filter(|_| read > 1) {
            tally.lost_frames += h.seq.saturating_sub(was + 1);
        }
        match shared.truth.check(&h.state) {
            Verdict::Exact => {}
            Verdict::Wrong => {
                tally.checksum_failures += 1;
                *held = None;
                resync_pending = resync(socket, encoding, resync_pending).await;
            }
            Verdict::Unknown => tally.unchecked += 1,
        }
    }
}

/// Asks for a full frame unless one is already on its way; whether one is now.
async fn resync(socket: &mut Socket, encoding: Encoding, pending: bool) -> bool {
    if pending {
        return true;
    }
    let bytes = codec::encode_client_message(encoding, ClientMessage::Resync);
    socket
        .send(phasecast_client::message(encoding, bytes))
        .await
        .is_ok()
}
