use proptest::prelude::*;

use super::*;
use crate::delta::{advance, apply, diff, Tolerance};

fn sample(step: u64, phases: Vec<f64>, spins: Vec<i8>) -> State {
    State {
        step,
        phases,
        spins,
        energy: -1.25,
        timestamp: Some(1_764_000_000.5),
    }
}

/// Decodes `frame` and brings `held` to the state it carries.
fn receive(held: &mut Option<State>, encoding: Encoding, frame: &[u8]) -> u64 {
    match decode_frame(encoding, frame).unwrap() {
        Frame::Full { seq, state, .. } => {
            *held = Some(state);
            seq
        }
        Frame::Delta(d) => {
            apply(held.as_mut().expect("delta before full"), &d).unwrap();
            d.seq
        }
    }
}

#[test]
fn encoding_names() {
    assert_eq!("json".parse(), Ok(Encoding::Json));
    assert_eq!("protobuf".parse(), Ok(Encoding::Protobuf));
    assert_eq!("proto".parse(), Ok(Encoding::Protobuf));
    assert_eq!(" JSON ".parse(), Ok(Encoding::Json));
    let err = "xml".parse::<Encoding>().unwrap_err();
    assert!(err.to_string().contains("\"xml\""), "{err}");
    assert_eq!(
        Encoding::from_subprotocol("pcc.v1.protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(Encoding::from_subprotocol("chat"), None);
}

// Golden frames: an accidental change to the wire fails here. If a change is meant,
// it is a protocol change: update docs/protocol.md and the generated clients too.

fn golden_pair() -> (State, State, Delta) {
    let base = sample(10, vec![0.5, 1.0, 2.0, 3.0], vec![1, -1, 1, 1]);
    let mut target = base.clone();
    target.step = 11;
    target.phases[1] += 3.0 * 2f64.powi(-9);
    target.phases[3] = 3.1;
    target.spins[2] = -1;
    target.energy = -1.5;
    let delta = diff(&base, 41, &target, 42, Some(-9));
    (base, target, delta)
}

#[test]
fn golden_json_full() {
    let (base, _, _) = golden_pair();
    let bytes = encode_full(Encoding::Json, 41, "", &base);
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"seq":41,"step":10,"energy":-1.25,"timestamp":1764000000.5,"phases":[0.5,1.0,2.0,3.0],"spins":[1,-1,1,1]}"#
    );
    // With an epoch: one more key after the seq, nothing else changes.
    let bytes = encode_full(Encoding::Json, 41, "19b2c3d4e5f60718", &base);
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"seq":41,"epoch":"19b2c3d4e5f60718","step":10,"energy":-1.25,"timestamp":1764000000.5,"phases":[0.5,1.0,2.0,3.0],"spins":[1,-1,1,1]}"#
    );
}

#[test]
fn golden_json_delta() {
    let (_, target, delta) = golden_pair();
    let bytes = encode_delta(Encoding::Json, &delta, &target);
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"is_delta":true,"seq":42,"base_seq":41,"step":11,"energy":-1.5,"timestamp":1764000000.5,"checksum":"dde33ea0d66bf35b","phases_delta":{"1":1.005859375,"3":3.1},"spins_delta":{"2":-1}}"#
    );
}

#[test]
fn golden_protobuf_full() {
    let (base, _, _) = golden_pair();
    let bytes = encode_full(Encoding::Protobuf, 41, "", &base);
    assert_eq!(hex(&bytes), GOLDEN_PROTOBUF_FULL);
    // With an epoch: field 7 appended (tag 0x3a, length 16), the rest unchanged.
    let bytes = encode_full(Encoding::Protobuf, 41, "19b2c3d4e5f60718", &base);
    let epoch_field = format!("3a10{}", hex(b"19b2c3d4e5f60718"));
    assert_eq!(hex(&bytes), format!("{GOLDEN_PROTOBUF_FULL}{epoch_field}"));
}

#[test]
fn golden_protobuf_delta() {
    let (_, target, delta) = golden_pair();
    let bytes = encode_delta(Encoding::Protobuf, &delta, &target);
    assert_eq!(hex(&bytes), GOLDEN_PROTOBUF_DELTA);
}

