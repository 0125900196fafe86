#!/usr/bin/env bash
# Measures two server builds with the same load generator, interleaved, so that a
# change's cost is a ratio within one run rather than against figures of another day:
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]
# Each configuration (100 and 1,000 subscribers, JSON and protobuf, deltas on) runs RUNS
# times (default 3) per build, alternating A, B, A, B, …; bench-report then prints the
# medians of each. Needs target/release/phasecast-bench (cargo build --release --workspace).
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]}
after=${2:?usage: scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [OUT_DIR]}
out=${3:-target/bench/ab}
runs=${RUNS:-3}
bench=${BENCH_BIN:-target/release/phasecast-bench}
mkdir -p "$out"
: > "$out/before.jsonl"
: > "$out/after.jsonl"
run() { "$bench" loadgen --quiet "$@" | sed 's/^/  /'; }
for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for n in 100 1000; do
        for format in json protobuf; do
            echo "-- $n subscribers, $format: before, after"
            run --server-bin "$before" --out "$out/before.jsonl" --subscribers "$n" --format "$format"
            run --server-bin "$after" --out "$out/after.jsonl" --subscribers "$n" --format "$format"
        done
    done
done
echo "== before ($before)"
"$bench" bench-report "$out/before.jsonl"
echo "== after ($after)"
"$bench" bench-report "$out/after.jsonl"
