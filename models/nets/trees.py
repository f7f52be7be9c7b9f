"""Decision trees as padded tensors: scikit-learn's fitted trees copied out, traversed in torch.

A forest of T trees is one (T, nodes) tensor per field (``FIELDS``), each tree padded to the largest;
a leaf has children -1. Traversal moves every tree and every image down one level per step
(:func:`descend`), so inference needs no scikit-learn and a checkpoint holds only tensors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

NUM_CLASSES, NUM_PIXELS, LEVELS = 10, 28 * 28, 256
FIELDS = ("children_left", "children_right", "feature", "threshold", "class_counts", "log_mass")


def from_sklearn(trees: list[Any], classes: Any) -> dict[str, Tensor]:
    """The fields of fitted ``sklearn`` ``tree_`` objects, padded to the largest tree."""
    size = max(tree.node_count for tree in trees)
    fields = {
        "children_left": torch.full((len(trees), size), -1, dtype=torch.int32),
        "children_right": torch.full((len(trees), size), -1, dtype=torch.int32),
        "feature": torch.zeros(len(trees), size, dtype=torch.int32),
        "threshold": torch.zeros(len(trees), size, dtype=torch.float64),
        "class_counts": torch.zeros(len(trees), size, NUM_CLASSES),
        "log_mass": torch.zeros(len(trees), size),
    }
    classes = torch.as_tensor(classes).long()
    for t, tree in enumerate(trees):
        n, split = tree.node_count, torch.as_tensor(tree.children_left) >= 0
        fields["children_left"][t, :n] = torch.as_tensor(tree.children_left)
        fields["children_right"][t, :n] = torch.as_tensor(tree.children_right)
        fields["feature"][t, :n] = torch.where(split, torch.as_tensor(tree.feature), 0)
        fields["threshold"][t, :n] = torch.where(split, torch.as_tensor(tree.threshold), 0.0)
        # scikit-learn >= 1.4 keeps class fractions; times the (bootstrap-weighted) sample count = counts.
        counts = torch.as_tensor(tree.value[:, 0, :] * tree.weighted_n_node_samples[:, None]).round()
        fields["class_counts"][t, :n, classes] = counts.float()
        fields["log_mass"][t, :n] = torch.as_tensor(leaf_log_mass(tree)).float()
    return fields


def descend(
    left: Tensor, right: Tensor, feature: Tensor, threshold: Tensor, pixels: Tensor, node: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One level down for every tree and image: (next node, whether it was a split, the pixel tested),
    each (T, N). ``pixels`` (784, N) in float64: sklearn's test, the float32 pixel widened <= the
    float64 threshold. Leaves stay where they are."""
    next_left = left.gather(1, node)
    split = next_left >= 0
    tested = feature.gather(1, node)
    go_left = pixels.gather(0, tested) <= threshold.gather(1, node)
    return torch.where(split, torch.where(go_left, next_left, right.gather(1, node)), node), split, tested


def deepest_leaves(left: Tensor, right: Tensor) -> Tensor:
    """Depth of each tree's deepest leaf (T,), breadth first, one level of every tree per step."""
    level = torch.zeros_like(left, dtype=torch.bool)
    level[:, 0] = True
    depth, deepest = 0, torch.zeros(len(left), dtype=torch.long)
    while level.any():
        deepest = torch.where(level.any(1), depth, deepest)
        split = (level & (left >= 0)).long()
        level = torch.zeros_like(left).scatter_add_(1, left.clamp_min(0), split)
        level = level.scatter_add_(1, right.clamp_min(0), split) > 0
        depth += 1
    return deepest


def leaf_log_mass(tree: Any) -> list[float]:
    """log p_t(cell) - log(images in the cell) per node (0 for splits): the tree's histogram mass function.

    A cell's range of pixel f is a run of the 256 grey levels k/255; a threshold sends left the levels
    whose float32 value is <= it (sklearn's test; a threshold may fall on a level, between two others).
    Walked depth-first, each split narrowing one pixel's range for its subtree.
    """
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    threshold, samples = tree.threshold, tree.weighted_n_node_samples
    lower, upper = [0] * NUM_PIXELS, [LEVELS - 1] * NUM_PIXELS
    grey = (np.arange(LEVELS, dtype=np.float32) / (LEVELS - 1)).astype(np.float64)  # the pixels' float32 values
    out = [0.0] * tree.node_count
    total = float(samples[0])

    def walk(node: int, log_cells: float) -> None:  # recursion depth = tree depth
        if left[node] < 0:
            out[node] = math.log(samples[node] / total) - log_cells
            return
        f = int(feature[node])
        lo, hi = lower[f], upper[f]
        k = min(max(int(np.searchsorted(grey, threshold[node], side="right")) - 1, lo), hi - 1)
        base = log_cells - math.log(hi - lo + 1)
        upper[f] = k
        walk(int(left[node]), base + math.log(k - lo + 1))
        upper[f], lower[f] = hi, k + 1
        walk(int(right[node]), base + math.log(hi - k))
        lower[f] = lo

    walk(0, NUM_PIXELS * math.log(LEVELS))
    return out
