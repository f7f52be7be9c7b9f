"""Random forest and decision tree: the torch traversal against scikit-learn's own predictions, the
cells' mass function against a brute-force search of each cell, and weights-only checkpoints of fitted trees.

Shapes, capabilities and checkpoints of the unfitted model: tests/test_family_contract.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from sklearn.ensemble import RandomForestClassifier

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
from models.decision_tree import DecisionTree
from models.random_forest import RandomForest
from tests.helpers import TINY, TINY_MODELS
from train import train

SETTINGS = {  # scikit-learn's settings of a small forest, and of the CART tree that DecisionTree() must be
    "forest": dict(n_trees=7, bootstrap=True, max_features="sqrt", max_depth=None),
    "tree": dict(n_trees=1, bootstrap=False, max_features=None, max_depth=None),
}


def build(name: str) -> RandomForest:
    return RandomForest(**SETTINGS["forest"], seed=5) if name == "forest" else DecisionTree(seed=5)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", default_data_root(), train=False)
    return to_float(images[:1500]), labels[:1500]


def reference(setting: dict, x: torch.Tensor, y: torch.Tensor) -> RandomForestClassifier:
    forest = RandomForestClassifier(
        n_estimators=setting["n_trees"],
        bootstrap=setting["bootstrap"],
        max_features=setting["max_features"],
        max_depth=setting["max_depth"],
        random_state=5,
    )
    return forest.fit(x.flatten(1).numpy(), y.numpy())


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_torch_forest_predicts_exactly_sklearns_predict_proba(name: str, digits: tuple) -> None:
    x, y = digits
    model = build(name)
    model.fit(x[:1000], y[:1000])
    sklearn_forest = reference(SETTINGS[name], x[:1000], y[:1000])
    noise = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # continuous values too
    for inputs in (x[1000:], noise):
        expected = sklearn_forest.predict_proba(inputs.flatten(1).numpy())
        assert np.array_equal(model.forest_proba(inputs).numpy(), expected)
        # Depth of the leaf reached = nodes on sklearn's decision path - 1, averaged over the trees.
        path_lengths = np.mean([e.decision_path(inputs.flatten(1).numpy()).sum(1).A1 - 1 for e in sklearn_forest])
        assert model.leaves(inputs)[1].double().mean().item() == pytest.approx(path_lengths)
    log_probs = model.classify(x[1000:])
    floor = model.floor / 10  # the floor mixes in the uniform distribution: sums stay 1, logs stay finite
    assert log_probs.exp().min() >= floor * (1 - 1e-6) and torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(500))


def test_a_decision_tree_takes_no_forest_settings() -> None:
    with pytest.raises(DGBenchError, match="use model=random_forest"):
        DecisionTree(n_trees=5)
    with pytest.raises(DGBenchError, match="one CART tree"):
        DecisionTree(max_features="sqrt")


def test_a_cells_mass_is_its_training_share_over_the_images_it_holds(digits: tuple) -> None:
    """Brute force: the levels of pixel f inside x's cell are those v for which x with x_f = v/255
    reaches the same leaf; only pixels on x's path can leave it, every other pixel keeps all 256."""
    x, y = digits
    model = build("tree")
    model.fit(x[:1000], y[:1000])
    tree = reference(SETTINGS["tree"], x[:1000], y[:1000]).estimators_[0]
    for image in x[1000:1004].flatten(1).numpy():
        leaf = tree.apply(image[None])[0]
        pixels = set(tree.tree_.feature[tree.decision_path(image[None]).indices]) - {-2}
        log_cells = (784 - len(pixels)) * math.log(256)
        for f in pixels:
            variants = np.repeat(image[None], 256, axis=0)
            variants[:, f] = np.arange(256, dtype=np.float32) / 255
            log_cells += math.log(int((tree.apply(variants) == leaf).sum()))
        share = tree.tree_.weighted_n_node_samples[leaf] / tree.tree_.weighted_n_node_samples[0]
        nll = float(model.score_anomalies(torch.from_numpy(image).view(1, 1, 28, 28))["cell_nll"][0])
        assert nll == pytest.approx(log_cells - math.log(share), rel=1e-6)


def test_training_grows_the_forest_and_the_checkpoint_is_weights_only(
    make_config: Callable[..., DictConfig], tmp_path: Path, digits: tuple
) -> None:
    metrics = train(make_config(*TINY, *TINY_MODELS["random_forest"]))
    assert metrics["test/acc"] > 0.6  # 3 trees of depth 8 on 1 000 images
    path = tmp_path / "checkpoints" / "best.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert state["children_left"].shape[1] > 1  # fitted trees, not the unfitted root leaves
    model = load_model(path)
    assert isinstance(model, RandomForest) and torch.equal(model.children_left, state["children_left"])
    x, y = digits
    assert (model.classify(x[:500]).argmax(1) == y[:500]).float().mean() > 0.6
    again = load_model(path)
    assert torch.equal(again.classify(x[:50]), model.classify(x[:50]))
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.score_anomalies(x[:50]).values(), model.score_anomalies(x[:50]).values())
    )


@pytest.mark.parametrize("name", list(SETTINGS))
def test_path_contributions_match_scikit_learns_decision_paths(name: str, digits: tuple) -> None:
    """Saabas's contributions computed from scikit-learn's own trees (decision_path, tree_.value), and the
    longest paths' numbers from tree_.max_depth."""
    x, y = digits
    model = build(name)
    model.fit(x[:1000], y[:1000])
    sklearn_forest = reference(SETTINGS[name], x[:1000], y[:1000])
    inputs = x[1000:1020]
    predicted = model.classify(inputs).argmax(1).numpy()
    flat = inputs.flatten(1).numpy().astype(np.float32)
    expected = np.zeros((len(inputs), 784))
    for estimator in sklearn_forest.estimators_:
        tree, paths = estimator.tree_, estimator.decision_path(flat)
        frequency = tree.value[:, 0, :] / tree.value[:, 0, :].sum(1, keepdims=True)
        for n in range(len(inputs)):
            nodes = paths[n].indices  # root to leaf, in order
            for parent, child in zip(nodes[:-1], nodes[1:]):
                expected[n, tree.feature[parent]] += frequency[child, predicted[n]] - frequency[parent, predicted[n]]
    expected /= len(sklearn_forest.estimators_)
    np.testing.assert_allclose(model.explain(inputs).flatten(1).double().numpy(), expected, atol=1e-6)
    assert model.decision_parameters == sum(2 * e.tree_.max_depth + 1 for e in sklearn_forest.estimators_)
