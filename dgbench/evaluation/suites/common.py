"""What every suite shares: the evaluation data, the ``Context`` a suite runs in, ``batched``
inference, the ``Suite`` record, and pyplot for the suites' figures."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from dgbench import DGBenchError
from dgbench.data import load_split, to_float
from dgbench.progress import Progress

matplotlib.use("Agg")  # figures go to files: never ask for a display (pyplot picks its backend at the first figure)

OTHER_DATASET = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}
# Near OOD: inputs that share the data's strokes and statistics and differ in content: printed
# letters that are not digits (dgbench/assets/letters.pt), test digits turned by 180 degrees (without
# the classes a turn leaves a digit or turns into another) and chimeras (the top half of one digit on
# the bottom half of a digit of another class). Everything else (the other dataset, noise, inverted
# images) is far. Fixed with the sets, before any score.
NEAR_OOD = ("letters", "rotated", "chimeras")
# Classes a 180-degree turn leaves in the distribution: 0, 1, 8 stay themselves, 6 and 9 turn into
# each other. They are left out of "rotated". No class of the other dataset is left out: the rule is
# the digits' (a turned bag may look like a bag; nothing was decided for Fashion-MNIST).
ROTATION_INVARIANT = {"mnist": (0, 1, 6, 8, 9)}
HALF = 14  # chimeras: rows 0-13 of one image over rows 14-27 of another


@dataclass
class EvalData:
    """Images as float (N, 1, 28, 28) in [0, 1] on the CPU, drawn once for every model."""

    in_dist: str
    test_images: Tensor
    test_labels: Tensor
    train_images: Tensor  # reference set for sample quality
    heldout_images: Tensor  # real images not in ``train_images``: the FID/KID floor
    ood: dict[str, Tensor] = field(default_factory=dict)

    def tensors(self) -> list[Tensor]:
        """Every tensor, in a fixed order: what the evaluation cache hashes as "the data"."""
        return [self.test_images, self.test_labels, self.train_images, self.heldout_images, *self.ood.values()]


def stream(seed: int, name: str) -> torch.Generator:
    """The random stream of one evaluation set: a generator seeded with the first 63 bits of
    sha256(f"{seed}/{name}"), stable across processes and Python versions (unlike ``hash``), so
    that what one set draws (and its budget) never moves another set."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def load_eval_data(in_dist: str, root: str, budget: dict[str, int], seed: int) -> EvalData:
    """The evaluation sets, each from its own random stream (``stream``):

    - test order: a permutation of the test split by ``torch.Generator().manual_seed(seed)`` (the
      order of every earlier run, so suites that read a prefix of it keep their images);
    - OOD in-distribution images: ``test_images[:n]``, n = ``budget["ood"]`` (suites/ood.py);
    - FID reference: ``budget["sample_quality"]`` training images (stream "train_reference"); the
      floor's held-out real images: the last ``budget["sample_quality"]`` of the test order;
    - OOD sets, n images each, every one from its own stream: the other dataset's test split, the
      letters, uniform noise, Gaussian noise, and three sets derived from test images. The derived
      ones are built only from the test images *not* scored as in-distribution, ``test_images[n:]``
      (a family's smaller first-look budget scores a prefix of ``test_images[:n]``), so that no
      outlier is made from an image it is compared with: such pairs would break the independence of
      the two samples that DeLong's interval assumes. "inverted": 1 - x; "rotated": rot180(x), x of
      a class outside ``ROTATION_INVARIANT``; "chimeras": x_i[rows 0-13] over x_j[rows 14-27],
      y_i != y_j, 2n distinct images. They may share images with the held-out FID floor: no
      statistic pairs the two, and avoiding them would make the OOD sets depend on
      ``budget["sample_quality"]``. A budget that leaves too few test images outside the first n
      for a derived set is a ``DGBenchError`` (on MNIST, above about a third of the test split).
    """

    def subset(images: Tensor, n: int, name: str) -> Tensor:
        return images[torch.randperm(len(images), generator=stream(seed, name))[:n]]

    test_u8, test_labels = load_split(in_dist, root, train=False)
    order = torch.randperm(len(test_u8), generator=torch.Generator().manual_seed(seed))
    test_images, test_labels = to_float(test_u8[order]), test_labels[order]
    train_u8, _ = load_split(in_dist, root, train=True)
    n_ood = budget["ood"]
    sources, source_labels = test_images[n_ood:], test_labels[n_ood:]  # never scored as in-distribution
    turnable = ~torch.isin(source_labels, torch.tensor(ROTATION_INVARIANT.get(in_dist, ()), dtype=torch.long))
    mean, std = test_images.mean(), test_images.std()
    gaussian = torch.randn(n_ood, 1, 28, 28, generator=stream(seed, "gaussian_noise"))
    other = OTHER_DATASET[in_dist]
    ood = {
        other: to_float(subset(load_split(other, root, train=False)[0], n_ood, other)),
        "uniform_noise": torch.rand(n_ood, 1, 28, 28, generator=stream(seed, "uniform_noise")),
        # Same mean and variance as the data: only structure separates it from digits.
        "gaussian_noise": (mean + std * gaussian).clamp(0, 1),
        "inverted": 1 - subset(sources, n_ood, "inverted"),
        # A turn by 180 degrees keeps every pixel statistic of the data and only breaks its shapes:
        # a detector that passes this one looks at content, not at intensity histograms.
        "rotated": torch.rot90(subset(sources[turnable], n_ood, "rotated"), 2, dims=(-2, -1)),
        "chimeras": chimeras(sources, source_labels, n_ood, stream(seed, "chimeras")),
        "letters": to_float(subset(load_split("letters", root, train=False)[0], n_ood, "letters")),
    }
    short = [f"{name} {len(ood[name])}" for name in ("inverted", "rotated", "chimeras") if len(ood[name]) < n_ood]
    if short:
        raise DGBenchError(
            f"budget.ood={n_ood} leaves too few test images outside the {n_ood} scored as in-distribution "
            f"to derive the outliers from ({', '.join(short)} images): lower budget.ood"
        )
    n_ref = budget["sample_quality"]
    return EvalData(
        in_dist,
        test_images,
        test_labels,
        to_float(subset(train_u8, n_ref, "train_reference")),
        test_images[-n_ref:],
        ood,
    )


