//! Which parts of a state a subscriber asked for (`?fields=`): a [`Projection`]. A
//! subscriber holds only those parts (the others empty, 0 or none), so its frames,
//! deltas and checksums are of the projected state; the default projection is the
//! whole state, and its frames are the same bytes as before projections existed.

use std::{fmt, str::FromStr};

use crate::model::State;

/// One part a subscriber may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The phases.
    Phases,
    /// The spins.
    Spins,
    /// The exact energy.
    Energy,
    /// The producer's timestamp.
    Timestamp,
    /// The server's [`Summary`](crate::summary::Summary) of the state.
    Summary,
}

impl Field {
    /// Every field, in the order they are written.
    pub const ALL: [Field; 5] = [
        Field::Phases,
        Field::Spins,
        Field::Energy,
        Field::Timestamp,
        Field::Summary,
    ];

    /// Its name in `?fields=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Phases => "phases",
            Field::Spins => "spins",
            Field::Energy => "energy",
            Field::Timestamp => "timestamp",
            Field::Summary => "summary",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The parts of a state a subscriber takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Projection(u8);

impl Default for Projection {
    fn default() -> Projection {
        Projection::DEFAULT
    }
}

impl Projection {
    /// The whole state, no summary: what a subscriber that asks for nothing gets.
    pub const DEFAULT: Projection = Projection(0b01111);

    /// Only the summary.
    pub const SUMMARY: Projection = Projection(0b10000);

    /// A projection of exactly `fields`.
    pub fn of(fields: &[Field]) -> Projection {
        Projection(fields.iter().fold(0, |bits, f| bits | f.bit()))
    }

    /// Whether it takes `field`.
    pub fn has(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// Whether it takes phases.
    pub fn phases(self) -> bool {
        self.has(Field::Phases)
    }

    /// Whether it takes spins.
    pub fn spins(self) -> bool {
        self.has(Field::Spins)
    }

    /// Whether it takes the energy.
    pub fn energy(self) -> bool {
        self.has(Field::Energy)
    }

    /// Whether it takes the timestamp.
    pub fn timestamp(self) -> bool {
        self.has(Field::Timestamp)
    }

    /// Whether it takes the summary.
    pub fn summary(self) -> bool {
        self.has(Field::Summary)
    }

    /// Whether its frames have a body (phases or spins): with one they are full
    /// frames and deltas; without, each frame stands alone.
    pub fn has_body(self) -> bool {
        self.phases() || self.spins()
    }

    /// Whether this is the default projection.
    pub fn is_default(self) -> bool {
        self == Projection::DEFAULT
    }

    /// The part of `state` a subscriber with this projection holds.
    pub fn apply(self, state: &State) -> State {
        State {
            step: state.step,
            phases: if self.phases() {
                state.phases.clone()
            } else {
                Vec::new()
            },
            spins: if self.spins() {
                state.spins.clone()
            } else {
                Vec::new()
            },
            energy: if self.energy() { state.energy } else { 0.0 },
            timestamp: state.timestamp.filter(|_| self.timestamp()),
        }
    }
}

/// A `?fields=` list that names no field or an unknown one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; fields are a comma-separated list of phases, spins, energy, timestamp, summary")]
pub struct InvalidFields(String);

impl FromStr for Projection {
    type Err = InvalidFields;

    fn from_str(s: &str) -> Result<Projection, InvalidFields> {
        let mut projection = Projection(0);
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let field = Field::ALL
                .into_iter()
                .find(|f| f.as_str() == name)
                .ok_or_else(|| InvalidFields(format!("unknown field {name:?}")))?;
            projection.0 |= field.bit();
        }
        if projection.0 == 0 {
            return Err(InvalidFields("no field named".to_owned()));
        }
        Ok(projection)
    }
}

impl fmt::Display for Projection {
    /// The `?fields=` list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for field in Field::ALL.into_iter().filter(|x| self.has(*x)) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(field.as_str())?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_field_lists() {
        let p: Projection = "summary, phases".parse().unwrap();
        assert!(p.phases() && p.summary() && !p.spins() && !p.energy());
        assert_eq!(p.to_string(), "phases,summary");
        assert_eq!(
            "phases,spins,energy,timestamp".parse::<Projection>(),
            Ok(Projection::DEFAULT)
        );
        assert_eq!("summary".parse::<Projection>(), Ok(Projection::SUMMARY));
        assert!(!Projection::SUMMARY.has_body());
        let err = "phases,colour".parse::<Projection>().unwrap_err();
        assert!(err.to_string().contains("\"colour\""), "{err}");
        assert!(" , ".parse::<Projection>().is_err());
    }

    #[test]
    fn a_projected_state_keeps_only_what_was_asked_for() {
        let state = State {
            step: 7,
            phases: vec![1.0, 2.0],
            spins: vec![1, -1],
            energy: 3.5,
            timestamp: Some(9.0),
        };
        assert_eq!(Projection::DEFAULT.apply(&state), state);
        let p = Projection::of(&[Field::Spins, Field::Energy]);
        let held = p.apply(&state);
        assert_eq!((held.phases.len(), held.spins.len()), (0, 2));
        assert_eq!((held.energy, held.timestamp, held.step), (3.5, None, 7));
    }
}
