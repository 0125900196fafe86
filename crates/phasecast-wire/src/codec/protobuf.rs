//! The protobuf form (`pcc.v1`), made as small as the information allows: spins as
//! bits, indices as gaps, dense lists without indices, small phase changes as
//! quantised steps, and the in-step base seq implied.

use bytes::Bytes;
use prost::Message;

use super::{pack_spins, pb, ClientMessage, DecodeError, Encoding, Extras, Frame, Parts};
use crate::{
    delta::{Delta, PhaseChange},
    model::{InvalidState, State},
    summary::{Envelope, Range, Summary},
};

fn malformed(reason: impl std::fmt::Display) -> DecodeError {
    DecodeError::malformed(Encoding::Protobuf, reason)
}

pub(super) fn full_frame(seq: u64, epoch: &str, state: &State, parts: Parts<'_>) -> pb::Frame {
    let p = parts.projection;
    let body = p.has_body().then(|| {
        let spins: &[i8] = if p.spins() { &state.spins } else { &[] };
        pb::frame::Body::Full(pb::FullState {
            phases: if p.phases() {
                state.phases.clone()
            } else {
                Vec::new()
            },
            spin_count: spins.len() as u32,
            spin_bits: pack_spins(spins).into(),
        })
    });
    pb::Frame {
        seq,
        step: state.step,
        energy: if p.energy() { state.energy } else { 0.0 },
        timestamp: state.timestamp.filter(|_| p.timestamp()),
        // A frame without a body stands alone: nothing to resume from.
        epoch: if body.is_some() {
            epoch.to_owned()
        } else {
            String::new()
        },
        body,
        summary: parts.summary.map(pb::Summary::from),
        envelope: None,
    }
}

impl From<&Summary> for pb::Summary {
    fn from(s: &Summary) -> pb::Summary {
        pb::Summary {
            r: s.r,
            psi: s.psi,
            magnetization: s.magnetization,
            energy: s.energy,
            histogram: s.histogram.clone(),
        }
    }
}

impl From<pb::Summary> for Summary {
    fn from(s: pb::Summary) -> Summary {
        Summary {
            r: s.r,
            psi: s.psi,
            magnetization: s.magnetization,
            energy: s.energy,
            histogram: s.histogram,
        }
    }
}

fn range_to_wire(r: Range) -> Option<pb::Range> {
    Some(pb::Range {
        min: r.min,
        max: r.max,
        mean: r.mean,
    })
}

fn range_from_wire(r: Option<pb::Range>) -> Range {
    r.map_or(Range::default(), |r| Range {
        min: r.min,
        max: r.max,
        mean: r.mean,
    })
}

pub(super) fn with_envelope(frame: &[u8], e: &Envelope) -> Bytes {
    // Protobuf merges concatenated messages: a frame with only field 9 set, appended,
    // adds the envelope to the shared frame without decoding it.
    let suffix = pb::Frame {
        envelope: Some(pb::Envelope {
            states: e.states,
            r: range_to_wire(e.r),
            psi: range_to_wire(e.psi),
            magnetization: range_to_wire(e.magnetization),
            energy: range_to_wire(e.energy),
        }),
        ..pb::Frame::default()
    };
    let mut bytes = Vec::with_capacity(frame.len() + suffix.encoded_len());
    bytes.extend_from_slice(frame);
    suffix
        .encode(&mut bytes)
        .expect("a Vec grows to fit the envelope");
    bytes.into()
}

/// Index gaps of an ascending index list: the first index, then distance - 1.
fn gaps(indices: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut next = 0u32;
    indices
        .map(|i| {
            let gap = i - next;
            next = i + 1;
            gap
        })
        .collect()
}

fn varint_len(v: u32) -> usize {
    prost::encoding::encoded_len_varint(v.into())
}

