//! phasecast's measuring tools, behind the `phasecast-bench` binary: `bandwidth` (bytes
//! per frame through the real stream and codec), `loadgen` (end-to-end load on real
//! sockets, with hostile clients), `soak` (a bounded run under churn), `replay` (a
//! node's start on a broker until it serves), `shaping` (what precision classes and
//! summaries save) and
//! `bench-report` (the tables and charts in `docs/`). They measure the server from
//! outside, as a user's clients would, so they live in a crate of their own.

pub mod attack;
pub mod bandwidth;
pub mod chart;
pub mod floor;
pub mod loadgen;
pub mod replay;
pub mod report;
pub mod retention;
pub mod shaping;
pub mod soak;

/// WebSocket settings of the tools' own clients: small buffers, since a tool holds
/// thousands of sockets.
pub(crate) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
}

/// The median of the finite values (NaN when there are none): every figure in
/// `docs/benchmarks.md` that comes from several runs or seeds is one.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|x| x.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(vec![f64::NAN, 5.0]), 5.0);
        assert!(super::median(vec![]).is_nan());
    }
}
