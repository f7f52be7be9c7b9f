"""The in-memory MNIST pipeline: batches, splits, subsets, augmentation, ordering, and its errors."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from dgbench import DGBenchError
from dgbench.data import EpochShuffle, MNISTDataModule, TensorBatches, random_translate, stratified_subset, to_float
from dgbench.datasets import IDX_FILES, default_data_root, load_split
from tests.helpers import ROOT, run_python


def datamodule(**kwargs: object) -> MNISTDataModule:
    dm = MNISTDataModule(**kwargs)  # type: ignore[arg-type]
    dm.setup("fit")
    return dm


def image_keys(images: torch.Tensor) -> torch.Tensor:
    """One float64 number per image (a random projection): equal images, equal keys; else distinct."""
    projection = torch.rand(28 * 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return images.reshape(len(images), -1).double() @ projection


@pytest.fixture(scope="module")
def subset_dm() -> MNISTDataModule:
    return datamodule(train_size=1000, batch_size=100, eval_batch_size=500, seed=0)


@pytest.fixture(scope="module")
def full_dm() -> MNISTDataModule:
    return datamodule(seed=0)


# --- batches and splits ---------------------------------------------------------------------
def test_batches_have_the_documented_shapes_dtypes_and_range(subset_dm: MNISTDataModule) -> None:
    loaders = {
        "train": subset_dm.train_dataloader(),
        "val": subset_dm.val_dataloader(),
        "test": subset_dm.test_dataloader(),
    }
    sizes = {"train": 1000, "val": 5000, "test": 10000}
    for split, loader in loaders.items():
        batches = list(loader)
        assert len(batches) == len(loader)
        assert sum(len(y) for _, y in batches) == sizes[split]
        x, y = batches[0]
        assert x.shape == (100 if split == "train" else 500, 1, 28, 28)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert 0 <= x.min() and x.max() == 1  # MNIST has saturated ink in every batch
        assert set(y.tolist()) == set(range(10))


def test_train_and_val_partition_the_training_split(full_dm: MNISTDataModule) -> None:
    images, _ = load_split("mnist", default_data_root(), train=True)
    train_x, val_x = full_dm.splits["train"][0], full_dm.splits["val"][0]
    assert len(train_x) == 55000 and len(val_x) == 5000
    # Together they are exactly the 60k training images (as a multiset), so nothing is shared.
    together = torch.cat([image_keys(train_x), image_keys(val_x)]).sort().values
    assert torch.equal(together, image_keys(images).sort().values)
    assert torch.equal(full_dm.splits["test"][0], load_split("mnist", default_data_root(), train=False)[0])


def test_split_is_determined_by_the_seed(full_dm: MNISTDataModule) -> None:
    same, other = datamodule(seed=0), datamodule(seed=1)
    assert torch.equal(same.splits["val"][0], full_dm.splits["val"][0])
    assert torch.equal(same.splits["train"][1], full_dm.splits["train"][1])
    assert not torch.equal(other.splits["val"][0], full_dm.splits["val"][0])


@pytest.mark.parametrize("size", [1000, 997])
def test_train_size_is_an_exact_stratified_subset(full_dm: MNISTDataModule, size: int) -> None:
    dm = datamodule(seed=0, train_size=size)
    pool_x, pool_y = full_dm.splits["train"]  # the same seed holds out the same validation images
    sub_x, sub_y = dm.splits["train"]
    assert len(sub_x) == size
    assert torch.isin(image_keys(sub_x), image_keys(pool_x)).all()
    expected = torch.bincount(pool_y, minlength=10).double() * size / len(pool_y)
    assert (torch.bincount(sub_y, minlength=10) - expected).abs().max() < 1
    assert torch.equal(dm.splits["val"][0], full_dm.splits["val"][0])


def test_stratified_subset_on_imbalanced_labels() -> None:
    labels = torch.tensor([0] * 700 + [1] * 250 + [2] * 49 + [3])
    idx = stratified_subset(labels, 101, torch.Generator().manual_seed(0))
    assert len(idx) == len(idx.unique()) == 101
    expected = torch.tensor([700, 250, 49, 1]) * 101 / 1000
    assert (torch.bincount(labels[idx], minlength=4) - expected).abs().max() < 1


def test_to_float_maps_each_grey_level_k_to_k_over_255_with_a_channel_axis() -> None:
    levels = torch.arange(256, dtype=torch.uint8).view(4, 8, 8)
    x = to_float(levels)
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32
    expected = [k / 255 for k in range(256)]  # Python floats: an independent computation
    assert x.flatten().tolist() == pytest.approx(expected, abs=1e-7) and x.min() == 0 and x.max() == 1
    with pytest.raises(TypeError, match="uint8"):
        to_float(x[:, 0])  # already float: a second division would be silent


# --- augmentation ---------------------------------------------------------------------------
def test_zero_shift_is_the_identity(subset_dm: MNISTDataModule) -> None:
    images = subset_dm.splits["train"][0][:64]
    assert torch.equal(random_translate(images, 0, torch.Generator().manual_seed(0)), images)
    loader = TensorBatches(images, torch.zeros(64, dtype=torch.long), 64, max_shift=0)
    assert torch.equal(next(iter(loader))[0], images.unsqueeze(1).float() / 255)


def test_shift_is_a_zero_filled_translation_within_max_shift(subset_dm: MNISTDataModule) -> None:
    images, max_shift = subset_dm.splits["train"][0][:64], 2
    shifted = random_translate(images, max_shift, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    # Ink can only leave the frame, and MNIST digits sit in the centre 20x20, so almost none does.
    mass, shifted_mass = images.flatten(1).sum(1), shifted.flatten(1).sum(1)
    assert (shifted_mass <= mass).all() and shifted_mass.sum() > 0.99 * mass.sum()
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    moved = 0
    for image, out in zip(padded, shifted):
        crops = [image[dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)]
        matches = [i for i, crop in enumerate(crops) if torch.equal(crop, out)]
        assert matches, "every output is the input shifted by some (dy, dx) in [-2, 2]^2"
        moved += 12 not in matches  # index 12 is (0, 0)
    assert moved > 32  # 24 of 25 offsets move the image


def test_datamodule_shifts_only_training_batches() -> None:
    plain = datamodule(train_size=200, batch_size=100, seed=0)
    shifted = datamodule(train_size=200, batch_size=100, seed=0, max_shift=2)
    (x0, y0), (x1, y1) = next(iter(plain.train_dataloader())), next(iter(shifted.train_dataloader()))
    assert torch.equal(y0, y1) and not torch.equal(x0, x1)
    assert torch.equal(next(iter(plain.val_dataloader()))[0], next(iter(shifted.val_dataloader()))[0])


# --- ordering -------------------------------------------------------------------------------
def numbered(n: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels all equal their index, labels equal to their index."""
    return torch.arange(n, dtype=torch.uint8)[:, None, None].expand(n, 28, 28).clone(), torch.arange(n)


