//! Stream updates from other nodes over NATS.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = phasecast::bus::decode_update(data);
});
