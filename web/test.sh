#!/usr/bin/env bash
# The dashboard's test command: exact packages, the drift check of the committed
# web/dist, then the end-to-end test in a real browser against a real phasecast
# (node's test runner, whose summary ends the output). Exits non-zero on any failure.
#
#   web/test.sh
#
# Needs the server binary (../target/release/phasecast, or PHASECAST_BIN) and a
# chromium (/usr/bin/chromium, or CHROMIUM; installed here from Debian when missing).
# PHASECAST_PAGE_URL_MODE=static serves web/dist from a local static server instead
# of loading the page from phasecast.
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
    echo "==== installing chromium (Debian package; Playwright never downloads a browser)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium
fi

echo "==== npm ci"
npm ci --no-audit --no-fund

echo "==== npm run check-dist"
npm run check-dist

echo "==== npm run e2e"
npm run e2e
