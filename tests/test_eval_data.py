"""The evaluation data (``load_eval_data``): one random stream per set, so that no budget of one set
moves another set or the FID reference."""

from __future__ import annotations

import hashlib

import pytest
import torch

from dgbench import DGBenchError
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


# --- the sets derived from test images: disjoint from the in-distribution images they are scored against


def as_bytes(images: torch.Tensor) -> list[bytes]:
    """Each image as its 784 (or 392 for a half) uint8 pixel values: exact keys to look images up by."""
    return [x.numpy().tobytes() for x in (images * 255).round().to(torch.uint8).reshape(len(images), -1)]


@pytest.fixture(scope="module")
def index(raw_test: tuple[torch.Tensor, torch.Tensor]) -> dict[str, dict[bytes, list[int]]]:
    """Raw test-split indices by whole image, by top half (rows 0-13) and by bottom half (rows 14-27)."""
    images = raw_test[0].float() / 255
    found: dict[str, dict[bytes, list[int]]] = {"whole": {}, "top": {}, "bottom": {}}
    for part, x in (("whole", images), ("top", images[:, :14]), ("bottom", images[:, 14:])):
        for i, key in enumerate(as_bytes(x)):
            found[part].setdefault(key, []).append(i)
    return found


def sources_of(images: torch.Tensor, part: str, index: dict[str, dict[bytes, list[int]]]) -> list[int]:
    """The raw test index of every image (or half), by brute-force lookup; each must be unique."""
    hits = [index[part].get(key, []) for key in as_bytes(images)]
    assert all(len(h) == 1 for h in hits), f"{part}: an image matches no test image or several"
    return [h[0] for h in hits]


@pytest.fixture(scope="module")
def in_distribution(base: EvalData, index: dict[str, dict[bytes, list[int]]]) -> set[int]:
    """Raw test indices of the images the OOD suite scores as in-distribution (suites/ood.py: test_images[:n])."""
    return set(sources_of(base.test_images[: BUDGET["ood"], 0], "whole", index))


def test_near_and_far_sets(base: EvalData) -> None:
    from dgbench.evaluation.suites.common import NEAR_OOD

    assert NEAR_OOD == ("letters", "rotated", "chimeras")
    assert set(NEAR_OOD) < set(base.ood) and "flipped" not in base.ood
    assert set(base.ood) - set(NEAR_OOD) == {"fashion_mnist", "uniform_noise", "gaussian_noise", "inverted"}
    assert all(x.shape == (BUDGET["ood"], 1, 28, 28) for x in base.ood.values())


def test_rotated_are_turned_test_digits_of_turn_sensitive_classes_not_scored_in_distribution(
    base: EvalData, raw_test: tuple[torch.Tensor, torch.Tensor], index: dict, in_distribution: set[int]
) -> None:
    rotated = base.ood["rotated"][:, 0]
    turned_back = rotated.flip(-1).flip(-2)  # a 180-degree turn is both mirrors
    assert torch.equal(torch.rot90(rotated, 2, dims=(-2, -1)), turned_back)
    src = sources_of(turned_back, "whole", index)
    assert len(set(src)) == len(src) and not set(src) & in_distribution
    assert not set(raw_test[1][src].tolist()) & {0, 1, 6, 8, 9}
    assert torch.equal(turned_back, raw_test[0][src].float() / 255)


def test_inverted_are_test_digits_not_scored_in_distribution(
    base: EvalData, index: dict, in_distribution: set[int]
) -> None:
    src = sources_of(1 - base.ood["inverted"][:, 0], "whole", index)
    assert len(set(src)) == len(src) and not set(src) & in_distribution


def test_chimeras_join_halves_of_two_classes_not_scored_in_distribution(
    base: EvalData, raw_test: tuple[torch.Tensor, torch.Tensor], index: dict, in_distribution: set[int]
) -> None:
    chimeras = base.ood["chimeras"][:, 0]
    tops, bottoms = sources_of(chimeras[:, :14], "top", index), sources_of(chimeras[:, 14:], "bottom", index)
    assert len(set(tops + bottoms)) == 2 * len(chimeras)  # 2n distinct test images
    assert not set(tops + bottoms) & in_distribution
    labels = raw_test[1]
    assert (labels[tops] != labels[bottoms]).all()
    images = raw_test[0].float() / 255
    assert torch.equal(chimeras, torch.cat([images[tops, :14], images[bottoms, 14:]], dim=1))


def test_derived_sets_stay_disjoint_under_a_first_look_budget(index: dict) -> None:
    """A family's first-look budget scores a prefix of test_images[:n]: still no source among them."""
    data = load(ood=50)
    scored = set(sources_of(data.test_images[:50, 0], "whole", index))
    derived = (
        sources_of(data.ood["rotated"][:, 0].flip(-1).flip(-2), "whole", index)
        + sources_of(1 - data.ood["inverted"][:, 0], "whole", index)
        + sources_of(data.ood["chimeras"][:, 0, :14], "top", index)
        + sources_of(data.ood["chimeras"][:, 0, 14:], "bottom", index)
    )
    assert not set(derived) & scored


def test_an_ood_budget_too_large_for_disjoint_outliers_is_a_clear_error() -> None:
    """Half the test split scored as in-distribution leaves about 2 500 turnable digits for 5 000 rotated ones."""
    with pytest.raises(
        DGBenchError, match=r"budget.ood=5000 leaves too few test images.*\(rotated \d+, chimeras \d+ images\)"
    ):
        load(ood=5000)
