#!/usr/bin/env bash
# Tests the Python client the way a user gets it:
#   1. a wheel built from a clean copy of clients/python (pip wheel --no-deps),
#   2. a fresh venv in clients/python/.venv-test (removed and remade every run) with
#      THAT wheel installed, with its [test] and [numpy] extras,
#   3. regen.sh --check (the committed generated code matches the .proto),
#   4. pytest against the installed package (src/ is not on sys.path).
# Everything is installed from the package index by name: nothing but Python and pip
# is needed on a fresh machine.
#
# The tests against a real server run when PHASECAST_BIN names a phasecast binary
# (e.g. PHASECAST_BIN=target/debug/phasecast); without it they skip, saying so, unless
# PHASECAST_REQUIRE_TOOLS is set, when they fail.
#
# Exits non-zero on any failure; on success pytest's summary line is the last line.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-test"
pip_quiet=(--quiet --disable-pip-version-check --no-input)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A copy of just what the wheel is made of, so no build/ or *.egg-info from an earlier
# build (or a stale module) ends up in it, and the checkout stays clean.
mkdir "$work/source" "$work/wheel"
cp -R "$here/pyproject.toml" "$here/README.md" "$here/src" "$work/source/"
find "$work/source" -name __pycache__ -type d -prune -exec rm -rf {} +

rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip wheel "${pip_quiet[@]}" --no-deps -w "$work/wheel" "$work/source"
wheel="$(ls "$work/wheel"/phasecast-*.whl)"
echo "test.sh: built $(basename "$wheel")" >&2
"$venv/bin/python" -m pip install "${pip_quiet[@]}" "${wheel}[test,numpy]"

"$here/regen.sh" --check

# From the client's folder so pytest finds its config; the package is imported from
# the venv (test_installed checks that it is the wheel's).
cd "$here"
export PHASECAST_TEST_INSTALLED=1
exec "$venv/bin/python" -m pytest -p no:cacheprovider -ra tests
