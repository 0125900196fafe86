//! Fan-out: one state to 1,000 subscribers in step. `shared` is phasecast's path
//! (sequence, then each subscriber's session takes the update from its receiver and
//! picks the frame, encoded once per format); `encode_each` is the baseline that
//! encodes the frame again for every subscriber, measured in the same run.
//!
//! ```sh
//! cargo bench --bench fanout
//! ```

#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phasecast::{
    codec::{self, Encoding},
    config::StreamConfig,
    delta::Tolerance,
    fanout::{Channel, Form, Update},
    metrics::Metrics,
    workload::Workload,
};

const SUBSCRIBERS: usize = 1000;

fn fanout(c: &mut Criterion) {
    let metrics = Metrics::new(false, Default::default()).expect("no-op metrics");
    let mut group = c.benchmark_group("fanout/1000 subscribers");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    for encoding in Encoding::ALL {
        let config = StreamConfig {
            tolerance: Tolerance::new(1e-3).expect("valid ε"),
            keyframe_interval: u64::MAX,
            history: 16,
            max_streams: 1,
            frame_cache_bytes: phasecast::config::defaults::FRAME_CACHE_BYTES,
            precision_classes: vec![],
            summary_bins: 16,
        };
        let stream = Channel::new(
            "bench".into(),
            &phasecast::stream::new_epoch(),
            &config,
            16,
            &phasecast::memory::Budget::new(usize::MAX),
        );
        let mut workload = Workload::kuramoto(32, 7);
        stream.publish(workload.next_state(), &metrics);
        let class = stream.classes().default_class();
        let mut subscribers: Vec<_> = (0..SUBSCRIBERS)
            .map(|_| {
                let joined = stream.join(class, None, false, &metrics);
                joined.latest.expect("published").held()
            })
            .collect();
        // What each subscriber's feed does when woken: take the update after its cursor.
        let next = |held: &phasecast::fanout::Held| -> Arc<Update> {
            let since = stream.since(class, held.seq, 1, false);
            since.updates.into_iter().next().expect("an update")
        };
        group.bench_function(BenchmarkId::new("shared", encoding), |b| {
            b.iter(|| {
                stream.publish(workload.next_state(), &metrics);
                for held in subscribers.iter_mut() {
                    let update = next(held);
                    black_box(update.frame_for(Form::whole(encoding), Some(held), &metrics));
                    *held = update.held();
                }
            })
        });
        group.bench_function(BenchmarkId::new("encode_each", encoding), |b| {
            b.iter(|| {
                stream.publish(workload.next_state(), &metrics);
                for held in subscribers.iter_mut() {
                    let update = next(held);
                    let d = phasecast::delta::diff(
                        &held.view,
                        held.seq,
                        &update.view,
                        update.seq,
                        Some(-9),
                    );
                    black_box(codec::encode_delta(encoding, &d, &update.view));
                    *held = update.held();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
