//! Generates the protobuf types in `codec::pb` from `proto/` with prost-build.
//!
//! The .proto files are parsed by `protox` (pure Rust), so a fresh machine needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/pcc/v1/pcc.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
