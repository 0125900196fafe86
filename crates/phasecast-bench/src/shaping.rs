//! `phasecast-bench shaping`: what per-subscriber shaping saves, through the real
//! stream (every precision class's views, the keyframe schedule, the encoders):
//!
//! - bytes per frame of a subscriber in step, per precision class and format;
//! - bytes of a summary-only frame (`?fields=summary`);
//! - a dashboard's bytes a second: summaries of every state plus phases and spins at
//!   30 Hz in the 10⁻³ class, against taking every lossless full frame (the dashboard
//!   before summaries). Deterministic for a seed; the report gives medians of seeds.

use std::sync::Arc;

use clap::Args;
use phasecast::{
    codec::Encoding,
    config::StreamConfig,
    delta::Tolerance,
    fanout::{Channel, Form, Held},
    metrics::Metrics,
    projection::Projection,
    workload::Workload,
};

use crate::median;

/// `phasecast-bench shaping` options.
#[derive(Debug, Clone, Args)]
pub struct ShapingArgs {
    /// Workloads (`kuramoto-N`, `sparse`, `static`, `random`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kuramoto-32,kuramoto-1024"
    )]
    pub workloads: Vec<String>,
    /// Precision classes, radians.
    #[arg(long, value_delimiter = ',', default_value = "0,0.0001,0.001,0.01")]
    pub classes: Vec<f64>,
    /// States per run (200 per simulated second).
    #[arg(long, default_value_t = 2000)]
    pub states: usize,
    /// Seeds; the report shows the median over them.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Keyframe interval, as the server's PCC_KEYFRAME_INTERVAL.
    #[arg(long, default_value_t = 200)]
    pub keyframe_interval: u64,
    /// Histogram bins of the summaries, as PCC_SUMMARY_BINS.
    #[arg(long, default_value_t = 16)]
    pub bins: usize,
    /// Rate of the producer, for the dashboard's bytes a second.
    #[arg(long, default_value_t = 200.0)]
    pub producer_hz: f64,
    /// Rate of the dashboard's arrays.
    #[arg(long, default_value_t = 30.0)]
    pub arrays_hz: f64,
    /// Class of the dashboard's arrays.
    #[arg(long, default_value_t = 1e-3)]
    pub arrays_epsilon: f64,
}

/// One workload's results, medians over seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Bytes per frame of a subscriber in step, by class (as asked) then format.
    pub per_class: Vec<[f64; 2]>,
    /// Bytes of a summary-only frame, per format.
    pub summary_only: [f64; 2],
    /// A dashboard taking every lossless full frame: bytes a second, per format.
    pub dashboard_before: [f64; 2],
    /// Summaries of every state plus the arrays at `arrays_hz` in `arrays_epsilon`:
    /// bytes a second, per format.
    pub dashboard_shaped: [f64; 2],
}

/// A subscriber of one form and class, at a rate, through the stream.
struct Reader {
    class: usize,
    form: Form,
    held: Option<Held>,
    /// Takes state k (0-based) when `k * hz / producer_hz` reaches a new whole number.
    every: Option<f64>,
    bytes: usize,
    frames: usize,
}

fn run(args: &ShapingArgs, workload: &str, seed: u64) -> Result<Measured, String> {
    let tolerances: Vec<Tolerance> = args
        .classes
        .iter()
        .chain([&args.arrays_epsilon])
        .map(|e| Tolerance::new(*e))
        .collect::<Result<_, _>>()?;
    let config = StreamConfig {
        tolerance: Tolerance::LOSSLESS,
        keyframe_interval: args.keyframe_interval,
        history: 4,
        max_streams: 1,
        frame_cache_bytes: phasecast::config::defaults::FRAME_CACHE_BYTES,
        precision_classes: tolerances,
        summary_bins: args.bins,
    };
    let metrics = Arc::new(Metrics::new(false, Default::default()).map_err(|e| e.to_string())?);
    let stream = Channel::new(
        workload.to_owned(),
        &phasecast::stream::new_epoch(),
        &config,
        4,
        &phasecast::memory::Budget::new(usize::MAX),
    );
    let class_of = |e: f64| stream.classes().find(e).expect("offered");
    let summary = Projection::SUMMARY;
    let arrays: Projection = "phases,spins".parse().expect("fields");
    let mut readers = Vec::new();
    for encoding in Encoding::ALL {
        for e in &args.classes {
            readers.push(reader(class_of(*e), Form::whole(encoding), None));
        }
        readers.push(reader(0, form(encoding, summary), None));
        readers.push(reader(0, Form::whole(encoding), None));
        let hz = Some(args.arrays_hz / args.producer_hz);
        readers.push(reader(
            class_of(args.arrays_epsilon),
            form(encoding, arrays),
            hz,
        ));
    }
    // Each reader's class is started, and summaries are made, as when they join.
    let joined: Vec<_> = readers
        .iter()
        .map(|r| stream.join(r.class, None, r.form.projection.summary(), &metrics))
        .collect();
    drop(joined);
    for (k, state) in Workload::named(workload, seed)?
        .take(args.states)
        .enumerate()
    {
        stream.publish(state, &metrics);
        for r in &mut readers {
            if let Some(every) = r.every {
                if (k as f64 * every).floor() == ((k as f64 - 1.0) * every).floor() && k > 0 {
                    continue;
                }
            }
            let update = stream.latest_in(r.class).expect("just published");
            let frame = update.frame_for(r.form, r.held.as_ref(), &metrics);
            r.bytes += frame.len;
            r.frames += 1;
            r.held = Some(update.held());
        }
    }
    let per_frame = |r: &Reader| r.bytes as f64 / r.frames as f64;
    let seconds = args.states as f64 / args.producer_hz;
    let n = args.classes.len();
    let mut m = Measured {
        per_class: vec![[0.0; 2]; n],
        summary_only: [0.0; 2],
        before: [0.0; 2],
        shaped: [0.0; 2],
    };
    for (e, chunk) in readers.chunks(n + 3).enumerate() {
        for (class, r) in m.per_class.iter_mut().zip(chunk) {
            class[e] = per_frame(r);
        }
        m.summary_only[e] = per_frame(&chunk[n]);
        // Before summaries, the dashboard took every state whole, lossless and full.
        let whole = &chunk[n + 1];
        let full_each = stream
            .latest_in(0)
            .expect("published")
            .full(whole.form, &metrics)
            .len;
        m.before[e] = full_each as f64 * args.producer_hz;
        m.shaped[e] = (chunk[n].bytes + chunk[n + 2].bytes) as f64 / seconds;
    }
    Ok(m)
}

