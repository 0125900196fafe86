//! One subscriber's view of its stream: the slow-consumer policy, with no socket in
//! it. Given what the subscriber holds, what it asked for ([`Wants`]: format, deltas,
//! rate) and the updates waiting for it, a [`Feed`] returns the frames to write next:
//!
//! - **in step**: each update's shared in-step frame;
//! - **several waiting**: all of them, to go out in one write;
//! - **lagged past the outbox**: only the newest, as one catch-up delta from what the
//!   subscriber holds (latest wins), the skipped states counted as conflated;
//! - **older than the freshness bound** (its reader is behind, `pace.rs`): the same,
//!   only the newest;
//! - **`max_hz`**: at each slot, only the newest state, as a delta from what it holds;
//! - **resync**: a full frame of the newest state;
//! - **keyframes and shape changes**: full frames;
//! - **`max_hz` with summaries**: each frame also carries the envelope of the states
//!   since the previous one (their summaries folded as the feed sees them).
//!
//! The session (`transport/subscriber/session.rs`) only writes what it is given.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};
use tokio_tungstenite::tungstenite::Message;

use super::{Channel, Form, Held, Resume, StateSummary, Update};
use crate::{
    codec::{Encoding, FrameKind},
    metrics::{ConflateReason, Metrics},
    projection::Projection,
    summary::EnvelopeFold,
};

/// What a subscriber asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wants {
    /// Frame encoding.
    pub encoding: Encoding,
    /// Deltas (`false`: full frames only).
    pub deltas: bool,
    /// Least time between frames (`max_hz`).
    pub min_interval: Option<Duration>,
    /// Precision class, by index in the stream's classes (`?epsilon=`).
    pub class: usize,
    /// The parts of the state it takes (`?fields=`).
    pub projection: Projection,
}

impl Wants {
    /// Full and delta frames of the whole state in `encoding`, in `class`, as fast
    /// as they come.
    pub fn whole(encoding: Encoding, class: usize) -> Wants {
        Wants {
            encoding,
            deltas: true,
            min_interval: None,
            class,
            projection: Projection::DEFAULT,
        }
    }

    /// The form of its frames.
    pub fn form(&self) -> Form {
        Form {
            encoding: self.encoding,
            projection: self.projection,
        }
    }

    /// Whether its frames carry envelopes: it takes summaries at its own pace.
    fn envelopes(&self) -> bool {
        self.min_interval.is_some() && self.projection.summary()
    }
}

/// One frame to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message (shared bytes).
    pub message: Message,
    /// Seq of the state it brings the subscriber to.
    pub seq: u64,
    /// Full or delta.
    pub kind: FrameKind,
    /// Its size in bytes.
    pub len: usize,
    /// When its state was accepted (for the broadcast latency, once written).
    pub accepted_at: std::time::Instant,
}

/// Updates that arrived for a subscriber since it last looked.
#[derive(Debug, Default)]
pub struct Batch {
    updates: Vec<Arc<Update>>,
    /// Updates the subscriber fell too far behind to see (they left the window).
    lagged: u64,
    /// Their summaries, for the envelope.
    lagged_summaries: Vec<Arc<StateSummary>>,
}

/// What [`Feed::take`] found.
#[derive(Debug)]
pub enum Next {
    /// Updates to hand to [`Feed::on_batch`].
    Batch(Batch),
    /// Nothing new.
    Nothing,
    /// The stream is gone or retired.
    Ended,
}

