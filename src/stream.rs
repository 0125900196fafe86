//! One stream's order: the [`Sequencer`] gives each accepted state its seq, derives
//! the view subscribers in step will hold (within ε of the truth), and keeps the
//! keyframe schedule. It is plain data, with no lock, channel or encoding: the fan-out
//! (`fanout/channel.rs`) runs it under its lock and shares what it decides.
//!
//! Keyframes come on a schedule of seqs (1, 1 + K, 1 + 2K, ...), plus at shape changes
//! and after a missing seq, so a node that reads a shared log ([`Sequencer::follow`])
//! from a scheduled keyframe derives the same views as every other node.
//!
//! A stream offers several tolerances at once ([`Classes`], `?epsilon=`): each class
//! has a sequencer of its own, fed the same states at the same seqs.

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

/// A state with its place in the stream: what the fan-out keeps and encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// Its seq.
    pub seq: u64,
    /// The view subscribers in step hold at this seq (within ε of the producer's state).
    pub view: State,
    /// Whether this seq is a keyframe: every subscriber gets a full frame.
    pub keyframe: bool,
}

/// Whether `seq` is on the keyframe schedule of `interval`: 1, 1 + interval, ...
pub fn is_scheduled_keyframe(seq: u64, interval: u64) -> bool {
    seq > 0 && (seq - 1) % interval.max(1) == 0
}

/// The scheduled keyframe at or before `seq` (1 for seq 0).
pub fn keyframe_at_or_before(seq: u64, interval: u64) -> u64 {
    let interval = interval.max(1);
    (seq.max(1) - 1) / interval * interval + 1
}

/// The precision classes a stream offers: tolerances, lossless first, one of them the
/// default for subscribers that do not choose. A class is named by its index.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    tolerances: Vec<Tolerance>,
    default: usize,
}

impl Classes {
    /// Lossless, every tolerance in `offered`, and `default`: sorted, each once.
    pub fn new(default: Tolerance, offered: &[Tolerance]) -> Classes {
        let mut tolerances: Vec<Tolerance> = [Tolerance::LOSSLESS, default]
            .into_iter()
            .chain(offered.iter().copied())
            .collect();
        tolerances.sort_by(|a, b| a.epsilon().total_cmp(&b.epsilon()));
        tolerances.dedup_by(|a, b| a.epsilon() == b.epsilon());
        let default = tolerances
            .iter()
            .position(|t| t.epsilon() == default.epsilon())
            .expect("the default is among the classes");
        Classes {
            tolerances,
            default,
        }
    }

    /// The classes a stream of `config` offers: lossless, its `precision_classes` and
    /// its default `tolerance`.
    pub fn of(config: &StreamConfig) -> Classes {
        Classes::new(config.tolerance, &config.precision_classes)
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.tolerances.len()
    }

    /// Always false: lossless is always offered.
    pub fn is_empty(&self) -> bool {
        self.tolerances.is_empty()
    }

    /// The default class.
    pub fn default_class(&self) -> usize {
        self.default
    }

    /// The class of tolerance `epsilon`, if offered.
    pub fn find(&self, epsilon: f64) -> Option<usize> {
        self.tolerances.iter().position(|t| t.epsilon() == epsilon)
    }

    /// The tolerance of `class`.
    pub fn tolerance(&self, class: usize) -> Tolerance {
        self.tolerances[class]
    }

    /// Every class's ε, ascending.
    pub fn epsilons(&self) -> impl Iterator<Item = f64> + '_ {
        self.tolerances.iter().map(|t| t.epsilon())
    }
}

/// Seq, view and keyframe schedule of one stream.
#[derive(Debug, Clone)]
pub struct Sequencer {
    tolerance: Tolerance,
    keyframe_interval: u64,
    /// The newest seq and its view: what the next state is compared with.
    last: Option<(u64, State)>,
}

