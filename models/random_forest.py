"""Random forest (Breiman 2001); its one-tree case is the decision tree (CART) of models/decision_tree.py.

Each tree t partitions pixel space into axis-aligned cells (its leaves) by tests x_f <= threshold and
predicts the class frequencies of the training images in the leaf reached, counts c_t(leaf, y); the
forest averages the trees:

    p(y | x) = (1 - eps) 1/T sum_t c_t(leaf_t(x), y) / sum_k c_t(leaf_t(x), k) + eps / 10

The trees are grown by scikit-learn (Gini impurity, bootstrap samples, a random subset of sqrt(784)
pixels tried per split); ``n_trees=1, bootstrap=false, max_features=null`` is the single CART tree.
The fitted trees are then kept as plain tensors, one padded (T, nodes) tensor per field, and
traversed in torch (:mod:`models.nets.trees`): all trees and images step down one level at a time,
so inference needs no scikit-learn and checkpoints hold only tensors. The floor eps (mixing with the uniform distribution, which keeps the
sum at one) makes every log-probability finite: a pure leaf would otherwise give log 0.

The leaves also give a density, the honest anomaly score: a tree is a histogram on its cells, and with
8-bit images (every dataset here) a cell holds prod_f (levels of pixel f in its range) of the 256^784
images, so p_t(x) = n_t(leaf) / (N_t * cells(leaf)) is a normalised probability mass function, and
the forest's mixture 1/T sum_t p_t(x) one too (density estimation trees: Ram & Gray 2011).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from dgbench import DGBenchError
from dgbench.data import to_float
from dgbench.family import FamilyModule
from models.nets.trees import FIELDS, LEVELS, NUM_CLASSES, NUM_PIXELS, deepest_leaves, descend, from_sklearn


class RandomForest(FamilyModule):
    """Capabilities: classify (averaged leaf class frequencies), score_anomalies (the cells' mass function).

    Training is one fit per epoch, without gradients: the epoch's batches are collected and the forest
    is grown on them at the last batch (before validation), so a resumed run, or any epoch, gives a
    complete forest; the preset trains one epoch.
    """

    family = "random_forest"
    fits_without_gradients = True  # grown by scikit-learn: ``fit``
    kind = "discriminative"
    monitor = ("val/acc", "max")
    # Declared before any OOD test set was scored: -log of the mass function above, the only density
    # the forest has. It is a crude one: uniform inside a cell over every pixel its path never tests,
    # on cells chosen to separate classes rather than to model p(x). The forest's own confidence
    # (max_prob) and an isolation-forest-like mean leaf depth are reported beside it.
    primary_score = "cell_nll"

    def __init__(
        self,
        n_trees: int = 100,
        bootstrap: bool = True,
        max_features: str | int | float | None = "sqrt",
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        floor: float = 1e-3,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if n_trees < 1 or not 0 < floor < 1:
            raise DGBenchError(f"{self.family} needs n_trees >= 1 and 0 < floor < 1 (got {n_trees}, {floor})")
        self.floor = floor
        self.automatic_optimization = False
        # An unfitted forest: one root leaf per tree with no counts (a uniform prediction).
        self.register_buffer("children_left", torch.full((n_trees, 1), -1, dtype=torch.int32))
        self.register_buffer("children_right", torch.full((n_trees, 1), -1, dtype=torch.int32))
        self.register_buffer("feature", torch.zeros(n_trees, 1, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(n_trees, 1, dtype=torch.float64))
        self.register_buffer("class_counts", torch.zeros(n_trees, 1, NUM_CLASSES))
        self.register_buffer("log_mass", torch.full((n_trees, 1), -NUM_PIXELS * math.log(LEVELS)))
        self._images: list[Tensor] = []
        self._labels: list[Tensor] = []
        self.val_acc = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(NUM_CLASSES, average="micro")

    @property
    def num_parameters(self) -> int:
        """Numbers fitted: a feature and a threshold per split, a class count vector per leaf."""
        leaves = int((self.children_left < 0).sum()) - int((self.class_counts.sum(-1) == 0).sum())
        splits = int((self.children_left >= 0).sum())
        return 2 * splits + NUM_CLASSES * max(leaves, 0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The trees' sizes are known only once fitted: take the shapes the checkpoint has.
        for name in FIELDS:
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name], device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- fitting: scikit-learn, then tensors -------------------------------------------------
    def fit(self, images: Tensor, labels: Tensor) -> None:
        """Grow the forest with scikit-learn on images (N, 1, 28, 28) in [0, 1] and store it as tensors."""
        from sklearn.ensemble import RandomForestClassifier  # only training needs scikit-learn

        hp = self.hparams
        forest = RandomForestClassifier(
            n_estimators=hp.n_trees,
            bootstrap=hp.bootstrap,
            max_features=hp.max_features,
            max_depth=hp.max_depth,
            min_samples_leaf=hp.min_samples_leaf,
            random_state=hp.seed,
            n_jobs=hp.n_jobs,
        )
        forest.fit(images.flatten(1).float().cpu().numpy(), labels.cpu().numpy())
        self.load_sklearn(forest)

    @torch.no_grad()
    def load_sklearn(self, forest: Any) -> None:
        """Copy a fitted ``RandomForestClassifier``'s trees into the padded buffers (leaves: children -1)."""
        trees = [estimator.tree_ for estimator in forest.estimators_]
        if len(trees) != self.hparams.n_trees:
            raise DGBenchError(f"the forest has {len(trees)} trees, this model n_trees={self.hparams.n_trees}")
        fields = from_sklearn(trees, forest.classes_)
        for name, value in fields.items():
            self._buffers[name] = value.to(self.threshold.device)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Nothing to optimise; Lightning counts progress (global_step, on which checkpointing keys) in
        # optimiser steps: a zero-rate SGD over a placeholder is the step counter (as in naive Bayes).
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.0)

    def on_train_epoch_start(self) -> None:
        self._images, self._labels = [], []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        self._images.append((x[:, 0] * 255).round().to(torch.uint8).cpu())  # 8-bit images: lossless, 4x smaller
        self._labels.append(y.cpu())
        self.optimizers().step()  # changes nothing; counts the batch as a step
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's last batch: grow the forest
            images, labels = torch.cat(self._images), torch.cat(self._labels)
            if self.trainer.world_size > 1:  # every process fits the same forest on all the shards
                images = self.all_gather(images.to(self.device)).flatten(0, 1).cpu()
                labels = self.all_gather(labels.to(self.device)).flatten(0, 1).cpu()
            self.fit(to_float(images), labels)
            self._images, self._labels = [], []
        return torch.zeros((), device=x.device)  # no loss; a finite one for dgbench.callbacks.FiniteGuard

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        log_probs = self.classify(x)
        accuracy(log_probs, y)
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/loss", F.nll_loss(log_probs, y), on_epoch=True)  # nats per label

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    # --- inference in torch ------------------------------------------------------------------
    def leaves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Leaf index and depth (T, N) of every image in every tree: all of them descend one level per step.

        The test is sklearn's: the float32 pixel, widened, <= the float64 threshold (``descend``).
        """
        pixels = x.flatten(1).float().double().T  # (784, N)
        node = torch.zeros(self.feature.shape[0], pixels.shape[1], dtype=torch.long, device=x.device)
        depth = torch.zeros_like(node)
        fields = self.children_left.long(), self.children_right.long(), self.feature.long(), self.threshold
        while True:
            after, split, _ = descend(*fields, pixels, node)
            if not split.any():
                return node, depth
            node, depth = after, depth + split

    def forest_proba(self, x: Tensor) -> Tensor:
        """1/T sum_t of the leaves' class frequencies (N, 10) in float64, without the floor (sklearn's
        predict_proba, summed tree after tree in the same order); an empty leaf counts as uniform."""
        node, _ = self.leaves(x)
        counts = self.class_counts.double().gather(1, node[..., None].expand(-1, -1, NUM_CLASSES))  # (T, N, 10)
        totals = counts.sum(-1, keepdim=True)
        per_tree = torch.where(totals > 0, counts / totals.clamp_min(1), 1.0 / NUM_CLASSES)
        proba = torch.zeros_like(per_tree[0])
        for tree in per_tree:
            proba += tree
        return proba / len(per_tree)

    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y|x) with the floor eps (see the module docstring). A discriminative model cannot
        marginalise: missing pixels arrive zero-filled and are tested like any other value."""
        proba = (1 - self.floor) * self.forest_proba(x) + self.floor / NUM_CLASSES
        return proba.log().float()

    explanation_method = (
        "exact path contributions (Saabas 2014, treeinterpreter): in every tree the change in the frequency of ŷ "
        "from a node to the child the image goes to is credited to the node's split pixel; averaged over the "
        "trees they sum to p_forest(ŷ|x) minus the mean root frequency of ŷ (probabilities, before the floor); "
        "splits on unobserved (zero-filled) pixels are credited to no pixel"
    )

    @property
    def decision_parameters(self) -> int:
        """What the longest paths read: a pixel index and a threshold per split, one frequency per leaf."""
        deepest = deepest_leaves(self.children_left.long(), self.children_right.long())
        return int((2 * deepest + 1).sum())

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Path contributions (``explanation_method``) of the zero-filled image, the input ``classify`` gets."""
        x = x if observed is None else x * observed
        predicted = self.classify(x, observed).argmax(1)
        counts = self.class_counts.double()
        totals, classes = counts.sum(-1), predicted[None, :, None].expand(len(counts), -1, 1)
        pixels, trees = x.flatten(1).float().double().T, len(counts)
        node = torch.zeros(trees, len(x), dtype=torch.long, device=x.device)
        fields = self.children_left.long(), self.children_right.long(), self.feature.long(), self.threshold

        def frequency(node: Tensor) -> Tensor:  # of ŷ at each tree's current node, (T, N); an empty one uniform
            total = totals.gather(1, node)
            found = counts.gather(1, node[..., None].expand(-1, -1, NUM_CLASSES)).gather(2, classes).squeeze(2)
            return torch.where(total > 0, found / total.clamp_min(1), 1 / NUM_CLASSES)

        attributions = torch.zeros(len(x), NUM_PIXELS, dtype=torch.float64, device=x.device)
        before = frequency(node)
        while True:
            node, split, feature = descend(*fields, pixels, node)
            if not split.any():
                explained = (attributions / trees).float().view(x.shape)  # unobserved pixels get none, by
                return explained if observed is None else explained * observed  # convention (they read as 0)
            after = frequency(node)
            attributions.scatter_add_(1, feature.T, torch.where(split, after - before, 0).T)
            before = after

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        node, depth = self.leaves(x)
        log_mass = self.log_mass.double().gather(1, node)  # (T, N)
        return {
            "cell_nll": -(torch.logsumexp(log_mass, dim=0) - math.log(len(log_mass))).float(),
            "max_prob": -self.forest_proba(x).amax(dim=1).float(),
            "leaf_depth": -depth.double().mean(dim=0).float(),  # shallow leaves = isolated (Liu et al. 2008)
        }
