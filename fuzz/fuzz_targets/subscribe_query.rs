//! The /ws query string (format, delta, max_hz, resume, stream, key, epsilon, fields)
//! and subprotocols.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phasecast::{codec::Encoding, config::Config, stream::Classes, transport::parse_subscription};

fuzz_target!(|data: &[u8]| {
    let classes = Classes::of(&Config::default().stream);
    if let Ok(text) = std::str::from_utf8(data) {
        let (query, protocols) = text.split_once('\n').unwrap_or((text, ""));
        let protocols: Vec<String> = protocols.split(',').map(str::to_owned).collect();
        let _ = parse_subscription(query, Encoding::Json, &classes, &protocols);
    }
});
