//! How far ahead of its reader a subscriber's socket may run: the freshness bound,
//! with no socket in it.
//!
//! The frames a server writes can wait in its kernel send buffer, in the reader's
//! receive buffer and in its WebSocket library's queue: megabytes, seconds of frames
//! for a slow reader, all out of the server's reach. So a [`Pace`] follows a *probe*,
//! a ping with an id written after the frames: a WebSocket library answers a ping when
//! it reads it, behind the frames before it, so its pong says the reader got that far.
//!
//! - **Keeping up**: each write is followed by a probe, and the next write waits for
//!   its pong; updates wait in the stream's window meanwhile and go together. When the
//!   oldest of them is older than the freshness bound, only the newest goes, as one
//!   delta from what the reader holds ([`Pace::fresh_since`]).
//! - **Slow** ([`BEHIND_AFTER`] pongs in a row by which fewer frames were read than
//!   half of what arrived meanwhile): one write per pong, each
//!   waiting for the pong before it. After the pong of a write, a *bare* probe (a ping
//!   with no frame before it) goes alone; its pong tells when the reader's library has
//!   room again. So a library that queues a frame or two holds at most that many, and
//!   the next frame is written when it asks for more, not before (a pong later than
//!   `hold_after`, a fifth of the bound, is such a request). After [`CAUGHT_UP_AFTER`]
//!   quick pongs in a row with at most one update waiting, the reader has caught up.
//!
//! Known limit: writes wait for pongs, so under heavy load (1,000 subscribers on two
//! cores) pongs come late for readers that keep up, and they are wrongly conflated
//! (delivery fell to 0.16 in the load benchmark). The bound is therefore off by
//! default (`PCC_FRESHNESS=0`) until it tells those readers apart.
//! - **Stopped** (a probe unanswered for the send timeout): the session closes the
//!   subscriber as too slow, as it would a socket unwritable that long.

use std::time::Duration;

use tokio::time::Instant;

/// Pongs in a row that find the reader slower than the stream after which it is slow.
pub(super) const BEHIND_AFTER: u32 = 2;

/// Pongs in a row within `hold_after` after which a slow subscriber has caught up.
pub(super) const CAUGHT_UP_AFTER: u32 = 8;

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
    /// Frames written in the write it followed.
    frames: u64,
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
    hold_after: Duration,
    outstanding: Option<Probe>,
    next_id: u64,
    slow: bool,
    /// Writes a slow subscriber may make before its next probe is answered.
    credit: u32,
    /// Pongs in a row within `hold_after`.
    quick_pongs: u32,
    /// Pongs in a row that found the reader slower than the stream.
    behind_pongs: u32,
    /// When the newest frame written was accepted.
    last_accepted_at: Option<std::time::Instant>,
}

impl Pace {
    /// A subscriber held to `freshness` (`None`: no probes, frames go as the socket
    /// takes them).
    pub fn new(freshness: Option<Duration>) -> Pace {
        let freshness = freshness.filter(|f| !f.is_zero());
        Pace {
            freshness,
            hold_after: freshness.map_or(Duration::ZERO, |f| f / 5),
            outstanding: None,
            next_id: 1,
            slow: false,
            credit: 0,
            quick_pongs: 0,
            behind_pongs: 0,
            last_accepted_at: None,
        }
    }

    /// Whether frames may be written now.
    pub fn may_write(&self, _now: Instant) -> bool {
        if self.freshness.is_none() {
            return true;
        }
        match self.outstanding {
            None => !self.slow || self.credit > 0,
            Some(_) => false,
        }
    }

    /// When the outstanding probe was sent, if one is out.
    pub fn probe_sent(&self) -> Option<Instant> {
        self.outstanding.map(|p| p.sent)
    }

    /// Updates accepted before this instant are too old to send one by one: only the
    /// newest of them goes. For a slow subscriber that is every update waiting (it
    /// gets the newest state only); otherwise those older than the freshness bound.
    /// `None` without a bound.
    pub fn fresh_since(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        let bound = self.freshness?;
        Some(if self.slow {
            now
        } else {
            now.checked_sub(bound).unwrap_or(now)
        })
    }

    /// Frames are being written, the newest of them accepted at `accepted_at`: the id
    /// of the probe to write after them, if one is due.
    pub fn on_write(
        &mut self,
        now: Instant,
        frames: usize,
        accepted_at: std::time::Instant,
    ) -> Option<u64> {
        self.freshness?;
        self.last_accepted_at = Some(accepted_at);
        if self.slow {
            self.credit = self.credit.saturating_sub(1);
        }
        if self.outstanding.is_some() {
            return None;
        }
        Some(self.send(now, frames as u64))
    }

    /// A bare probe to write now, if a slow subscriber has no write left and no probe
    /// out.
    pub fn bare_probe(&mut self, now: Instant) -> Option<u64> {
        let due =
            self.freshness.is_some() && self.slow && self.outstanding.is_none() && self.credit == 0;
        due.then(|| self.send(now, 0))
    }

    fn send(&mut self, now: Instant, frames: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding = Some(Probe {
            id,
            sent: now,
            state_accepted_at: self.last_accepted_at,
            bare: frames == 0,
            frames,
        });
        id
    }

