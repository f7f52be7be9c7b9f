"""The shipped near-OOD letters: format, MNIST-style preprocessing, loaders, and a reproducible generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image, features

from dgbench import DGBenchError
from dgbench.datasets import LETTERS_ASSET, load_letters, load_split
from tests.helpers import ROOT

# Written out here rather than imported from the script, so that the test checks its choice.
DIGIT_LIKE = set("OoDQ" + "Iil" + "Zz" + "Ss" + "bG" + "B" + "gq")


@pytest.fixture(scope="module")
def asset() -> dict:
    return torch.load(LETTERS_ASSET, map_location="cpu", weights_only=True)


def load_script():
    spec = importlib.util.spec_from_file_location("make_letters", ROOT / "scripts" / "make_letters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_asset_format(asset: dict) -> None:
    images, labels, alphabet = asset["images"], asset["labels"], asset["alphabet"]
    assert images.dtype == torch.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (len(images),)
    assert len(images) >= 1000
    assert isinstance(alphabet, str) and len(set(alphabet)) == len(alphabet)
    assert not DIGIT_LIKE & set(alphabet), f"digit-like letters in the alphabet: {DIGIT_LIKE & set(alphabet)}"
    assert labels.min() >= 0 and labels.max() < len(alphabet)
    assert len(labels.unique()) == len(alphabet)  # every letter occurs
    assert asset["script"] == "scripts/make_letters.py" and isinstance(asset["seed"], int)
    assert asset["fonts"] == sorted(asset["fonts"]) and all(f.endswith(".ttf") for f in asset["fonts"])
    assert (images.flatten(1).amax(1) >= 200).all()  # every image has ink at (nearly) full intensity


def test_mnist_preprocessing(asset: dict) -> None:
    """Size-normalised into 20x20, centre of mass at MNIST's (14, 14), MNIST-like amount of ink."""
    images = asset["images"]
    x = images.double()
    mass = x.sum((1, 2))
    coords = torch.arange(28, dtype=torch.float64)
    cy = (x.sum(2) * coords).sum(1) / mass
    cx = (x.sum(1) * coords).sum(1) / mass
    # Within 1 px of the field's centre (13.5) on both axes; MNIST's integer shift to (14, 14) puts
    # its own test set's centres in [13.5, 14.5], and all but the few glyphs whose shift was
    # clipped (to keep them inside the field) must match that.
    assert ((cy - 13.5).abs() <= 1 + 1e-6).all() and ((cx - 13.5).abs() <= 1 + 1e-6).all()
    near = ((cy - 14).abs() <= 0.5 + 1e-6) & ((cx - 14).abs() <= 0.5 + 1e-6)
    assert near.double().mean() >= 0.99

    ink = images > 0
    rows, cols = ink.any(2), ink.any(1)

    def extent(mask: torch.Tensor) -> torch.Tensor:
        return 28 - mask.int().argmax(1) - mask.flip(1).int().argmax(1)

    height, width = extent(rows), extent(cols)
    assert (height <= 20).all() and (width <= 20).all()
    assert (torch.maximum(height, width) >= 19).double().mean() >= 0.99  # normalised, not just fitted

    # MNIST's test set: mean 0.1325, 13.4 % of pixels above half scale, 19.3 % nonzero.
    mean = images.double().mean() / 255
    assert 0.11 < mean < 0.155
    assert 0.16 < ink.double().mean() < 0.23


def test_loaders(asset: dict, tmp_path: Path) -> None:
    images, labels = load_letters()
    assert torch.equal(images, asset["images"]) and torch.equal(labels, asset["labels"])
    images, labels = load_split("letters", tmp_path, train=False)  # root is not used
    assert torch.equal(images, asset["images"]) and torch.equal(labels, asset["labels"])
    with pytest.raises(DGBenchError, match="only a test split"):
        load_split("letters", tmp_path, train=True)
    with pytest.raises(DGBenchError, match="make_letters.py"):
        load_letters(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(DGBenchError, match="make_letters.py"):
        load_letters(tmp_path / "bad.pt")


def test_generator_reproduces_asset(asset: dict) -> None:
    """The first images of the asset come out of the script again, byte for byte, on a like machine."""
    script = load_script()
    if not script.FONT_DIR.is_dir() or [p.name for p in script.font_files()] != asset["fonts"]:
        pytest.skip(f"the fonts the asset was made from are not all in {script.FONT_DIR}")
    made_with = (asset["pillow"], asset["freetype"])
    here = (Image.__version__, str(features.version("freetype2")))
    if made_with != here:
        pytest.skip(f"asset rasterised with Pillow/FreeType {made_with}, this machine has {here}")
    n = 12
    data = script.make_letters(n, asset["seed"])
    assert data["alphabet"] == asset["alphabet"]
    assert torch.equal(data["labels"], asset["labels"][:n])
    assert torch.equal(data["images"], asset["images"][:n])