pub(super) fn delta_frame(delta: &Delta, target: &State, parts: Parts<'_>) -> pb::Frame {
    let n = target.phases.len();
    let (mut step_idx, mut steps, mut value_idx, mut values) = (vec![], vec![], vec![], vec![]);
    for &(index, change) in &delta.phases {
        match change {
            PhaseChange::Step(s) => {
                step_idx.push(index);
                steps.push(s);
            }
            PhaseChange::Set(v) => {
                value_idx.push(index);
                values.push(v);
            }
        }
    }
    // A list that covers every phase is dense: no indices needed.
    let index_gaps = |idx: Vec<u32>| {
        if idx.len() == n {
            vec![]
        } else {
            gaps(idx.into_iter())
        }
    };
    let flip_gaps = gaps(delta.flips.iter().copied());
    let flip_bits_len = target.spins.len().div_ceil(8);
    let gaps_len: usize = flip_gaps.iter().map(|g| varint_len(*g)).sum();
    let (flip_gaps, flip_bits) = if delta.flips.is_empty() || gaps_len <= flip_bits_len {
        (flip_gaps, Bytes::new())
    } else {
        let mut bits = vec![0u8; flip_bits_len];
        for &i in &delta.flips {
            bits[i as usize / 8] |= 1 << (i % 8);
        }
        (vec![], bits.into())
    };
    pb::Frame {
        seq: delta.seq,
        step: delta.step,
        energy: delta.energy,
        timestamp: delta.timestamp,
        epoch: String::new(),
        body: Some(pb::frame::Body::Delta(pb::DeltaState {
            skipped: delta.seq - 1 - delta.base_seq,
            checksum: delta.checksum,
            quantum_exp: if steps.is_empty() {
                0
            } else {
                delta.quantum_exp
            },
            step_gaps: index_gaps(step_idx),
            steps,
            value_gaps: index_gaps(value_idx),
            values,
            flip_gaps,
            flip_bits,
        })),
        summary: parts.summary.map(pb::Summary::from),
        envelope: None,
    }
}

pub(super) fn encode_full(seq: u64, epoch: &str, state: &State, parts: Parts<'_>) -> Bytes {
    full_frame(seq, epoch, state, parts).encode_to_vec().into()
}

pub(super) fn encode_delta(delta: &Delta, target: &State, parts: Parts<'_>) -> Bytes {
    delta_frame(delta, target, parts).encode_to_vec().into()
}

/// Turns an index-gap list into indices; an empty gap list means dense (`0..count`).
fn indices(gaps: &[u32], count: usize, what: &str) -> Result<Vec<u32>, DecodeError> {
    if gaps.is_empty() {
        return u32::try_from(count)
            .map(|c| (0..c).collect())
            .map_err(|_| malformed(format!("{what}: too many entries")));
    }
    if gaps.len() != count {
        return Err(malformed(format!(
            "{what}: {} index gaps for {count} entries",
            gaps.len()
        )));
    }
    let mut next = 0u32;
    gaps.iter()
        .map(|g| {
            let i = next
                .checked_add(*g)
                .ok_or_else(|| malformed(format!("{what}: index overflows")))?;
            next = i
                .checked_add(1)
                .ok_or_else(|| malformed(format!("{what}: index overflows")))?;
            Ok(i)
        })
        .collect()
}

fn unpack_spins(count: u32, bits: &[u8]) -> Result<Vec<i8>, DecodeError> {
    let count = count as usize;
    if bits.len() != count.div_ceil(8) {
        return Err(malformed(format!(
            "spin_bits: {} bytes for {count} spins",
            bits.len()
        )));
    }
    Ok((0..count)
        .map(|i| {
            if bits[i / 8] & (1 << (i % 8)) != 0 {
                1
            } else {
                -1
            }
        })
        .collect())
}

pub(super) fn decode_frame(bytes: &[u8]) -> Result<(Frame, Extras), DecodeError> {
    let mut frame = pb::Frame::decode(bytes).map_err(malformed)?;
    let extras = Extras {
        summary: frame.summary.take().map(Summary::from),
        envelope: frame.envelope.take().map(|e| Envelope {
            states: e.states,
            r: range_from_wire(e.r),
            psi: range_from_wire(e.psi),
            magnetization: range_from_wire(e.magnetization),
            energy: range_from_wire(e.energy),
        }),
    };
    Ok((body_frame(frame)?, extras))
}

