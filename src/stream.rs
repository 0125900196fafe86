//! One stream's order: the [`Sequencer`] gives each accepted state its seq, derives
//! the view subscribers in step will hold (within ε of the truth), and keeps the
//! keyframe schedule. It is plain data, with no lock, channel or encoding: the fan-out
//! (`fanout/channel.rs`) runs it under its lock and shares what it decides.
//!
//! Sequencing and applying are split so that a bus can sit between them: the node
//! that accepts a state [`Sequencer::sequence`]s it; every other node
//! [`Sequencer::accept`]s the resulting [`Sequenced`].

use crate::{
    config::StreamConfig,
    delta::{self, Tolerance},
    model::State,
};

/// A new epoch for a stream whose seqs start at 1 in this process: 32 random bits as
/// 8 hex digits. Every full frame carries it, so it is kept short; a resume is taken
/// only when both the epoch and the seq match a state still held, so the chance that
/// a restarted stream is mistaken for the old one is 2^-32 per resume.
pub fn new_epoch() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A state with its place in the stream: what travels from the sequencer to every
/// node's fan-out.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// The seq assigned by the accepting node.
    pub seq: u64,
    /// The view subscribers in step hold at this seq (within ε of the producer's state).
    pub view: State,
    /// Whether this seq is a keyframe: every subscriber gets a full frame.
    pub keyframe: bool,
}

/// Seq, view and keyframe schedule of one stream.
#[derive(Debug, Clone)]
pub struct Sequencer {
    tolerance: Tolerance,
    keyframe_interval: u64,
    /// The newest seq and its view: what the next state is compared with.
    last: Option<(u64, State)>,
    /// Seqs since the last keyframe.
    since_keyframe: u64,
}

impl Sequencer {
    /// A sequencer for a new, empty stream.
    pub fn new(config: &StreamConfig) -> Sequencer {
        Sequencer {
            tolerance: config.tolerance,
            keyframe_interval: config.keyframe_interval.max(1),
            last: None,
            since_keyframe: 0,
        }
    }

    /// The tolerance views are kept within.
    pub fn tolerance(&self) -> &Tolerance {
        &self.tolerance
    }

    /// The newest seq (0 before the first state).
    pub fn seq(&self) -> u64 {
        self.last.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// Gives `state` the next seq and derives the view subscribers will hold: the
    /// first state, a shape change and every `keyframe_interval`-th seq are keyframes
    /// (the view is the state itself); otherwise the view follows the state within ε
    /// ([`delta::advance`]). Whether a delta is worth sending is not decided here but
    /// once per encoding, when the frame is made (`fanout/update.rs`).
    pub fn sequence(&mut self, state: State) -> Sequenced {
        let seq = self.seq() + 1;
        let view = match &self.last {
            Some((_, prev))
                if prev.same_shape(&state) && self.since_keyframe + 1 < self.keyframe_interval =>
            {
                Some(delta::advance(prev, &state, &self.tolerance))
            }
            _ => None,
        };
        let sequenced = match view {
            Some(view) => Sequenced {
                seq,
                view,
                keyframe: false,
            },
            None => Sequenced {
                seq,
                view: state,
                keyframe: true,
            },
        };
        self.record(&sequenced);
        sequenced
    }

    /// Takes a state another node sequenced. States at or below the newest seq are
    /// refused (duplicates, late arrivals); returns whether it was taken.
    pub fn accept(&mut self, sequenced: &Sequenced) -> bool {
        if sequenced.seq <= self.seq() && self.last.is_some() {
            return false;
        }
        // After a gap (a broker outage, a node that just started) the view held by
        // this node's subscribers is not the one the update was derived from: the
        // fan-out sends full frames until the chain is whole again.
        self.record(sequenced);
        true
    }

    fn record(&mut self, sequenced: &Sequenced) {
        if sequenced.keyframe {
            self.since_keyframe = 0;
        } else {
            self.since_keyframe += 1;
        }
        self.last = Some((sequenced.seq, sequenced.view.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(eps: f64, keyframe_interval: u64) -> StreamConfig {
        StreamConfig {
            tolerance: Tolerance::new(eps).unwrap(),
            keyframe_interval,
            history: 16,
            max_streams: 8,
            frame_cache_bytes: crate::config::defaults::FRAME_CACHE_BYTES,
        }
    }

    /// A state in which the first eight phases move every step.
    fn state(step: u64, n: usize) -> State {
        State {
            step,
            phases: (0..n)
                .map(|i| i as f64 + if i < 8 { step as f64 * 0.01 } else { 0.0 })
                .collect(),
            spins: vec![1; n],
            energy: step as f64,
            timestamp: None,
        }
    }

    #[test]
    fn keyframes_follow_the_schedule_and_shape_changes() {
        let mut s = Sequencer::new(&config(0.0, 4));
        let mut keyframes = vec![];
        for step in 1..=10 {
            let n = if step == 6 { 12 } else { 64 };
            let sequenced = s.sequence(state(step, n));
            assert_eq!(sequenced.seq, step);
            if sequenced.keyframe {
                keyframes.push(sequenced.seq);
            }
        }
        // 1: first; 5: interval; 6: shape change; 7: shape change back; 11 would be next.
        assert_eq!(keyframes, vec![1, 5, 6, 7]);
    }

    #[test]
    fn views_stay_within_epsilon_of_every_state() {
        let eps = 1e-3;
        let mut s = Sequencer::new(&config(eps, 1000));
        for step in 0..200 {
            let truth = state(step, 16);
            let view = s.sequence(truth.clone()).view;
            for (v, t) in view.phases.iter().zip(&truth.phases) {
                assert!((v - t).abs() <= eps, "step {step}: {v} vs {t}");
            }
        }
    }

    #[test]
    fn accept_refuses_duplicates_and_late_arrivals() {
        let mut a = Sequencer::new(&config(0.0, 100));
        let mut b = Sequencer::new(&config(0.0, 100));
        let first = a.sequence(state(1, 4));
        assert!(b.accept(&first));
        assert!(!b.accept(&first));
        let second = a.sequence(state(2, 4));
        assert_eq!(second.seq, 2);
        assert!(b.accept(&second));
        assert_eq!(b.seq(), 2);
        // b now sequences after what it accepted.
        assert_eq!(b.sequence(state(3, 4)).seq, 3);
    }
}
