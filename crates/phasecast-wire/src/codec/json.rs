//! The JSON form, compatible with the old server's browser code: a full frame is the
//! state's own fields plus `seq`; a delta has `is_delta: true` and the changed values
//! keyed by index. Frames are written by hand (shortest round-trip floats), so every
//! value parses back to the same bits.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{ClientMessage, DecodeError, Encoding, Frame};
use crate::{
    delta::{Delta, PhaseChange},
    model::{InvalidState, State},
};

/// Appends JSON text to a buffer.
struct Writer(String);

impl Writer {
    fn with_capacity(n: usize) -> Self {
        Writer(String::with_capacity(n))
    }

    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    fn uint(&mut self, v: u64) -> &mut Self {
        self.0.push_str(itoa::Buffer::new().format(v));
        self
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.0.push_str(itoa::Buffer::new().format(v));
        self
    }

    /// A string, escaped as JSON requires.
    fn string(&mut self, s: &str) -> &mut Self {
        self.0
            .push_str(&serde_json::to_string(s).expect("a string always serialises"));
        self
    }

    /// A finite float, shortest form that parses back to the same bits.
    fn float(&mut self, v: f64) -> &mut Self {
        debug_assert!(v.is_finite());
        self.0.push_str(ryu::Buffer::new().format_finite(v));
        self
    }

    fn list<T: Copy>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, T)) -> &mut Self {
        self.0.push('[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            item(self, *v);
        }
        self.0.push(']');
        self
    }

    /// The common tail of every state-bearing object: step, energy, timestamp.
    fn state_scalars(&mut self, step: u64, energy: f64, timestamp: Option<f64>) -> &mut Self {
        self.raw(",\"step\":").uint(step);
        self.raw(",\"energy\":").float(energy);
        if let Some(t) = timestamp {
            self.raw(",\"timestamp\":").float(t);
        }
        self
    }

    fn state_arrays(&mut self, state: &State) -> &mut Self {
        self.raw(",\"phases\":")
            .list(&state.phases, |w, p| {
                w.float(p);
            })
            .raw(",\"spins\":")
            .list(&state.spins, |w, s| {
                w.int(s.into());
            })
    }

    fn finish(mut self) -> Bytes {
        self.0.push('}');
        Bytes::from(self.0)
    }
}

fn size_hint(state: &State) -> usize {
    96 + state.phases.len() * 22 + state.spins.len() * 3
}

pub(super) fn encode_full(seq: u64, epoch: &str, state: &State) -> Bytes {
    let mut w = Writer::with_capacity(size_hint(state) + epoch.len());
    w.raw("{\"seq\":").uint(seq);
    if !epoch.is_empty() {
        w.raw(",\"epoch\":").string(epoch);
    }
    w.state_scalars(state.step, state.energy, state.timestamp);
    w.state_arrays(state);
    w.finish()
}

pub(super) fn encode_state(state: &State) -> Bytes {
    let mut w = Writer::with_capacity(size_hint(state));
    w.raw("{\"step\":").uint(state.step);
    w.raw(",\"energy\":").float(state.energy);
    if let Some(t) = state.timestamp {
        w.raw(",\"timestamp\":").float(t);
    }
    w.state_arrays(state);
    w.finish()
}

pub(super) fn encode_delta(delta: &Delta, target: &State) -> Bytes {
    let mut w = Writer::with_capacity(128 + delta.phases.len() * 28 + delta.flips.len() * 10);
    w.raw("{\"is_delta\":true,\"seq\":")
        .uint(delta.seq)
        .raw(",\"base_seq\":")
        .uint(delta.base_seq);
    w.state_scalars(delta.step, delta.energy, delta.timestamp);
    w.raw(",\"checksum\":\"")
        .raw(&format!("{:016x}", delta.checksum))
        .raw("\",\"phases_delta\":{");
    for (k, (index, _)) in delta.phases.iter().enumerate() {
        if k > 0 {
            w.raw(",");
        }
        // New values, not steps: the old browser code assigns them as they are.
        w.raw("\"")
            .uint((*index).into())
            .raw("\":")
            .float(target.phases[*index as usize]);
    }
    w.raw("},\"spins_delta\":{");
    for (k, index) in delta.flips.iter().enumerate() {
        if k > 0 {
            w.raw(",");
        }
        w.raw("\"")
            .uint((*index).into())
            .raw("\":")
            .int(target.spins[*index as usize].into());
    }
    w.raw("}");
    w.finish()
}

/// A producer's state as JSON. Every field is optional here so that a missing one is
/// reported by name rather than as a parse error; unknown fields are ignored (the old
/// server ignored them too).
#[derive(Deserialize)]
struct WireState {
    step: Option<u64>,
    phases: Option<Vec<f64>>,
    spins: Option<Vec<f64>>,
    energy: Option<f64>,
    timestamp: Option<f64>,
}