/// One subscriber's position in its stream and the policy that moves it.
#[derive(Debug)]
pub struct Feed {
    channel: Arc<Channel>,
    wants: Wants,
    metrics: Arc<Metrics>,
    /// The stream's newest seq, as it moves.
    head: watch::Receiver<u64>,
    /// Seq of the newest update taken from the stream (sent, skipped or waiting).
    cursor: u64,
    /// The state the subscriber holds (after the frames handed out): its seq and view,
    /// not the update, so an old state held keeps no encoded frames alive.
    held: Option<Held>,
    /// The newest update seen.
    newest: Option<Arc<Update>>,
    /// The newest update seen but not yet sent (only with `max_hz`).
    pending: Option<Arc<Update>>,
    /// When the next frame may go (only with `max_hz`).
    next_slot: Instant,
    /// At most this many waiting updates are taken at once.
    outbox: usize,
    /// The summaries of the states since the last frame (only with envelopes).
    envelope: Option<EnvelopeFold>,
    /// Size of the last full frame sent: what a delta saves against.
    last_full_len: usize,
    /// Whether the resume asked for (if any) found the state held; counted, with the
    /// subscriber, when its first frame is made.
    resumed: Option<bool>,
}

impl Feed {
    /// Joins `channel` for a subscriber that wants `wants` and holds the state with
    /// seq `resume`, if any. The subscriber (and the resume, hit or miss) is counted
    /// when it starts ([`Feed::start`]): joining may come first, at its handshake.
    pub fn join(
        channel: Arc<Channel>,
        wants: Wants,
        resume: Option<&Resume>,
        outbox: usize,
        metrics: Arc<Metrics>,
    ) -> Feed {
        let joined = channel.join(wants.class, resume, wants.projection.summary(), &metrics);
        let resumed = resume.map(|_| joined.resume_from.is_some());
        Feed {
            channel,
            wants,
            metrics,
            head: joined.head,
            cursor: joined.latest.as_ref().map_or(0, |u| u.seq),
            held: joined.resume_from,
            newest: joined.latest,
            pending: None,
            next_slot: Instant::now(),
            outbox: outbox.max(1),
            envelope: wants.envelopes().then(EnvelopeFold::default),
            last_full_len: 0,
            resumed,
        }
    }

    /// Seq of the state the subscriber holds once the frames handed out are written.
    pub fn held_seq(&self) -> Option<u64> {
        self.held.as_ref().map(|h| h.seq)
    }

    /// The first frame: the newest state at once (as a delta from a resumed state, or
    /// full).
    pub fn start(&mut self, now: Instant) -> Vec<Outgoing> {
        self.metrics.subscriber_opened(self.resumed);
        let Some(latest) = self.newest.clone() else {
            return Vec::new();
        };
        let frames = self.frames(&[latest]);
        self.next_slot = self.after(now);
        frames
    }

    /// What is waiting for the subscriber now, without waiting.
    pub fn take(&mut self) -> Next {
        if self.channel.is_retired() || self.head.has_changed().is_err() {
            return Next::Ended;
        }
        let head = *self.head.borrow_and_update();
        if head > self.cursor {
            // Everything waiting, up to the outbox, goes in the same write.
            let since = self.channel.since(
                self.wants.class,
                self.cursor,
                self.outbox,
                self.envelope.is_some(),
            );
            self.cursor = since.updates.last().map_or(head, |u| u.seq);
            if !since.updates.is_empty() || since.lagged > 0 {
                return Next::Batch(Batch {
                    updates: since.updates,
                    lagged: since.lagged,
                    lagged_summaries: since.lagged_summaries,
                });
            }
        }
        Next::Nothing
    }

    /// Waits for the next updates (cancel-safe: for `select!`). `None` once the stream
    /// is gone or retired (replaced by a stream of another epoch).
    pub async fn recv(&mut self) -> Option<Batch> {
        loop {
            match self.take() {
                Next::Batch(batch) => return Some(batch),
                Next::Ended => return None,
                // Cancel-safe: a seq published since `take` ends it at once.
                Next::Nothing => self.head.changed().await.ok()?,
            }
        }
    }

