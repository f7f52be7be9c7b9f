"""What every suite shares: the evaluation data, the ``Context`` a suite runs in, ``batched``
inference, the ``Suite`` record, and pyplot for the suites' figures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from dgbench.data import load_split
from dgbench.progress import Progress

matplotlib.use("Agg")  # figures go to files: never ask for a display (pyplot picks its backend at the first figure)

OTHER_DATASET = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}
# Near OOD: inputs that share the data's strokes and statistics and differ in content: printed
# letters that are not digits (dgbench/assets/letters.pt) and upside-down test images. Everything
# else (the other dataset, noise, inverted images) is far. Fixed with the sets, before any score.
NEAR_OOD = ("letters", "flipped")


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


def load_eval_data(in_dist: str, root: str, budget: dict[str, int], seed: int) -> EvalData:
    generator = torch.Generator().manual_seed(seed)

    def subset(images: Tensor, n: int) -> Tensor:
        return images[torch.randperm(len(images), generator=generator)[:n]]

    to_float = lambda u8: u8.unsqueeze(1).float() / 255  # noqa: E731
    test_u8, test_labels = load_split(in_dist, root, train=False)
    order = torch.randperm(len(test_u8), generator=generator)
    test_images, test_labels = to_float(test_u8[order]), test_labels[order]
    train_u8, _ = load_split(in_dist, root, train=True)
    n_ood = budget["ood"]
    digits = test_images[:n_ood]
    mean, std = test_images.mean(), test_images.std()
    ood = {
        OTHER_DATASET[in_dist]: to_float(subset(load_split(OTHER_DATASET[in_dist], root, train=False)[0], n_ood)),
        "uniform_noise": torch.rand(n_ood, 1, 28, 28, generator=generator),
        # Same mean and variance as the data: only structure separates it from digits.
        "gaussian_noise": (mean + std * torch.randn(n_ood, 1, 28, 28, generator=generator)).clamp(0, 1),
        "inverted": 1 - digits,
        # Upside-down images keep every pixel statistic of the data and only break its shapes: a
        # detector that passes this one looks at content, not at intensity histograms.
        "flipped": digits.flip(-2),
        "letters": to_float(subset(load_split("letters", root, train=False)[0], n_ood)),
    }
    n_ref = budget["sample_quality"]
    return EvalData(
        in_dist,
        test_images,
        test_labels,
        to_float(subset(train_u8, n_ref)),
        test_images[-n_ref:],
        ood,
    )


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
