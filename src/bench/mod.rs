//! Benchmark tools behind `phasecast bandwidth` and `phasecast loadgen`: they drive
//! the real stream, codec and server, and write the tables and charts in `docs/`.

pub mod bandwidth;
pub mod chart;
