//! Wire encodings: every frame phasecast sends and every state it accepts, as JSON or
//! protobuf. The [`Encoding`] is chosen per connection; nothing outside this module
//! branches on it.
//!
//! - [`encode_full`] / [`encode_delta`]: frames for subscribers; [`encode_full_parts`]
//!   / [`encode_delta_parts`] for a projection and a summary, [`with_envelope`] adds
//!   an envelope.
//! - [`decode_frame`] / [`decode_frame_parts`]: the subscriber side (the Rust client,
//!   tests).
//! - [`decode_state`] / [`encode_state`]: producer states (`POST /pcc_state`, `/ingest`).
//! - [`decode_client_message`]: what a subscriber may send back.

mod json;
mod protobuf;

use std::{fmt, str::FromStr};

use bytes::Bytes;
use prost::Message as _;

use crate::{
    delta::Delta,
    model::{InvalidState, State},
    projection::Projection,
    summary::{Envelope, Summary},
};

/// Types generated from `proto/pcc/v1/pcc.proto` by prost (see `build.rs`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pcc.v1.rs"));
}

/// A wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// JSON text; frames go as WebSocket text messages.
    #[default]
    Json,
    /// Protobuf (`pcc.v1`); frames go as WebSocket binary messages.
    Protobuf,
}

impl Encoding {
    /// Both encodings, in a fixed order (used to index per-encoding caches).
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

    /// The canonical name: `json` or `protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Protobuf => "protobuf",
        }
    }

    /// Position in [`Encoding::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The HTTP content type of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
        }
    }

    /// The WebSocket subprotocol that selects this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "pcc.v1.json",
            Encoding::Protobuf => "pcc.v1.protobuf",
        }
    }

    /// The encoding a subprotocol selects, if it is one of ours.
    pub fn from_subprotocol(name: &str) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.subprotocol() == name)
    }

    /// Frames in this encoding are text (JSON) rather than binary.
    pub fn is_text(self) -> bool {
        self == Encoding::Json
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encoding name that is not `json`, `protobuf` or `proto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wire format {0:?}: use \"json\" or \"protobuf\" (or \"proto\")")]
pub struct UnknownEncoding(pub String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Encoding::Json),
            "protobuf" | "proto" => Ok(Encoding::Protobuf),
            _ => Err(UnknownEncoding(s.to_owned())),
        }
    }
}

/// Whether a frame is a whole state or a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A full frame.
    Full,
    /// A delta frame.
    Delta,
}

impl FrameKind {
    /// Both kinds, in a fixed order (used to index per-kind counters).
    pub const ALL: [FrameKind; 2] = [FrameKind::Full, FrameKind::Delta];

    /// `full` or `delta`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Full => "full",
            FrameKind::Delta => "delta",
        }
    }

    /// Position in [`FrameKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A frame as a subscriber receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The whole state with seq `seq`.
    Full {
        /// Seq of the state.
        seq: u64,
        /// The stream's epoch (empty from a server that sends none): with `seq`, what
        /// a subscriber resumes with.
        epoch: String,
        /// The state.
        state: State,
    },
    /// Changes from the state the subscriber holds.
    Delta(Delta),
}

impl Frame {
    /// Whether this is a full or a delta frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Full { .. } => FrameKind::Full,
            Frame::Delta(_) => FrameKind::Delta,
        }
    }

    /// Seq of the state this frame brings the subscriber to.
    pub fn seq(&self) -> u64 {
        match self {
            Frame::Full { seq, .. } => *seq,
            Frame::Delta(d) => d.seq,
        }
    }
}

/// A message a subscriber sends to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    /// Send me a full frame next.
    Resync,
}

/// Bytes that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON or protobuf at all (HTTP 400).
    #[error("malformed {encoding}: {reason}")]
    Malformed {
        /// The encoding expected.
        encoding: Encoding,
        /// What the parser said.
        reason: String,
    },
    /// Well-formed, but a field is missing, of the wrong type, or invalid (HTTP 422).
    #[error(transparent)]
    Invalid(#[from] InvalidState),
}

impl DecodeError {
    fn malformed(encoding: Encoding, reason: impl fmt::Display) -> Self {
        DecodeError::Malformed {
            encoding,
            reason: reason.to_string(),
        }
    }
}

/// What a frame carries besides its state: the parts of the state the subscriber
/// takes and, when it takes it, the state's summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts<'a> {
    /// The parts of the state written.
    pub projection: Projection,
    /// The summary, written when given.
    pub summary: Option<&'a Summary>,
}

/// What a frame carried besides its state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extras {
    /// The state's summary (`?fields=summary`).
    pub summary: Option<Summary>,
    /// The range of the summary over the states since the previous frame (`max_hz`
    /// with `fields=summary`).
    pub envelope: Option<Envelope>,
}

/// Encodes a full frame of `state` with seq `seq` on a stream whose epoch is `epoch`
/// (left out when empty).
pub fn encode_full(encoding: Encoding, seq: u64, epoch: &str, state: &State) -> Bytes {
    encode_full_parts(encoding, seq, epoch, state, Parts::default())
}