def chimeras(images: Tensor, labels: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Up to n images whose rows 0-13 are those of one image and rows 14-27 those of an image of
    another class, from 2n distinct ``images``: strokes that are locally the data's, a whole that is
    no digit. Tops are the first n of a random order; each takes as its bottom the next unused image
    of that order whose class differs from its own."""
    order, classes = torch.randperm(len(images), generator=generator).tolist(), labels.tolist()
    tops, rest, pairs = order[:n], order[n:], []
    for top in tops:
        k = next((k for k, j in enumerate(rest) if classes[j] != classes[top]), None)
        if k is None:
            break
        pairs.append((top, rest.pop(k)))
    top_index, bottom_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).unbind(1)
    return torch.cat([images[top_index, ..., :HALF, :], images[bottom_index, ..., HALF:, :]], dim=-2)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (as in training), nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously): what a timer needs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batched(fn: Callable[..., Any], *inputs: Tensor, batch_size: int, device: torch.device) -> Any:
    """Apply ``fn`` chunk by chunk on ``device``; concatenate tensors (or dicts of tensors) on the CPU.

    A long loop reports on stderr (``dgbench.progress``): its estimated time from the first batch,
    then images done / total, images/s and the time left, at most every 10 s."""
    outputs, n = [], len(inputs[0])
    progress = Progress(n, getattr(fn, "__name__", "inference"), sync=lambda: synchronize(device))
    with torch.inference_mode(), autocast(device):
        for start in range(0, n, batch_size):
            outputs.append(fn(*(x[start : start + batch_size].to(device) for x in inputs)))
            progress.update(min(start + batch_size, n))
    progress.close()
    if isinstance(outputs[0], dict):
        return {k: torch.cat([o[k].float().cpu() for o in outputs]) for k in outputs[0]}
    return torch.cat([o.float().cpu() for o in outputs])


@dataclass
class Context:
    data: EvalData
    budget: dict[str, int]
    device: torch.device
    batch_size: int
    seed: int
    feature_net: Any  # a trained classifier with ``features`` (see dgbench.evaluation.features)
    data_root: str | None = None  # where the datasets are (None: $DATA_DIR): validation splits are read from it


def with_ci(value: float, ci: list[float], digits: int = 3) -> str:
    """A report cell: the value and its 95 % interval, ``0.959 [0.945, 0.970]``."""
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


Cell = Any  # a value ``report._fmt`` formats (None = N/A) or a ready string
Results = dict[str, dict[str, Any] | None]  # model name -> one suite's result (None: N/A or not run)


@dataclass(frozen=True)
class Suite:
    """One suite: what it needs, how it measures, and how the report shows it.

    The report loops over the registry and never names a suite, so a suite's table, its
    head-to-head rows and its figures live here beside its measurement: adding a suite is one
    module and one line in the registry."""

    name: str
    needs: tuple[str, ...]  # capability names (``dgbench.capabilities.CAPABILITIES``)
    run: Callable[[Any, Context], dict[str, Any]]  # (model, ctx) -> result
    title: str  # heading of its table in report.md
    # (its results, every model's record) -> {row label: {model name: cell}}; models without a
    # cell show N/A. The records carry what a suite does not measure itself (training time).
    rows: Callable[[Results, dict[str, dict[str, Any]]], dict[str, dict[str, Cell]]]
    # (its result or None, the model's record) -> {row label: cell} in the head-to-head table.
    # Called for every model, even where the suite did not run: "no" is an answer too.
    summary: Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Cell]] | None = None
    # Where those rows sit: the head-to-head table asks the primer's questions in the primer's
    # order (accuracy, generation, missing features, outliers, cost), not in run order. Ties keep
    # registry order, so by default a new suite's rows go last.
    summary_rank: int = 100
    # (its results, output directory) -> names of the files written.
    figure: Callable[[Results, Path], list[str]] | None = None
    # Whether it measures with ``Context.feature_net``, which evaluate.py loads only when a suite
    # that can run on one of the models does.
    uses_feature_net: bool = False
    # Budgets it reads besides its own (``budget.<name>``): part of its results' cache key.
    extra_budgets: tuple[str, ...] = ()
