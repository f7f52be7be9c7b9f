"""A near-out-of-distribution set for MNIST: printed letters that are not digits, preprocessed like MNIST.

    python scripts/make_letters.py [--n 5000] [--seed 0] [--out dgbench/assets/letters.pt]
        [--grid /tmp/letters_grid.png] [--mnist-grid /tmp/mnist_grid.png]

Each image is one letter of ``ALPHABET`` rendered (white on black, anti-aliased) from a TrueType
font of the DejaVu family under ``FONT_DIR`` and preprocessed the way LeCun et al. made MNIST: the
glyph is size-normalised to fit a 20x20 box (aspect ratio preserved, area-averaged so its edges are
anti-aliased), then pasted into a 28x28 field so that its centre of mass sits at the centre. MNIST
puts it at pixel (14, 14) (an integer shift, so the test set's centres of mass lie in [13.5, 14.5]
on both axes); so do we.

Printed strokes are thinner than MNIST's pen strokes (~2-3 px at 28x28) and their width varies by
font (ExtraLight to Bold), so every glyph is rendered large (``RENDER_SIZE``), its stroke width is
estimated (``2 * ink area / ink perimeter``), and it is dilated (thin fonts) or eroded (bold ones)
with a disk whose radius brings the stroke, after the downscaling to 20x20, to a target width drawn
per image from ``STROKE_PX``. Erosion is limited (``MAX_EROSION``) and backed off wherever it would
break the glyph (a join or hairline thinner than the disk), so bold serif glyphs stay a little
heavier than their target. ``STROKE_PX`` is tuned so that the set's mean intensity, fraction of
pixels above half scale and fraction of nonzero pixels match MNIST's test set (the script prints
both; see also the 10x10 grids it saves).

Seeded variation per image (``random.Random`` seeded with the run's seed and the image's index, so
image i does not depend on ``--n``): the letter, the font (every DejaVu file, sorted by name), a
rotation in [-12, 12] degrees, and the target stroke width. The output is
``{"images": uint8 (N, 28, 28), "labels": int64 index into alphabet, "alphabet": str, "fonts":
list[str], "seed": int, "script": str, "pillow": str, "freetype": str}``; it loads with
``torch.load(path, weights_only=True)``. Rasterisation depends on FreeType's version, which is why
the file is committed rather than regenerated on every machine.

Letters that are easily read as a digit are left out (``EXCLUDED``), so that an MNIST classifier
facing this set has no right answer and an anomaly detector should flag all of it.
"""

from __future__ import annotations

import argparse
import math
import random
import string
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, features

from dgbench import DGBenchError
from dgbench.data import to_float
from dgbench.datasets import default_data_root, load_split

ROOT = Path(__file__).resolve().parents[1]
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
SCRIPT = "scripts/make_letters.py"

# Letters a reader (or an MNIST classifier) could take for a digit at 28x28, after size
# normalisation has stretched narrow glyphs to 20 px tall and with up to 12 degrees of rotation.
EXCLUDED = {
    "0": "OoDQ",  # closed ovals; Q's tail is a few pixels at 28x28 and MNIST zeros often overshoot
    "1": "Iil",  # a single vertical stroke (i's dot is a 2-px blob, l is a bare stroke)
    # (J, j, L, T, t, f, r keep a hook, foot, bar or arm that a 1 or a 7 lacks: they stay.)
    "2": "Zz",
    "5": "Ss",
    "6": "bG",  # loop at the bottom with a stroke rising on the left; G is an open 6
    "8": "B",  # two stacked bowls
    "9": "gq",  # loop at the top with a stroke descending on the right
}
ALPHABET = "".join(c for c in string.ascii_uppercase + string.ascii_lowercase if c not in "".join(EXCLUDED.values()))

RENDER_SIZE = 112  # font size of the large rendering (4x the final 28-px field)
BOX = 20  # MNIST's size-normalisation box
FIELD = 28
CENTRE = 14  # MNIST's centre of mass, in pixel coordinates of the 28x28 field
MAX_ANGLE = 12.0  # degrees
STROKE_PX = (1.3, 2.7)  # target stroke width in final pixels, drawn uniformly per image
MAX_EROSION = 0.4  # bold fonts are thinned by at most this fraction of their stroke width per side
MAX_OPENING_LOSS = 0.03  # ... and less where that would delete more than this fraction of the ink


