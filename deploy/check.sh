#!/usr/bin/env bash
# Check the operations files in deploy/:
#   - promtool check rules / test rules / check config (Prometheus),
#   - systemd-analyze verify of phasecast@.service, when systemd-analyze works here,
#   - the Grafana dashboard is valid JSON (when python3 is present).
# Run from anywhere: bash deploy/check.sh. Exits non-zero on the first failure.
# promtool comes from Debian's prometheus package; it is installed when missing.
set -euo pipefail

deploy="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$deploy/.."   # the repo root: the paths below are relative to it

step() { printf '\n== %s\n' "$*"; }

if ! command -v promtool >/dev/null 2>&1; then
    step "installing promtool (Debian package prometheus)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends prometheus; then
        $sudo apt-get update
        $sudo apt-get install -y --no-install-recommends prometheus
    fi
    # The package starts a Prometheus server where systemd runs; we only want promtool.
    command -v promtool >/dev/null 2>&1 || { echo "promtool still missing" >&2; exit 1; }
fi
promtool --version 2>&1 | head -n 1

step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

step "promtool test rules deploy/prometheus/alerts_test.yml"
promtool test rules deploy/prometheus/alerts_test.yml

# rule_files in prometheus.yml are relative to the config file; promtool resolves
# them the same way, so this works from any directory.
step "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

step "systemd-analyze verify deploy/systemd/phasecast@.service"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIPPED: systemd-analyze is not installed"
elif ! systemd-analyze --version >/dev/null 2>&1; then
    echo "SKIPPED: systemd-analyze does not run here"
else
    # Verify in a scratch root: the unit installed in /etc/systemd/system, a stand-in
    # binary for each instance (verify checks that ExecStart is executable) and the
    # system's own units (for the targets the unit depends on).
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
    cp "deploy/systemd/phasecast@.service" "$root/etc/systemd/system/"
    for instance in current stable; do
        mkdir -p "$root/opt/phasecast/$instance"
        printf '#!/bin/sh\nexit 0\n' > "$root/opt/phasecast/$instance/phasecast"
        chmod 0755 "$root/opt/phasecast/$instance/phasecast"
    done
    units=""
    for dir in /usr/lib/systemd/system /lib/systemd/system; do
        if [ -d "$dir" ]; then units="$dir"; break; fi
    done
    if [ -z "$units" ] || [ ! -e "$units/multi-user.target" ]; then
        echo "SKIPPED: no systemd unit directory here (no multi-user.target)"
    else
        cp -a "$units" "$root/usr/lib/systemd/"
        set +e
        out="$(systemd-analyze verify --man=no --root="$root" \
            phasecast@current.service phasecast@stable.service 2>&1)"
        rc=$?
        set -e
        # verify only warns (exit 0) about unknown keys or values it cannot parse:
        # any output is a failure.
        if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
            printf '%s\n' "$out" >&2
            echo "FAILED: systemd-analyze verify (exit $rc)" >&2
            exit 1
        fi
        echo "SUCCESS: phasecast@current.service, phasecast@stable.service"
    fi
fi

step "deploy/grafana/phasecast.json is valid JSON"
if command -v python3 >/dev/null 2>&1; then
    python3 -m json.tool deploy/grafana/phasecast.json >/dev/null
    echo "SUCCESS"
else
    echo "SKIPPED: python3 is not installed"
fi

printf '\nAll checks passed.\n'
