//! How states reach every node when nodes share a broker. With no broker configured
//! there is no bus: the hub sequences each state itself (the embedded default). With
//! `PCC_NATS_URL`, each stream has a log in NATS JetStream, and the log, not a node,
//! decides the order:
//!
//! - A node that accepts a state appends the producer's state (not its view) to the
//!   stream's log, `phasecast.v1.log.<name>` in the JetStream stream
//!   [`log_name`]`(name)`. The log's sequence number is the state's seq; the producer's
//!   reply waits until the log has stored it ([`nats::Bus::append`]).
//! - Every node follows every log in order, and derives the views from it the same
//!   way (`Sequencer::follow`: keyframes on the seq schedule, `advance` within ε from
//!   the last keyframe), so every node holds the same view for every seq, whoever
//!   produced it.
//! - A log's epoch is derived from the time JetStream created it: every node computes
//!   the same one, and it changes only when the log is made anew.
//! - A node that starts replays each log from the keyframe before the history it
//!   keeps; the log keeps `history + keyframe interval` states (and, if set, no
//!   older than an age), so a subscriber resumes on any node, after any restart.
//! - With the broker unreachable, appending fails: the producer is refused (503 over
//!   HTTP, close 1013 on `/ingest`), never answered for a state that is then lost.
//!
//! The broker client itself is in [`nats`]; this file holds what the log is made of.

pub mod nats;

use bytes::Bytes;
use prost::Message as _;

use crate::{
    codec::pb,
    model::{Limits, State},
    stream::keyframe_at_or_before,
};

pub use nats::{Bus, Confirmation, FromLog, Spawned};

/// Subject prefix of the logs; the stream name follows.
pub const LOG_SUBJECT_PREFIX: &str = "phasecast.v1.log.";

/// Name prefix of the JetStream streams that hold the logs.
pub const LOG_NAME_PREFIX: &str = "PHASECAST_";

/// One entry of a stream's log, as a node reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    /// The phasecast stream's name.
    pub stream: String,
    /// The log's epoch.
    pub epoch: String,
    /// The entry's sequence in the log: its seq.
    pub seq: u64,
    /// The producer's state.
    pub state: State,
}

/// Why a state could not be appended to its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The broker is not connected now.
    #[error("the NATS broker is unreachable; the state was not taken (retry)")]
    Unreachable,
    /// The broker did not confirm the state was stored in time.
    #[error("the log did not store the state: {0} (retry)")]
    NotStored(String),
}

/// The subject the log of `stream` is appended on.
pub fn log_subject(stream: &str) -> String {
    format!("{LOG_SUBJECT_PREFIX}{stream}")
}

/// The JetStream stream holding the log of `stream`. JetStream names take no `.`, so
/// `_` is written `__` and `.` is written `_d`: one name per stream, both ways.
pub fn log_name(stream: &str) -> String {
    let mut name = String::with_capacity(LOG_NAME_PREFIX.len() + stream.len() + 4);
    name.push_str(LOG_NAME_PREFIX);
    for c in stream.chars() {
        match c {
            '_' => name.push_str("__"),
            '.' => name.push_str("_d"),
            c => name.push(c),
        }
    }
    name
}

/// The stream whose log is the JetStream stream `name`, if it is one.
pub fn stream_of_log(name: &str) -> Option<String> {
    let mut chars = name.strip_prefix(LOG_NAME_PREFIX)?.chars();
    let mut stream = String::new();
    while let Some(c) = chars.next() {
        match c {
            '_' => match chars.next()? {
                '_' => stream.push('_'),
                'd' => stream.push('.'),
                _ => return None,
            },
            c => stream.push(c),
        }
    }
    (!stream.is_empty()).then_some(stream)
}

