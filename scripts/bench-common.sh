# Sourced by the load-benchmark scripts, with the results' name and the script's own
# arguments:  . "$(dirname "$0")/bench-common.sh" NAME "$@"
# Builds the release binaries and sets bin (the load generator), out (the results
# file: the script's first argument or target/bench/NAME.jsonl, emptied) and runs
# (RUNS, default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --workspace --bins
bin=target/release/phasecast-bench
out=${2:-target/bench/$1.jsonl}
runs=${RUNS:-3}
mkdir -p "$(dirname "$out")"
: > "$out"
