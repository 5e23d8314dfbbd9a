#!/usr/bin/env bash
# Official-SDK conformance check of the emulator (`twinops hub serve`) with the
# Python service SDK azure-iot-hub. Needs a twinops binary (TWINOPS_BIN, default the release one):
#
#   cargo build --release && tests/sdk/run-python.sh
#
# The virtualenv goes to ${TWINOPS_SDK_VENV:-target/sdk-venv} and is reused;
# the pinned requirements are (re)installed on every run, quietly, from wheels
# only. Extra arguments go to python_conformance.py (e.g. --keep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

venv="${TWINOPS_SDK_VENV:-target/sdk-venv}"
python="${TWINOPS_SDK_PYTHON:-}"
if [[ -z "$python" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then python=python3.11; else python=python3; fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --only-binary=:all: -r tests/sdk/requirements.txt

exec "$venv/bin/python" tests/sdk/python_conformance.py \
  --twinops "${TWINOPS_BIN:-target/release/twinops}" --seed examples/demo-fleet.ndjson "$@"
