"""MNIST and Fashion-MNIST kept as one uint8 tensor per split on the training device.

Each split is decoded once (:mod:`dgbench.datasets` reads and checks the IDX files), moved to the
device, and batched by indexing: no per-sample PIL/ToTensor round trip and no worker processes.
Batches are float images in [0, 1] of shape (N, 1, 28, 28) with int64 labels (:func:`to_float`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch

from dgbench import DGBenchError
from dgbench.datasets import DATASETS
from dgbench.datasets import default_data_root as default_data_root  # re-exported: the import path of the data's users
from dgbench.datasets import load_split as load_split  # (sample.py, the tests, the README's example)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W) as the families read them: float (N, 1, H, W) in [0, 1], x / 255.

    The one conversion from the stored 8-bit grey levels k to model inputs k / 255 (training batches,
    evaluation sets, samplers' references, probes)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float takes uint8 images (N, H, W), got {images.dtype}")
    return images.unsqueeze(1).float().div_(255)


def stratified_subset(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``size`` examples whose class proportions match ``labels`` (largest remainder)."""
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * size / len(labels)
    take = quota.floor().long()
    shortfall = size - int(take.sum())
    take[torch.argsort(quota - take, descending=True)[:shortfall]] += 1
    chosen = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


def random_translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image (N, H, W) by its own integer offset in [-max_shift, max_shift], zero-filled.

    One flat gather from the padded batch: each output pixel reads padded[row + dy, col + dx].
    """
    n, h, w = images.shape
    padded_w = w + 2 * max_shift
    padded = torch.nn.functional.pad(images, (max_shift,) * 4).flatten(1)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(images.device)
    window = (
        torch.arange(h, device=images.device)[:, None] * padded_w + torch.arange(w, device=images.device)
    ).flatten()
    return padded.gather(1, window + (offsets[0] * padded_w + offsets[1])[:, None]).view(n, h, w)


class EpochShuffle:
    """Permutation source seeded by (seed, epoch).

    Lightning calls ``set_epoch`` on a loader's ``sampler`` at every epoch start, as it does for
    DistributedSampler, so an epoch's order depends only on the seed and the epoch number: a run
    resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, seed: int) -> None:
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)