def font_files(font_dir: Path = FONT_DIR) -> list[Path]:
    fonts = sorted(font_dir.glob("*.ttf"), key=lambda p: p.name)
    if not fonts:
        raise SystemExit(f"no TrueType fonts in {font_dir}: install fonts-dejavu-core and fonts-dejavu-extra")
    return fonts


def render(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    """The glyph white on black, anti-aliased, cropped to its ink."""
    left, top, right, bottom = font.getbbox(char)
    pad = 4
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad - left, pad - top), char, fill=255, font=font)
    return image.crop(image.getbbox())


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width of a float [0, 1] glyph: twice its area over its perimeter (|gradient| summed)."""
    ink = np.pad(ink, 1)  # edges on the crop's border count too
    gy, gx = ink[1:, :-1] - ink[:-1, :-1], ink[:-1, 1:] - ink[:-1, :-1]
    return 2 * float(ink.sum()) / max(float(np.hypot(gx, gy).sum()), 1e-6)


def ink_extent(ink: np.ndarray) -> int:
    """The larger side of the bounding box of the nonzero pixels."""
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1


def morph(ink: np.ndarray, radius: float) -> np.ndarray:
    """Grey-level dilation (``radius`` > 0) or erosion (< 0) by a disk; the image grows by its reach."""
    reach = int(math.floor(abs(radius)))
    if reach < 1:
        return ink
    height, width = ink.shape
    # out[y, x] = max (or min) of ink[y - reach - dy, x - reach - dx] over the disk, 0 outside ink.
    padded = np.pad(ink, 2 * reach)
    reduce = np.maximum if radius > 0 else np.minimum
    out = padded[reach : reach + height + 2 * reach, reach : reach + width + 2 * reach].copy()
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if 0 < dy * dy + dx * dx <= radius * radius:
                shifted = padded[
                    reach + dy : reach + dy + height + 2 * reach, reach + dx : reach + dx + width + 2 * reach
                ]
                reduce(out, shifted, out=out)
    return out


def components(mask: np.ndarray) -> int:
    """Number of 8-connected components of a boolean image."""
    todo = set(zip(*np.nonzero(mask)))
    count = 0
    while todo:
        count += 1
        stack = [todo.pop()]
        while stack:
            y, x = stack.pop()
            for neighbour in ((y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
                if neighbour in todo:
                    todo.remove(neighbour)
                    stack.append(neighbour)
    return count


def erosion_breaks(ink: np.ndarray, radius: float) -> bool:
    """Whether eroding by ``-radius`` would break the glyph rather than thin it.

    Eroding deletes every part thinner than the disk: a stroke that splits in two changes the count
    of connected components, and one that vanishes is missing from the opening (the erosion
    dilated back). An ``r`` whose arm went that way would read as a 1.
    """
    reach = int(math.floor(-radius))
    eroded = morph(ink, radius)
    opened = morph(eroded, -radius)[2 * reach : -2 * reach, 2 * reach : -2 * reach]
    solid = ink > 0.5
    lost = float((solid & (opened <= 0.5)).sum() / max(solid.sum(), 1))
    return lost > MAX_OPENING_LOSS or components(eroded > 0.5) != components(solid)


def centre_in_field(small: np.ndarray) -> np.ndarray:
    """Paste a <= 20x20 uint8 glyph into 28x28 so that its centre of mass is at (CENTRE, CENTRE).

    The shift is an integer, as in MNIST, clipped so that the glyph is never cut off.
    """
    height, width = small.shape
    mass = small.astype(np.float64)
    total = mass.sum()
    cy = float((mass.sum(1) * np.arange(height)).sum() / total)
    cx = float((mass.sum(0) * np.arange(width)).sum() / total)
    oy = min(max(math.floor(CENTRE - cy + 0.5), 0), FIELD - height)
    ox = min(max(math.floor(CENTRE - cx + 0.5), 0), FIELD - width)
    field = np.zeros((FIELD, FIELD), dtype=np.uint8)
    field[oy : oy + height, ox : ox + width] = small
    return field


def make_image(char: str, font: ImageFont.FreeTypeFont, angle: float, stroke: float) -> np.ndarray:
    glyph = render(char, font).rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    glyph = glyph.crop(glyph.getbbox())
    ink = np.asarray(glyph, dtype=np.float32) / 255
    # Dilating by r widens the stroke by 2r and the glyph's larger side M by 2r; after scaling that
    # side to BOX pixels the stroke is (w + 2r) * BOX / (M + 2r): solve for the target width, then
    # correct once from the morphed glyph (the width estimate and the disk are approximate).
    floor = -MAX_EROSION * stroke_width(ink)
    radius = 0.0
    for _ in range(2):
        morphed = morph(ink, radius)
        width, size = stroke_width(morphed), ink_extent(morphed)
        radius = max(radius + (stroke * size / BOX - width) / (2 * (1 - stroke / BOX)), floor)
    while radius <= -1 and erosion_breaks(ink, radius):
        radius += 0.5  # erode less: this glyph has thin parts (joins, hairlines) that would vanish
    thick = Image.fromarray(np.round(morph(ink, radius) * 255).astype(np.uint8))
    thick = thick.crop(thick.getbbox())
    scale = BOX / max(thick.size)
    new_size = (max(1, min(BOX, round(thick.width * scale))), max(1, min(BOX, round(thick.height * scale))))
    small = np.asarray(thick.resize(new_size, resample=Image.Resampling.BOX))
    return centre_in_field(small)


def make_letters(n: int, seed: int, font_dir: Path = FONT_DIR) -> dict[str, object]:
    """``n`` letter images; image i depends only on ``seed``, ``i`` and the fonts (not on ``n``)."""
    paths = font_files(font_dir)
    fonts = [ImageFont.truetype(str(p), RENDER_SIZE) for p in paths]
    images = np.zeros((n, FIELD, FIELD), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        label = rng.randrange(len(ALPHABET))
        font = fonts[rng.randrange(len(fonts))]
        angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
        stroke = rng.uniform(*STROKE_PX)
        images[i] = make_image(ALPHABET[label], font, angle, stroke)
        labels[i] = label
    return {
        "images": torch.from_numpy(images),
        "labels": torch.from_numpy(labels),
        "alphabet": ALPHABET,
        "fonts": [p.name for p in paths],
        "seed": seed,
        "script": SCRIPT,
        "pillow": Image.__version__,
        "freetype": str(features.version("freetype2")),
    }


def intensity_stats(images: torch.Tensor) -> dict[str, float]:
    """Mean intensity in [0, 1], and the fractions of pixels above half of full scale and above 0."""
    x = to_float(images)
    return {
        "mean": x.mean().item(),
        "frac_gt_half": (x > 0.5).float().mean().item(),
        "frac_nonzero": (x > 0).float().mean().item(),
    }


def save_grid(images: torch.Tensor, path: str) -> None:
    import torchvision.utils

    torchvision.utils.save_image(to_float(images[:100]), path, nrow=10, padding=2, pad_value=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="number of images (5000 keeps the file under 4 MB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "dgbench" / "assets" / "letters.pt"))
    parser.add_argument("--grid", default="/tmp/letters_grid.png", help="10x10 grid of the first letters")
    parser.add_argument("--mnist-grid", default="/tmp/mnist_grid.png", help="10x10 grid of MNIST test digits")
    args = parser.parse_args()

    data = make_letters(args.n, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    print(f"wrote {out}: {args.n} images, {out.stat().st_size / 2**20:.2f} MiB, alphabet {data['alphabet']}")
    save_grid(data["images"], args.grid)
    print(f"letters {intensity_stats(data['images'])} grid {args.grid}")

    try:
        mnist, _ = load_split("mnist", default_data_root(), train=False, download=False)
    except DGBenchError as err:
        print(f"MNIST not compared: {err}")
        return
    save_grid(mnist, args.mnist_grid)
    print(f"MNIST   {intensity_stats(mnist)} grid {args.mnist_grid}")


if __name__ == "__main__":
    main()