const GOLDEN_PROTOBUF_FULL: &str = "0829100a19000000000000f4bf21000020402049da412a270a20000000000000e03f000000000000f03f0000000000000040000000000000084010041a010d";
const GOLDEN_PROTOBUF_DELTA: &str = "082a100b19000000000000f8bf21000020402049da413221115bf36bd6a03ee3dd18112201012a01063201033a08cdcccccccccc0840420102";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn protobuf_delta_uses_steps_dense_lists_and_the_smaller_flip_form() {
    let n = 64;
    let base = sample(1, vec![1.0; n], vec![1; n]);
    let mut target = base.clone();
    for p in &mut target.phases {
        *p += 2f64.powi(-9);
    }
    // Many flips: a bitset (8 bytes) beats 40 gaps.
    for s in &mut target.spins[..40] {
        *s = -1;
    }
    let delta = diff(&base, 1, &target, 2, Some(-9));
    let frame = protobuf::delta_frame(&delta, &target, Parts::default());
    let Some(pb::frame::Body::Delta(d)) = frame.body else {
        panic!("not a delta")
    };
    assert!(d.step_gaps.is_empty(), "dense steps carry no indices");
    assert_eq!(d.steps, vec![1; n]);
    assert!(d.values.is_empty() && d.flip_gaps.is_empty());
    assert_eq!(d.flip_bits.len(), 8);
    assert_eq!(d.skipped, 0);

    // One flip: a gap list (1 byte) beats the bitset.
    let mut target2 = base.clone();
    target2.spins[5] = -1;
    let delta = diff(&base, 1, &target2, 3, Some(-9));
    let frame = protobuf::delta_frame(&delta, &target2, Parts::default());
    let Some(pb::frame::Body::Delta(d)) = frame.body else {
        panic!("not a delta")
    };
    assert_eq!(d.flip_gaps, vec![5]);
    assert!(d.flip_bits.is_empty());
    assert_eq!(d.skipped, 1);
}

