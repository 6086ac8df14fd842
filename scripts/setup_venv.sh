#!/usr/bin/env bash
# Create the project's Python environment (.venv in the repo root) used by the
# test-data generators. Idempotent: a stamp file records what was installed,
# so repeat runs (every `scripts/test.sh`) cost nothing and touch no network.
set -euo pipefail

cd "$(dirname "$0")/.."

# Pinned so the generated conformance data, reference outputs and broken-model
# corpus are byte-for-byte the same on every machine.
REQUIREMENTS="onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6"
VENV=.venv
STAMP="$VENV/.kiln-stamp"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQUIREMENTS" ]]; then
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC2086 # word splitting of the requirement list is intended
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $REQUIREMENTS
# Written last, so a failed install is retried next time.
printf '%s' "$REQUIREMENTS" > "$STAMP"
