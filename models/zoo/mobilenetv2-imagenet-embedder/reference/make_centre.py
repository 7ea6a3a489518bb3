"""The embedder's centre (../centre.txt): the mean of its unit-length embeddings over everyday
photos that neither labelled show uses, each prepared as vitrine prepares a picture (stretched
to 224x224, bilinear; ImageNet mean and std). vitrine subtracts it from every embedding before
comparing two (README, "Matching"): the model's pooled features are all positive, so without it
any two photos score about 0.5.

Photos, all from package registries (scripts/make-embedder-centre.sh fetches them):
  Tux Paint stamps (Debian tuxpaint-stamps-default 2022.06.04, GPL-2): every PNG photo under
    clothes/, hobbies/, vehicles/, animals/, town/, plants/ (not the cartoons), on white;
  OpenCV sample data (Debian opencv-doc 4.6.0): the photos listed in OPENCV below;
  scikit-image 0.26.0 data: the photos listed in SKIMAGE below.
Usage: make_centre.py TUX_STAMPS OPENCV_DATA SKIMAGE_DATA OUT   (onnxruntime 1.32.0, Pillow, numpy)
"""
import glob, os, sys
import numpy as np, onnxruntime as ort
from PIL import Image

SIDE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CATEGORIES = ["clothes", "hobbies", "vehicles", "animals", "town", "plants"]
OPENCV = ["baboon.jpg", "building.jpg", "home.jpg", "butterfly.jpg", "board.jpg", "aero1.jpg", "graf1.png",
          "leuvenA.jpg", "HappyFish.jpg", "starry_night.jpg", "squirrel_cls.jpg", "pic1.png", "Blender_Suzanne1.jpg"]
SKIMAGE = ["astronaut.png", "chelsea.png", "rocket.jpg", "horse.png", "coins.png", "hubble_deep_field.jpg"]

tux, opencv, skimage, out = sys.argv[1:5]
here = os.path.dirname(os.path.abspath(__file__))
session = ort.InferenceSession(os.path.join(os.path.dirname(here), "model.onnx"), providers=["CPUExecutionProvider"])


def embed(img):
    x = np.asarray(img.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float32) / 255.0
    x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    v = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    return v / np.linalg.norm(v)


def on_white(path):
    im = Image.open(path).convert("RGBA")
    canvas = Image.new("RGB", im.size, (255, 255, 255))
    canvas.paste(im, (0, 0), im)
    return canvas


stamps = sorted(p for c in CATEGORIES for p in glob.glob(os.path.join(tux, c, "**", "*.png"), recursive=True)
                if "cartoon" not in p)
photos = [os.path.join(opencv, f) for f in OPENCV] + [os.path.join(skimage, f) for f in SKIMAGE]
vectors = [embed(on_white(p)) for p in stamps] + [embed(Image.open(p)) for p in photos]
centre = np.mean(vectors, axis=0)
with open(out, "w") as f:
    f.write(f"# vitrine's embedder centre: the mean unit-length embedding of {len(vectors)} photos\n")
    f.write("# (reference/make_centre.py, via scripts/make-embedder-centre.sh); one number a line.\n")
    for x in centre:
        f.write(f"{x:.6f}\n")
print(f"{out}: the mean of {len(vectors)} photos ({len(stamps)} stamps, {len(photos)} photos), length {np.linalg.norm(centre):.3f}")
