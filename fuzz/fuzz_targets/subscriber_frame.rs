//! Frames as a client receives them (the Rust client decodes server bytes): decoding
//! and applying to a held state never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phasecast::{
    codec::{decode_frame, Encoding, Frame},
    delta::apply,
    model::State,
};

fuzz_target!(|data: &[u8]| {
    for encoding in Encoding::ALL {
        if let Ok(Frame::Delta(d)) = decode_frame(encoding, data) {
            let mut held = State {
                step: 1,
                phases: vec![0.5; 40],
                spins: vec![1; 40],
                energy: 0.0,
                timestamp: None,
            };
            let _ = apply(&mut held, &d);
        }
    }
});
