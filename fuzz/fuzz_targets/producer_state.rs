//! A producer's state from outside (POST /pcc_state, /ingest), JSON and protobuf:
//! decoding, validation and reading the step of a rejected state never panic, and an
//! accepted state survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phasecast::{
    codec::{decode_state, encode_state, peek_step, Encoding},
    model::Limits,
};

fuzz_target!(|data: &[u8]| {
    for encoding in Encoding::ALL {
        let _ = peek_step(encoding, data);
        if let Ok(state) = decode_state(encoding, data) {
            if state.validate(&Limits::default()).is_ok() {
                let again = decode_state(encoding, &encode_state(encoding, &state))
                    .expect("an accepted state re-encodes");
                assert_eq!(again, state);
            }
        }
    }
});
