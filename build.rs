//! Build script of the `phasecast-wire` crate (`crates/phasecast-wire/Cargo.toml`
//! points here): generates the protobuf types in `codec::pb` from `proto/` with
//! prost-build, for the server and the Rust client alike.
//!
//! The .proto files are parsed by `protox` (pure Rust), so a fresh machine needs no
//! system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The wire crate lives at crates/phasecast-wire; the schema at the repository root.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../..");
    let include = root.join("proto");
    let proto = include.join("pcc/v1/pcc.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&include])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
