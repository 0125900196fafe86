#!/usr/bin/env bash
# A short libFuzzer run of every decoder that reads bytes from outside (fuzz/):
# producer states, subscriber control messages, frames as a client decodes them, the
# /ws query (format, resume, ...) and log entries from other nodes. A crash fails the run
# and leaves its input in fuzz/artifacts/<target>/, to become a regression test.
#
#   scripts/fuzz-smoke.sh            # FUZZ_SECONDS per target, default 5
#
# cargo-fuzz is installed when missing. The machine has only a stable toolchain:
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its instrumentation flags, and the targets run
# without a sanitizer (phasecast has no unsafe code; what is sought is panics, hangs
# and runaway allocations).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
seconds=${FUZZ_SECONDS:-5}
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
    # Seeds must be committed: an untracked seed passes here and is missing on a clean clone.
    if [ -z "$(git ls-files "fuzz/seeds/$target")" ]; then
        echo "fuzz $target: no committed seeds under fuzz/seeds/$target/" >&2
        exit 1
    fi
    mkdir -p "fuzz/corpus/$target"
    if ! cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=5 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz $target: FAILED (input saved under fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    echo "fuzz $target: $(grep -E '^Done' "$log")"
done
