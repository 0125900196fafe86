#!/usr/bin/env bash
# phasecast's one test command: sets up what the tests need on a fresh machine, then
# runs every check. The last thing it runs is `cargo test`, whose summary ends the output.
#
#   scripts/test.sh
#
# Steps: system packages (promtool, nats-server, iproute2; chromium via web/test.sh) → cargo
# fmt/clippy over the workspace → the client crate's dependency tree → the server
# binary → deploy/ checks (promtool) → the Python client (fresh venv, pip install,
# regen check, pytest, against the server binary) → the TypeScript client (npm ci,
# regen check, build, node --test, against the server binary) → the dashboard (drift
# check of web/dist, headless Chromium against a live server) → short fuzz runs of
# every decoder → cargo test over the workspace, including the multi-node tests on a
# real nats-server and the cross-language conformance test against the two clients
# just installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
step() { printf '\n==== %s\n' "$*"; }

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# ip and tc: the freshness test shapes a network namespace's loopback.
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "installing ${need_apt[*]} (Debian packages)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (every crate of the workspace)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "layout: the Rust client's dependency tree has no server crate in it"
if cargo tree --locked -p phasecast-client -e normal --prefix none | grep -E '^(axum|async-nats|opentelemetry|opentelemetry_sdk|phasecast) '; then
    echo "phasecast-client depends on the server's crates (above)" >&2
    exit 1
fi
echo "phasecast-client: no axum, async-nats, opentelemetry or phasecast server in its tree"

step "the server binary (the client and dashboard tests run against it)"
cargo build --locked --bin phasecast
export PHASECAST_BIN="$PWD/target/debug/phasecast"
export PHASECAST_REQUIRE_TOOLS=1

step "deploy/: promtool rules, dashboard, systemd unit"
bash deploy/check.sh

step "Python client"
bash clients/python/test.sh

step "TypeScript client"
bash clients/typescript/test.sh

step "dashboard: web/dist drift check and end-to-end test in headless Chromium"
bash web/test.sh

step "fuzz smoke runs of every decoder (cargo fuzz, a few seconds each)"
bash scripts/fuzz-smoke.sh

step "cargo test (every crate: unit, integration, multi-node, cross-language conformance, benchmark tools, doc)"
export PHASECAST_PYTHON="$PWD/clients/python/.venv-test/bin/python"
export PHASECAST_NODE_CONFORMANCE="$PWD/clients/typescript/dist/conformance.js"
cargo test --locked --workspace --all-targets
cargo test --locked --workspace --doc
