#!/usr/bin/env bash
# The fan-out floor, same run: phasecast beside nats-server at 100 and 1,000
# subscribers (kuramoto-32, JSON and protobuf), the old API with one POST in flight at
# 1,000, and large states (kuramoto-1024 and kuramoto-16384 at 100 subscribers: JSON
# full, protobuf full, protobuf deltas at ε = 10⁻³; nats-server carrying the JSON full
# state). Every configuration runs RUNS times (default 3), interleaved, each on a fresh
# server; bench-report then prints the medians. JSON also runs with one fan-out
# thread (--fanout-threads=1) beside the default (one per core), and the floor server
# (--system floor: one write per frame per subscriber, nothing else) runs at 100
# subscribers beside them (at 1,000 its one thread saturates), also with one ping
# to each subscriber when it joins (--ping-on-join: readers that have answered once
# acknowledge frames as they arrive, as with any keep-alive; docs/benchmarks.md):
#   scripts/bench-floor.sh [OUT.jsonl]
# About 15 minutes on 2 cores. Needs nats-server (Debian package).
. "$(dirname "$0")/bench-common.sh" floor "$@"
run() { "$bin" loadgen --quiet --out "$out" "$@" | sed 's/^/  /'; }

for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for n in 100 1000; do
        run --subscribers "$n" --format json
        run --subscribers "$n" --format protobuf
        run --subscribers "$n" --format json --serve-arg=--fanout-threads=1
        run --subscribers "$n" --system nats
    done
    run --subscribers 100 --system floor
    run --subscribers 100 --system floor --serve-arg=--ping-on-join
    run --subscribers 1000 --system old-api
    for w in kuramoto-1024 kuramoto-16384; do
        run --subscribers 100 --workload "$w" --format json --delta false
        run --subscribers 100 --workload "$w" --format protobuf --delta false
        run --subscribers 100 --workload "$w" --format protobuf --shape epsilon=0.001
        run --subscribers 100 --workload "$w" --system nats
        run --subscribers 100 --workload "$w" --system floor
    done
done
"$bin" bench-report "$out"
