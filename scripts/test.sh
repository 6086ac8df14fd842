#!/usr/bin/env bash
# The project's one test command (README and .ci/run call it). Extra
# arguments go to `cargo test`, e.g. `scripts/test.sh conformance`.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh
PY=.venv/bin/python

# The ONNX node conformance suite is generated, not committed (~27 MB in
# ~12k files); the stamp inside makes this a no-op once it exists.
"$PY" scripts/gen_conformance.py tests/data/conformance

# The onnx wheel ships small "light" versions of classic CNNs (AlexNet,
# ResNet-50, ...) with reference outputs; copy them out of the venv so the
# tests find them at a fixed path.
light_src="$("$PY" -c 'import os, onnx.backend.test as t; print(os.path.join(os.path.dirname(t.__file__), "data", "light"))')"
mkdir -p tests/data/light
cp "$light_src"/*.onnx "$light_src"/*_output_0.pb tests/data/light/

cargo test --release --workspace "$@"
