#!/usr/bin/env bash
# Reproduces the scale-out rows of docs/benchmarks.md: the same total subscribers on
# 1 node and on 3 nodes sharing a nats-server with JetStream (producer on the first
# node), RUNS times each (default 3), interleaved. Needs nats-server (Debian package).
#   scripts/bench-nodes.sh [results.jsonl]
# BASELINE_BIN=path/to/an/older/phasecast also runs 3 nodes of that binary in the same
# rounds (written to results-baseline.jsonl and reported after), for a same-run
# comparison with an earlier version of the bus.
. "$(dirname "$0")/bench-common.sh" nodes "$@"
baseline_out="${out%.jsonl}-baseline.jsonl"
[ -z "${BASELINE_BIN:-}" ] || : > "$baseline_out"
for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for n in 300 1000; do
        for nodes in 1 3; do
            "$bin" loadgen --quiet --out "$out" --subscribers "$n" --nodes "$nodes" | sed 's/^/  /'
        done
        if [ -n "${BASELINE_BIN:-}" ]; then
            "$bin" loadgen --quiet --out "$baseline_out" --subscribers "$n" --nodes 3 \
                --server-bin "$BASELINE_BIN" | sed 's/^/  baseline: /'
        fi
    done
done
"$bin" bench-report "$out"
if [ -n "${BASELINE_BIN:-}" ]; then
    echo
    echo "baseline ($BASELINE_BIN):"
    "$bin" bench-report "$baseline_out"
fi
