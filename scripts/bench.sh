#!/usr/bin/env bash
# The benchmark of the README: `vitrine bench` (release build) with the default SSD, with
# NanoDet-m and with NanoDet-m quantized to INT8 (scripts/quantize-model.py, calibrated on the
# sample stream) on the sample stream, each against the raw model loop and the Python
# per-frame peer (benches/peer/handler.py, run with onnxruntime, numpy and Pillow from PyPI
# installed into .vitrine/peer). Extra arguments go to `vitrine bench`, e.g. --seconds 20.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
peer=$root/.vitrine/peer
if [ ! -x "$peer/bin/python" ]; then
  echo "bench: installing the peer's Python (onnxruntime 1.32.0, numpy, Pillow) into .vitrine/peer"
  python3 -m venv "$peer"
  "$peer/bin/pip" install -q onnxruntime==1.32.0 numpy pillow onnx
fi
int8=$root/.vitrine/models/nanodet-m-416-coco.int8.onnx
if [ ! -f "$int8" ]; then
  calib=$(mktemp -d)
  ffmpeg -loglevel error -i examples/sample/shopping.mp4 -vf fps=1 -q:v 3 "$calib/%03d.jpg"
  "$peer/bin/python" scripts/quantize-model.py --model models/zoo/nanodet-m-416-coco/model.onnx \
    --decoder nanodet --frames "$calib" --output "$int8"
  rm -rf "$calib"
fi
cargo build --release -p vitrine-pipeline --bin vitrine
for spec in benches/specs/ssd.yaml benches/specs/nanodet.yaml benches/specs/nanodet-int8.yaml; do
  target=${CARGO_TARGET_DIR:-target}
  "$target/release/vitrine" bench "$spec" --peer-python "$peer/bin/python" "$@"
done
