"""Reference detections of CenterNet MobileNetV3 512 (decoding in the graph), made with Python
onnxruntime + Pillow + numpy.

Decodes each photo with Pillow, stretch-resizes it to 512x512 (bilinear), float32 NHWC RGB in
0..255, runs the model, takes its [1, 100, 6] output (x0, y0, x1, y1 in input pixels, score,
class), keeps what scores 0.3 or more, applies per-class NMS at IoU 0.45 (the graph's peak
picking leaves overlapping duplicates) and writes JSON normalised to the photo.
vitrine must find the same (models/tests/centernet_reference.rs). Usage (from the repo root):
    python3 models/zoo/centernet-mobilenetv3-512-coco/reference/make_reference.py models/tests/fixtures/*.jpg
Made with onnxruntime 1.32.0, Pillow 12, numpy 2.
"""
import json, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
model_dir = os.path.dirname(here)
labels = {}
for line in open(os.path.join(model_dir, "labels.txt")):
    parts = line.strip().split(maxsplit=1)
    if len(parts) == 2:
        labels[int(parts[0])] = parts[1]
session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
output = [o.name for o in session.get_outputs() if len(o.shape) == 3 and o.shape[2] == 6][0]
S = 512


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


for path in sys.argv[1:]:
    img = Image.open(path).convert("RGB")
    x = np.asarray(img.resize((S, S), Image.BILINEAR), dtype=np.float32)[None]
    det = session.run([output], {session.get_inputs()[0].name: x})[0][0]
    kept = []
    for d in sorted(det[det[:, 4] >= 0.3].tolist(), key=lambda d: -d[4]):
        if all(int(k[5]) != int(d[5]) or iou(k, d) <= 0.45 for k in kept):
            kept.append(d)
    found = [{"label": labels[int(d[5])], "class_id": int(d[5]), "score": round(float(d[4]), 4),
              "box": [round(min(1.0, max(0.0, v / S)), 4) for v in d[:4]]} for d in kept]
    out = os.path.join(here, os.path.basename(path).rsplit(".", 1)[0] + ".json")
    json.dump({"photo": os.path.basename(path), "size": list(img.size), "detections": found}, open(out, "w"), indent=1)
    print(out, [(d["label"], d["score"]) for d in found])
