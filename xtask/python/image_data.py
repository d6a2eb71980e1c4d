"""Natural-image patches for the imaging prior (`cargo xtask data images`).

The photographs come from inside the scikit-image wheel (skimage/data/*.png|jpg, public-domain or
CC-licensed images that ship with the package; no download at run time beyond the wheel from the
package registry). They are read straight from the wheel file (zip) with Pillow, converted to
grayscale (ITU-R 601 luma, Pillow's "L" mode) in [0, 1], and cut into 64 x 64 patches:

- train: `--train` random patches of the TRAIN photos: a photo drawn with probability
  proportional to sqrt(area), an integer box-downsampling factor s in {1, 2, 3, 4, 6} (kept only
  when the downsampled photo still holds a 64 x 64 window), a uniform window, a horizontal flip
  with probability 1/2;
- test: patches of the TEST photos only (never seen in training): the three whole-object views
  (astronaut at 1/8, chelsea at 1/4 around the cat's face, coffee at 1/6), then a deterministic
  grid of windows at factors 4 and 3.

Writes DIR/train.npy (N, 64, 64) and DIR/test.npy (M, 64, 64), float32 little-endian, and
DIR/meta.json (photos, factors, seed, counts).

Usage: python image_data.py WHEEL DIR --train N --seed S
"""

import argparse
import io
import json
import os
import zipfile

import numpy as np
from PIL import Image

TRAIN = [
    "brick.png", "camera.png", "cell.png", "clock_motion.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "page.png", "retina.jpg", "rocket.jpg", "text.png",
]
TEST = ["astronaut.png", "chelsea.png", "coffee.png"]
FACTORS = [1, 2, 3, 4, 6]
RES = 64


def load(wheel, name):
    with zipfile.ZipFile(wheel) as z:
        raw = z.read("skimage/data/" + name)
    img = Image.open(io.BytesIO(raw)).convert("L")
    return np.asarray(img, dtype=np.float64) / 255.0


def box_down(img, s):
    """Mean over s x s blocks (the photo cropped to a multiple of s)."""
    if s == 1:
        return img
    h, w = (img.shape[0] // s) * s, (img.shape[1] // s) * s
    return img[:h, :w].reshape(h // s, s, w // s, s).mean(axis=(1, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel")
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)

    photos = {n: load(a.wheel, n) for n in TRAIN}
    pyramids = {n: {s: box_down(p, s) for s in FACTORS} for n, p in photos.items()}
    names = list(TRAIN)
    weights = np.array([np.sqrt(photos[n].size) for n in names])
    weights /= weights.sum()
    train = np.empty((a.train, RES, RES), dtype=np.float32)
    for i in range(a.train):
        n = names[rng.choice(len(names), p=weights)]
        ok = [s for s in FACTORS if min(pyramids[n][s].shape) >= RES]
        s = ok[rng.integers(len(ok))]
        p = pyramids[n][s]
        r = rng.integers(p.shape[0] - RES + 1)
        c = rng.integers(p.shape[1] - RES + 1)
        patch = p[r:r + RES, c:c + RES]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        train[i] = patch

    test = []
    views = [("astronaut.png", 8, None), ("chelsea.png", 4, (4, 20)), ("coffee.png", 6, None)]
    tphotos = {n: load(a.wheel, n) for n in TEST}
    for n, s, at in views:
        p = box_down(tphotos[n], s)
        if at is None:
            r, c = (p.shape[0] - RES) // 2, (p.shape[1] - RES) // 2
        else:
            r, c = at
        test.append(p[r:r + RES, c:c + RES])
    for s in (4, 3):
        for n in TEST:
            p = box_down(tphotos[n], s)
            for r in range(0, p.shape[0] - RES + 1, RES // 2):
                for c in range(0, p.shape[1] - RES + 1, RES // 2):
                    test.append(p[r:r + RES, c:c + RES])
    test = np.stack(test).astype(np.float32)

    np.save(os.path.join(a.out, "train.npy"), train)
    np.save(os.path.join(a.out, "test.npy"), test)
    meta = {
        "source": os.path.basename(a.wheel),
        "train_photos": TRAIN,
        "test_photos": TEST,
        "factors": FACTORS,
        "resolution": RES,
        "seed": a.seed,
        "train": int(train.shape[0]),
        "test": int(test.shape[0]),
        "train_mean": float(train.mean()),
        "train_std": float(train.std()),
    }
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