/// A log's epoch from the time JetStream created it (nanoseconds since 1970), the
/// same on every node: 8 hex digits of its 32-bit FNV-1a hash, as short as the
/// single-node epoch.
pub fn epoch_of(created_nanos: i128) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in created_nanos.to_le_bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// Where a node starts reading a log that holds seqs `first..=last` to keep the
/// newest `history` of them: the scheduled keyframe at or before the oldest it keeps,
/// so its views are the ones every other node derived. When that keyframe has left the
/// log, the next one in it; when there is none, `first` (its views then differ from
/// the other nodes' until the next scheduled keyframe, and checksums tell clients).
pub fn replay_from(first: u64, last: u64, history: u64, keyframe_interval: u64) -> u64 {
    let first = first.max(1);
    if last < first {
        return first; // empty: from the next entry
    }
    let oldest_kept = last.saturating_sub(history.max(1) - 1).max(first);
    let keyframe = keyframe_at_or_before(oldest_kept, keyframe_interval);
    if keyframe >= first {
        keyframe
    } else {
        let next = keyframe + keyframe_interval.max(1);
        if next <= last {
            next
        } else {
            first
        }
    }
}

/// The bytes of a log entry: the producer's state as a protobuf `PccState`.
pub fn encode_entry(state: &State) -> Bytes {
    pb::PccState::from(state).encode_to_vec().into()
}

/// A log entry's state.
///
/// # Errors
/// Bytes that are not a valid `PccState`.
pub fn decode_entry(bytes: &[u8]) -> Result<State, String> {
    let message = pb::PccState::decode(bytes).map_err(|e| e.to_string())?;
    let state = State::try_from(message).map_err(|e| e.to_string())?;
    state
        .validate(&Limits {
            max_oscillators: usize::MAX,
        })
        .map_err(|e| e.to_string())?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_ones_are_refused() {
        let state = State {
            step: 7,
            phases: vec![0.5, -1.25],
            spins: vec![1, -1],
            energy: 3.0,
            timestamp: Some(1.5),
        };
        assert_eq!(decode_entry(&encode_entry(&state)), Ok(state));
        assert!(decode_entry(b"\xff\xff").is_err());
        let uneven = pb::PccState {
            step: 1,
            phases: vec![0.1, 0.2],
            spins: vec![1],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode_entry(&uneven).is_err());
    }

    #[test]
    fn replay_starts_at_the_keyframe_before_the_history() {
        // Keyframes at 1, 11, 21, ... (interval 10); history of 5.
        assert_eq!(replay_from(0, 0, 5, 10), 1, "an empty log");
        assert_eq!(replay_from(1, 3, 5, 10), 1);
        assert_eq!(
            replay_from(1, 27, 5, 10),
            21,
            "23..=27 kept, from keyframe 21"
        );
        assert_eq!(
            replay_from(1, 25, 5, 10),
            21,
            "21..=25 kept: from 21 itself"
        );
        assert_eq!(
            replay_from(1, 24, 5, 10),
            11,
            "20..=24 kept, from keyframe 11"
        );
        // The keyframe before has left the log: from the next one.
        assert_eq!(replay_from(15, 27, 20, 10), 21);
        // No keyframe in the log at all: from its first entry.
        assert_eq!(replay_from(15, 18, 20, 10), 15);
        assert_eq!(replay_from(31, 30, 5, 10), 31, "every entry has expired");
    }

    #[test]
    fn log_names_map_back_to_their_streams() {
        for stream in ["default", "lab.1", "a_b", "a__b.c_d", "x-y", "_._"] {
            let name = log_name(stream);
            assert!(!name.contains('.'), "{name}");
            assert_eq!(stream_of_log(&name).as_deref(), Some(stream), "{name}");
        }
        assert_eq!(log_name("lab.1"), "PHASECAST_lab_d1");
        assert_eq!(stream_of_log("OTHER"), None);
        assert_eq!(stream_of_log("PHASECAST_"), None);
        assert_eq!(stream_of_log("PHASECAST_a_x"), None);
    }

    #[test]
    fn epochs_are_short_and_follow_the_creation_time() {
        let a = epoch_of(1_764_000_000_000_000_001);
        assert_eq!(a.len(), 8);
        assert_eq!(a, epoch_of(1_764_000_000_000_000_001));
        assert_ne!(a, epoch_of(1_764_000_000_000_000_002));
    }

    /// The fuzzing seed is a valid entry, so the fuzzer starts from the real shape.
    #[test]
    fn fuzz_seed_is_a_valid_entry() {
        let seed = include_bytes!("../../fuzz/seeds/log_entry/state.pb");
        let state = decode_entry(seed).expect("seed decodes");
        assert_eq!((state.step, state.spins.clone()), (7, vec![1, -1, 1, 1]));
    }
}
