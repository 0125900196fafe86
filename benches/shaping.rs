//! What per-subscriber shaping costs the server per state, at 32, 1,024 and 16,384
//! oscillators: publishing into a stream whose subscribers use one precision class
//! (the baseline, measured in the same run), two classes, and one class with summary
//! subscribers (a summary made per state); and the summary alone.
//!
//! ```sh
//! cargo bench --bench shaping
//! ```

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use phasecast::{
    config::StreamConfig, delta::Tolerance, fanout::Channel, metrics::Metrics, model::State,
    summary::Summary, workload::Workload,
};

const SIZES: [usize; 3] = [32, 1024, 16_384];

/// States to cycle through: a stream's cost, not the simulation's.
fn states(n: usize) -> Vec<State> {
    let mut w = Workload::kuramoto(n, 42);
    (0..64).map(|_| w.next_state()).collect()
}

/// A stream at the default lossless class offering 10⁻³ too, with `classes` of them
/// started and `summaries` subscribers taking summaries.
fn stream(classes: usize, summaries: bool, metrics: &Metrics) -> Channel {
    let config = StreamConfig {
        tolerance: Tolerance::LOSSLESS,
        keyframe_interval: 200,
        history: 1024,
        max_streams: 1,
        frame_cache_bytes: phasecast::config::defaults::FRAME_CACHE_BYTES,
        precision_classes: vec![Tolerance::new(1e-3).expect("valid ε")],
        summary_bins: 16,
    };
    let channel = Channel::new(
        "bench".into(),
        "e",
        &config,
        64,
        &phasecast::memory::Budget::new(usize::MAX),
    );
    channel.join(0, None, summaries, metrics);
    if classes > 1 {
        let lossy = channel.classes().find(1e-3).expect("offered");
        channel.join(lossy, None, false, metrics);
    }
    channel
}

fn publish(c: &mut Criterion) {
    let metrics = Metrics::new(false, Default::default()).expect("no-op metrics");
    for n in SIZES {
        let states = states(n);
        let mut group = c.benchmark_group(format!("publish/{n}"));
        for (name, classes, summaries) in [
            ("one class", 1, false),
            ("two classes", 2, false),
            ("one class + summaries", 1, true),
        ] {
            let channel = stream(classes, summaries, &metrics);
            let mut next = states.iter().cycle();
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let state = next.next().expect("cycles").clone();
                    black_box(channel.publish(state, &metrics))
                })
            });
        }
        group.finish();
        c.bench_function(&format!("summary/{n}"), |b| {
            b.iter(|| black_box(Summary::of(&states[0], 16)))
        });
    }
}

criterion_group!(benches, publish);
criterion_main!(benches);
