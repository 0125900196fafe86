//! How far ahead of its reader a subscriber's socket may run: the freshness bound,
//! with no socket in it.
//!
//! The frames a server writes can wait in its kernel send buffer, in the reader's
//! receive buffer and in its WebSocket library's queue: megabytes, seconds of frames
//! for a slow reader, all out of the server's reach. So a [`Pace`] follows a *probe*,
//! a ping with an id written after the frames: a WebSocket library answers a ping when
//! it reads it, behind the frames before it, so its pong says the reader got that far,
//! and the probe's round trip says how long what was written before it waited.
//!
//! - **Starting**: every reader starts in slow mode (below) without skipping
//!   anything, so a slow one is never handed a burst it would then hold for seconds;
//!   one that keeps up leaves it after [`CAUGHT_UP_AFTER`] quick bare probes, a few
//!   round trips.
//! - **Keeping up**: a probe follows a write every half bound, and writes go on while
//!   it is younger than that; then they wait for its pong, updates waiting in the
//!   stream's window meanwhile and going together, every one of them. When the oldest
//!   of them is older than the freshness bound, only the newest goes, as one delta
//!   from what the reader holds ([`Pace::fresh_since`]).
//! - **Behind** (one write probe answered later than half the bound): the reader takes
//!   longer to get through what is written than the bound allows, whatever the
//!   reason. A reader that keeps up on a loaded machine answers within the time its
//!   frames take to reach it, a small part of the bound (at 1,000 subscribers in
//!   the load benchmark every frame is still delivered: docs/benchmarks.md,
//!   "Freshness"). It goes to slow mode, and from then
//!   until it has caught up it gets the newest state only.
//! - **Slow mode**: one write per pong. After the pong of a write, a *bare* probe (a
//!   ping with no frame before it) goes alone; its pong tells when the reader's
//!   library has room again. So a library that queues a frame or two holds at most
//!   that many, and the next frame is written when it asks for more, not before.
//!   After [`CAUGHT_UP_AFTER`] bare probes in a row answered within half the bound
//!   (and no late pong between), the reader has caught up: a slow reader's library,
//!   once its queue is full, answers its bare probe only when its code has read what
//!   it holds, a reader that keeps up at once.
//! - **Stopped** (a probe unanswered for the send timeout): the session closes the
//!   subscriber as too slow, as it would a socket unwritable that long.

use std::time::Duration;

use tokio::time::Instant;

/// Bare probes in a row answered within half the bound after which a slow reader has
/// caught up. A library that queues a frame or two, read slowly, answers one or two
/// that way and then the next one late, when its code has read them.
pub(super) const CAUGHT_UP_AFTER: u32 = 4;

/// A probe that has not been answered yet.
#[derive(Debug, Clone, Copy)]
struct Probe {
    id: u64,
    sent: Instant,
    /// When the newest state written before it was accepted (its age is measured when
    /// the pong comes), if any frame was.
    state_accepted_at: Option<std::time::Instant>,
    /// A ping with no frame of its own before it (slow mode).
    bare: bool,
}

/// What a pong told, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reached {
    /// From the probe's write to its pong.
    pub round_trip: Duration,
    /// How old the newest state the reader has reached was when it reached it.
    pub state_age: Option<Duration>,
}

/// One subscriber's freshness state.
#[derive(Debug)]
pub struct Pace {
    freshness: Option<Duration>,
    /// Half the bound. A pong later than this says frames waited toward the reader;
    /// a reader that keeps up is probed this often, and gets frames while its probe is
    /// younger than this, then they wait for the pong.
    late_after: Duration,
    outstanding: Option<Probe>,
    next_id: u64,
    slow: bool,
    /// Slow mode entered because a pong came late (not at the start): every update
    /// waiting is skipped but the newest.
    behind: bool,
    /// Writes a slow subscriber may make before its next probe is answered.
    credit: u32,
    /// Bare probes in a row answered within `late_after`, no late pong between (slow
    /// mode).
    quick_pongs: u32,
    /// When the newest frame written was accepted.
    last_accepted_at: Option<std::time::Instant>,
    /// When the last probe was sent.
    last_probe: Option<Instant>,
}

impl Pace {
    /// A subscriber held to `freshness` (`None`: no probes, frames go as the socket
    /// takes them).
    pub fn new(freshness: Option<Duration>) -> Pace {
        let freshness = freshness.filter(|f| !f.is_zero());
        Pace {
            freshness,
            late_after: freshness.map_or(Duration::ZERO, |f| f / 2),
            outstanding: None,
            next_id: 1,
            // Every reader starts in slow mode, one write per pong, until its bare
            // probes come back quick: a slow one is never handed a burst it then
            // holds. Nothing is skipped for it until a pong comes late.
            slow: freshness.is_some(),
            behind: false,
            credit: 1,
            quick_pongs: 0,
            last_accepted_at: None,
            last_probe: None,
        }
    }

    /// Whether frames may be written now.
    pub fn may_write(&self, now: Instant) -> bool {
        if self.freshness.is_none() {
            return true;
        }
        match self.outstanding {
            None => !self.slow || self.credit > 0,
            // Keeping up: frames keep going while the probe is young.
            Some(_) => self.hold_at().is_some_and(|at| now < at),
        }
    }

