#!/usr/bin/env bash
# Reproduces the scale-out rows of docs/benchmarks.md: the same total subscribers on
# 1 node and on 3 nodes sharing a nats-server (producer on the first node), RUNS times
# each (default 3). Needs nats-server (Debian package).
#   scripts/bench-nodes.sh [results.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --workspace --bins
bin=target/release/phasecast-bench
out=${1:-target/bench/nodes.jsonl}
runs=${RUNS:-3}
mkdir -p "$(dirname "$out")"
: > "$out"
for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for n in 300 1000; do
        for nodes in 1 3; do
            "$bin" loadgen --quiet --out "$out" --subscribers "$n" --nodes "$nodes" | sed 's/^/  /'
        done
    done
done
"$bin" bench-report "$out"
