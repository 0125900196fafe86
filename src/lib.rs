//! phasecast: takes a fast stream of PCC (phase-coupled computation) states from
//! producers and broadcasts it, live, to many WebSocket subscribers, as full or
//! delta frames in JSON or protobuf.
//!
//! # Layout
//! Data flows one way: ingest → stream → fan-out → transport. Each module depends
//! only on those before it in this list; `config` and `metrics` are leaves every
//! other module is handed.
//! - [`model`], [`delta`], [`codec`], [`projection`], [`summary`]: the wire layer, from
//!   the `phasecast-wire` crate (shared with the Rust client): the PCC
//!   [`State`](model::State), views within ε and deltas, JSON and protobuf frames
//!   ([`codec::pb`] is generated from `proto/`), the parts of a state a subscriber
//!   takes, and the summaries computed once per state.
//! - [`config`]: the `serve` flags and environment variables, validated, with their
//!   defaults written once.
//! - [`memory`]: the memory budget every retained view and cached frame is charged
//!   to, per stream.
//! - [`metrics`]: every OpenTelemetry instrument, rendered for Prometheus.
//! - [`stream`]: one stream's order: seqs, the views subscribers hold, keyframes, the
//!   precision classes.
//! - [`fanout`]: per stream, the history and broadcast ring ([`fanout::Channel`]), the
//!   once-encoded frames every subscriber shares ([`fanout::Update`]), and the
//!   slow-consumer policy of each subscriber ([`fanout::Feed`]), with no socket in it.
//! - [`bus`]: the streams' logs in NATS JetStream when nodes share a broker: append,
//!   follow, replay.
//! - [`hub`]: every stream by name, the stream limit; appends to the logs and follows
//!   them when given the bus.
//! - [`transport`]: HTTP and WebSocket by role: producers, subscribers, the peer layer
//!   both share, health and metrics, the accept loop.
//! - [`server`]: wiring and graceful shutdown; [`server::run`] is the entry point.
//! - [`sched`], [`allocator`]: what the binary asks of the system at start: a short
//!   scheduler slice for the threads that accept states, and large blocks mapped
//!   straight from the system, so resident memory follows the budget.
//! - [`workload`]: seeded simulations for the demo, examples and benchmarks.
//!
//! The Rust client is the `phasecast-client` crate; the benchmark and load tools are
//! the `phasecast-bench` crate.

pub use phasecast_wire::{codec, delta, model, projection, summary};

pub mod allocator;
pub mod bus;
pub mod config;
mod demo;
pub mod fanout;
pub mod hub;
pub mod memory;
pub mod metrics;
pub mod sched;
pub mod server;
pub mod stream;
pub mod transport;
pub mod workload;
