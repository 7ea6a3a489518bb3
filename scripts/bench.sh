#!/usr/bin/env bash
# The benchmark of the README: `vitrine bench` (release build) with the default SSD and with
# NanoDet-m on the sample stream, each against the raw model loop and the Python per-frame
# peer (benches/peer/handler.py, run with onnxruntime, numpy and Pillow from PyPI installed
# into .vitrine/peer). Extra arguments go to `vitrine bench`, e.g. --seconds 20 --streams 8.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
peer=$root/.vitrine/peer
if [ ! -x "$peer/bin/python" ]; then
  echo "bench: installing the peer's Python (onnxruntime 1.32.0, numpy, Pillow) into .vitrine/peer"
  python3 -m venv "$peer"
  "$peer/bin/pip" install -q onnxruntime==1.32.0 numpy pillow
fi
cargo build --release -p vitrine-pipeline --bin vitrine
for spec in benches/specs/ssd.yaml benches/specs/nanodet.yaml; do
  target=${CARGO_TARGET_DIR:-target}
  "$target/release/vitrine" bench "$spec" --peer-python "$peer/bin/python" "$@"
done