    /// The pong of probe `id` came, with `waiting` updates for the subscriber that
    /// arrived meanwhile: where the reader is. `None` for a pong that does not answer
    /// the outstanding probe.
    pub fn on_pong(&mut self, id: u64, now: Instant, waiting: u64) -> Option<Reached> {
        let probe = self.outstanding.filter(|p| p.id == id)?;
        self.outstanding = None;
        let round_trip = now.duration_since(probe.sent);
        if self.slow {
            if round_trip > self.hold_after {
                // Its library stopped reading until now: it asks for more.
                self.credit = 1;
                self.quick_pongs = 0;
            } else if waiting <= 1 {
                self.quick_pongs += 1;
                if self.quick_pongs >= CAUGHT_UP_AFTER {
                    self.slow = false;
                    self.behind_pongs = 0;
                } else if probe.bare {
                    self.credit = 1;
                }
            } else if probe.bare {
                // Its library had room at once: one more frame fits.
                self.credit = 1;
            }
        } else if !probe.bare && waiting >= 2 {
            // Fewer frames read while this probe was out than half of what arrived
            // meanwhile: slower than the stream. (A pong with less than two updates
            // waiting says nothing about that.)
            if probe.frames * 2 < waiting {
                self.behind_pongs += 1;
            } else {
                self.behind_pongs = 0;
            }
            if self.behind_pongs >= BEHIND_AFTER {
                self.slow = true;
                self.credit = 1;
                self.quick_pongs = 0;
            }
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

    const F: Duration = Duration::from_millis(50);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_reader_that_keeps_up_gets_every_update_one_write_per_pong() {
        let mut pace = Pace::new(Some(F));
        let t0 = Instant::now();
        let at = std::time::Instant::now();
        let id = pace.on_write(t0, 1, at).expect("the first write is probed");
        assert!(
            !pace.may_write(t0 + MS),
            "the next write waits for the pong"
        );
        let reached = pace.on_pong(id, t0 + 6 * MS, 1).unwrap();
        assert_eq!(reached.round_trip, 6 * MS);
        assert!(!pace.is_slow());
        assert!(pace.may_write(t0 + 6 * MS));
        // Three updates arrived while three frames were read: keeping up.
        for _ in 0..4 {
            let id = pace.on_write(t0, 3, at).unwrap();
            pace.on_pong(id, t0 + 20 * MS, 3).unwrap();
        }
        assert!(!pace.is_slow());
    }

    #[test]
    fn a_slow_reader_gets_one_write_per_pong_and_bare_probes_between() {
        let mut pace = Pace::new(Some(F));
        let t0 = Instant::now();
        let at = std::time::Instant::now();
        let mut t = t0;
        // One frame read while ten updates arrived, twice in a row: slow.
        for _ in 0..BEHIND_AFTER {
            assert!(!pace.is_slow());
            let id = pace.on_write(t, 1, at).unwrap();
            t += 50 * MS;
            pace.on_pong(id, t, 10).unwrap();
        }
        assert!(pace.is_slow());
        // One write, then (its pong back at once) a bare probe, not a second write.
        assert!(pace.may_write(t));
        assert_eq!(pace.bare_probe(t), None);
        let id = pace.on_write(t, 1, at).unwrap();
        assert!(!pace.may_write(t), "slow: one write at a time");
        pace.on_pong(id, t + MS, 0).unwrap();
        t += MS;
        assert!(!pace.may_write(t));
        let bare = pace.bare_probe(t).expect("a bare probe");
        assert_eq!(pace.bare_probe(t), None, "one at a time");
        // Answered at once: its library had room for one more.
        pace.on_pong(bare, t + MS, 0).unwrap();
        t += MS;
        assert!(pace.may_write(t));
        let id = pace.on_write(t, 1, at).unwrap();
        pace.on_pong(id, t, 0).unwrap();
        // This bare probe is answered late (the library stopped reading): one more.
        let bare = pace.bare_probe(t).unwrap();
        t += 90 * MS;
        pace.on_pong(bare, t, 18).unwrap();
        assert!(pace.is_slow() && pace.may_write(t));
        // Quick pongs with nothing piling up, CAUGHT_UP_AFTER in a row: caught up.
        for _ in 0..CAUGHT_UP_AFTER / 2 {
            let id = pace.on_write(t, 1, at).unwrap();
            pace.on_pong(id, t, 0).unwrap();
            let bare = pace.bare_probe(t).unwrap();
            pace.on_pong(bare, t, 0).unwrap();
        }
        assert!(!pace.is_slow());
        assert!(pace.may_write(t));
    }

    #[test]
    fn pongs_that_answer_nothing_outstanding_are_ignored() {
        let mut pace = Pace::new(Some(F));
        let t0 = Instant::now();
        let id = pace.on_write(t0, 1, std::time::Instant::now()).unwrap();
        assert_eq!(pace.on_pong(id + 1, t0, 0), None);
        assert!(pace.on_pong(id, t0, 0).is_some());
        assert_eq!(pace.on_pong(id, t0, 0), None, "answered once");
    }

    #[test]
    fn without_a_bound_nothing_is_probed_or_held() {
        for off in [None, Some(Duration::ZERO)] {
            let mut pace = Pace::new(off);
            let t0 = Instant::now();
            assert_eq!(pace.on_write(t0, 1, std::time::Instant::now()), None);
            assert!(pace.may_write(t0 + Duration::from_secs(60)));
            assert_eq!(pace.fresh_since(), None);
            assert_eq!(pace.bare_probe(t0), None);
        }
    }
}
