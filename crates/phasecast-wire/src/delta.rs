//! The delta engine: how a subscriber's view follows the truth within ε, and how
//! one view is turned into another. Pure functions, no I/O.
//!
//! The server keeps, per stream, a chain of *views*: `view[n]` is the state every
//! subscriber that is in step holds after frame `n`. [`advance`] derives `view[n]`
//! from `view[n-1]` and the producer's state: a phase is only changed when it is more
//! than ε away from the truth, so every phase a subscriber holds is within ε of the
//! truth at every step (bit-exact at ε = 0). Because the comparison is against the
//! view and not against the previous true state, slow changes add up and are sent
//! once they pass ε: the view never drifts.
//!
//! A [`Delta`] turns one view into another ([`diff`]); a subscriber that skipped
//! frames gets a delta from the view it holds to the newest one, which puts it back
//! in step. Each delta carries a [`checksum`] of the state it produces, so a
//! subscriber can verify what it holds after [`apply`].

use crate::{model::State, projection::Projection};

/// How far a subscriber's phases may be from the truth, and the quantum used to
/// send small changes compactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    epsilon: f64,
    quantum_exp: Option<i32>,
}

impl Tolerance {
    /// Bit-exact: every phase the subscriber holds equals the truth.
    pub const LOSSLESS: Tolerance = Tolerance {
        epsilon: 0.0,
        quantum_exp: None,
    };

    /// A tolerance of `epsilon` radians (0 means lossless).
    ///
    /// The quantum is the largest power of two not above `2ε`, so rounding a change to
    /// a whole number of quanta is off by at most ε.
    ///
    /// # Errors
    /// When `epsilon` is negative, not finite, or too small to quantise (below 1e-300).
    pub fn new(epsilon: f64) -> Result<Tolerance, String> {
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(format!(
                "epsilon must be a finite number >= 0, got {epsilon}"
            ));
        }
        if epsilon == 0.0 {
            return Ok(Tolerance::LOSSLESS);
        }
        if epsilon < 1e-300 {
            return Err(format!(
                "epsilon {epsilon} is too small; use 0 for lossless"
            ));
        }
        let mut exp = (2.0 * epsilon).log2().floor() as i32;
        // log2 can round up just below a power of two: make sure q/2 <= ε.
        while f64::exp2(exp.into()) / 2.0 > epsilon {
            exp -= 1;
        }
        Ok(Tolerance {
            epsilon,
            quantum_exp: Some(exp),
        })
    }

    /// ε in radians.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// The exponent of the quantum (`2^exp` radians), or `None` when lossless.
    pub fn quantum_exp(&self) -> Option<i32> {
        self.quantum_exp
    }
}

/// A change to one phase in a [`Delta`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseChange {
    /// Replace the phase held with this value.
    Set(f64),
    /// Add this many quanta (`steps * 2^quantum_exp`) to the phase held.
    Step(i64),
}

/// The changes that turn the state with seq `base_seq` into the state with seq `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// Seq of the state this delta produces.
    pub seq: u64,
    /// Seq of the state this delta applies to.
    pub base_seq: u64,
    /// Step of the new state.
    pub step: u64,
    /// Energy of the new state.
    pub energy: f64,
    /// Timestamp of the new state.
    pub timestamp: Option<f64>,
    /// [`checksum`] of the new state.
    pub checksum: u64,
    /// Exponent of the quantum that [`PhaseChange::Step`] counts in.
    pub quantum_exp: i32,
    /// Changed phases, by ascending index.
    pub phases: Vec<(u32, PhaseChange)>,
    /// Indices of the spins that flipped, ascending.
    pub flips: Vec<u32>,
}

impl Delta {
    /// This delta as a subscriber with `projection` gets it: only the parts it holds,
    /// and the checksum of its projected `target` (the state the delta produces). The
    /// default projection leaves it as it is.
    pub fn project(mut self, projection: Projection, target: &State) -> Delta {
        if projection.is_default() {
            return self;
        }
        if !projection.phases() {
            self.phases = Vec::new();
        }
        if !projection.spins() {
            self.flips = Vec::new();
        }
        if !projection.energy() {
            self.energy = 0.0;
        }
        if !projection.timestamp() {
            self.timestamp = None;
        }
        self.checksum = projected_checksum(target, projection);
        self
    }
}

/// Why a delta could not be applied. The state held is then unusable: drop it and
/// get a full frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The delta names a phase or spin the state does not have.
    #[error("delta changes index {index}, but the state holds only {len}")]
    IndexOutOfRange {
        /// The index named.
        index: u32,
        /// Length of the array in the state held.
        len: usize,
    },
    /// After applying, the state's checksum is not the one the delta announced.
    #[error("checksum mismatch after applying delta to seq {seq}: expected {expected:016x}, got {actual:016x}")]
    ChecksumMismatch {
        /// Seq the delta produced.
        seq: u64,
        /// Checksum the delta announced.
        expected: u64,
        /// Checksum of the state after applying.
        actual: u64,
    },
}