class TensorBatches:
    """Mini-batches ``(images float [0,1] (B,1,28,28), labels (B,))`` cut from device tensors."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        max_shift: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        labelled_batch_size: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.max_shift, self.rank, self.world_size = max_shift, rank, world_size
        # Semi-supervised batches: with some labels hidden (-1), each batch also gets this many labelled
        # examples, cycled through the labelled ones in a seeded order (none where every label is known).
        labelled = (labels >= 0).nonzero().squeeze(1)
        self.labelled = labelled if labelled_batch_size > 0 and len(labelled) < len(labels) else labelled[:0]
        self.labelled_batch_size = labelled_batch_size
        self.sampler = EpochShuffle(seed)
        self.batch_sampler = None  # Lightning inspects DataLoader-like objects for both attributes

    def _num_local(self) -> int:
        # Every rank gets the same number of examples (DistributedSampler's convention).
        return len(self.images) // self.world_size if self.world_size > 1 else len(self.images)

    def __len__(self) -> int:
        n = self._num_local()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _labelled_order(self, generator: torch.Generator) -> torch.Tensor:
        """This rank's labelled indices for every batch of the epoch: fresh permutations, concatenated."""
        if not len(self.labelled):
            return self.labelled
        pool = self.labelled[self.rank :: self.world_size] if self.world_size > 1 else self.labelled
        rounds = math.ceil(len(self) * self.labelled_batch_size / len(pool))
        return torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(rounds)]).to(
            self.images.device
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self.sampler.generator()
        device = self.images.device
        n = len(self.images)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        local = order[self.rank :: self.world_size][: self._num_local()].to(device)
        extra = self._labelled_order(generator)
        for i in range(len(self)):
            idx = local[i * self.batch_size : (i + 1) * self.batch_size]
            if len(extra):
                idx = torch.cat([idx, extra[i * self.labelled_batch_size : (i + 1) * self.labelled_batch_size]])
            images = self.images[idx]
            if self.max_shift:
                images = random_translate(images, self.max_shift, generator)
            yield to_float(images), self.labels[idx]


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST, with a seeded train/val split and an optional stratified subset.

    Args:
        name: ``mnist`` or ``fashion_mnist``.
        root: folder holding ``MNIST/raw/`` etc.; defaults to ``$DATA_DIR``, else ``./data``.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        val_size: examples held out of the 60k training split for validation; 0 = no validation
            split, so that with ``train_size`` the module holds exactly that many labelled
            training images and no other (the learning curves' protocol).
        train_size: if set, a class-stratified subset of the remaining training examples.
        label_size: if set, every training image is kept but only a class-stratified subset of this
            many keeps its label; the others get label -1 (unlabelled), for semi-supervised families.
            At the same seed the labelled images are the ``train_size`` subset of that size.
        labelled_batch_size: with ``label_size``, this many labelled images are appended to every
            training batch (cycling through them, seeded per epoch), so that n = 100 labels among
            55 000 images still reach each step; 0 = plain batches (one label in ~550 images).
        max_shift: random translation of up to this many pixels per training image (0 = off).
        download: let torchvision fetch missing files (needs internet).
    """

    def __init__(
        self,
        name: str = "mnist",
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        train_size: int | None = None,
        max_shift: int = 0,
        seed: int = 0,
        download: bool = True,
        label_size: int | None = None,
        labelled_batch_size: int = 0,
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise DGBenchError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
        self.name, self.root = name, root or default_data_root()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_size = val_size, train_size
        self.max_shift, self.seed, self.download = max_shift, seed, download
        self.label_size, self.labelled_batch_size = label_size, labelled_batch_size
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare_data(self) -> None:
        for train in (True, False):
            load_split(self.name, self.root, train, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images, labels = load_split(self.name, self.root, True, self.download)
        generator = torch.Generator().manual_seed(self.seed)
        if not 0 <= self.val_size < len(images):
            raise DGBenchError(f"data.val_size={self.val_size} must be in [0, {len(images) - 1}] (0 = no validation)")
        perm = torch.randperm(len(images), generator=generator)
        val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
        if self.train_size is not None:
            if not 10 <= self.train_size <= len(train_idx):
                raise DGBenchError(f"data.train_size={self.train_size} must be in [10, {len(train_idx)}]")
            train_idx = train_idx[stratified_subset(labels[train_idx], self.train_size, generator)]
        train_labels = labels[train_idx]
        if self.label_size is not None:
            if not 10 <= self.label_size <= len(train_idx):
                raise DGBenchError(f"data.label_size={self.label_size} must be in [10, {len(train_idx)}]")
            keep = stratified_subset(train_labels, self.label_size, generator)
            train_labels = torch.full_like(train_labels, -1).index_copy_(0, keep, train_labels[keep])
        if self.labelled_batch_size < 0:
            raise DGBenchError(f"data.labelled_batch_size={self.labelled_batch_size} must be >= 0 (0 = plain batches)")
        test_images, test_labels = load_split(self.name, self.root, False, self.download)
        self.splits = {
            "train": (images[train_idx].to(device), train_labels.to(device)),
            "val": (images[val_idx].to(device), labels[val_idx].to(device)),
            "test": (test_images.to(device), test_labels.to(device)),
        }

    def _loader(self, split: str, train: bool) -> TensorBatches:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        images, labels = self.splits[split]
        return TensorBatches(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and len(images) >= 2 * self.batch_size,
            max_shift=self.max_shift if train else 0,
            seed=self.seed,  # every rank draws the same permutation and takes its own shard
            rank=rank,
            world_size=world,
            labelled_batch_size=self.labelled_batch_size if train else 0,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)


def held_out_validation(
    name: str, val_size: int, seed: int, root: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split that ``MNISTDataModule(name, val_size=val_size, seed=seed)`` held out of
    training (uint8 images (N, 28, 28), labels), rebuilt by the module's own code: what a checkpoint's
    ``validation`` record (:class:`dgbench.family.FamilyModule`) points to."""
    datamodule = MNISTDataModule(name, root, val_size=val_size, seed=seed, download=False)
    datamodule.setup()
    return datamodule.splits["val"]
