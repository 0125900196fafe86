//! Domain types: a PCC [`State`], the limits it is checked against, and the
//! [`InvalidState`] error that names the offending field. No I/O, no wire details.

use std::fmt;

/// One state of the phase-coupled computation.
///
/// A state is what a producer sends and also what a subscriber holds: the server's
/// per-stream *views* (see [`crate::delta`]) are `State`s too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// The producer's step counter.
    pub step: u64,
    /// Oscillator phases in radians.
    pub phases: Vec<f64>,
    /// Spins, each `1` or `-1`; empty or one per phase.
    pub spins: Vec<i8>,
    /// Energy of the state.
    pub energy: f64,
    /// Producer timestamp, seconds since the Unix epoch.
    pub timestamp: Option<f64>,
}

impl State {
    /// Checks the state against `limits`.
    ///
    /// # Errors
    /// The first problem found, naming its field (`phases[3]`, `spins`, `energy`...).
    pub fn validate(&self, limits: &Limits) -> Result<(), InvalidState> {
        if self.phases.is_empty() {
            return Err(InvalidState::new("phases", "must hold at least one phase"));
        }
        if self.phases.len() > limits.max_oscillators {
            return Err(InvalidState::new(
                "phases",
                format!(
                    "{} phases is more than the server's limit of {} (PCC_MAX_OSCILLATORS)",
                    self.phases.len(),
                    limits.max_oscillators
                ),
            ));
        }
        if let Some(i) = self.phases.iter().position(|p| !p.is_finite()) {
            return Err(InvalidState::new(
                format!("phases[{i}]"),
                "must be a finite number",
            ));
        }
        if !self.spins.is_empty() && self.spins.len() != self.phases.len() {
            return Err(InvalidState::new(
                "spins",
                format!(
                    "expected none or one per phase ({}), got {}",
                    self.phases.len(),
                    self.spins.len()
                ),
            ));
        }
        if let Some(i) = self.spins.iter().position(|s| *s != 1 && *s != -1) {
            return Err(InvalidState::new(
                format!("spins[{i}]"),
                format!("must be +1 or -1, got {}", self.spins[i]),
            ));
        }
        if !self.energy.is_finite() {
            return Err(InvalidState::new("energy", "must be a finite number"));
        }
        if let Some(t) = self.timestamp {
            if !t.is_finite() {
                return Err(InvalidState::new("timestamp", "must be a finite number"));
            }
        }
        Ok(())
    }

    /// Number of oscillators (phases).
    pub fn len(&self) -> usize {
        self.phases.len()
    }

    /// True when the state has no phases.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// True when `other` has the same array lengths, so a delta can turn one into the other.
    pub fn same_shape(&self, other: &State) -> bool {
        self.phases.len() == other.phases.len() && self.spins.len() == other.spins.len()
    }
}

/// Limits a producer's state must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of oscillators (phases) in one state.
    pub max_oscillators: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_oscillators: 65_536,
        }
    }
}

/// A producer's state that cannot be accepted: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidState {
    /// The field at fault, as a path: `phases`, `phases[3]`, `spins[0]`, `energy`.
    pub field: String,
    /// What is wrong with it, for a person.
    pub reason: String,
}

impl InvalidState {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidState {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for InvalidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_state() -> State {
        State {
            step: 1,
            phases: vec![0.0, 1.0, 2.0],
            spins: vec![1, -1, 1],
            energy: -1.5,
            timestamp: Some(1.0),
        }
    }

    #[test]
    fn accepts_a_valid_state_and_one_without_spins() {
        let limits = Limits::default();
        assert_eq!(ok_state().validate(&limits), Ok(()));
        let mut s = ok_state();
        s.spins.clear();
        assert_eq!(s.validate(&limits), Ok(()));
    }

    #[test]
    fn names_the_field_at_fault() {
        let limits = Limits { max_oscillators: 3 };
        let field = |f: fn(&mut State)| {
            let mut s = ok_state();
            f(&mut s);
            s.validate(&limits).unwrap_err().field
        };
        assert_eq!(field(|s| s.phases.clear()), "phases");
        assert_eq!(field(|s| s.phases.push(0.0)), "phases");
        assert_eq!(field(|s| s.phases[1] = f64::NAN), "phases[1]");
        assert_eq!(field(|s| s.phases[2] = f64::INFINITY), "phases[2]");
        assert_eq!(field(|s| s.spins.pop().map(drop).unwrap_or(())), "spins");
        assert_eq!(field(|s| s.spins[2] = 0), "spins[2]");
        assert_eq!(field(|s| s.energy = f64::NEG_INFINITY), "energy");
        assert_eq!(field(|s| s.timestamp = Some(f64::NAN)), "timestamp");
    }
}
