"""Composes the stills and the catalog pictures of vitrine's labelled show (see
scripts/make-labelled-show.sh).

Usage: compose-show.py OPENCV_DATA TUX_STAMPS SKIMAGE_DATA OUT_DIR [PICTURES_DIR]
Writes OUT_DIR/<shot>.png, 2560x1440 (twice the video's size, so the zoom stays sharp), and
with PICTURES_DIR, PICTURES_DIR/<sku>.jpg: the catalog picture of each product that has another
photo or another view in the packages than the one on screen (a shop's studio photo is never a
frame of its show). The others have no picture, and vitrine matches them by their label.
"""
import sys
from pathlib import Path

from PIL import Image

import show_pictures  # beside this script

opencv, tux, skimage, out = (Path(a) for a in sys.argv[1:5])
pictures = Path(sys.argv[5]) if len(sys.argv) > 5 else None
out.mkdir(parents=True, exist_ok=True)
W, H = 2560, 1440
GREY = (0x30, 0x34, 0x38)


def letterboxed(photo: Path) -> Image.Image:
    """The photo, as large as fits, centred on studio grey."""
    im = Image.open(photo).convert("RGB")
    scale = min(W / im.width, H / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (W, H), GREY)
    canvas.paste(im, ((W - im.width) // 2, (H - im.height) // 2))
    return canvas


def table() -> Image.Image:
    """A real table top with everyday clutter (pen, lighter, lid...), filling the frame."""
    im = Image.open(opencv / "stuff.jpg").convert("RGB")
    # 4:3 to 16:9: keep the middle rows.
    rows = round(im.width * 9 / 16)
    top = (im.height - rows) // 2
    return im.crop((0, top, im.width, top + rows)).resize((W, H), Image.LANCZOS)


def place(canvas: Image.Image, stamp: str, height: int, x: float, y: float, angle: float = 0) -> None:
    """Pastes a cut-out product photo `height` pixels tall (of the 2560x1440 still), its centre
    at (x, y) as fractions of the frame."""
    im = Image.open(tux / stamp).convert("RGBA")
    im = im.resize((round(im.width * height / im.height), height), Image.LANCZOS)
    if angle:
        im = im.rotate(angle, resample=Image.BICUBIC, expand=True)
    canvas.paste(im, (round(x * W - im.width / 2), round(y * H - im.height / 2)), im)


def save(name: str, im: Image.Image) -> None:
    im.save(out / f"{name}.png")


save("grey", Image.new("RGB", (W, H), GREY))
save("table", table())
save("cup", letterboxed(skimage / "coffee.png"))
save("orange", letterboxed(opencv / "orange.jpg"))
save("candy", letterboxed(opencv / "smarties.png"))
save("book", letterboxed(opencv / "ela_original.jpg"))
save("fruits", letterboxed(opencv / "fruits.jpg"))
save("football", letterboxed(opencv / "messi5.jpg"))

# Small products on the cluttered table: an apple and a banana among the clutter.
im = table()
place(im, "food/fruit/apple_red.png", 200, 0.62, 0.42)
place(im, "food/fruit/banana.png", 300, 0.38, 0.62, angle=70)
save("table-apple-banana", im)

# Thin products: open scissors and a carrot, lying on the table.
im = table()
place(im, "household/arttools/scissors_small_open.png", 320, 0.40, 0.45)
place(im, "food/vegetables/carrot.png", 360, 0.66, 0.58, angle=-35)
save("table-scissors-carrot", im)

# A ball, on grey (the same shot before and after a short cut away).
im = Image.new("RGB", (W, H), GREY)
place(im, "sports/tennis_ball.png", 420, 0.5, 0.5)
save("ball", im)

# Several products at once: a market table.
im = table()
place(im, "food/vegetables/broccoli.png", 380, 0.22, 0.45)
place(im, "food/fruit/orange.png", 260, 0.42, 0.60)
place(im, "food/fruit/apple_fuji.png", 260, 0.58, 0.38)
place(im, "food/fruit/banana.png", 380, 0.75, 0.55, angle=80)
place(im, "household/dishes/mug.png", 300, 0.88, 0.30)
save("table-market", im)

# A small mug among the clutter.
im = table()
place(im, "household/dishes/mug.png", 200, 0.55, 0.40)
save("table-mug", im)


def studio(stamp: str) -> Image.Image:
    return show_pictures.studio(tux, stamp)


def picture(sku: str, im: Image.Image) -> None:
    show_pictures.save_picture(pictures, sku, im)


# The catalog's pictures: another photo of the same kind of product (OpenCV's red apple for the
# Tux Paint red apples on screen, Tux Paint's mandarine for the oranges), or another view of the
# same product (the scissors closed; on screen they are open). The cups, the balls, the banana,
# the carrot, the broccoli and the notebook have no other photo in the packages: no picture.
if pictures:
    pictures.mkdir(parents=True, exist_ok=True)
    picture("APL-GALA-1KG", Image.open(opencv / "apple.jpg"))
    picture("ORG-VAL-2KG", studio("food/fruit/mandarine.png"))
    picture("SCI-CRAFT-21", studio("household/arttools/scissors_small_closed.png"))