pub(super) fn decode_state(bytes: &[u8]) -> Result<State, DecodeError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Valid JSON of another kind (an array, a number) is the wrong shape of body.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => InvalidState::new("body", "must be a JSON object").into(),
                Err(e) => DecodeError::malformed(Encoding::Json, e),
            },
        );
    }
    let wire: WireState = parse(bytes)?;
    let required = |name: &str| InvalidState::new(name, "is required");
    let spins = wire
        .spins
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s == 1.0 {
                Ok(1)
            } else if s == -1.0 {
                Ok(-1)
            } else {
                Err(InvalidState::new(
                    format!("spins[{i}]"),
                    format!("must be +1 or -1, got {s}"),
                ))
            }
        })
        .collect::<Result<Vec<i8>, _>>()?;
    Ok(State {
        step: wire.step.ok_or_else(|| required("step"))?,
        phases: wire.phases.ok_or_else(|| required("phases"))?,
        spins,
        energy: wire.energy.ok_or_else(|| required("energy"))?,
        timestamp: wire.timestamp,
    })
}

/// Parses JSON into `T`, telling syntax errors (malformed) from data errors (a field
/// of the wrong type, named by its path).
fn parse<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                DecodeError::Invalid(InvalidState::new(field, inner.to_string()))
            }
            _ => DecodeError::malformed(Encoding::Json, inner),
        }
    })?;
    de.end()
        .map_err(|e| DecodeError::malformed(Encoding::Json, e))?;
    Ok(value)
}

#[derive(Deserialize)]
struct WireFrame {
    seq: u64,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    is_delta: bool,
    base_seq: Option<u64>,
    step: u64,
    energy: f64,
    timestamp: Option<f64>,
    phases: Option<Vec<f64>>,
    spins: Option<Vec<i8>>,
    checksum: Option<String>,
    phases_delta: Option<HashMap<String, f64>>,
    spins_delta: Option<HashMap<String, i8>>,
}

pub(super) fn decode_frame(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let malformed = |reason: &str| DecodeError::malformed(Encoding::Json, reason);
    let wire: WireFrame = parse(bytes).map_err(|e| match e {
        DecodeError::Invalid(i) => malformed(&i.to_string()),
        other => other,
    })?;
    if !wire.is_delta {
        let state = State {
            step: wire.step,
            phases: wire
                .phases
                .ok_or_else(|| malformed("full frame without phases"))?,
            spins: wire.spins.unwrap_or_default(),
            energy: wire.energy,
            timestamp: wire.timestamp,
        };
        return Ok(Frame::Full {
            seq: wire.seq,
            epoch: wire.epoch,
            state,
        });
    }
    let index = |key: &str| {
        key.parse::<u32>()
            .map_err(|_| malformed(&format!("delta index {key:?} is not a number")))
    };
    let mut phases = wire
        .phases_delta
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| Ok((index(&k)?, PhaseChange::Set(v))))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    phases.sort_by_key(|(i, _)| *i);
    let mut flips = wire
        .spins_delta
        .unwrap_or_default()
        .into_keys()
        .map(|k| index(&k))
        .collect::<Result<Vec<_>, _>>()?;
    flips.sort_unstable();
    let checksum = wire
        .checksum
        .as_deref()
        .filter(|c| c.len() == 16)
        .and_then(|c| u64::from_str_radix(c, 16).ok())
        .ok_or_else(|| malformed("delta without a checksum of 16 hex digits"))?;
    Ok(Frame::Delta(Delta {
        seq: wire.seq,
        base_seq: wire
            .base_seq
            .ok_or_else(|| malformed("delta without base_seq"))?,
        step: wire.step,
        energy: wire.energy,
        timestamp: wire.timestamp,
        checksum,
        quantum_exp: 0,
        phases,
        flips,
    }))
}

#[derive(Deserialize)]
struct WireClientMessage {
    op: String,
}

pub(super) fn decode_client_message(bytes: &[u8]) -> Result<ClientMessage, DecodeError> {
    let wire: WireClientMessage = parse(bytes)?;
    match wire.op.as_str() {
        "resync" => Ok(ClientMessage::Resync),
        other => Err(DecodeError::malformed(
            Encoding::Json,
            format!("unknown op {other:?}: expected \"resync\""),
        )),
    }
}

pub(super) fn encode_client_message(message: ClientMessage) -> Bytes {
    match message {
        ClientMessage::Resync => Bytes::from_static(b"{\"op\":\"resync\"}"),
    }
}