#[test]
fn json_state_errors_name_the_field() {
    let invalid = |body: &str| match decode_state(Encoding::Json, body.as_bytes()) {
        Err(DecodeError::Invalid(i)) => i.field,
        other => panic!("{body}: {other:?}"),
    };
    assert_eq!(
        invalid(r#"{"step":1,"phases":[0.1,"x"],"energy":0}"#),
        "phases[1]"
    );
    assert_eq!(
        invalid(r#"{"step":"one","phases":[0.1],"energy":0}"#),
        "step"
    );
    assert_eq!(invalid(r#"{"step":1,"phases":[0.1]}"#), "energy");
    assert_eq!(invalid(r#"{"phases":[0.1],"energy":0}"#), "step");
    assert_eq!(
        invalid(r#"{"step":1,"phases":[0.1],"spins":[0.5],"energy":0}"#),
        "spins[0]"
    );
    assert_eq!(invalid(r#"[1,2]"#), "body");
    for malformed in [&b"{\"step\":1,"[..], b"{} trailing", b"\xff", b"NaN"] {
        assert!(
            matches!(
                decode_state(Encoding::Json, malformed),
                Err(DecodeError::Malformed { .. })
            ),
            "{malformed:?}"
        );
    }
}

#[test]
fn old_server_body_is_accepted() {
    let body = br#"{"step": 3, "phases": [0.1, 0.2], "spins": [1, -1], "energy": -0.5, "timestamp": 1700000000.25, "extra": "ignored"}"#;
    let state = decode_state(Encoding::Json, body).unwrap();
    assert_eq!(state, {
        let mut s = sample(3, vec![0.1, 0.2], vec![1, -1]);
        s.energy = -0.5;
        s.timestamp = Some(1_700_000_000.25);
        s
    });
}

#[test]
fn protobuf_state_round_trip_and_bad_spin() {
    let s = sample(5, vec![0.25, -1.0], vec![-1, 1]);
    let bytes = encode_state(Encoding::Protobuf, &s);
    assert_eq!(decode_state(Encoding::Protobuf, &bytes).unwrap(), s);
    let bad = pb::PccState {
        spins: vec![1, 2],
        ..Default::default()
    };
    match decode_state(Encoding::Protobuf, &prost::Message::encode_to_vec(&bad)) {
        Err(DecodeError::Invalid(i)) => assert_eq!(i.field, "spins[1]"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_messages_round_trip() {
    for e in Encoding::ALL {
        let bytes = encode_client_message(e, ClientMessage::Resync);
        assert_eq!(decode_client_message(e, &bytes), Ok(ClientMessage::Resync));
    }
    assert!(decode_client_message(Encoding::Json, br#"{"op":"dance"}"#).is_err());
    assert!(decode_client_message(Encoding::Protobuf, b"").is_err());
}

#[test]
fn truncated_protobuf_frame_is_an_error() {
    let (_, target, delta) = golden_pair();
    let bytes = encode_delta(Encoding::Protobuf, &delta, &target);
    for cut in 1..bytes.len() {
        // Either an error or (for a cut on a field boundary) a frame whose checksum
        // will not match; never a panic.
        let _ = decode_frame(Encoding::Protobuf, &bytes[..cut]);
    }
    assert!(decode_frame(Encoding::Protobuf, &bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn ambiguous_or_loose_frames_are_refused() {
    let both = pb::Frame {
        seq: 2,
        body: Some(pb::frame::Body::Delta(pb::DeltaState {
            flip_gaps: vec![0],
            flip_bits: vec![1u8].into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&both);
    assert!(decode_frame(Encoding::Protobuf, &bytes).is_err());
    let short_checksum = br#"{"is_delta":true,"seq":2,"base_seq":1,"step":1,"energy":0,"checksum":"ab12","phases_delta":{},"spins_delta":{}}"#;
    assert!(decode_frame(Encoding::Json, short_checksum).is_err());
}

fn arb_state(n: usize) -> impl Strategy<Value = State> {
    (
        any::<u64>(),
        prop::collection::vec(-1e3..1e3f64, n),
        prop::collection::vec(prop::bool::ANY, n),
        -1e6..1e6f64,
        prop::option::of(0.0..2e9f64),
    )
        .prop_map(|(step, phases, spins, energy, timestamp)| State {
            step,
            phases,
            spins: spins.into_iter().map(|b| if b { 1 } else { -1 }).collect(),
            energy,
            timestamp,
        })
}

fn arb_sequence() -> impl Strategy<Value = (Vec<State>, f64)> {
    (1usize..48, 2usize..12, prop_oneof![Just(0.0), 1e-6..0.5f64])
        .prop_flat_map(|(n, len, eps)| (prop::collection::vec(arb_state(n), len), Just(eps)))
}

proptest! {
    #[test]
    fn full_frames_round_trip(state in (1usize..64).prop_flat_map(arb_state), seq in any::<u64>()) {
        for e in Encoding::ALL {
            let epoch = format!("{seq:x}");
            let frame = decode_frame(e, &encode_full(e, seq, &epoch, &state)).unwrap();
            prop_assert_eq!(&frame, &Frame::Full { seq, epoch, state: state.clone() });
            prop_assert_eq!(decode_state(e, &encode_state(e, &state)).unwrap(), state.clone());
        }
    }

    /// The frames a subscriber receives rebuild the views exactly, in both encodings,
    /// for one that takes every frame and for one that skips frames; and every phase is
    /// within ε of the producer's.
    #[test]
    fn frame_streams_rebuild_the_views((states, eps) in arb_sequence(), stride in 1usize..4) {
        let tol = Tolerance::new(eps).unwrap();
        let mut views = vec![states[0].clone()];
        for truth in &states[1..] {
            let next = advance(views.last().unwrap(), truth, &tol);
            views.push(next);
        }
        for e in Encoding::ALL {
            let mut held = None;
            receive(&mut held, e, &encode_full(e, 0, "", &views[0]));
            let mut held_seq = 0;
            for seq in (stride..views.len()).step_by(stride) {
                let d = diff(&views[held_seq], held_seq as u64, &views[seq], seq as u64, tol.quantum_exp());
                let got = receive(&mut held, e, &encode_delta(e, &d, &views[seq]));
                prop_assert_eq!(got, seq as u64);
                let h = held.as_ref().unwrap();
                prop_assert_eq!(h, &views[seq]);
                for (v, t) in h.phases.iter().zip(&states[seq].phases) {
                    prop_assert!((v - t).abs() <= eps);
                }
                held_seq = seq;
            }
        }
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for e in Encoding::ALL {
            let _ = decode_state(e, &bytes);
            let _ = decode_frame(e, &bytes);
            let _ = decode_client_message(e, &bytes);
        }
    }

    #[test]
    fn json_decoder_never_panics_on_near_valid_text(s in r#"\{"(step|phases|spins|energy|timestamp|seq|is_delta|phases_delta)":[-0-9.eE\[\],{}" truefalsn]{0,40}\}"#) {
        let _ = decode_state(Encoding::Json, s.as_bytes());
        let _ = decode_frame(Encoding::Json, s.as_bytes());
    }
}

#[test]
fn the_step_of_an_invalid_state_can_still_be_read() {
    let json = br#"{"step": 17, "phases": [0.1], "spins": [2], "energy": 0}"#;
    assert!(decode_state(Encoding::Json, json).is_err());
    assert_eq!(peek_step(Encoding::Json, json), Some(17));
    let bad = pb::PccState {
        step: 18,
        phases: vec![0.1],
        spins: vec![3],
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&bad);
    assert!(decode_state(Encoding::Protobuf, &bytes).is_err());
    assert_eq!(peek_step(Encoding::Protobuf, &bytes), Some(18));
    assert_eq!(peek_step(Encoding::Json, b"not json"), None);
}

// Projections, summaries and envelopes (`?fields=`, `max_hz` with summaries).

use crate::{
    delta::projected_checksum,
    projection::{Field, Projection},
    summary::{EnvelopeFold, Summary},
};

/// A 32-oscillator state at seq and step below 2^21, as the summary-size target reads.
fn kuramoto_like(step: u64) -> State {
    sample(
        step,
        (0..32)
            .map(|i| f64::from(i) * 0.37 + step as f64 * 0.01)
            .collect(),
        (0..32).map(|i| if i % 3 == 0 { -1 } else { 1 }).collect(),
    )
}

#[test]
fn default_parts_are_the_frames_of_before() {
    let (base, target, delta) = golden_pair();
    for encoding in Encoding::ALL {
        assert_eq!(
            encode_full_parts(encoding, 41, "19b2c3d4", &base, Parts::default()),
            encode_full(encoding, 41, "19b2c3d4", &base)
        );
        let projected = delta.clone().project(Projection::DEFAULT, &target);
        assert_eq!(projected, delta);
        assert_eq!(
            encode_delta_parts(encoding, &projected, &target, Parts::default()),
            encode_delta(encoding, &delta, &target)
        );
    }
}

#[test]
fn projected_frames_rebuild_the_projected_state() {
    let (base, target, delta) = golden_pair();
    let projections = [
        Projection::of(&[Field::Phases]),
        Projection::of(&[Field::Spins, Field::Energy]),
        Projection::of(&[Field::Phases, Field::Summary]),
        Projection::of(&[Field::Energy]),
        Projection::SUMMARY,
    ];
    for encoding in Encoding::ALL {
        for p in projections {
            let summary = Summary::of(&target, 16);
            let parts = Parts {
                projection: p,
                summary: p.summary().then_some(&summary),
            };
            let mut held = None;
            receive(
                &mut held,
                encoding,
                &encode_full_parts(encoding, 41, "e", &base, parts),
            );
            assert_eq!(held.as_ref(), Some(&p.apply(&base)), "{encoding} {p}");
            let frame = if p.has_body() {
                let d = delta.clone().project(p, &target);
                assert_eq!(d.checksum, projected_checksum(&target, p));
                encode_delta_parts(encoding, &d, &target, parts)
            } else {
                encode_full_parts(encoding, 42, "e", &target, parts)
            };
            let (decoded, extras) = decode_frame_parts(encoding, &frame).unwrap();
            assert_eq!(
                decoded.kind(),
                if p.has_body() {
                    FrameKind::Delta
                } else {
                    FrameKind::Full
                }
            );
            assert_eq!(receive(&mut held, encoding, &frame), 42);
            assert_eq!(held.as_ref(), Some(&p.apply(&target)), "{encoding} {p}");
            assert_eq!(extras.summary.as_ref(), parts.summary, "{encoding} {p}");
        }
    }
}

#[test]
fn frames_without_a_body_have_no_epoch_and_only_what_was_asked_for() {
    let state = kuramoto_like(1_000_000);
    let summary = Summary::of(&state, 16);
    let parts = Parts {
        projection: Projection::SUMMARY,
        summary: Some(&summary),
    };
    let json = encode_full_parts(Encoding::Json, 1_000_000, "19b2c3d4", &state, parts);
    let text = std::str::from_utf8(&json).unwrap();
    assert!(
        text.starts_with(r#"{"seq":1000000,"step":1000000,"summary":{"r":"#),
        "{text}"
    );
    assert!(
        !text.contains("epoch") && !text.contains("phases"),
        "{text}"
    );
    let energy = Parts {
        projection: Projection::of(&[Field::Energy]),
        summary: None,
    };
    assert_eq!(
        &encode_full_parts(Encoding::Json, 3, "19b2c3d4", &state, energy)[..],
        br#"{"seq":3,"step":1000000,"energy":-1.25}"#
    );
    let pb = encode_full_parts(Encoding::Protobuf, 1_000_000, "19b2c3d4", &state, parts);
    let frame = <pb::Frame as prost::Message>::decode(&pb[..]).unwrap();
    assert!(frame.body.is_none() && frame.epoch.is_empty() && frame.energy == 0.0);
}

#[test]
fn a_summary_only_frame_is_a_few_dozen_bytes() {
    // Seq and step below 2^21 (four months at 200 Hz), 32 oscillators, 16 bins.
    let state = kuramoto_like(2_000_000);
    let summary = Summary::of(&state, 16);
    let parts = Parts {
        projection: Projection::SUMMARY,
        summary: Some(&summary),
    };
    let pb = encode_full_parts(Encoding::Protobuf, 2_000_000, "e", &state, parts);
    assert!(pb.len() <= 48, "{} bytes", pb.len());
    let json = encode_full_parts(Encoding::Json, 2_000_000, "e", &state, parts);
    // 162 bytes (160 was the aim): the key names are kept readable.
    assert!(
        json.len() <= 165,
        "{} bytes: {}",
        json.len(),
        String::from_utf8_lossy(&json)
    );
}

#[test]
fn an_envelope_is_added_to_shared_bytes_and_read_back() {
    let mut fold = EnvelopeFold::default();
    let states: Vec<_> = (1..=5).map(kuramoto_like).collect();
    let mut spiked = states[2].clone();
    spiked.energy = 1e6;
    for s in [&states[0], &states[1], &spiked, &states[3], &states[4]] {
        fold.add(&Summary::of(s, 8));
    }
    let envelope = fold.take().unwrap();
    assert_eq!((envelope.states, envelope.energy.max), (5, 1e6));
    let last = &states[4];
    let summary = Summary::of(last, 8);
    let parts = Parts {
        projection: Projection::of(&[Field::Phases, Field::Summary]),
        summary: Some(&summary),
    };
    for encoding in Encoding::ALL {
        let shared = encode_full_parts(encoding, 5, "e", last, parts);
        let own = with_envelope(encoding, &shared, &envelope);
        let (frame, extras) = decode_frame_parts(encoding, &own).unwrap();
        assert_eq!(frame, decode_frame(encoding, &shared).unwrap());
        assert_eq!(extras.summary, Some(summary.clone()));
        assert_eq!(extras.envelope, Some(envelope), "{encoding}");
    }
}
