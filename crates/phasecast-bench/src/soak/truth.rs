//! What the producer sent, as every subscriber of the soak checks it: the checksum of
//! each state by step, written before the state goes out. A subscriber compares the
//! state it holds after every frame (full or delta) with it, so a frame that builds
//! the wrong state is caught even when it carries no checksum of its own (full frames
//! do not).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use phasecast::{delta, model::State};

/// Checksums of the producer's states, by step.
pub(crate) struct Truth {
    /// `delta::checksum` of the state with step `i`; 0 for a step not sent (yet).
    by_step: Vec<AtomicU64>,
}

/// What the comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The state is the producer's.
    Exact,
    /// The state differs from the producer's state with the same step.
    Wrong,
    /// No state with that step was recorded (beyond the table): not checked.
    Unknown,
}

impl Truth {
    /// Room for steps `0..=last_step`.
    pub(crate) fn new(last_step: u64) -> Truth {
        Truth {
            by_step: (0..=last_step).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records `state` (call before sending it). `false` when its step is past the
    /// table, which the producer treats as the end of the run.
    pub(crate) fn record(&self, state: &State) -> bool {
        match self.by_step.get(state.step as usize) {
            Some(slot) => {
                slot.store(delta::checksum(state), Relaxed);
                true
            }
            None => false,
        }
    }

    /// Whether `state` is the producer's state with its step.
    pub(crate) fn check(&self, state: &State) -> Verdict {
        match self
            .by_step
            .get(state.step as usize)
            .map(|s| s.load(Relaxed))
        {
            None | Some(0) => Verdict::Unknown,
            Some(sum) if sum == delta::checksum(state) => Verdict::Exact,
            Some(_) => Verdict::Wrong,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phasecast::workload::Workload;

    #[test]
    fn a_recorded_state_is_exact_and_a_changed_one_is_wrong() {
        let truth = Truth::new(2);
        let mut w = Workload::kuramoto(8, 1);
        let (a, b, c) = (w.next_state(), w.next_state(), w.next_state());
        assert!(truth.record(&a) && truth.record(&b));
        assert!(!truth.record(&c), "step 3 is past the table");
        assert_eq!(truth.check(&a), Verdict::Exact);
        let mut wrong = b.clone();
        wrong.phases[3] += 1e-12;
        assert_eq!(truth.check(&wrong), Verdict::Wrong);
        // The timestamp is not covered by the checksum (the server may fill it in).
        let mut stamped = b.clone();
        stamped.timestamp = None;
        assert_eq!(truth.check(&stamped), Verdict::Exact);
        assert_eq!(truth.check(&c), Verdict::Unknown);
    }
}
