//! The JSON form, compatible with the old server's browser code: a full frame is the
//! state's own fields plus `seq`; a delta has `is_delta: true` and the changed values
//! keyed by index. Frames are written by hand (shortest round-trip floats), so every
//! value parses back to the same bits.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{ClientMessage, DecodeError, Encoding, Extras, Frame, Parts};
use crate::{
    delta::{Delta, PhaseChange},
    model::{InvalidState, State},
    projection::Projection,
    summary::{Envelope, Range, Summary},
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

    /// A finite `f32`, shortest form that parses back to the same `f32`.
    fn float32(&mut self, v: f32) -> &mut Self {
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

    /// Step, and energy and timestamp when `projection` takes them.
    fn projected_scalars(
        &mut self,
        step: u64,
        energy: f64,
        timestamp: Option<f64>,
        projection: Projection,
    ) -> &mut Self {
        self.raw(",\"step\":").uint(step);
        if projection.energy() {
            self.raw(",\"energy\":").float(energy);
        }
        if let Some(t) = timestamp.filter(|_| projection.timestamp()) {
            self.raw(",\"timestamp\":").float(t);
        }
        self
    }

    fn state_arrays(&mut self, state: &State) -> &mut Self {
        self.projected_arrays(state, Projection::DEFAULT)
    }

    fn projected_arrays(&mut self, state: &State, projection: Projection) -> &mut Self {
        if projection.phases() {
            self.raw(",\"phases\":").list(&state.phases, |w, p| {
                w.float(p);
            });
        }
        if projection.spins() {
            self.raw(",\"spins\":").list(&state.spins, |w, s| {
                w.int(s.into());
            });
        }
        self
    }

    fn summary(&mut self, summary: Option<&Summary>) -> &mut Self {
        let Some(s) = summary else { return self };
        self.raw(",\"summary\":{\"r\":")
            .float32(s.r)
            .raw(",\"psi\":")
            .float32(s.psi)
            .raw(",\"magnetization\":")
            .float32(s.magnetization)
            .raw(",\"energy\":")
            .float32(s.energy)
            .raw(",\"histogram\":")
            .list(&s.histogram, |w, n| {
                w.uint(n.into());
            })
            .raw("}")
    }

    fn range(&mut self, name: &str, r: Range) -> &mut Self {
        self.raw(",\"")
            .raw(name)
            .raw("\":{\"min\":")
            .float32(r.min)
            .raw(",\"max\":")
            .float32(r.max)
            .raw(",\"mean\":")
            .float32(r.mean)
            .raw("}")
    }

    /// The frame, its buffer no larger than it: a frame is kept (and charged) by its
    /// length, and the capacity guessed up front can be a sixth more.
    fn finish(mut self) -> Bytes {
        self.0.push('}');
        self.0.shrink_to_fit();
        Bytes::from(self.0)
    }
}

fn size_hint(state: &State) -> usize {
    96 + state.phases.len() * 22 + state.spins.len() * 3
}

pub(super) fn encode_full(seq: u64, epoch: &str, state: &State, parts: Parts<'_>) -> Bytes {
    let p = parts.projection;
    let mut w = Writer::with_capacity(size_hint(state) + epoch.len());
    w.raw("{\"seq\":").uint(seq);
    // A frame without a body stands alone: nothing to resume from.
    if !epoch.is_empty() && p.has_body() {
        w.raw(",\"epoch\":").string(epoch);
    }
    w.projected_scalars(state.step, state.energy, state.timestamp, p);
    w.projected_arrays(state, p);
    w.summary(parts.summary);
    w.finish()
}

pub(super) fn with_envelope(frame: &[u8], e: &Envelope) -> Bytes {
    let body = frame.strip_suffix(b"}").unwrap_or(frame);
    let mut w = Writer::with_capacity(body.len() + 192);
    w.raw(std::str::from_utf8(body).expect("the JSON encoder writes UTF-8"));
    w.raw(",\"envelope\":{\"states\":")
        .uint(e.states.into())
        .range("r", e.r)
        .range("psi", e.psi)
        .range("magnetization", e.magnetization)
        .range("energy", e.energy)
        .raw("}");
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

pub(super) fn encode_delta(delta: &Delta, target: &State, parts: Parts<'_>) -> Bytes {
    let p = parts.projection;
    let mut w = Writer::with_capacity(128 + delta.phases.len() * 28 + delta.flips.len() * 10);
    w.raw("{\"is_delta\":true,\"seq\":")
        .uint(delta.seq)
        .raw(",\"base_seq\":")
        .uint(delta.base_seq);
    w.projected_scalars(delta.step, delta.energy, delta.timestamp, p);
    w.raw(",\"checksum\":\"")
        .raw(&format!("{:016x}", delta.checksum))
        .raw("\"");
    if p.phases() {
        w.raw(",\"phases_delta\":{");
        phases_delta(&mut w, delta, target);
        w.raw("}");
    }
    if p.spins() {
        w.raw(",\"spins_delta\":{");
        spins_delta(&mut w, delta, target);
        w.raw("}");
    }
    w.summary(parts.summary);
    w.finish()
}

fn phases_delta(w: &mut Writer, delta: &Delta, target: &State) {
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
}

fn spins_delta(w: &mut Writer, delta: &Delta, target: &State) {
    for (k, index) in delta.flips.iter().enumerate() {
        if k > 0 {
            w.raw(",");
        }
        w.raw("\"")
            .uint((*index).into())
            .raw("\":")
            .int(target.spins[*index as usize].into());
    }
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
    #[serde(default)]
    energy: f64,
    timestamp: Option<f64>,
    phases: Option<Vec<f64>>,
    spins: Option<Vec<i8>>,
    checksum: Option<String>,
    phases_delta: Option<HashMap<String, f64>>,
    spins_delta: Option<HashMap<String, i8>>,
    summary: Option<WireSummary>,
    envelope: Option<WireEnvelope>,
}

#[derive(Deserialize)]
struct WireSummary {
    r: f32,
    psi: f32,
    magnetization: f32,
    energy: f32,
    histogram: Vec<u32>,
}

#[derive(Deserialize)]
struct WireEnvelope {
    states: u32,
    r: WireRange,
    psi: WireRange,
    magnetization: WireRange,
    energy: WireRange,
}

#[derive(Deserialize)]
struct WireRange {
    min: f32,
    max: f32,
    mean: f32,
}

impl From<WireRange> for Range {
    fn from(r: WireRange) -> Range {
        Range {
            min: r.min,
            max: r.max,
            mean: r.mean,
        }
    }
}

pub(super) fn decode_frame(bytes: &[u8]) -> Result<(Frame, Extras), DecodeError> {
    let malformed = |reason: &str| DecodeError::malformed(Encoding::Json, reason);
    let mut wire: WireFrame = parse(bytes).map_err(|e| match e {
        DecodeError::Invalid(i) => malformed(&i.to_string()),
        other => other,
    })?;
    let extras = Extras {
        summary: wire.summary.take().map(|s| Summary {
            r: s.r,
            psi: s.psi,
            magnetization: s.magnetization,
            energy: s.energy,
            histogram: s.histogram,
        }),
        envelope: wire.envelope.take().map(|e| Envelope {
            states: e.states,
            r: e.r.into(),
            psi: e.psi.into(),
            magnetization: e.magnetization.into(),
            energy: e.energy.into(),
        }),
    };
    Ok((body_frame(wire)?, extras))
}

fn body_frame(wire: WireFrame) -> Result<Frame, DecodeError> {
    let malformed = |reason: &str| DecodeError::malformed(Encoding::Json, reason);
    if !wire.is_delta {
        // A part not asked for (`?fields=`) is absent: the subscriber holds none.
        let state = State {
            step: wire.step,
            phases: wire.phases.unwrap_or_default(),
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
