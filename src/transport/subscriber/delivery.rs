//! One subscriber's delivery: its [`Feed`] (which frames), its [`Pace`] (whether they
//! may go now, and the probes behind them) and its [`Wire`] (the socket), shared by
//! the stream's dispatch, which offers it every new state and writes without
//! waiting, and its session, which does everything that waits: writing out what the
//! socket did not take at once, the timers (`max_hz` slots, probes), the reads.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::wire::{Opcode, Sent, Wire};
use crate::{
    fanout::{Feed, Next, Outgoing, Outlet, Pace},
    metrics::Metrics,
};

/// Why a delivery stopped: the session ends the subscriber for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The bytes waiting for the socket passed the cap (`PCC_MAX_BACKLOG_BYTES`).
    Backlog,
    /// The stream was retired or is gone.
    StreamClosed,
}

/// What the session waits for next, from [`Delivery::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// When to look again: a `max_hz` slot, a probe's hold or give-up time, the send
    /// timeout of bytes waiting; with none of them due, one send timeout from now.
    pub(super) deadline: Instant,
    /// Bytes wait for the socket: the session writes them out.
    pub(super) draining: bool,
}

/// What a session must do now, from [`Delivery::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Go on waiting.
    Wait(Plan),
    /// Close the subscriber as too slow: its socket or its reader did not keep up
    /// within the send timeout.
    TooSlow,
    /// Close it: it stopped.
    Stopped(Stop),
}

pub(super) struct Delivery {
    seat: Mutex<Seat>,
    wire: Arc<Wire>,
    /// The outstanding probe's id, for the session's reads to know its pong.
    probe: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    /// Bytes that may wait for the socket.
    max_backlog: usize,
    send_timeout: Duration,
}

struct Seat {
    feed: Feed,
    pace: Pace,
    /// When the states of frames queued but not yet written were accepted.
    unwritten: Vec<std::time::Instant>,
    stop: Option<Stop>,
    /// The session is closing the subscriber: nothing more is written.
    closing: bool,
    /// When the session looks again at the latest (its timer, set at its last plan).
    /// A deadline due before it wakes the session at once; one after it waits for it:
    /// a probe written with every few states costs no session wake.
    armed: Option<Instant>,
}

