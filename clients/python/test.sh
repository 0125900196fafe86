#!/usr/bin/env bash
# Tests the Python client the way a user gets it:
#   1. a fresh venv in clients/python/.venv-test (removed and remade every run),
#   2. `pip install ./clients/python[test]` (a real, non-editable install),
#   3. regen.sh --check (the committed generated code matches the .proto),
#   4. pytest against the installed package.
# Exits non-zero on any failure; on success pytest's summary line is the last line.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv-test"

rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
cd "$repo"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./clients/python[test]"

"$here/regen.sh" --check

# From the client's folder so pytest finds its config; the package is imported from
# the venv (src/ is not on sys.path).
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider tests
