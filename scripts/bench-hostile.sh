#!/usr/bin/env bash
# Reproduces the hostile-client table in docs/benchmarks.md:
#   scripts/bench-hostile.sh [results.jsonl]
# 100 JSON delta subscribers at 200 Hz, with no attack (the baseline) and under each
# attack in turn; every configuration runs RUNS times (default 3), interleaved, on a
# fresh server, and bench-report takes the medians. Twice: with the server's default
# per-IP connection rate limit (all attackers share one address, as one abusive host
# would) and with it off (as if every attacker came from its own address).
# About 12 minutes on 2 cores.
. "$(dirname "$0")/bench-common.sh" hostile "$@"
# Attackers per attack: connections that cost the server little come by the thousand.
attackers() {
    case $1 in
        half-open | slow-handshake) echo 1000 ;;
        never-reads) echo 100 ;;
        *) echo 20 ;;
    esac
}
for r in $(seq "$runs"); do
    echo "== run $r of $runs"
    for limit in 200 0; do
        for attack in none half-open slow-handshake garbage huge-frames ping-flood never-reads; do
            "$bin" loadgen --quiet --out "$out" --subscribers 100 --format json \
                --attack "$attack" --attackers "$(attackers "$attack")" \
                --serve-arg="--connection-rate-limit=$limit" | sed 's/^/  /'
        done
    done
done
"$bin" bench-report "$out"
