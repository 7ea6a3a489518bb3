"""Reference embeddings of vitrine's image embedder, made with Python onnxruntime + Pillow.

For each photo, and for regions of shelf.jpg (x, y, width, height in pixels: two cups, an
apple, oranges), decodes with Pillow, crops, stretch-resizes to 224x224 (bilinear), normalises
with ImageNet's mean and std, runs the model and writes the L2-normalised embedding as JSON.
vitrine's Rust path must give the same vectors (models/tests/embedder_reference.rs).
Usage (from the repo root):
    python3 models/zoo/mobilenetv2-imagenet-embedder/reference/make_reference.py models/tests/fixtures
Made with onnxruntime 1.32.0, Pillow 13, numpy 2.
"""
import json, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image

SIDE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PHOTOS = ["coffee.jpg", "apple.jpg", "fruits.jpg", "astronaut.jpg"]
SHELF_REGIONS = {"cup-small": [30, 60, 210, 140], "apple": [280, 60, 210, 210],
                 "oranges": [530, 60, 210, 210], "cup-large": [780, 60, 210, 182]}

here = os.path.dirname(os.path.abspath(__file__))
session = ort.InferenceSession(os.path.join(os.path.dirname(here), "model.onnx"), providers=["CPUExecutionProvider"])
fixtures = sys.argv[1]


def embed(img):
    x = np.asarray(img.resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float32) / 255.0
    x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    v = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    return [round(float(f), 6) for f in v / np.linalg.norm(v)]


entries = []
for name in PHOTOS:
    entries.append({"photo": name, "region": None, "embedding": embed(Image.open(os.path.join(fixtures, name)).convert("RGB"))})
shelf = Image.open(os.path.join(fixtures, "shelf.jpg")).convert("RGB")
for what, (x, y, w, h) in SHELF_REGIONS.items():
    entries.append({"photo": "shelf.jpg", "what": what, "region": [x, y, w, h],
                    "embedding": embed(shelf.crop((x, y, x + w, y + h)))})
out = os.path.join(here, "embeddings.json")
json.dump({"side": SIDE, "entries": entries}, open(out, "w"), separators=(",", ":"))
vecs = np.array([e["embedding"] for e in entries])
names = [e.get("what") or e["photo"] for e in entries]
sims = vecs @ vecs.T
for i, n in enumerate(names):
    print(f"{n:14s}", " ".join(f"{s:.2f}" for s in sims[i]))