/// The view at a keyframe: the truth, with each phase rounded to the nearest whole
/// number of quanta (within ε; lossless: the truth itself). Views then stay on that
/// grid, as [`advance`] moves them by whole quanta: a protobuf delta sends each move
/// as a small step count, and a JSON frame writes each phase in a few digits (a
/// multiple of 2^-9 has at most nine after the point) instead of seventeen.
pub fn keyframe_view(truth: &State, tolerance: &Tolerance) -> State {
    let Some(exp) = tolerance.quantum_exp else {
        return truth.clone();
    };
    let quantum = f64::exp2(exp.into());
    let on_grid = |p: f64| {
        let snapped = (p / quantum).round() * quantum;
        if (snapped - p).abs() <= tolerance.epsilon {
            snapped
        } else {
            p
        }
    };
    State {
        phases: truth.phases.iter().map(|p| on_grid(*p)).collect(),
        ..truth.clone()
    }
}

/// The next view: what a subscriber in step holds once it has the producer's `truth`.
///
/// Each phase keeps its value in `view` while it is within ε of the truth; past ε it
/// moves by a whole number of quanta when that lands within ε, else to the true value.
/// Spins, step, energy and timestamp are always exact. With [`Tolerance::LOSSLESS`]
/// the result is the truth. `view` and `truth` must have the same shape.
pub fn advance(view: &State, truth: &State, tolerance: &Tolerance) -> State {
    debug_assert!(view.same_shape(truth));
    let phases = match tolerance.quantum_exp {
        None => truth.phases.clone(),
        Some(exp) => {
            let eps = tolerance.epsilon;
            let quantum = f64::exp2(exp.into());
            view.phases
                .iter()
                .zip(&truth.phases)
                .map(|(&held, &wanted)| {
                    let change = wanted - held;
                    if change.abs() <= eps {
                        return held;
                    }
                    let steps = (change / quantum).round();
                    if steps.abs() < MAX_EXACT_STEPS {
                        let moved = held + steps * quantum;
                        if (moved - wanted).abs() <= eps {
                            return moved;
                        }
                    }
                    wanted
                })
                .collect()
        }
    };
    State {
        step: truth.step,
        phases,
        spins: truth.spins.clone(),
        energy: truth.energy,
        timestamp: truth.timestamp,
    }
}

/// Step counts beyond this are not exact as doubles; such changes are sent as values.
const MAX_EXACT_STEPS: f64 = 9_007_199_254_740_992.0; // 2^53

/// The delta that turns `base` (seq `base_seq`) into `target` (seq `seq`).
///
/// A changed phase is sent as a whole number of quanta when that reproduces the
/// target bit for bit, else as its value. `base` and `target` must have the same shape.
pub fn diff(
    base: &State,
    base_seq: u64,
    target: &State,
    seq: u64,
    quantum_exp: Option<i32>,
) -> Delta {
    debug_assert!(base.same_shape(target));
    let quantum = quantum_exp.map(|e| f64::exp2(e.into()));
    let phases = base
        .phases
        .iter()
        .zip(&target.phases)
        .enumerate()
        .filter(|(_, (b, t))| b.to_bits() != t.to_bits())
        .map(|(i, (&b, &t))| {
            let change = quantum
                .and_then(|q| {
                    let steps = ((t - b) / q).round();
                    (steps.abs() < MAX_EXACT_STEPS && (b + steps * q).to_bits() == t.to_bits())
                        .then_some(PhaseChange::Step(steps as i64))
                })
                .unwrap_or(PhaseChange::Set(t));
            (i as u32, change)
        })
        .collect();
    let flips = base
        .spins
        .iter()
        .zip(&target.spins)
        .enumerate()
        .filter(|(_, (b, t))| b != t)
        .map(|(i, _)| i as u32)
        .collect();
    Delta {
        seq,
        base_seq,
        step: target.step,
        energy: target.energy,
        timestamp: target.timestamp,
        checksum: checksum(target),
        quantum_exp: quantum_exp.unwrap_or(0),
        phases,
        flips,
    }
}

