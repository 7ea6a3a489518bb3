"""Reference detections of NanoDet-m 416, made with Python onnxruntime + Pillow + numpy.

Decodes each photo with Pillow, stretch-resizes it to 416x416 (bilinear), BGR, normalised by
ImageNet mean/std (0..255), runs the model and decodes the GFL heads (after the verified
recipe shared/recipes/nanodet_reference_decode.py): per stride, the best class score of each
cell, softmax expected bins x stride from the cell's top-left corner, then per-class NMS at
IoU 0.45. Writes every detection scoring 0.3 or more as JSON normalised to the photo.
vitrine's Rust path must find the same (models/tests/nanodet_reference.rs). Usage (from the repo root):
    python3 models/zoo/nanodet-m-416-coco/reference/make_reference.py models/tests/fixtures/*.jpg
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
S = 416


def nms(boxes, scores, thr=0.45):
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0]); yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2]); yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (a[i] + a[order[1:]] - inter + 1e-9)
        order = order[1:][iou <= thr]
    return keep


for path in sys.argv[1:]:
    img = Image.open(path).convert("RGB")
    r = np.asarray(img.resize((S, S), Image.BILINEAR), dtype=np.float32)
    x = (r[..., ::-1] - np.array([103.53, 116.28, 123.675])) / np.array([57.375, 57.12, 58.395])
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))
    outs = session.run(None, {session.get_inputs()[0].name: x})
    boxes, scores, cls = [], [], []
    for side, stride in ((52, 8), (26, 16), (13, 32)):
        n = side * side
        c = [o for o in outs if o.shape[1] == n and o.shape[2] == 80][0][0]
        g = [o for o in outs if o.shape[1] == n and o.shape[2] == 44][0][0].reshape(n, 4, 11)
        p = np.exp(g - g.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        dist = (p * np.arange(11)).sum(-1) * stride
        ys, xs = np.divmod(np.arange(n), side)
        cx, cy = xs * stride, ys * stride
        b = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
        sc, ci = c.max(1), c.argmax(1)
        m = sc >= 0.3
        boxes.append(b[m]); scores.append(sc[m]); cls.append(ci[m])
    boxes, scores, cls = np.concatenate(boxes), np.concatenate(scores), np.concatenate(cls)
    found = []
    if len(scores):
        for k in nms(boxes + cls[:, None] * 4096, scores):
            b = np.clip(boxes[k] / S, 0, 1)
            found.append({"label": labels[int(cls[k])], "class_id": int(cls[k]), "score": round(float(scores[k]), 4),
                          "box": [round(float(v), 4) for v in b]})
    out = os.path.join(here, os.path.basename(path).rsplit(".", 1)[0] + ".json")
    json.dump({"photo": os.path.basename(path), "size": list(img.size), "detections": found}, open(out, "w"), indent=1)
    print(out, [(d["label"], d["score"]) for d in found])