def epoch_order(loader: TensorBatches) -> torch.Tensor:
    ids = []
    for x, y in loader:
        # The centre pixel survives a shift of up to 13 pixels.
        assert torch.equal((x[:, 0, 14, 14] * 255).round().long(), y), "images stay paired with labels"
        ids.append(y)
    return torch.cat(ids)


def test_without_shuffle_every_example_comes_once_in_order() -> None:
    images, labels = numbered()
    loader = TensorBatches(images, labels, batch_size=64)
    assert len(loader) == 4
    assert torch.equal(epoch_order(loader), labels)


def test_with_shuffle_every_example_comes_once_in_a_new_order() -> None:
    images, labels = numbered()
    order = epoch_order(TensorBatches(images, labels, batch_size=64, shuffle=True))
    assert torch.equal(order.sort().values, labels) and not torch.equal(order, labels)
    dropped = TensorBatches(images, labels, batch_size=64, shuffle=True, drop_last=True)
    assert len(dropped) == 3 and len(epoch_order(dropped).unique()) == 192


def test_ranks_get_disjoint_equal_shards() -> None:
    images, labels = numbered()
    shards = [epoch_order(TensorBatches(images, labels, 32, shuffle=True, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 125
    assert len(torch.cat(shards).unique()) == 250


def test_set_epoch_changes_the_order_reproducibly() -> None:
    images, labels = numbered()
    loader = TensorBatches(images, labels, batch_size=64, shuffle=True, max_shift=1, seed=3)
    epoch0 = [x for x, _ in loader]
    loader.sampler.set_epoch(1)
    epoch1 = epoch_order(loader)
    assert not torch.equal(epoch1, epoch_order(TensorBatches(images, labels, 64, shuffle=True, seed=3)))
    # A fresh loader (a resumed run) told the same epoch gives the same order and the same shifts.
    fresh = TensorBatches(images, labels, batch_size=64, shuffle=True, max_shift=1, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, (x for x, _ in fresh)))
    fresh.sampler.set_epoch(1)
    assert torch.equal(epoch_order(fresh), epoch1)
    assert EpochShuffle(3).generator().initial_seed() != EpochShuffle(4).generator().initial_seed()


# --- errors a user can fix ------------------------------------------------------------------
def assert_one_line(err: pytest.ExceptionInfo[DGBenchError], *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("download", [False, True])
def test_missing_files_fail_fast_with_one_line(tmp_path: Path, download: bool) -> None:
    # download=True on this offline machine must give the same message, not hang or traceback.
    start = time.perf_counter()
    with pytest.raises(DGBenchError) as err:
        MNISTDataModule(root=str(tmp_path), download=download).prepare_data()
    assert time.perf_counter() - start < 20
    assert_one_line(err, "mnist files not found", str(tmp_path / "MNIST" / "raw"), "DATA_DIR")


def copy_test_split(tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES[False]:
        shutil.copyfile(Path(default_data_root()) / "MNIST" / "raw" / name, raw / name)
        (raw / name).chmod(0o644)  # the shared copies are read-only
    return raw


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("truncate_images", "truncated or corrupt"),
        ("truncate_labels", "truncated or corrupt"),
        ("header_only", "truncated inside its header"),
        ("gzip_magic", "is not an IDX file"),
    ],
)
def test_damaged_idx_file_is_named_in_one_line(tmp_path: Path, damage: str, fragment: str) -> None:
    raw = copy_test_split(tmp_path)
    images, labels = (raw / name for name in IDX_FILES[False])
    target = labels if damage == "truncate_labels" else images
    data = target.read_bytes()
    damaged = {
        "truncate_images": data[:-1000],
        "truncate_labels": data[:-1],
        "header_only": data[:10],
        "gzip_magic": b"\x1f\x8b\x08\x00" + data[4:],  # still gzipped under the raw name
    }[damage]
    target.write_bytes(damaged)
    with pytest.raises(DGBenchError) as err:
        load_split("mnist", str(tmp_path), train=False, download=False)
    assert_one_line(err, fragment, str(target))


def test_bad_arguments_are_one_line_errors(full_dm: MNISTDataModule) -> None:
    with pytest.raises(DGBenchError) as err:
        MNISTDataModule(name="cifar10")
    assert_one_line(err, "cifar10", "fashion_mnist")
    with pytest.raises(DGBenchError) as err:
        datamodule(train_size=5)
    assert_one_line(err, "data.train_size=5")


@pytest.mark.slow
def test_train_py_reports_missing_data_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = run_python(
        [str(ROOT / "train.py"), f"data.root={missing}", "trainer.accelerator=cpu", "logger=none"], cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0], result.stderr[-2000:]
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
