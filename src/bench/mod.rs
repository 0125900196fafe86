//! Benchmark tools behind `phasecast bandwidth`, `phasecast loadgen` and
//! `phasecast bench-report`: they drive the real stream, codec and server, and write
//! the tables and charts in `docs/`.

pub mod bandwidth;
pub mod chart;
#[cfg(feature = "client")]
pub mod loadgen;
#[cfg(feature = "client")]
pub mod report;
