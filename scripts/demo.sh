#!/usr/bin/env bash
# The demo: installs what is missing (scripts/setup.sh), builds vitrine and runs
# examples/demo.yaml. Open http://127.0.0.1:8080/ to watch; Ctrl-C to stop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run -p vitrine-pipeline --bin vitrine -- run examples/demo.yaml "$@"