/// Applies `delta` to the state `held` and verifies the result against the delta's
/// checksum.
///
/// # Errors
/// When the delta names an index the state does not have, or the checksum does not
/// match. `held` is then partly changed and must be replaced by a full frame.
pub fn apply(held: &mut State, delta: &Delta) -> Result<(), ApplyError> {
    let quantum = f64::exp2(delta.quantum_exp.into());
    for &(index, change) in &delta.phases {
        let len = held.phases.len();
        let phase = held
            .phases
            .get_mut(index as usize)
            .ok_or(ApplyError::IndexOutOfRange { index, len })?;
        *phase = match change {
            PhaseChange::Set(value) => value,
            PhaseChange::Step(steps) => *phase + steps as f64 * quantum,
        };
    }
    for &index in &delta.flips {
        let len = held.spins.len();
        let spin = held
            .spins
            .get_mut(index as usize)
            .ok_or(ApplyError::IndexOutOfRange { index, len })?;
        *spin = -*spin;
    }
    held.step = delta.step;
    held.energy = delta.energy;
    held.timestamp = delta.timestamp;
    let actual = checksum(held);
    if actual != delta.checksum {
        return Err(ApplyError::ChecksumMismatch {
            seq: delta.seq,
            expected: delta.checksum,
            actual,
        });
    }
    Ok(())
}

/// Checksum of a state, as carried by every delta frame.
///
/// Hashes a sequence of 64-bit words: `step`, the number of phases, each phase's
/// IEEE-754 bits, the number of spins, the spins packed 64 to a word (bit j of word w
/// set when spin 64w+j is +1), and the energy's bits. Each word is mixed in as
/// `h = (h ^ w) * 0x9E3779B97F4A7C15; h ^= h >> 29` (wrapping), starting from
/// `0x243F6A8885A308D3`. The timestamp is not covered. Simple to reproduce in any
/// language with 64-bit integers; it detects corruption, it is not a MAC.
pub fn checksum(state: &State) -> u64 {
    checksum_of(state.step, &state.phases, &state.spins, state.energy)
}

/// The [`checksum`] of `state` as a subscriber with `projection` holds it (see
/// [`Projection::apply`]), without making that state.
pub fn projected_checksum(state: &State, projection: Projection) -> u64 {
    checksum_of(
        state.step,
        if projection.phases() {
            &state.phases
        } else {
            &[]
        },
        if projection.spins() {
            &state.spins
        } else {
            &[]
        },
        if projection.energy() {
            state.energy
        } else {
            0.0
        },
    )
}

fn checksum_of(step: u64, phases: &[f64], spins: &[i8], energy: f64) -> u64 {
    let mut hash = Checksum::new();
    hash.word(step);
    hash.word(phases.len() as u64);
    for phase in phases {
        hash.word(phase.to_bits());
    }
    hash.word(spins.len() as u64);
    for chunk in spins.chunks(64) {
        let word = chunk
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0)
            .fold(0u64, |w, (j, _)| w | (1 << j));
        hash.word(word);
    }
    hash.word(energy.to_bits());
    hash.0
}

struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Checksum(0x243F_6A88_85A3_08D3)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(phases: Vec<f64>, spins: Vec<i8>) -> State {
        State {
            step: 7,
            phases,
            spins,
            energy: 0.5,
            timestamp: None,
        }
    }

    #[test]
    fn quantum_is_a_power_of_two_within_two_epsilon() {
        for eps in [1e-3, 0.5, 1.0, 0.25, 1e-9, 3.0] {
            let t = Tolerance::new(eps).unwrap();
            let q = f64::exp2(t.quantum_exp().unwrap().into());
            assert!(q / 2.0 <= eps && q > eps, "eps {eps} q {q}");
        }
        assert_eq!(Tolerance::new(0.0).unwrap(), Tolerance::LOSSLESS);
        assert!(Tolerance::new(-1.0).is_err());
        assert!(Tolerance::new(f64::NAN).is_err());
    }

    /// The old server compared against the previous true state, so a phase rising by
    /// ε/2 a step was never sent. Here it is sent, and the error never exceeds ε.
    #[test]
    fn slow_change_below_epsilon_is_eventually_sent_and_never_drifts() {
        let eps = 1e-3;
        let tol = Tolerance::new(eps).unwrap();
        let mut truth = state(vec![1.0], vec![]);
        let mut view = truth.clone();
        let mut held = truth.clone();
        let mut sent = 0;
        for seq in 1..=1000u64 {
            truth.phases[0] += eps / 2.0;
            let next = advance(&view, &truth, &tol);
            let delta = diff(&view, seq - 1, &next, seq, tol.quantum_exp());
            if !delta.phases.is_empty() {
                sent += 1;
            }
            apply(&mut held, &delta).unwrap();
            assert_eq!(held, next);
            let err = (held.phases[0] - truth.phases[0]).abs();
            assert!(err <= eps, "seq {seq}: error {err} > ε");
            view = next;
        }
        // Rising 0.5 rad in total, in quanta of ~2ε: about 250 sends.
        assert!(sent > 200, "only {sent} changes were sent");
    }

    #[test]
    fn lossless_view_is_the_truth() {
        let a = state(vec![1.0, 2.0, -0.0], vec![1, -1, 1]);
        let b = state(vec![1.0, 2.5, 0.0], vec![1, 1, 1]);
        assert_eq!(advance(&a, &b, &Tolerance::LOSSLESS), b);
        let d = diff(&a, 1, &b, 2, None);
        // -0.0 -> 0.0 is a change of bits: sent.
        assert_eq!(
            d.phases,
            vec![(1, PhaseChange::Set(2.5)), (2, PhaseChange::Set(0.0))]
        );
        assert_eq!(d.flips, vec![1]);
    }

    #[test]
    fn apply_rejects_bad_index_and_bad_checksum() {
        let a = state(vec![1.0, 2.0], vec![1, 1]);
        let b = state(vec![1.0, 3.0], vec![1, -1]);
        let mut d = diff(&a, 1, &b, 2, None);
        let mut held = a.clone();
        apply(&mut held, &d).unwrap();
        assert_eq!(held, b);

        d.phases[0].0 = 9;
        let err = apply(&mut a.clone(), &d).unwrap_err();
        assert_eq!(err, ApplyError::IndexOutOfRange { index: 9, len: 2 });

        let mut d = diff(&a, 1, &b, 2, None);
        d.phases[0].1 = PhaseChange::Set(3.0000001);
        assert!(matches!(
            apply(&mut a.clone(), &d),
            Err(ApplyError::ChecksumMismatch { seq: 2, .. })
        ));
    }

    #[test]
    fn checksum_covers_every_field_but_the_timestamp() {
        let base = state(vec![1.0, 2.0], vec![1, -1]);
        let c = checksum(&base);
        let mut s = base.clone();
        s.timestamp = Some(3.0);
        assert_eq!(checksum(&s), c);
        for change in [
            (|s: &mut State| s.step += 1) as fn(&mut State),
            |s| s.phases[1] = 2.0000000000000004,
            |s| s.spins[0] = -1,
            |s| s.energy = -0.5,
            |s| s.spins.clear(),
        ] {
            let mut s = base.clone();
            change(&mut s);
            assert_ne!(checksum(&s), c, "{s:?}");
        }
    }

    /// Pins the checksum so the clients in other languages can test against it.
    #[test]
    fn checksum_known_value() {
        let s = State {
            step: 42,
            phases: vec![0.0, 1.5, -3.25],
            spins: vec![1, -1, 1],
            energy: -2.0,
            timestamp: None,
        };
        assert_eq!(format!("{:016x}", checksum(&s)), KNOWN_CHECKSUM);
    }
    const KNOWN_CHECKSUM: &str = "a4ed18b14dd21c0c";

    fn arb_states() -> impl Strategy<Value = (Vec<State>, f64)> {
        (1usize..40, 1usize..30, prop_oneof![Just(0.0), 1e-6..1.0f64]).prop_flat_map(
            |(n, steps, eps)| {
                let one = (
                    prop::collection::vec(-10.0..10.0f64, n),
                    prop::collection::vec(prop::bool::ANY, n),
                    -5.0..5.0f64,
                );
                (prop::collection::vec(one, steps), Just(eps)).prop_map(|(raw, eps)| {
                    let states = raw
                        .into_iter()
                        .enumerate()
                        .map(|(i, (phases, spins, energy))| State {
                            step: i as u64,
                            phases,
                            spins: spins.into_iter().map(|b| if b { 1 } else { -1 }).collect(),
                            energy,
                            timestamp: None,
                        })
                        .collect();
                    (states, eps)
                })
            },
        )
    }

    proptest! {
        /// A subscriber in step, and one that sees only every k-th frame (delta from
        /// what it holds), both stay within ε of the truth (exact at ε = 0).
        #[test]
        fn views_stay_within_epsilon_even_when_frames_are_skipped(
            (states, eps) in arb_states(), stride in 1usize..5
        ) {
            let tol = Tolerance::new(eps).unwrap();
            let mut views = vec![states[0].clone()];
            for truth in &states[1..] {
                let next = advance(views.last().unwrap(), truth, &tol);
                views.push(next);
            }
            let mut held = views[0].clone();
            let mut held_seq = 0usize;
            for (seq, (view, truth)) in views.iter().zip(&states).enumerate().skip(1) {
                for (v, t) in view.phases.iter().zip(&truth.phases) {
                    prop_assert!((v - t).abs() <= eps);
                }
                if seq % stride != 0 { continue; }
                let d = diff(&views[held_seq], held_seq as u64, view, seq as u64, tol.quantum_exp());
                apply(&mut held, &d).unwrap();
                prop_assert_eq!(&held, view);
                held_seq = seq;
            }
        }
    }
}
