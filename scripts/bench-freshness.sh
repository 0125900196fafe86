#!/usr/bin/env bash
# The freshness bound's benchmark: one slow reader (a plain Python `websockets` client
# with a one-frame queue, tests/it/slow_reader.py) reading 5, 20 or 60 frames/s from a
# 200 Hz kuramoto-32 JSON stream, beside 100 fast subscribers of the load generator,
# with the bound off (PCC_FRESHNESS=0) and at its default, interleaved in one run:
#   scripts/bench-freshness.sh [SERVER_BIN] [OUT_DIR]
# Prints one line per run: setting, reader rate, the reader's state age p50/p99/max
# (ms, now - the accept time the server stamps), and the load generator's line for
# the fast subscribers. Needs PYTHON (default clients/python/.venv-test/bin/python,
# made by scripts/test.sh) and phasecast-bench (BENCH_BIN, default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-target/release/phasecast}
out=${2:-target/bench/freshness}
runs=${RUNS:-3}
bench=${BENCH_BIN:-target/release/phasecast-bench}
python=${PYTHON:-clients/python/.venv-test/bin/python}
mkdir -p "$out"
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for r in $(seq "$runs"); do
    for rate in 5 20 60; do
        for freshness in 0 100ms; do
            port=$(free_port)
            PCC_FRESHNESS=$freshness RUST_LOG=warn "$server" serve --host 127.0.0.1 --port "$port" \
                --max-subscribers 100000 --producer-rate-limit 0 --connection-rate-limit 0 >/dev/null &
            pid=$!
            until "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.1; done
            "$bench" loadgen --quiet --target "http://127.0.0.1:$port" --server-pid "$pid" \
                --subscribers 100 --format json --wall-clock --out "$out/fast-$freshness.jsonl" > "$out/fast.txt" &
            load=$!
            sleep 1 # the load generator's producer has started
            ages=$("$python" tests/it/slow_reader.py plain "ws://127.0.0.1:$port/ws?format=json" \
                "$("$python" -c "print(1 / $rate)")" 10 | "$python" -c '
import json, sys
a = sorted(x * 1000 for x in json.load(sys.stdin)["ages"])
n = len(a)
print(f"frames {n} age p50 {a[n//2]:.0f} p99 {a[min(n-1, n*99//100)]:.0f} max {a[-1]:.0f} ms")')
            wait "$load"
            kill "$pid"; wait "$pid" 2>/dev/null || true
            echo "run $r freshness=$freshness reader=${rate}fps: $ages | fast: $(tail -1 "$out/fast.txt")"
        done
    done
done