/// Encodes a full frame of the parts of `state` in `parts.projection`, with
/// `parts.summary`. Without phases and spins the frame has no body: it carries no
/// epoch and stands alone.
pub fn encode_full_parts(
    encoding: Encoding,
    seq: u64,
    epoch: &str,
    state: &State,
    parts: Parts<'_>,
) -> Bytes {
    match encoding {
        Encoding::Json => json::encode_full(seq, epoch, state, parts),
        Encoding::Protobuf => protobuf::encode_full(seq, epoch, state, parts),
    }
}

/// Encodes a delta frame. `target` is the state the delta produces (the JSON form
/// sends new values, the protobuf form may send quantised steps).
pub fn encode_delta(encoding: Encoding, delta: &Delta, target: &State) -> Bytes {
    encode_delta_parts(encoding, delta, target, Parts::default())
}

/// Encodes a delta frame for a subscriber with `parts.projection` (a delta already
/// [projected](Delta::project)), with `parts.summary`.
pub fn encode_delta_parts(
    encoding: Encoding,
    delta: &Delta,
    target: &State,
    parts: Parts<'_>,
) -> Bytes {
    match encoding {
        Encoding::Json => json::encode_delta(delta, target, parts),
        Encoding::Protobuf => protobuf::encode_delta(delta, target, parts),
    }
}

/// `frame` (encoded by this module) with `envelope` added: the frame's bytes are
/// shared by subscribers, the envelope is one subscriber's.
pub fn with_envelope(encoding: Encoding, frame: &[u8], envelope: &Envelope) -> Bytes {
    match encoding {
        Encoding::Json => json::with_envelope(frame, envelope),
        Encoding::Protobuf => protobuf::with_envelope(frame, envelope),
    }
}

/// Decodes a frame sent by the server.
///
/// # Errors
/// [`DecodeError::Malformed`] when the bytes are not a frame.
pub fn decode_frame(encoding: Encoding, bytes: &[u8]) -> Result<Frame, DecodeError> {
    decode_frame_parts(encoding, bytes).map(|(frame, _)| frame)
}

/// Decodes a frame sent by the server, with its summary and envelope. A frame without
/// a body (`?fields=` without phases and spins) is a [`Frame::Full`] of a state with
/// neither.
///
/// # Errors
/// [`DecodeError::Malformed`] when the bytes are not a frame.
pub fn decode_frame_parts(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<(Frame, Extras), DecodeError> {
    match encoding {
        Encoding::Json => json::decode_frame(bytes),
        Encoding::Protobuf => protobuf::decode_frame(bytes),
    }
}

/// Decodes a producer's state. The result is not yet checked against limits: call
/// [`State::validate`].
///
/// # Errors
/// [`DecodeError::Malformed`] for bytes that are not JSON / protobuf,
/// [`DecodeError::Invalid`] naming the field for a missing field or a wrong type.
pub fn decode_state(encoding: Encoding, bytes: &[u8]) -> Result<State, DecodeError> {
    match encoding {
        Encoding::Json => json::decode_state(bytes),
        Encoding::Protobuf => protobuf::decode_state(bytes),
    }
}

/// The `step` of a producer's state, read leniently from bytes that may not be a valid
/// state (a spin of 2, a phase that is not a number): what a rejection names.
pub fn peek_step(encoding: Encoding, bytes: &[u8]) -> Option<u64> {
    match encoding {
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()?
            .get("step")?
            .as_u64(),
        Encoding::Protobuf => pb::PccState::decode(bytes).ok().map(|s| s.step),
    }
}

/// Encodes a producer's state (the body of `POST /pcc_state` or an `/ingest` message).
pub fn encode_state(encoding: Encoding, state: &State) -> Bytes {
    match encoding {
        Encoding::Json => json::encode_state(state),
        Encoding::Protobuf => protobuf::encode_state(state),
    }
}

/// Decodes a message from a subscriber.
///
/// # Errors
/// [`DecodeError::Malformed`] for anything that is not a known message.
pub fn decode_client_message(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<ClientMessage, DecodeError> {
    match encoding {
        Encoding::Json => json::decode_client_message(bytes),
        Encoding::Protobuf => protobuf::decode_client_message(bytes),
    }
}

/// Encodes a message from a subscriber.
pub fn encode_client_message(encoding: Encoding, message: ClientMessage) -> Bytes {
    match encoding {
        Encoding::Json => json::encode_client_message(message),
        Encoding::Protobuf => protobuf::encode_client_message(message),
    }
}

/// Packs spins into bits, least significant first: bit set for +1.
fn pack_spins(spins: &[i8]) -> Vec<u8> {
    let mut bits = vec![0u8; spins.len().div_ceil(8)];
    for (i, s) in spins.iter().enumerate() {
        if *s > 0 {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

#[cfg(test)]
mod tests;
