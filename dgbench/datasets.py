"""The datasets, read from their files: MNIST and Fashion-MNIST from torchvision's IDX files, the letters
from the asset in dgbench/assets/.

IDX (LeCun et al.'s format for MNIST): a 4-byte magic number 0x0000 08 0N (unsigned bytes, N
dimensions), N big-endian uint32 sizes, then the data. Each file is checked against its header before
torchvision decodes it, so that a missing, foreign or truncated file gets one line naming the file and
what to do instead of an error deep in the reader. Batching and splits are :mod:`dgbench.data`'s.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from pathlib import Path

import torch
import torchvision

from dgbench import DGBenchError

DATASETS: dict[str, type[torchvision.datasets.MNIST]] = {
    "mnist": torchvision.datasets.MNIST,
    "fashion_mnist": torchvision.datasets.FashionMNIST,
}
# (images, labels) file names per split, as torchvision lays them out under <root>/<Class>/raw/.
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST files use


def default_data_root() -> str:
    return os.environ.get("DATA_DIR", "./data")


def check_idx_file(path: Path) -> None:
    """Raise a one-line DGBenchError unless ``path`` is a complete uint8 IDX file.

    torchvision would fail on a bad file with a reshape error deep in its reader; checking the
    header against the file size first lets us name the file and say what is wrong.
    """
    data = path.read_bytes()[:64]
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise DGBenchError(
            f"{path} is not an IDX file (magic number {data[:4].hex() or 'missing'}, expected "
            "0000080N): replace it with the original file or delete it to re-download"
        )
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DGBenchError(f"{path} is truncated inside its header: replace or re-download it")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected, actual = 4 + 4 * ndim + math.prod(dims), path.stat().st_size
    if actual != expected:
        raise DGBenchError(
            f"{path} is truncated or corrupt ({actual} bytes, its header says {expected}): "
            "replace it with the original file or delete it to re-download"
        )


@functools.lru_cache(maxsize=4)  # evaluation and tests set up the same splits repeatedly
def load_split(name: str, root: str | Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split to ``(images uint8 (N, 28, 28), labels int64 (N,))`` on the CPU."""
    if name in ASSET_DATASETS:  # test-only sets shipped in dgbench/assets/: nothing under root
        if train:
            raise DGBenchError(f"{name} has only a test split: load it with train=False")
        return ASSET_DATASETS[name]()
    if name not in DATASETS:
        raise DGBenchError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    dataset_cls = DATASETS[name]
    raw = Path(root) / dataset_cls.__name__ / "raw"
    files = [raw / f for f in IDX_FILES[train]]
    if not all(f.exists() for f in files):
        if download:
            try:
                dataset_cls(str(root), train=train, download=True)
            except Exception:  # noqa: BLE001 - any download failure gets the same actionable message
                pass
        if not all(f.exists() for f in files):
            raise DGBenchError(
                f"{name} files not found in {raw} (expected {', '.join(IDX_FILES[train])}) and could "
                "not be downloaded: set DATA_DIR or data.root to the folder holding "
                f"{dataset_cls.__name__}/raw/"
            )
    for f in files:
        check_idx_file(f)
    dataset = dataset_cls(str(root), train=train, download=False)
    return dataset.data.contiguous(), dataset.targets.long()


LETTERS_ASSET = Path(__file__).parent / "assets" / "letters.pt"


def load_letters(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Printed letters that are not digits, preprocessed like MNIST: a near-out-of-distribution set.

    Returns ``(images uint8 (N, 28, 28), labels int64 (N,))``; a label indexes the asset's
    ``alphabet``. The asset is written by ``scripts/make_letters.py`` (whose docstring says how)
    and committed, since its rendering depends on the machine's fonts and FreeType.
    """
    path = LETTERS_ASSET if path is None else Path(path)
    if not path.is_file():
        raise DGBenchError(f"letters asset {path} not found: run python scripts/make_letters.py")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return data["images"], data["labels"]
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file gets the same actionable message
        raise DGBenchError(
            f"letters asset {path} is unreadable ({type(err).__name__}): run python scripts/make_letters.py"
        ) from None


# Test-split-only datasets shipped as files in dgbench/assets/, by the name load_split knows them by.
ASSET_DATASETS = {"letters": load_letters}
