//! phasecast's wire layer, shared by the server and the Rust client: what a PCC state
//! is, how the views subscribers hold follow it, and how states and frames look on the
//! wire. Nothing here does I/O or needs a runtime.
//!
//! # Layout
//! - [`model`]: the PCC [`State`](model::State) and its validation.
//! - [`delta`]: views within ε of the truth, diff and apply, the checksum.
//! - [`codec`]: JSON and protobuf frames and producer states ([`codec::pb`] is generated
//!   from `proto/` by the repository's `build.rs`).
//! - [`projection`]: the parts of a state a subscriber asked for (`?fields=`).
//! - [`summary`]: what dashboards draw, derived once per state, and its envelope.

pub mod codec;
pub mod delta;
pub mod model;
pub mod projection;
pub mod summary;
