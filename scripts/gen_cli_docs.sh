#!/usr/bin/env bash
# Regenerates docs/cli.md from the binary's own --help text, so the reference cannot drift
# from the code: `bash scripts/gen_cli_docs.sh` after changing any subcommand.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# cli: the binary cargo just built, wherever CARGO_TARGET_DIR puts it
kiln="${CARGO_TARGET_DIR:-target}/release/kiln"
{
  echo "# kiln CLI reference"
  echo
  echo "Generated from \`kiln <command> --help\` (regenerate with \`scripts/gen_cli_docs.sh\` after changing a command). Every command that loads a model takes an ONNX file, a \`.kir\` text-IR file, or nothing (the embedded ResNet-style example)."
  echo
  for c in run bench profile quantize compile opt info; do
    echo "## kiln $c"
    echo
    echo '```text'
    "$kiln" "$c" --help
    echo '```'
    echo
  done
} > docs/cli.md
