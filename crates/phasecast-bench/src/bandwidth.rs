//! `phasecast bandwidth`: bytes per frame as a subscriber receives them, for every
//! frame kind and format, on the named seeded workloads, through the real stream
//! (views, keyframe schedule, encoders). Deterministic for a seed; the report gives
//! the median over several seeds.

use clap::Args;

use phasecast::{
    codec::Encoding,
    config::StreamConfig,
    delta::Tolerance,
    fanout::{Channel, Form, Held},
    metrics::Metrics,
    workload::{Workload, NAMES},
};

use crate::{
    chart::{self, Scale},
    median,
};

/// `phasecast bandwidth` options.
#[derive(Debug, Clone, Args)]
pub struct BandwidthArgs {
    /// States per workload (200 per simulated second).
    #[arg(long, default_value_t = 2000)]
    pub states: usize,
    /// Seeds; the report shows the median over them.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Tolerance ε for the lossy rows.
    #[arg(long, default_value_t = 1e-3)]
    pub epsilon: f64,
    /// Keyframe interval, as the server's PCC_KEYFRAME_INTERVAL.
    #[arg(long, default_value_t = 200)]
    pub keyframe_interval: u64,
    /// Write an SVG chart here.
    #[arg(long)]
    pub svg: Option<std::path::PathBuf>,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    pub json: bool,
}

/// The columns of the report, in order.
pub const KINDS: [&str; 6] = [
    "JSON full",
    "JSON delta (lossless)",
    "JSON delta (ε)",
    "protobuf full",
    "protobuf delta (lossless)",
    "protobuf delta (ε)",
];

/// One workload's row: median bytes per frame for each of [`KINDS`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Oscillators per state.
    pub oscillators: usize,
    /// Bytes per frame, by kind.
    pub bytes: [f64; 6],
}

/// Average bytes per frame a subscriber receives over `states` states.
fn bytes_per_frame(
    workload: &str,
    seed: u64,
    states: usize,
    epsilon: f64,
    keyframe_interval: u64,
    encoding: Encoding,
    deltas: bool,
) -> Result<(f64, usize), String> {
    let config = StreamConfig {
        tolerance: Tolerance::new(epsilon)?,
        keyframe_interval,
        history: 4,
        max_streams: 1,
        frame_cache_bytes: phasecast::config::defaults::FRAME_CACHE_BYTES,
        precision_classes: vec![],
        summary_bins: 16,
    };
    let metrics = Metrics::new(false, Default::default()).map_err(|e| e.to_string())?;
    let stream = Channel::new(
        workload.to_owned(),
        // What a single server's full frames carry.
        &phasecast::stream::new_epoch(),
        &config,
        4,
        &phasecast::memory::Budget::new(usize::MAX),
    );
    let mut held: Option<Held> = None;
    let mut total = 0usize;
    let mut oscillators = 0;
    for state in Workload::named(workload, seed)?.take(states) {
        oscillators = state.len();
        stream.publish(state, &metrics);
        let update = stream.latest().expect("just published");
        let frame = if deltas {
            update.frame_for(Form::whole(encoding), held.as_ref(), &metrics)
        } else {
            update.full(Form::whole(encoding), &metrics)
        };
        total += frame.len;
        held = Some(update.held());
    }
    Ok((total as f64 / states as f64, oscillators))
}

/// Measures every workload.
///
/// # Errors
/// An invalid ε or no seeds.
pub fn measure(args: &BandwidthArgs) -> Result<Vec<Row>, String> {
    if args.seeds.is_empty() || args.states == 0 {
        return Err("need at least one seed and one state".into());
    }
    let mut rows = Vec::new();
    for workload in NAMES {
        let mut bytes = [0.0; 6];
        let mut oscillators = 0;
        let kinds = [
            (Encoding::Json, false, 0.0),
            (Encoding::Json, true, 0.0),
            (Encoding::Json, true, args.epsilon),
            (Encoding::Protobuf, false, 0.0),
            (Encoding::Protobuf, true, 0.0),
            (Encoding::Protobuf, true, args.epsilon),
        ];
        for (k, (encoding, deltas, eps)) in kinds.into_iter().enumerate() {
            let mut per_seed = Vec::new();
            for seed in &args.seeds {
                let (b, n) = bytes_per_frame(
                    workload,
                    *seed,
                    args.states,
                    eps,
                    args.keyframe_interval,
                    encoding,
                    deltas,
                )?;
                per_seed.push(b);
                oscillators = n;
            }
            bytes[k] = median(per_seed);
        }
        rows.push(Row {
            workload: workload.to_owned(),
            oscillators,
            bytes,
        });
    }
    Ok(rows)
}

/// The report as a markdown table, with each kind's share of JSON full.
pub fn markdown(rows: &[Row], args: &BandwidthArgs) -> String {
    let mut out = format!(
        "Bytes per frame as a subscriber receives them (keyframes every {} included), median of seeds {:?}, {} states each; ε = {}.\n\n| workload | oscillators | {} |\n|---|---:|{}\n",
        args.keyframe_interval,
        args.seeds,
        args.states,
        args.epsilon,
        KINDS.join(" | "),
        "---:|".repeat(KINDS.len()),
    );
    for r in rows {
        let cells: Vec<String> = r
            .bytes
            .iter()
            .map(|b| format!("{:.0} ({:.1}%)", b, 100.0 * b / r.bytes[0]))
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.workload,
            r.oscillators,
            cells.join(" | ")
        ));
    }
    out
}

/// The report as an SVG bar chart (log scale).
pub fn svg(rows: &[Row]) -> String {
    let series: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    let groups: Vec<(String, Vec<f64>)> = rows
        .iter()
        .map(|r| (r.workload.clone(), r.bytes.to_vec()))
        .collect();
    chart::bars(
        "Bytes per frame by kind (log scale)",
        "bytes per frame",
        Scale::Log,
        &series,
        &groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_orders_the_kinds_sensibly() {
        let args = BandwidthArgs {
            states: 300,
            seeds: vec![1],
            epsilon: 1e-3,
            keyframe_interval: 200,
            svg: None,
            json: false,
        };
        let rows = measure(&args).unwrap();
        let row = |name: &str| rows.iter().find(|r| r.workload == name).unwrap().bytes;
        let static_ = row("static");
        assert!(
            static_[1] < static_[0] / 10.0,
            "static: deltas are tiny {static_:?}"
        );
        let k = row("kuramoto-32");
        assert!(
            k[5] < k[4] && k[4] <= k[3] * 1.01,
            "quantised deltas beat lossless {k:?}"
        );
        let random = row("random");
        // Nothing to save: deltas turn into full frames, never bigger.
        assert!(
            random[1] <= random[0] * 1.001 && random[4] <= random[3] * 1.001,
            "{random:?}"
        );
        assert_eq!(markdown(&rows, &args).lines().count(), 4 + NAMES.len());
    }
}
