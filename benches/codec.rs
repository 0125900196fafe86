//! Codec and delta benchmarks: encode and decode time per frame for JSON full, JSON
//! delta, protobuf full and protobuf delta at 32, 1,024 and 16,384 oscillators
//! (throughput in bytes of the encoded frame), and the delta engine's
//! advance + diff per state.
//!
//! ```sh
//! cargo bench --bench codec
//! ```

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phasecast::{
    codec::{self, Encoding},
    delta::{self, Tolerance},
    model::State,
    workload::Workload,
};

const SIZES: [usize; 3] = [32, 1024, 16_384];

/// Two consecutive Kuramoto states and the views at ε = 1e-3.
fn pair(n: usize) -> (State, State, delta::Delta, Tolerance) {
    let tolerance = Tolerance::new(1e-3).expect("valid ε");
    let mut w = Workload::kuramoto(n, 42);
    let a = w.next_state();
    let b = w.next_state();
    let view = delta::advance(&a, &b, &tolerance);
    let d = delta::diff(&a, 1, &view, 2, tolerance.quantum_exp());
    (a, view, d, tolerance)
}

fn encode(c: &mut Criterion) {
    for n in SIZES {
        let (base, target, d, _) = pair(n);
        let mut group = c.benchmark_group(format!("encode/{n}"));
        for e in Encoding::ALL {
            let full = codec::encode_full(e, 1, "", &base);
            group.throughput(Throughput::Bytes(full.len() as u64));
            group.bench_function(BenchmarkId::new("full", e), |b| {
                b.iter(|| codec::encode_full(e, black_box(1), "", black_box(&base)))
            });
            let delta = codec::encode_delta(e, &d, &target);
            group.throughput(Throughput::Bytes(delta.len() as u64));
            group.bench_function(BenchmarkId::new("delta", e), |b| {
                b.iter(|| codec::encode_delta(e, black_box(&d), black_box(&target)))
            });
        }
        group.finish();
    }
}

fn decode(c: &mut Criterion) {
    for n in SIZES {
        let (base, target, d, _) = pair(n);
        let mut group = c.benchmark_group(format!("decode/{n}"));
        for e in Encoding::ALL {
            let full = codec::encode_full(e, 1, "", &base);
            group.throughput(Throughput::Bytes(full.len() as u64));
            group.bench_function(BenchmarkId::new("full", e), |b| {
                b.iter(|| codec::decode_frame(e, black_box(&full)).expect("decodes"))
            });
            let delta = codec::encode_delta(e, &d, &target);
            group.throughput(Throughput::Bytes(delta.len() as u64));
            group.bench_function(BenchmarkId::new("delta+apply", e), |b| {
                b.iter(|| {
                    let codec::Frame::Delta(d) =
                        codec::decode_frame(e, black_box(&delta)).expect("decodes")
                    else {
                        unreachable!("a delta frame")
                    };
                    let mut held = base.clone();
                    delta::apply(&mut held, &d).expect("applies");
                    held
                })
            });
        }
        group.finish();
    }
}

fn delta_engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta");
    for n in SIZES {
        let (a, _, _, tolerance) = pair(n);
        let mut w = Workload::kuramoto(n, 42);
        w.next_state();
        let b = w.next_state();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("advance+diff eps=1e-3", n), |bench| {
            bench.iter(|| {
                let view = delta::advance(black_box(&a), black_box(&b), &tolerance);
                delta::diff(&a, 1, &view, 2, tolerance.quantum_exp())
            })
        });
        group.bench_function(BenchmarkId::new("diff lossless", n), |bench| {
            bench.iter(|| delta::diff(black_box(&a), 1, black_box(&b), 2, None))
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode, delta_engine);
criterion_main!(benches);
