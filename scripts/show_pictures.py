"""Catalog pictures of the labelled shows (compose-show.py, compose-market-show.py): how a shop
shows a product, never a frame of its show."""
from pathlib import Path

from PIL import Image

WHITE = (255, 255, 255)


def studio(stamps: Path, stamp: str) -> Image.Image:
    """A cut-out photo of the Tux Paint stamps on white with a small margin."""
    im = Image.open(stamps / stamp).convert("RGBA")
    pad = round(max(im.size) * 0.08)
    canvas = Image.new("RGB", (im.width + 2 * pad, im.height + 2 * pad), WHITE)
    canvas.paste(im, (pad, pad), im)
    return canvas


def save_picture(pictures: Path, sku: str, im: Image.Image) -> None:
    """PICTURES/<sku>.jpg, at most 640 pixels a side."""
    im = im.convert("RGB")
    im.thumbnail((640, 640), Image.LANCZOS)
    im.save(pictures / f"{sku}.jpg", quality=90)