    /// The frames to write for `batch`, at `now`. Empty while a `max_hz` subscriber
    /// waits for its slot ([`Feed::slot`]). Updates accepted before `fresh_since` are
    /// too old to go one by one: when the oldest waiting is, only the newest goes.
    pub fn on_batch(
        &mut self,
        mut batch: Batch,
        now: Instant,
        fresh_since: Option<std::time::Instant>,
    ) -> Vec<Outgoing> {
        if let Some(fold) = &mut self.envelope {
            // Every state seen counts in the envelope, whether or not it is sent.
            let seen = batch.updates.iter().filter_map(|u| u.summary());
            for summary in batch.lagged_summaries.iter().chain(seen) {
                fold.add(summary);
            }
        }
        let stale = fresh_since
            .is_some_and(|since| batch.updates.len() > 1 && batch.updates[0].accepted_at <= since);
        if batch.lagged > 0 || stale {
            // Behind by more than the outbox, or by more than the freshness bound:
            // skip to the newest (latest wins).
            let reason = if batch.lagged > 0 {
                ConflateReason::Outbox
            } else {
                ConflateReason::Freshness
            };
            let skipped = batch.lagged + batch.updates.len().saturating_sub(1) as u64;
            self.metrics.conflated(reason, skipped);
            let keep = batch.updates.len().saturating_sub(1);
            batch.updates.drain(..keep);
        }
        let Some(last) = batch.updates.last() else {
            return Vec::new();
        };
        self.newest = Some(last.clone());
        if self.wants.min_interval.is_some() {
            // At the subscriber's own pace: only the newest state matters.
            self.pending = batch.updates.pop();
            if now < self.next_slot {
                return Vec::new();
            }
            batch.updates.clear();
            batch.updates.extend(self.pending.take());
        }
        let frames = self.frames(&batch.updates);
        self.next_slot = self.after(now);
        frames
    }

    /// When the state waiting for a `max_hz` slot is due, if one is waiting.
    pub fn slot(&self) -> Option<Instant> {
        self.pending.as_ref().map(|_| self.next_slot)
    }

    /// The slot came: the waiting state, if any.
    pub fn on_slot(&mut self, now: Instant) -> Vec<Outgoing> {
        let Some(due) = self.pending.take() else {
            return Vec::new();
        };
        let frames = self.frames(&[due]);
        self.next_slot = self.after(now);
        frames
    }

    /// The subscriber asked for a full frame: forget what it holds and send the
    /// newest state whole.
    pub fn resync(&mut self) -> Vec<Outgoing> {
        self.held = None;
        match self.pending.take().or_else(|| self.newest.clone()) {
            Some(latest) => self.frames(&[latest]),
            None => Vec::new(),
        }
    }

    fn after(&self, now: Instant) -> Instant {
        now + self.wants.min_interval.unwrap_or_default()
    }

    /// The frames that bring the subscriber from what it holds through `updates`,
    /// counted as sent; afterwards it holds the last of them.
    fn frames(&mut self, updates: &[Arc<Update>]) -> Vec<Outgoing> {
        let form = self.wants.form();
        let mut out = Vec::with_capacity(updates.len());
        for update in updates {
            if self.held.as_ref().is_some_and(|h| h.seq >= update.seq) {
                continue;
            }
            let mut frame = if self.wants.deltas {
                update.frame_for(form, self.held.as_ref(), &self.metrics)
            } else {
                update.full(form, &self.metrics)
            };
            if let Some(fold) = &mut self.envelope {
                if fold.states() == 0 {
                    // Sent again (a resync) or first: it covers this state alone.
                    if let Some(summary) = update.summary() {
                        fold.add(summary);
                    }
                }
                if let Some(envelope) = fold.take() {
                    frame = frame.with_envelope(form.encoding, &envelope);
                }
            }
            if frame.kind == FrameKind::Full {
                self.last_full_len = frame.len;
            }
            // Before any full frame (a resume's first delta), nothing is saved yet.
            let full_len = if self.last_full_len == 0 {
                frame.len
            } else {
                self.last_full_len
            };
            self.metrics
                .frame_sent(form.encoding, frame.kind, frame.len, full_len);
            out.push(Outgoing {
                message: frame.message,
                seq: update.seq,
                kind: frame.kind,
                len: frame.len,
                accepted_at: update.accepted_at,
            });
            self.held = Some(update.held());
        }
        out
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.channel.leave(self.wants.projection.summary());
    }
}
