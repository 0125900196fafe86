#!/usr/bin/env bash
# The TypeScript client's whole suite, as CI runs it: exact packages (npm ci, which
# also builds dist/), then regen:check, build and node's test runner over every test
# (its summary ends the output). Exits non-zero on any failure.
#
#   clients/typescript/test.sh
#
# - Real-server tests need the phasecast binary in PHASECAST_BIN (e.g.
#   target/release/phasecast); without it they skip with a message, unless
#   PHASECAST_REQUIRE_TOOLS=1, where they fail. The server runs on 127.0.0.1 only.
# - Browser tests need chromium (/usr/bin/chromium, or CHROMIUM); installed here from
#   Debian when missing. playwright-core drives it and never downloads a browser.
# - Package tests run `npm pack` and install into scratch projects under $TMPDIR,
#   from the npm cache that `npm ci` fills (or the registry).
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
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

echo "==== npm ci"
npm ci --no-audit --no-fund

echo "==== npm test"
npm test
