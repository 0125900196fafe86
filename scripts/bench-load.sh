#!/usr/bin/env bash
# Reproduces the load tables and charts in docs/benchmarks.md:
#   scripts/bench-load.sh [results.jsonl]
# Every configuration runs RUNS times (default 3) on a fresh server; bench-report
# takes the medians. About 15 minutes on 2 cores. Needs nats-server (Debian package).
. "$(dirname "$0")/bench-common.sh" load "$@"
run() { "$bin" loadgen --quiet --out "$out" "$@" | sed 's/^/  /'; }

for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for n in 10 100 1000 5000; do
        run --subscribers "$n" --format json
        run --subscribers "$n" --format protobuf
        run --subscribers "$n" --format json --delta false
        run --subscribers "$n" --format protobuf --delta false
        run --subscribers "$n" --system nats
    done
    # The cost of metrics: the same load with metrics off.
    run --subscribers 1000 --format json --server-metrics false
    for n in 1000 2500 5000 10000; do
        run --idle "$n"
        run --idle "$n" --system nats
    done
done
"$bin" bench-report "$out" --svg-dir docs
