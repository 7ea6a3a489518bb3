"""Reference detections of an Ultralytics YOLOv8 model, made with Python onnxruntime + Pillow.

The model is nudenet's `320n.onnx` (YOLOv8n architecture, real weights, 18 classes; from the
PyPI wheel nudenet==3.4.2, AGPL-3.0: installed at test time by scripts/setup.sh into
.vitrine/models/, never committed). Each photo is letterboxed the Ultralytics way (scaled to
fit 320x320 keeping its aspect, centred on grey 114), bilinear; the output [1, 4+C, N] is
decoded (cx, cy, w, h in input pixels; best class score) and per-class NMS at IoU 0.45
keeps the boxes scoring 0.25 or more, written as JSON normalised to the photo.
vitrine's Rust decoder must find the same (models/tests/yolo_reference.rs).
Usage (from the repo root, with onnxruntime, numpy and Pillow installed):
    python3 models/tests/reference/yolov8-nudenet-320n/make_reference.py .vitrine/models/nudenet-320n.onnx models/tests/fixtures/messi5.jpg
Made with onnxruntime 1.32.0, Pillow 12, numpy 2.
"""
import ast, json, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
W = H = 320


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


for path in sys.argv[2:]:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    r = min(W / w, H / h)
    cw, ch = round(w * r), round(h * r)
    px, py = (W - cw) // 2, (H - ch) // 2
    canvas = Image.new("RGB", (W, H), (114, 114, 114))
    canvas.paste(img.resize((cw, ch), Image.BILINEAR), (px, py))
    x = (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
    out = session.run(None, {session.get_inputs()[0].name: x})[0][0]  # [4+C, N]
    boxes, scores = out[:4].T, out[4:].T
    cls = scores.argmax(1)
    best = scores.max(1)
    keep = []
    for i in np.argsort(-best):
        if best[i] < 0.25:
            break
        cx, cy, bw, bh = boxes[i]
        b = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
        if all(cls[j] != cls[i] or iou(b, kb) <= 0.45 for j, kb in keep):
            keep.append((i, b))
    found = []
    for i, b in keep:
        # input pixels -> the photo, normalised
        x0, y0, x1, y1 = ((b[0] - px) / cw, (b[1] - py) / ch, (b[2] - px) / cw, (b[3] - py) / ch)
        clamp = lambda v: min(1.0, max(0.0, float(v)))
        found.append({"label": names[int(cls[i])], "class_id": int(cls[i]), "score": round(float(best[i]), 4),
                      "box": [round(clamp(v), 4) for v in (x0, y0, x1, y1)]})
    out_path = os.path.join(here, os.path.basename(path).rsplit(".", 1)[0] + ".json")
    json.dump({"photo": os.path.basename(path), "size": [w, h], "detections": found}, open(out_path, "w"), indent=1)
    print(out_path, [(d["label"], d["score"]) for d in found])
