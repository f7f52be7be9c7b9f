"""The evaluation data (``load_eval_data``): one random stream per set, so that no budget of one set
moves another set or the FID reference."""

from __future__ import annotations

import hashlib

import pytest
import torch

from dgbench.data import default_data_root, load_split
from dgbench.evaluation.suites.common import EvalData, load_eval_data, stream

BUDGET = {"ood": 200, "sample_quality": 300}


def load(seed: int = 0, **budget: int) -> EvalData:
    return load_eval_data("mnist", default_data_root(), {**BUDGET, **budget}, seed)


@pytest.fixture(scope="module")
def base() -> EvalData:
    return load()


@pytest.fixture(scope="module")
def raw_test() -> tuple[torch.Tensor, torch.Tensor]:
    return load_split("mnist", default_data_root(), train=False)


def fixed_sets(data: EvalData) -> dict[str, torch.Tensor]:
    """The sets that no OOD budget may move: test order, FID reference, FID floor."""
    return {
        "test_images": data.test_images,
        "test_labels": data.test_labels,
        "train_images": data.train_images,
        "heldout_images": data.heldout_images,
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} moved"


def test_stream_is_seeded_from_sha256_of_seed_and_name() -> None:
    """Stable across processes (Python's ``hash`` of a str is salted per process)."""
    expected = int.from_bytes(hashlib.sha256(b"7/letters").digest()[:8], "little") >> 1
    assert stream(7, "letters").initial_seed() == expected
    assert len({stream(s, n).initial_seed() for s in (0, 1) for n in ("a", "b")}) == 4


def test_test_order_is_the_seeds_permutation(base: EvalData, raw_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The test order every earlier run used: suites reading a prefix of it keep their images."""
    images, labels = raw_test
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    assert torch.equal(base.test_images, images[order].unsqueeze(1).float() / 255)
    assert torch.equal(base.test_labels, labels[order])
    assert torch.equal(base.heldout_images, base.test_images[-BUDGET["sample_quality"] :])


def test_ood_budget_moves_no_other_set(base: EvalData) -> None:
    assert_same(fixed_sets(base), fixed_sets(load(ood=BUDGET["ood"] + 100)))


def test_sample_quality_budget_moves_no_ood_set(base: EvalData) -> None:
    other = load(sample_quality=BUDGET["sample_quality"] + 200)
    assert_same(base.ood, other.ood)
    assert len(other.train_images) == len(other.heldout_images) == BUDGET["sample_quality"] + 200


def test_same_seed_same_data_other_seed_other_data(base: EvalData) -> None:
    again, other = load(seed=0), load(seed=1)
    assert_same({**fixed_sets(base), **base.ood}, {**fixed_sets(again), **again.ood})
    assert list(other.ood) == list(base.ood)
    for name, x in {**fixed_sets(base), **base.ood}.items():
        if name != "test_labels":  # a permutation of labels can coincide on a few images, not the images
            assert not torch.equal(x, {**fixed_sets(other), **other.ood}[name]), f"{name} ignores the seed"
