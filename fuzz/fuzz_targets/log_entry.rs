//! Log entries (producers' states) read from NATS JetStream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = phasecast::bus::decode_entry(data);
});
