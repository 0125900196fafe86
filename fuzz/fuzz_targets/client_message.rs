//! What a subscriber sends back on /ws (text: JSON, binary: protobuf).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phasecast::codec::{decode_client_message, Encoding};

fuzz_target!(|data: &[u8]| {
    for encoding in Encoding::ALL {
        let _ = decode_client_message(encoding, data);
    }
});
