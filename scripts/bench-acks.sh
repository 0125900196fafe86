#!/usr/bin/env bash
# Where the readers' ACKs go (docs/benchmarks.md, "Where the freshness probes' cost
# goes" and "Any ping does it"): 100 JSON subscribers at 200 Hz, RUNS rounds (default
# 3), interleaved, of phasecast (bound on; --freshness=0; --freshness=0 with a 1 s
# keep-alive), the floor server (plain and --ping-on-join) and nats-server (its default
# keep-alive and 1 s). During 5 s of each run perf counts the packets the kernel
# queued in the server's context and on the whole machine, and the server's recvfrom
# calls and context switches:
#   scripts/bench-acks.sh [OUT.jsonl]      # counts go to OUT.counts.txt beside it
# Needs perf with tracepoints (root) and nats-server. About 6 minutes on 2 cores.
. "$(dirname "$0")/bench-common.sh" acks "$@"
counts=${out%.jsonl}.counts.txt
: > "$counts"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# nats-server with a keep-alive ping every second: the load generator writes its
# config and passes it with -c.
printf '#!/bin/sh\necho "ping_interval: \\"1s\\"" >> "$2"\nexec nats-server "$@"\n' > "$tmp/nats-ping1s"
chmod +x "$tmp/nats-ping1s"

measure() {
    local name=$1 pattern=$2
    shift 2
    "$bin" loadgen --quiet --out "$out" --subscribers 100 --format json --duration 12s "$@" > "$tmp/run.log" &
    local loadgen=$!
    sleep 5
    local pid
    pid=$(pgrep -n -f "$pattern")
    perf stat -x, -o "$tmp/all.txt" -e net:net_dev_queue -a -- sleep 5 &
    perf stat -x, -o "$tmp/server.txt" -e net:net_dev_queue,syscalls:sys_enter_recvfrom,context-switches -p "$pid" -- sleep 5
    wait %2 2>/dev/null || true
    wait "$loadgen"
    local all server
    all=$(grep net_dev_queue "$tmp/all.txt" | cut -d, -f1)
    server=$(grep -v '^#' "$tmp/server.txt" | grep . | cut -d, -f1 | paste -sd' ')
    echo "$name machine-packets-5s: $all server packets,recvfrom,context-switches-5s: $server $(tail -1 "$tmp/run.log")" | tee -a "$counts"
}

for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    measure "phasecast" "release/phasecast serve"
    measure "phasecast --freshness=0" "release/phasecast serve" --serve-arg=--freshness=0
    measure "phasecast --freshness=0 --ping-interval=1s" "release/phasecast serve" \
        --serve-arg=--freshness=0 --serve-arg=--ping-interval=1s
    measure "floor" "phasecast-bench floor-server" --system floor
    measure "floor --ping-on-join" "phasecast-bench floor-server" --system floor --serve-arg=--ping-on-join
    measure "nats-server" "^nats-server" --system nats
    measure "nats-server ping_interval 1s" "^nats-server" --system nats --nats-server "$tmp/nats-ping1s"
done
"$bin" bench-report "$out"