impl Sequencer {
    /// A sequencer for a new, empty stream of tolerance `tolerance`.
    pub fn with_tolerance(tolerance: Tolerance, keyframe_interval: u64) -> Sequencer {
        Sequencer {
            tolerance,
            keyframe_interval: keyframe_interval.max(1),
            last: None,
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

    /// Gives `state` the next seq and derives the view subscribers will hold (see
    /// [`Sequencer::follow`]). Whether a delta is worth sending is not decided here
    /// but once per encoding, when the frame is made (`fanout/update.rs`).
    pub fn sequence(&mut self, state: &State) -> Sequenced {
        self.follow(self.seq() + 1, state)
    }

    /// Takes `state` at `seq` (above the newest; a shared log decides it) and derives
    /// its view: at a scheduled keyframe, a shape change, the first state and after a
    /// missing seq the view is the state itself (its phases on the class's quantum
    /// grid, [`delta::keyframe_view`]); otherwise it follows the state within
    /// ε of the previous view ([`delta::advance`]). The same states at the same seqs
    /// from the same keyframe give the same views, on every node.
    pub fn follow(&mut self, seq: u64, state: &State) -> Sequenced {
        let view = match &self.last {
            Some((prev_seq, prev))
                if *prev_seq + 1 == seq
                    && prev.same_shape(state)
                    && !is_scheduled_keyframe(seq, self.keyframe_interval) =>
            {
                Some(delta::advance(prev, state, &self.tolerance))
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
                view: delta::keyframe_view(state, &self.tolerance),
                keyframe: true,
            },
        };
        self.last = Some((seq, sequenced.view.clone()));
        sequenced
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
            precision_classes: vec![],
            summary_bins: 16,
        }
    }

    fn sequencer(config: &StreamConfig) -> Sequencer {
        Sequencer::with_tolerance(config.tolerance, config.keyframe_interval)
    }

    #[test]
    fn classes_are_lossless_the_offered_and_the_default_sorted_once() {
        let t = |e| Tolerance::new(e).unwrap();
        let c = Classes::new(t(0.002), &[t(0.01), t(0.0), t(0.001), t(0.01)]);
        assert_eq!(c.epsilons().collect::<Vec<_>>(), [0.0, 0.001, 0.002, 0.01]);
        assert_eq!(c.default_class(), 2);
        assert_eq!(c.find(0.001), Some(1));
        assert_eq!(c.find(0.005), None);
        assert_eq!(Classes::new(Tolerance::LOSSLESS, &[]).len(), 1);
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
        let mut s = sequencer(&config(0.0, 4));
        let mut keyframes = vec![];
        for step in 1..=10 {
            let n = if step == 6 { 12 } else { 64 };
            let sequenced = s.sequence(&state(step, n));
            assert_eq!(sequenced.seq, step);
            if sequenced.keyframe {
                keyframes.push(sequenced.seq);
            }
        }
        // 1: first; 5: schedule; 6: shape change; 7: shape change back; 9: schedule.
        assert_eq!(keyframes, vec![1, 5, 6, 7, 9]);
    }

    #[test]
    fn views_stay_within_epsilon_of_every_state() {
        let eps = 1e-3;
        let mut s = sequencer(&config(eps, 1000));
        for step in 0..200 {
            let truth = state(step, 16);
            let view = s.sequence(&truth).view;
            for (v, t) in view.phases.iter().zip(&truth.phases) {
                assert!((v - t).abs() <= eps, "step {step}: {v} vs {t}");
            }
        }
    }

    #[test]
    fn nodes_following_one_log_from_a_keyframe_derive_the_same_views() {
        let eps = 1e-3;
        let states: Vec<_> = (1..=40).map(|step| state(step, 16)).collect();
        let mut first = sequencer(&config(eps, 10));
        let views: Vec<_> = states.iter().map(|s| first.sequence(s)).collect();
        // A node that starts later reads the log from the keyframe at 21.
        let mut later = sequencer(&config(eps, 10));
        for (i, s) in states.iter().enumerate().skip(20) {
            assert_eq!(later.follow(i as u64 + 1, s), views[i], "seq {}", i + 1);
        }
        // A missing seq makes a keyframe: nothing is derived from a view not held.
        let mut gap = sequencer(&config(eps, 10));
        gap.follow(3, &states[2]);
        assert!(gap.follow(5, &states[4]).keyframe);
        assert!(!gap.follow(6, &states[5]).keyframe);
        assert_eq!(keyframe_at_or_before(20, 10), 11);
        assert_eq!(keyframe_at_or_before(21, 10), 21);
        assert_eq!(keyframe_at_or_before(0, 10), 1);
        assert!(is_scheduled_keyframe(31, 10) && !is_scheduled_keyframe(30, 10));
    }
}