    /// When writing stops until the outstanding probe is answered, if it will.
    pub fn hold_at(&self) -> Option<Instant> {
        let probe = self.outstanding?;
        (!self.slow).then(|| probe.sent + self.late_after)
    }

    /// When the outstanding probe was sent, if one is out.
    pub fn probe_sent(&self) -> Option<Instant> {
        self.outstanding.map(|p| p.sent)
    }

    /// Updates accepted before this instant are too old to send one by one: only the
    /// newest of them goes. For a subscriber found behind that is every update waiting
    /// (it gets the newest state only); otherwise those older than the freshness
    /// bound.
    /// `None` without a bound.
    pub fn fresh_since(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        let bound = self.freshness?;
        Some(if self.behind {
            now
        } else {
            now.checked_sub(bound).unwrap_or(now)
        })
    }

    /// Frames are being written, the newest of them accepted at `accepted_at`: the id
    /// of the probe to write after them, if one is due.
    pub fn on_write(&mut self, now: Instant, accepted_at: std::time::Instant) -> Option<u64> {
        self.freshness?;
        self.last_accepted_at = Some(accepted_at);
        if self.slow {
            self.credit = self.credit.saturating_sub(1);
        }
        let due = match (self.outstanding, self.last_probe) {
            (Some(_), _) => false,
            // A reader that keeps up is probed once every `late_after`, not per write:
            // each pong costs it and the server a wake.
            (None, Some(last)) if !self.slow => now.duration_since(last) >= self.late_after,
            (None, _) => true,
        };
        due.then(|| self.send(now, false))
    }

    /// A bare probe to write now, if a slow subscriber has no write left and no probe
    /// out.
    pub fn bare_probe(&mut self, now: Instant) -> Option<u64> {
        let due =
            self.freshness.is_some() && self.slow && self.outstanding.is_none() && self.credit == 0;
        due.then(|| self.send(now, true))
    }

    fn send(&mut self, now: Instant, bare: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.last_probe = Some(now);
        self.outstanding = Some(Probe {
            id,
            sent: now,
            state_accepted_at: self.last_accepted_at,
            bare,
        });
        id
    }

    /// The pong of probe `id` came: where the reader is. `None` for a pong that does
    /// not answer the outstanding probe.
    pub fn on_pong(&mut self, id: u64, now: Instant) -> Option<Reached> {
        let probe = self.outstanding.filter(|p| p.id == id)?;
        self.outstanding = None;
        let round_trip = now.duration_since(probe.sent);
        let late = round_trip > self.late_after;
        if self.slow {
            if late {
                self.quick_pongs = 0;
                self.behind = true;
            } else if probe.bare {
                self.quick_pongs += 1;
            }
            if self.quick_pongs >= CAUGHT_UP_AFTER {
                self.slow = false;
                self.behind = false;
            } else if probe.bare || late {
                // A bare probe answered: its library has room for one more frame
                // (answered late: it stopped reading until now and asks for more). A
                // write answered late: the reader had no room to spare.
                self.credit = 1;
            }
            // A write answered at once: its library took the frame, maybe into a
            // queue; the bare probe that follows finds out when the code read it.
        } else if late && !probe.bare {
            // One late write is enough, not several in a row: the write after a late
            // pong lands in a library that has just resumed reading and is answered
            // at once, so a slow reader's late pongs do not come in a row; what comes
            // after them does (a queue of every update that waited).
            self.slow = true;
            self.behind = true;
            self.credit = 1;
            self.quick_pongs = 0;
        }
        Some(Reached {
            round_trip,
            state_age: probe.state_accepted_at.map(|at| at.elapsed()),
        })
    }