fn body_frame(frame: pb::Frame) -> Result<Frame, DecodeError> {
    match frame.body {
        // Without a body (no phases and no spins asked for): the state's scalars.
        None => Ok(Frame::Full {
            seq: frame.seq,
            epoch: frame.epoch,
            state: State {
                step: frame.step,
                phases: Vec::new(),
                spins: Vec::new(),
                energy: frame.energy,
                timestamp: frame.timestamp,
            },
        }),
        Some(pb::frame::Body::Full(full)) => Ok(Frame::Full {
            seq: frame.seq,
            epoch: frame.epoch,
            state: State {
                step: frame.step,
                spins: unpack_spins(full.spin_count, &full.spin_bits)?,
                phases: full.phases,
                energy: frame.energy,
                timestamp: frame.timestamp,
            },
        }),
        Some(pb::frame::Body::Delta(d)) => {
            let base_seq = frame
                .seq
                .checked_sub(1)
                .and_then(|s| s.checked_sub(d.skipped))
                .ok_or_else(|| malformed("delta skips past seq 0"))?;
            if !(-1074..=1023).contains(&d.quantum_exp) {
                return Err(malformed("quantum_exp out of range"));
            }
            let steps = indices(&d.step_gaps, d.steps.len(), "steps")?
                .into_iter()
                .zip(d.steps.iter().map(|s| PhaseChange::Step(*s)));
            let values = indices(&d.value_gaps, d.values.len(), "values")?
                .into_iter()
                .zip(d.values.iter().map(|v| PhaseChange::Set(*v)));
            let mut phases: Vec<_> = steps.chain(values).collect();
            phases.sort_by_key(|(i, _)| *i);
            if !d.flip_bits.is_empty() && !d.flip_gaps.is_empty() {
                return Err(malformed("flip_gaps and flip_bits are both set"));
            }
            let flips = if d.flip_bits.is_empty() {
                let n = d.flip_gaps.len();
                if n == 0 {
                    vec![]
                } else {
                    indices(&d.flip_gaps, n, "flip_gaps")?
                }
            } else {
                (0..d.flip_bits.len() * 8)
                    .filter(|i| d.flip_bits[i / 8] & (1 << (i % 8)) != 0)
                    .map(|i| i as u32)
                    .collect()
            };
            Ok(Frame::Delta(Delta {
                seq: frame.seq,
                base_seq,
                step: frame.step,
                energy: frame.energy,
                timestamp: frame.timestamp,
                checksum: d.checksum,
                quantum_exp: d.quantum_exp,
                phases,
                flips,
            }))
        }
    }
}

pub(super) fn decode_state(bytes: &[u8]) -> Result<State, DecodeError> {
    let wire = pb::PccState::decode(bytes).map_err(malformed)?;
    Ok(State::try_from(wire)?)
}

pub(super) fn encode_state(state: &State) -> Bytes {
    pb::PccState::from(state).encode_to_vec().into()
}

impl From<&State> for pb::PccState {
    fn from(state: &State) -> pb::PccState {
        pb::PccState {
            step: state.step,
            phases: state.phases.clone(),
            spins: state.spins.iter().map(|s| i32::from(*s)).collect(),
            energy: state.energy,
            timestamp: state.timestamp,
        }
    }
}

/// A protobuf state as the model's, refusing spins other than ±1 (the other rules
/// are [`State::validate`]'s).
impl TryFrom<pb::PccState> for State {
    type Error = InvalidState;

    fn try_from(wire: pb::PccState) -> Result<State, InvalidState> {
        let spins = wire
            .spins
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                1 => Ok(1),
                -1 => Ok(-1),
                other => Err(InvalidState::new(
                    format!("spins[{i}]"),
                    format!("must be +1 or -1, got {other}"),
                )),
            })
            .collect::<Result<Vec<i8>, _>>()?;
        Ok(State {
            step: wire.step,
            phases: wire.phases,
            spins,
            energy: wire.energy,
            timestamp: wire.timestamp,
        })
    }
}

pub(super) fn decode_client_message(bytes: &[u8]) -> Result<ClientMessage, DecodeError> {
    let message = pb::ClientMessage::decode(bytes).map_err(malformed)?;
    match message.op {
        Some(pb::client_message::Op::Resync(_)) => Ok(ClientMessage::Resync),
        None => Err(malformed("client message has no op")),
    }
}

pub(super) fn encode_client_message(message: ClientMessage) -> Bytes {
    let op = match message {
        ClientMessage::Resync => pb::client_message::Op::Resync(pb::Resync {}),
    };
    pb::ClientMessage { op: Some(op) }.encode_to_vec().into()
}
