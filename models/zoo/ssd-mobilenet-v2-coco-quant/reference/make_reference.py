"""Reference detections of the default SSD model, made with Python onnxruntime + Pillow.

Decodes each photo with Pillow, stretch-resizes it to 300x300 (bilinear), runs the model and
writes every detection scoring 0.3 or more as JSON: label, class id, score and the box
normalised to the photo (x0, y0, x1, y1). vitrine's Rust path must find the same
(models/tests/ssd_reference.rs). Usage (from the repo root):
    python3 models/zoo/ssd-mobilenet-v2-coco-quant/reference/make_reference.py models/tests/fixtures/*.jpg
Made with onnxruntime 1.32.0, Pillow 13, numpy 2.
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
names = [o.name for o in session.get_outputs()]
for path in sys.argv[1:]:
    img = Image.open(path).convert("RGB")
    x = np.asarray(img.resize((300, 300), Image.BILINEAR), dtype=np.uint8)[None]
    boxes, classes, scores, count = session.run(names, {session.get_inputs()[0].name: x})
    found = []
    for i in range(int(count[0])):
        if scores[0, i] < 0.3:
            continue
        y0, x0, y1, x1 = (float(v) for v in boxes[0, i])
        found.append({"label": labels.get(int(classes[0, i]), str(int(classes[0, i]))), "class_id": int(classes[0, i]),
                      "score": round(float(scores[0, i]), 4), "box": [round(x0, 4), round(y0, 4), round(x1, 4), round(y1, 4)]})
    out = os.path.join(here, os.path.basename(path).rsplit(".", 1)[0] + ".json")
    json.dump({"photo": os.path.basename(path), "size": list(img.size), "detections": found}, open(out, "w"), indent=1)
    print(out, [(d["label"], d["score"]) for d in found])
