#!/usr/bin/env bash
# The whole test suite: installs what the tests need (scripts/setup.sh), then runs every
# test of the workspace (unit, model-vs-Python reference, end-to-end with a real model,
# real-time stream, WebSocket clients and DuckDB).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The end-to-end tests in tests/ run the `vitrine` binary of this build.
cargo build -p vitrine-pipeline --bin vitrine
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # The GPU execution providers compile and fail clearly against the CPU library.
  cargo nextest run -p vitrine-models --features cuda,tensorrt --test providers
  cargo test --workspace --doc -q
else
  cargo test --workspace "$@"
fi
