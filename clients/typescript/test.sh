#!/usr/bin/env bash
# Installs exactly what package-lock.json pins and runs the whole suite, as a user
# would: regen:check, build, then node's test runner (whose summary ends the output).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm test
