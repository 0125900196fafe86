//! phasecast: takes a fast stream of PCC (phase-coupled computation) states from
//! producers and broadcasts it, live, to many WebSocket subscribers, as full or
//! delta frames in JSON or protobuf.
//!
//! # Layout
//! Data flows one way: ingest → stream → codec → fan-out → transport.
//! - [`model`]: the PCC [`State`](model::State) and its validation.
//! - [`delta`]: views within ε of the truth, diff and apply, the checksum.
//! - [`codec`]: JSON and protobuf frames ([`codec::pb`] is generated from `proto/`).
pub mod codec;
pub mod delta;
pub mod model;
