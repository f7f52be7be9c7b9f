"""Sample from, or impute with, any trained checkpoint: ``python sample.py ckpt=<file or run dir> n=64``.

    python sample.py ckpt=runs/diffusion_cpu/diffusion/<time> n=64 classes=all seed=0 out=samples/
    python sample.py ckpt=... classes=3 +knobs.sampler=dpmpp_2m +knobs.sample_steps=15
    python sample.py ckpt=... impute=bottom_half          # or random_0.5, or mask.png (28x28, white = observed)

Sampling writes ``samples.png`` (``classes=all``: one column per class; a list: one column per listed
class) and ``samples.pt`` ({images (n, 1, 28, 28) in [0, 1], labels, ...}). ``impute=`` fills n
seeded test digits of the chosen classes and writes ``impute.png`` (observed, missing pixels grey,
beside filled) and ``impute.pt`` ({original, observed, filled, labels}). ``+knobs.<name>=value``
sets an inference attribute of the loaded model (the hyper-parameters it keeps as attributes, e.g.
the diffusion model's sampler, sample_steps, guidance_scale). Noise comes from one CPU generator
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
from dgbench.data import default_data_root, load_split
from dgbench.runtime import friendly_errors, register_resolvers

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


def knob_names(model: Any) -> list[str]:
    """The model's inference knobs: hyper-parameters it keeps as plain attributes (numbers, strings, lists)."""
    plain = (bool, int, float, str, list, tuple)
    return sorted(k for k in model.hparams if isinstance(getattr(model, k, None), plain) and k in vars(model))


def set_knobs(model: Any, knobs: dict[str, Any]) -> None:
    valid = knob_names(model)
    for name, value in knobs.items():
        if name not in valid:
            raise DGBenchError(f"{model.family} has no knob {name!r}: valid knobs are {', '.join(valid) or 'none'}")
        current, number = getattr(model, name), isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(current, bool):
            fits = isinstance(value, bool)
        elif isinstance(current, int):
            fits = number and isinstance(value, int)
        elif isinstance(current, float):
            fits = number
        else:
            fits = isinstance(value, str) if isinstance(current, str) else isinstance(value, list | tuple)
        if not fits:
            raise DGBenchError(f"knob {name}={value!r} has the wrong type: expected {type(current).__name__}")
        setattr(model, name, list(value) if isinstance(value, list | tuple) else value)


def observed_mask(spec: str, n: int, generator: torch.Generator) -> Tensor:
    """Bool (n, 1, 28, 28), True = observed, from bottom_half, random_<fraction missing> or a PNG path."""
    if spec == "bottom_half":
        mask = torch.ones(n, 1, 28, 28, dtype=torch.bool)
        mask[:, :, 14:] = False
        return mask
    if spec.startswith("random_"):
        try:
            missing = float(spec.removeprefix("random_"))
        except ValueError:
            missing = -1.0
        if not 0 <= missing <= 1:
            raise DGBenchError(f"impute={spec}: write random_<fraction of pixels missing in [0, 1]>, e.g. random_0.5")
        return torch.rand(n, 1, 28, 28, generator=generator) >= missing
    path = Path(spec)
    if not path.is_file():
        raise DGBenchError(f"impute={spec}: choose bottom_half, random_<fraction> or the path of a 28x28 mask PNG")
    from torchvision.io import ImageReadMode, read_image

    image = read_image(str(path), ImageReadMode.GRAY)
    if image.shape[-2:] != (28, 28):
        raise DGBenchError(f"mask {path} is {tuple(image.shape[-2:])} pixels: it must be 28x28 (white = observed)")
    return (image > 127).expand(n, 1, 28, 28).clone()


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
    knobs = OmegaConf.to_container(cfg.knobs) if cfg.knobs else {}
    set_knobs(model, knobs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    meta = {"ckpt": str(ckpt), "family": model.family, "seed": cfg.seed, "knobs": knobs, "classes": classes}
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
    x, labels = images[keep][order].unsqueeze(1).float() / 255, labels[keep][order]
    observed = observed_mask(str(cfg.impute), cfg.n, generator)
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
