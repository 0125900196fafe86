//! phasecast: takes a fast stream of PCC (phase-coupled computation) states from
//! producers and broadcasts it, live, to many WebSocket subscribers, as full or
//! delta frames in JSON or protobuf.
//!
//! # Layout
//! Data flows one way: ingest → stream → codec → fan-out → transport.
//! - [`model`]: the PCC [`State`](model::State) and its validation.
//! - [`delta`]: views within ε of the truth, diff and apply, the checksum.
//! - [`codec`]: JSON and protobuf frames ([`codec::pb`] is generated from `proto/`).
//! - [`stream`]: one stream's seqs, views, keyframes, history and shared encodings.
//! - [`fanout`]: the [`Hub`](fanout::Hub) of named streams.
//! - [`bus`]: NATS between nodes, when several serve the same streams.
//! - [`transport`]: HTTP routes, the subscriber and producer WebSocket sessions.
//! - [`metrics`]: every OpenTelemetry instrument, rendered for Prometheus.
//! - [`config`]: the `serve` flags and environment variables, validated.
//! - [`server`]: wiring and graceful shutdown; [`server::run`] is the entry point.
//! - [`workload`]: seeded simulations for the demo, examples and benchmarks.
//! - [`client`]: a Rust client (subscribe, apply frames, resume; publish).
//! - [`bench`](mod@bench): the bandwidth report, the load generator and the soak.

pub mod bench;
pub mod bus;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod config;
pub mod delta;
mod demo;
pub mod fanout;
pub mod metrics;
pub mod model;
pub mod server;
pub mod stream;
pub mod transport;
pub mod workload;
