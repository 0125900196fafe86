#!/usr/bin/env bash
# Where the POST waits (docs/benchmarks.md): the old API with one POST in flight at
# 1,000 subscribers, RUNS rounds (default 3), interleaved, as is and with the server's
# ingest threads (tokio-rt-worker: they accept connections and states) and the load
# generator's producer thread (loadgen-produce) moved to the real-time class
# (SCHED_FIFO 1) once they have started:
#   scripts/bench-post-realtime.sh [OUT.jsonl]
# Needs root (chrt). About 2 minutes on 2 cores.
. "$(dirname "$0")/bench-common.sh" post-realtime "$@"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Moves every thread of process $1 named $2 to SCHED_FIFO 1.
realtime() {
    local task
    for task in /proc/"$1"/task/*; do
        if [ "$(cat "$task/comm")" = "$2" ]; then chrt -f -p 1 "${task##*/}"; fi
    done
}

for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for scheduling in as-is realtime; do
        "$bin" loadgen --quiet --out "$out" --system old-api --subscribers 1000 --duration 10s > "$log" &
        loadgen=$!
        if [ "$scheduling" = realtime ]; then
            # The producer thread starts once every subscriber is connected.
            until grep -qs loadgen-produce /proc/"$loadgen"/task/*/comm; do sleep 0.05; done
            realtime "$(pgrep -n -f 'release/phasecast serve')" tokio-rt-worker
            realtime "$loadgen" loadgen-produce
        fi
        wait "$loadgen"
        echo "  $scheduling: $(cat "$log")"
    done
done
"$bin" bench-report "$out"
