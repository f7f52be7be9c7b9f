"""The decision tree (CART, Breiman et al. 1984): models/random_forest.py with one tree, grown on every
training image (no bootstrap sample) trying every pixel at every split.

    p(y | x) = (1 - eps) c(leaf(x), y) / sum_k c(leaf(x), k) + eps / 10

The forest's code does everything (fitting by scikit-learn, traversal in torch, the cells' mass function,
path explanations); this class fixes the three settings that make it one CART tree and names its
checkpoints ``decision_tree``.
"""

from __future__ import annotations

from dgbench import DGBenchError
from models.random_forest import RandomForest

CART = {"n_trees": 1, "bootstrap": False, "max_features": None}  # the settings that make the forest one tree


class DecisionTree(RandomForest):
    """Capabilities: those of RandomForest (classify, score_anomalies, explain), with one tree."""

    family = "decision_tree"

    def __init__(
        self,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        floor: float = 1e-3,
        seed: int = 0,
        n_jobs: int = 1,
        n_trees: int = 1,
        bootstrap: bool = False,
        max_features: str | int | float | None = None,
    ) -> None:
        # The last three are accepted only at their CART values: the hyper-parameters a checkpoint
        # records are the forest's, so they come back when load_model rebuilds the tree.
        given = {"n_trees": n_trees, "bootstrap": bootstrap, "max_features": max_features}
        if given != CART:
            raise DGBenchError(
                f"decision_tree is one CART tree (n_trees=1, bootstrap=false, max_features=null), got {given}: "
                "use model=random_forest for a forest"
            )
        super().__init__(
            **CART, max_depth=max_depth, min_samples_leaf=min_samples_leaf, floor=floor, seed=seed, n_jobs=n_jobs
        )