    /// Whether the subscriber is in slow mode.
    pub fn is_slow(&self) -> bool {
        self.slow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_millis(100);
    const MS: Duration = Duration::from_millis(1);

    /// Answers the bare probes of a reader that starts (as every one does) in slow
    /// mode at once, until it is taken for one that keeps up.
    fn caught_up(pace: &mut Pace, t: Instant) {
        let at = std::time::Instant::now();
        for _ in 0..CAUGHT_UP_AFTER {
            assert!(pace.is_slow());
            let id = pace.on_write(t, at).unwrap();
            pace.on_pong(id, t).unwrap();
            let bare = pace.bare_probe(t).unwrap();
            pace.on_pong(bare, t).unwrap();
        }
        assert!(!pace.is_slow());
    }

    #[test]
    fn a_reader_starts_with_one_frame_per_pong_until_it_answers_at_once() {
        let mut pace = Pace::new(Some(F));
        let t0 = Instant::now();
        assert!(pace.is_slow() && pace.may_write(t0));
        let id = pace.on_write(t0, std::time::Instant::now()).unwrap();
        assert!(!pace.may_write(t0), "one frame, then its pong");
        pace.on_pong(id, t0 + MS).unwrap();
        assert!(!pace.may_write(t0 + MS), "then a bare probe");
        caught_up(&mut pace, t0 + MS);
        assert!(pace.may_write(t0 + MS));
    }

    #[test]
    fn a_reader_that_keeps_up_gets_every_update_with_a_probe_every_half_bound() {
        let mut pace = Pace::new(Some(F));
        let mut t = Instant::now();
        let at = std::time::Instant::now();
        caught_up(&mut pace, t);
        assert_eq!(pace.on_write(t, at), None, "a probe went just now");
        t += F / 2;
        let id = pace
            .on_write(t, at)
            .expect("probed: none for half the bound");
        for ms in [5, 10, 45] {
            assert!(
                pace.may_write(t + ms * MS),
                "writes go on while the probe is young"
            );
            assert_eq!(pace.on_write(t + ms * MS, at), None, "one probe at a time");
        }
        assert_eq!(pace.hold_at(), Some(t + F / 2));
        assert!(!pace.may_write(t + F / 2), "then they wait for its pong");
        let reached = pace.on_pong(id, t + 6 * MS).unwrap();
        assert_eq!(reached.round_trip, 6 * MS);
        assert!(pace.may_write(t + 6 * MS));
        assert_eq!(
            pace.on_write(t + 6 * MS, at),
            None,
            "the next probe after half the bound"
        );
        // On a loaded machine: pongs in 40 ms.
        for _ in 0..20 {
            t += F / 2;
            let id = pace.on_write(t, at).unwrap();
            t += 40 * MS;
            pace.on_pong(id, t).unwrap();
            assert!(!pace.is_slow());
        }
        assert!(
            pace.fresh_since().unwrap() < std::time::Instant::now(),
            "keeping up: only updates older than the bound are skipped"
        );
    }

    #[test]
    fn a_slow_reader_gets_one_write_per_pong_and_bare_probes_between() {
        let mut pace = Pace::new(Some(F));
        let at = std::time::Instant::now();
        let mut t = Instant::now();
        caught_up(&mut pace, t);
        // A write answered later than half the bound: slow.
        t += F;
        let id = pace.on_write(t, at).unwrap();
        t += 80 * MS;
        pace.on_pong(id, t).unwrap();
        assert!(pace.is_slow());
        // One write, then (its pong back at once) a bare probe, not a second write.
        assert!(pace.may_write(t));
        assert_eq!(pace.bare_probe(t), None);
        let id = pace.on_write(t, at).unwrap();
        assert!(!pace.may_write(t), "slow: one write at a time");
        pace.on_pong(id, t + MS).unwrap();
        t += MS;
        assert!(!pace.may_write(t));
        let bare = pace.bare_probe(t).expect("a bare probe");
        assert_eq!(pace.bare_probe(t), None, "one at a time");
        // Answered once its code read the frame: one more.
        t += 90 * MS;
        pace.on_pong(bare, t).unwrap();
        assert!(pace.is_slow() && pace.may_write(t));
        // A slow reader's pattern (write quick, bare late) never counts as caught up.
        for _ in 0..10 {
            let id = pace.on_write(t, at).unwrap();
            pace.on_pong(id, t + MS).unwrap();
            let bare = pace.bare_probe(t).unwrap();
            t += 60 * MS;
            pace.on_pong(bare, t).unwrap();
            assert!(pace.is_slow());
        }
        // Bare probes answered within half the bound, CAUGHT_UP_AFTER in a row: caught
        // up.
        for _ in 0..CAUGHT_UP_AFTER {
            let id = pace.on_write(t, at).unwrap();
            t += 30 * MS;
            pace.on_pong(id, t).unwrap();
            let bare = pace.bare_probe(t).unwrap();
            t += 30 * MS;
            pace.on_pong(bare, t).unwrap();
        }
        assert!(!pace.is_slow());
        assert!(pace.may_write(t));
    }

    #[test]
    fn a_slow_write_answered_late_earns_the_next_write_without_a_bare_probe() {
        let mut pace = Pace::new(Some(F));
        let at = std::time::Instant::now();
        let mut t = Instant::now();
        assert!(pace.is_slow());
        let id = pace.on_write(t, at).unwrap();
        t += 80 * MS;
        pace.on_pong(id, t).unwrap();
        assert!(pace.may_write(t));
        assert_eq!(pace.bare_probe(t), None);
    }

    #[test]
    fn pongs_that_answer_nothing_outstanding_are_ignored() {
        let mut pace = Pace::new(Some(F));
        let t0 = Instant::now();
        let id = pace.on_write(t0, std::time::Instant::now()).unwrap();
        assert_eq!(pace.on_pong(id + 1, t0), None);
        assert!(pace.on_pong(id, t0).is_some());
        assert_eq!(pace.on_pong(id, t0), None, "answered once");
    }

    #[test]
    fn without_a_bound_nothing_is_probed_or_held() {
        for off in [None, Some(Duration::ZERO)] {
            let mut pace = Pace::new(off);
            let t0 = Instant::now();
            assert_eq!(pace.on_write(t0, std::time::Instant::now()), None);
            assert!(pace.may_write(t0 + Duration::from_secs(60)));
            assert_eq!(pace.fresh_since(), None);
            assert_eq!(pace.bare_probe(t0), None);
        }
    }
}
