"""Sample from, or impute with, any trained checkpoint: ``python sample.py ckpt=<file or run dir> n=64``.

    python sample.py ckpt=runs/diffusion_cpu/diffusion/<time> n=64 classes=all seed=0 out=samples/
    python sample.py ckpt=... classes=3 +inference.sampler=dpmpp_2m +inference.sample_steps=15
    python sample.py ckpt=... impute=bottom_half          # or random_0.5, or mask.png (28x28, white = observed)

Sampling writes ``samples.png`` (``classes=all``: one column per class; a list: one column per listed
class) and ``samples.pt`` ({images (n, 1, 28, 28) in [0, 1], labels, ...}). ``impute=`` fills n
seeded test digits of the chosen classes and writes ``impute.png`` (observed, missing pixels grey,
beside filled) and ``impute.pt`` ({original, observed, filled, labels}); masks come from
:mod:`dgbench.masks`. ``+inference.<name>=value`` sets an inference setting of the loaded model
(the hyper-parameters it keeps as attributes, e.g. the diffusion model's sampler, sample_steps,
guidance_scale), as evaluate.py does (:mod:`dgbench.settings`: a name the model lacks or a value
of the wrong type is refused before anything is written). Noise comes from one CPU generator
seeded with ``seed`` (the capability protocol, dgbench/capabilities.py), so a seed gives the same
images. A user error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchvision.utils import save_image

from dgbench import DGBenchError
from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model, resolve_checkpoint
from dgbench.cli import check_command_line
from dgbench.data import default_data_root, load_split, to_float
from dgbench.masks import mask_from_spec
from dgbench.runtime import friendly_errors, register_resolvers
from dgbench.settings import apply_settings

register_resolvers()
NUM_CLASSES = 10


def parse_classes(classes: Any) -> list[int]:
    """``all`` -> 0..9; an int or a list of ints -> those, each checked to be a class."""
    if classes == "all":
        return list(range(NUM_CLASSES))
    values = list(classes) if isinstance(classes, list | tuple) or OmegaConf.is_list(classes) else [classes]
    if not values or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < NUM_CLASSES for c in values):
        raise DGBenchError(f"classes={classes}: give all, one class or a list of classes in 0..{NUM_CLASSES - 1}")
    return values


def in_batches(fn: Any, n: int, batch_size: int, what: str) -> Tensor:
    """``fn(start, stop)`` over [0, n) in batches, with progress (images done / total, images/s) on stderr."""
    start, chunks = time.perf_counter(), []
    for i in range(0, n, batch_size):
        chunks.append(fn(i, min(n, i + batch_size)).float().cpu())
        done = min(n, i + batch_size)
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"{what}: {done}/{n} images, {rate:.2f} images/s", file=sys.stderr, flush=True)
    return torch.cat(chunks)


def sample(cfg: DictConfig) -> dict[str, Any]:
    if not cfg.ckpt:
        raise DGBenchError("no checkpoint given: pass ckpt=<checkpoint file or run directory written by train.py>")
    if not isinstance(cfg.n, int) or cfg.n < 1 or cfg.batch_size < 1:
        raise DGBenchError(f"n={cfg.n} and batch_size={cfg.batch_size} must be positive integers")
    classes = parse_classes(cfg.classes)
    ckpt = resolve_checkpoint(cfg.ckpt)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    model = load_model(ckpt, device)
    capability = "impute" if cfg.impute else "sample"
    if capability not in capabilities_of(model):
        raise DGBenchError(
            f"{ckpt} is a {model.family} model, which cannot {capability} (it can: "
            f"{', '.join(capabilities_of(model)) or 'nothing'}): pass a checkpoint of a family that can"
        )
    inference = OmegaConf.to_container(cfg.inference) if cfg.inference else {}
    apply_settings({model.family: model}, inference)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    meta = {"ckpt": str(ckpt), "family": model.family, "seed": cfg.seed, "inference": inference, "classes": classes}
    if cfg.impute:
        return impute(model, cfg, classes, generator, out, meta)
    labels = torch.tensor(classes).repeat(cfg.n // len(classes) + 1)[: cfg.n]
    images = in_batches(
        lambda i, j: model.sample(j - i, labels=labels[i:j].to(device), generator=generator),
        cfg.n,
        cfg.batch_size,
        "sample",
    ).clamp(0, 1)
    columns = len(classes) if len(classes) > 1 else math.ceil(math.sqrt(cfg.n))
    save_image(images, out / "samples.png", nrow=columns, pad_value=0.5)
    torch.save({"images": images, "labels": labels, **meta}, out / "samples.pt")
    print(f"samples: {out / 'samples.png'}, {out / 'samples.pt'}")
    return {"images": images, "labels": labels}


def impute(
    model: Any, cfg: DictConfig, classes: list[int], generator: torch.Generator, out: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    """Fill ``n`` seeded test digits of ``classes`` through the family's impute capability."""
    images, labels = load_split(cfg.data, default_data_root(), train=False)
    keep = torch.isin(labels, torch.tensor(classes))
    order = torch.randperm(int(keep.sum()), generator=generator)[: cfg.n]
    if len(order) < cfg.n:
        raise DGBenchError(f"n={cfg.n} is more than the {len(order)} test digits of classes {classes}: lower n")
    x, labels = to_float(images[keep][order]), labels[keep][order]
    observed = mask_from_spec(str(cfg.impute), cfg.n, generator)
    device = model.device
    filled = in_batches(
        lambda i, j: model.impute(x[i:j].to(device), observed[i:j].to(device)), cfg.n, cfg.batch_size, "impute"
    )
    shown = torch.where(observed, x, torch.full_like(x, 0.5))  # missing pixels grey
    pairs = torch.stack([shown, filled.clamp(0, 1)], 1).flatten(0, 1)  # observed, filled, observed, filled, ...
    save_image(pairs, out / "impute.png", nrow=2 * min(8, cfg.n), pad_value=1.0)
    torch.save({"original": x, "observed": observed, "filled": filled, "labels": labels, **meta}, out / "impute.pt")
    print(f"imputations: {out / 'impute.png'}, {out / 'impute.pt'}")
    return {"original": x, "observed": observed, "filled": filled, "labels": labels}


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
@friendly_errors
def main(cfg: DictConfig) -> None:
    sample(cfg)


if __name__ == "__main__":
    check_command_line("sample")  # a bad override: one line, before Hydra's dozen
    main()