impl Delivery {
    pub(super) fn new(
        feed: Feed,
        pace: Pace,
        wire: Arc<Wire>,
        probe: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
        max_backlog: usize,
        send_timeout: Duration,
    ) -> Delivery {
        Delivery {
            seat: Mutex::new(Seat {
                feed,
                pace,
                unwritten: Vec::new(),
                stop: None,
                closing: false,
                armed: None,
            }),
            wire,
            probe,
            metrics,
            max_backlog,
            send_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Seat> {
        self.seat.lock().expect("delivery lock")
    }

    /// The wire, for the session to drain.
    pub(super) fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Writes the first frame: the newest state at once.
    pub(super) fn start(&self) {
        let mut seat = self.lock();
        let now = Instant::now();
        let frames = seat.feed.start(now);
        self.write(&mut seat, now, &frames);
    }

    /// The subscriber asked for a full frame of the newest state.
    pub(super) fn resync(&self) {
        let mut seat = self.lock();
        let frames = seat.feed.resync();
        self.write(&mut seat, Instant::now(), &frames);
    }

    /// The pong of probe `id` came.
    pub(super) fn on_pong(&self, id: u64) {
        let mut seat = self.lock();
        if let Some(reached) = seat.pace.on_pong(id, Instant::now()) {
            if let Some(age) = reached.state_age {
                self.metrics.state_reached(age);
            }
        }
    }

    /// The session is closing the subscriber: nothing more is written for it.
    pub(super) fn close(&self) {
        self.lock().closing = true;
    }

    /// What the session must do now (and writes a bare probe if one is due).
    pub(super) fn plan(&self) -> Verdict {
        let mut seat = self.lock();
        if let Some(stop) = seat.stop {
            return Verdict::Stopped(stop);
        }
        let now = Instant::now();
        let (queued, since) = self.wire.backlog();
        let waited = since.map(|s| Instant::from_std(s) + self.send_timeout);
        let give_up = self.give_up(&seat);
        // A write waiting, or a reader that has not reached a frame written, for the
        // send timeout: as good as a socket unwritable that long.
        if waited.into_iter().chain(give_up).any(|at| at <= now) {
            return Verdict::TooSlow;
        }
        if queued == 0 && !seat.closing {
            if let Some(id) = seat.pace.bare_probe(now) {
                self.send(&mut seat, &[], Some(id));
            }
        }
        let writable = seat.pace.may_write(now);
        let hold = seat.pace.hold_at().filter(|_| writable);
        let slot = seat.feed.slot().filter(|_| writable);
        let give_up = self.give_up(&seat);
        // With nothing due the session still looks again within the send timeout: a
        // probe written before then is given up on at its own time all the same.
        let deadline = [waited, give_up, hold, slot]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + self.send_timeout);
        seat.armed = Some(deadline);
        Verdict::Wait(Plan {
            deadline,
            draining: queued > 0,
        })
    }

    /// What was queued is written: its frames count as written now.
    pub(super) fn drained(&self) {
        let mut seat = self.lock();
        for at in seat.unwritten.drain(..) {
            self.metrics.frames_written(at.elapsed());
        }
    }

    /// The frames waiting for the subscriber, if it may take them now.
    fn next(&self, seat: &mut Seat, now: Instant) -> Vec<Outgoing> {
        if !seat.pace.may_write(now) {
            return Vec::new();
        }
        match seat.feed.take() {
            Next::Batch(batch) => {
                let fresh_since = seat.pace.fresh_since();
                seat.feed.on_batch(batch, now, fresh_since)
            }
            Next::Nothing if seat.feed.slot().is_some_and(|slot| slot <= now) => {
                seat.feed.on_slot(now)
            }
            Next::Nothing => Vec::new(),
            Next::Ended => {
                seat.stop = Some(Stop::StreamClosed);
                Vec::new()
            }
        }
    }

    /// Writes `frames`, followed by a probe when the pace has one due.
    fn write(&self, seat: &mut Seat, now: Instant, frames: &[Outgoing]) {
        let Some(newest) = frames.last() else {
            return;
        };
        let probe = seat.pace.on_write(now, newest.accepted_at);
        if self.send(seat, frames, probe) == Sent::Written {
            for frame in frames {
                self.metrics.frames_written(frame.accepted_at.elapsed());
            }
        } else {
            seat.unwritten
                .extend(frames.iter().map(|frame| frame.accepted_at));
        }
    }

    /// Sends frames and a probe; wakes the session when it has something to do.
    fn send(&self, seat: &mut Seat, frames: &[Outgoing], probe: Option<u64>) -> Sent {
        if seat.closing {
            return Sent::Written;
        }
        let id = probe.map(|id| {
            self.probe.store(id, Relaxed);
            id.to_be_bytes()
        });
        let mut parts: Vec<(Opcode, &[u8], Option<&Bytes>)> = frames
            .iter()
            .map(|frame| {
                let (opcode, payload) = payload(&frame.message);
                (opcode, &[][..], Some(payload))
            })
            .collect();
        if let Some(id) = &id {
            parts.push((Opcode::Ping, &id[..], None));
        }
        let sent = self.wire.send(&parts);
        if sent == Sent::Queued && self.wire.backlog().0 > self.max_backlog {
            seat.stop = Some(Stop::Backlog);
        }
        if sent == Sent::Queued || seat.stop.is_some() || self.due_before_armed(seat) {
            self.wire.wake();
        }
        sent
    }

    /// When the probe out, if one is, is given up on: its reader has not reached it
    /// within the send timeout.
    fn give_up(&self, seat: &Seat) -> Option<Instant> {
        seat.pace.probe_sent().map(|sent| sent + self.send_timeout)
    }

    /// Whether something is due before the session's timer: a `max_hz` slot, or the
    /// give-up time of a probe out.
    fn due_before_armed(&self, seat: &Seat) -> bool {
        let give_up = self.give_up(seat);
        let due = seat.feed.slot().into_iter().chain(give_up).min();
        match (due, seat.armed) {
            (Some(due), Some(armed)) => due < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl Outlet for Delivery {
    fn deliver(&self) {
        let mut seat = self.lock();
        // What waits in the queue goes first (the session writes it, then delivers).
        if seat.stop.is_some() || seat.closing || self.wire.backlog().0 > 0 {
            return;
        }
        let now = Instant::now();
        let frames = self.next(&mut seat, now);
        if frames.is_empty() {
            // Nothing written (a written frame's send wakes the session itself): the
            // stream may have ended, or a `max_hz` slot begun.
            if seat.stop.is_some() || self.due_before_armed(&seat) {
                self.wire.wake();
            }
        } else {
            self.write(&mut seat, now, &frames);
        }
    }

    fn wake(&self) {
        self.wire.wake();
    }
}

/// A frame's opcode and payload (shared bytes, not copied).
fn payload(message: &Message) -> (Opcode, &Bytes) {
    match message {
        Message::Text(text) => (Opcode::Text, AsRef::<Bytes>::as_ref(text)),
        Message::Binary(bytes) => (Opcode::Binary, bytes),
        _ => unreachable!("the fan-out writes text and binary frames only"),
    }
}