struct Measured {
    per_class: Vec<[f64; 2]>,
    summary_only: [f64; 2],
    before: [f64; 2],
    shaped: [f64; 2],
}

fn reader(class: usize, form: Form, every: Option<f64>) -> Reader {
    Reader {
        class,
        form,
        held: None,
        every,
        bytes: 0,
        frames: 0,
    }
}

fn form(encoding: Encoding, projection: Projection) -> Form {
    Form {
        encoding,
        projection,
    }
}

/// Measures every workload.
///
/// # Errors
/// An invalid class, workload, or no seeds.
pub fn measure(args: &ShapingArgs) -> Result<Vec<Row>, String> {
    if args.seeds.is_empty() || args.states == 0 {
        return Err("need at least one seed and one state".into());
    }
    let mut rows = Vec::new();
    for workload in &args.workloads {
        let runs = args
            .seeds
            .iter()
            .map(|s| run(args, workload, *s))
            .collect::<Result<Vec<_>, _>>()?;
        let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        let pair = |f: &dyn Fn(&Measured, usize) -> f64| [med(&|m| f(m, 0)), med(&|m| f(m, 1))];
        rows.push(Row {
            workload: workload.clone(),
            per_class: (0..args.classes.len())
                .map(|c| pair(&|m, e| m.per_class[c][e]))
                .collect(),
            summary_only: pair(&|m, e| m.summary_only[e]),
            dashboard_before: pair(&|m, e| m.before[e]),
            dashboard_shaped: pair(&|m, e| m.shaped[e]),
        });
    }
    Ok(rows)
}

/// The report as markdown tables.
pub fn markdown(rows: &[Row], args: &ShapingArgs) -> String {
    let mut out = format!(
        "Bytes per frame of a subscriber in step, by precision class (keyframes every {} included), median of seeds {:?}, {} states each.\n\n| workload | format | {} |\n|---|---|{}\n",
        args.keyframe_interval,
        args.seeds,
        args.states,
        args.classes.iter().map(|e| format!("ε = {e}")).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(args.classes.len()),
    );
    for r in rows {
        for (e, encoding) in Encoding::ALL.iter().enumerate() {
            let cells: Vec<String> = r
                .per_class
                .iter()
                .map(|c| format!("{:.0} ({:.1}%)", c[e], 100.0 * c[e] / r.per_class[0][e]))
                .collect();
            out.push_str(&format!(
                "| `{}` | {encoding} | {} |\n",
                r.workload,
                cells.join(" | ")
            ));
        }
    }
    out.push_str(&format!(
        "\nA summary-only frame ({} bins) and a dashboard's bytes a second: summaries of every state at {} Hz plus phases and spins at {} Hz in the {} class, against every lossless full frame.\n\n| workload | format | summary-only frame | dashboard before | dashboard with summaries | ratio |\n|---|---|---:|---:|---:|---:|\n",
        args.bins, args.producer_hz, args.arrays_hz, args.arrays_epsilon
    ));
    for r in rows {
        for (e, encoding) in Encoding::ALL.iter().enumerate() {
            out.push_str(&format!(
                "| `{}` | {encoding} | {:.0} B | {:.0} kB/s | {:.1} kB/s | {:.1}% |\n",
                r.workload,
                r.summary_only[e],
                r.dashboard_before[e] / 1e3,
                r.dashboard_shaped[e] / 1e3,
                100.0 * r.dashboard_shaped[e] / r.dashboard_before[e]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_classes_send_less_and_summaries_are_small() {
        let args = ShapingArgs {
            workloads: vec!["kuramoto-32".into()],
            classes: vec![0.0, 1e-3, 1e-2],
            states: 400,
            seeds: vec![1],
            keyframe_interval: 200,
            bins: 16,
            producer_hz: 200.0,
            arrays_hz: 30.0,
            arrays_epsilon: 1e-3,
        };
        let rows = measure(&args).unwrap();
        let r = &rows[0];
        for e in 0..2 {
            // A delta is never bigger than the full frame it replaces.
            for c in 1..3 {
                assert!(
                    r.per_class[c][e] <= r.per_class[0][e] * 1.001,
                    "{:?}",
                    r.per_class
                );
            }
            assert!(r.dashboard_shaped[e] < r.dashboard_before[e] / 2.0, "{r:?}");
        }
        // Protobuf sends the phases of a lossy class as quantised steps.
        assert!(
            r.per_class[1][1] < r.per_class[0][1] / 2.0,
            "{:?}",
            r.per_class
        );
        assert!(r.summary_only[1] <= 48.0, "{r:?}");
        assert!(markdown(&rows, &args).contains("| `kuramoto-32` | protobuf |"));
    }
}
