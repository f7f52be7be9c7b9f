"""dgbench/data.py's ``label_size``: every training image, and exactly n labels (the others -1).

The labelled images are recomputed here from the protocol itself (seeded permutation, then a
stratified subset), and the supervised families' ``train_size`` is checked against the same
recomputation, so that adding the option changed nothing for them.
"""

from __future__ import annotations

import pytest
import torch

from dgbench import DGBenchError
from dgbench.data import MNISTDataModule, default_data_root, load_split, stratified_subset

SEED = 3


def module(**kwargs) -> MNISTDataModule:
    datamodule = MNISTDataModule(root=default_data_root(), val_size=0, seed=SEED, download=False, **kwargs)
    datamodule.setup("fit")
    return datamodule


def expected_labelled(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol by hand: a seeded permutation of the 60 000 images, then a stratified subset."""
    images, labels = load_split("mnist", default_data_root(), True)
    generator = torch.Generator().manual_seed(SEED)
    order = torch.randperm(len(images), generator=generator)
    chosen = order[stratified_subset(labels[order], size, generator)]
    return images[chosen], labels[chosen]


def test_label_size_keeps_every_image_and_exactly_n_labels_reach_the_model_in_an_epoch() -> None:
    datamodule = module(label_size=100, batch_size=500)  # 60 000 / 500: no partial batch dropped
    images, labels = datamodule.splits["train"]
    assert len(images) == 60_000 and len(datamodule.splits["val"][1]) == 0
    seen_images, seen_labels = 0, []
    for x, y in datamodule.train_dataloader():
        seen_images += len(x)
        seen_labels.append(y)
    seen = torch.cat(seen_labels)
    assert seen_images == 60_000 and int((seen >= 0).sum()) == 100 and int((seen == -1).sum()) == 59_900
    # The labelled ones are the stratified subset, with their true labels: MNIST's class shares (9.0 to 11.2 %).
    expected_images, expected_labels = expected_labelled(100)
    assert torch.equal(images[labels >= 0], expected_images) and torch.equal(labels[labels >= 0], expected_labels)
    assert all(9 <= count <= 11 for count in labels[labels >= 0].bincount(minlength=10).tolist())


def test_train_size_is_unchanged_for_the_other_families() -> None:
    images, labels = module(train_size=100).splits["train"]
    expected_images, expected_labels = expected_labelled(100)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)  # = label_size's 100
    batches = list(module(train_size=100, batch_size=25, labelled_batch_size=16).train_dataloader())
    assert sum(len(y) for _, y in batches) == 100 and all((y >= 0).all() for _, y in batches)  # no extra block


def test_each_batch_gets_a_block_of_labelled_images_cycling_through_all_n() -> None:
    datamodule = module(train_size=1000, label_size=50, batch_size=100, labelled_batch_size=20)
    images, labels = datamodule.splits["train"]
    labelled_images = {tuple(im.flatten().tolist()) for im in images[labels >= 0]}
    loader = datamodule.train_dataloader()
    batches = list(loader)
    assert len(batches) == 10
    block_images = set()
    for x, y in batches:
        assert len(y) == 120 and (y[100:] >= 0).all()
        block_images |= {tuple((im.flatten() * 255).round().to(torch.uint8).tolist()) for im in x[100:]}
    assert block_images == labelled_images  # 200 draws in full permutations cover all 50, and only them
    again = list(loader)  # the same epoch again: the same batches (a resumed run sees the same data)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_without_hidden_labels_there_is_no_labelled_block() -> None:
    batches = list(module(train_size=200, batch_size=50, labelled_batch_size=20).train_dataloader())
    assert [len(y) for _, y in batches] == [50] * 4


@pytest.mark.parametrize(
    "kwargs", [{"label_size": 5}, {"label_size": 60_001}, {"label_size": 100, "labelled_batch_size": -1}]
)
def test_bad_label_settings_are_one_line_errors(kwargs: dict) -> None:
    with pytest.raises(DGBenchError, match="data.label"):
        module(**kwargs)
