//! Benchmark tools behind `phasecast bandwidth`, `phasecast loadgen` (with its hostile
//! clients),
//! `phasecast bench-report` and `phasecast soak`: they drive the real stream, codec and server, and write
//! the tables and charts in `docs/`.

#[cfg(feature = "client")]
pub mod attack;
pub mod bandwidth;
pub mod chart;
#[cfg(feature = "client")]
pub mod loadgen;
#[cfg(feature = "client")]
pub mod report;
#[cfg(feature = "client")]
pub mod soak;

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
