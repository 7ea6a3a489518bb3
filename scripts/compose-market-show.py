"""Composes the stills and the catalog pictures of vitrine's second labelled show, the market
show (see scripts/make-market-show.sh).

Usage: compose-market-show.py OPENCV_DATA TUX_STAMPS SKIMAGE_DATA STILLS_DIR PICTURES_DIR
Writes STILLS_DIR/<shot>.png, 2560x1440 (twice the video's size, so the zoom stays sharp), and
PICTURES_DIR/<sku>.jpg: each product's catalog picture, always another photo or another view of
the product than the one on screen (a shop's own studio photo is never a frame of its show).
"""
import sys
from pathlib import Path

from PIL import Image

import show_pictures  # beside this script

opencv, tux, skimage, out, pictures = (Path(a) for a in sys.argv[1:6])
out.mkdir(parents=True, exist_ok=True)
pictures.mkdir(parents=True, exist_ok=True)
W, H = 2560, 1440
GREY = (0x30, 0x34, 0x38)


def letterboxed(im: Image.Image, background=GREY) -> Image.Image:
    """The photo, as large as fits, centred."""
    im = im.convert("RGB")
    scale = min(W / im.width, H / im.height)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (W, H), background)
    canvas.paste(im, ((W - im.width) // 2, (H - im.height) // 2))
    return canvas


def table() -> Image.Image:
    """A real table top with everyday clutter, filling the frame (show 1's table)."""
    im = Image.open(opencv / "stuff.jpg").convert("RGB")
    rows = round(im.width * 9 / 16)
    top = (im.height - rows) // 2
    return im.crop((0, top, im.width, top + rows)).resize((W, H), Image.LANCZOS)


def place(canvas: Image.Image, stamp: str, height: int, x: float, y: float, angle: float = 0) -> None:
    """Pastes a cut-out photo `height` pixels tall, its centre at (x, y) as fractions of the frame."""
    im = Image.open(tux / stamp).convert("RGBA")
    im = im.resize((round(im.width * height / im.height), height), Image.LANCZOS)
    if angle:
        im = im.rotate(angle, resample=Image.BICUBIC, expand=True)
    canvas.paste(im, (round(x * W - im.width / 2), round(y * H - im.height / 2)), im)


def save(name: str, im: Image.Image) -> None:
    im.save(out / f"{name}.png")


def studio(stamp: str) -> Image.Image:
    return show_pictures.studio(tux, stamp)


def picture(sku: str, im: Image.Image) -> None:
    show_pictures.save_picture(pictures, sku, im)


# On screen: the left view of two stereo pairs, and cut-out photos.
save("grey", Image.new("RGB", (W, H), GREY))
save("table", table())
save("aloe", letterboxed(Image.open(opencv / "aloeL.jpg")))
save("motorcycle", letterboxed(Image.open(skimage / "motorcycle_left.png")))
save("orange", letterboxed(Image.open(opencv / "orange.jpg")))
save("toys", letterboxed(Image.open(opencv / "rubberwhale1.png")))
save("dog", letterboxed(Image.open(opencv / "chicky_512.png")))

im = table()
place(im, "food/fruit/apple_granny_smith.png", 240, 0.60, 0.45)
save("table-granny", im)

im = table()
place(im, "food/vegetables/potato.png", 260, 0.35, 0.55, angle=20)
place(im, "household/dishes/teapot.png", 360, 0.66, 0.40)
save("table-potato-teapot", im)

im = Image.new("RGB", (W, H), GREY)
place(im, "food/fruit/apple_sierra_beauty.png", 420, 0.5, 0.5)
save("sierra", im)

im = Image.new("RGB", (W, H), GREY)
place(im, "sports/basketball.png", 460, 0.32, 0.5)
place(im, "symbols/clockface.png", 420, 0.70, 0.5)
save("ball-clock", im)

im = table()
place(im, "food/fruit/apple_granny_smith.png", 260, 0.38, 0.50)
place(im, "food/fruit/apple_sierra_beauty.png", 260, 0.64, 0.46)
save("table-two-apples", im)

# The catalog's pictures: another view (the stereo pairs' right image, framed otherwise) or
# another photo of the same kind of product (another Granny Smith, another red apple, another
# orange), as a shop's studio photo is.
aloe = Image.open(opencv / "aloeR.jpg")
picture("PLANT-ALOE-M", aloe.crop((aloe.width // 8, 0, aloe.width * 7 // 8, aloe.height)))
moto = Image.open(skimage / "motorcycle_right.png")
picture("MOTO-RED-125", moto.crop((0, moto.height // 5, moto.width, moto.height)))
picture("APL-GRANNY-1KG", studio("food/fruit/apple_green.png"))
picture("APL-RED-1KG", studio("food/fruit/apple_fuji.png"))
picture("ORG-VAL-2KG", studio("food/fruit/orange.png"))
