"""Plumbing shared by the entry points: one-line errors, config resolvers, run records."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dgbench import DGBenchError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def auto_precision(accelerator: str = "auto") -> str:
    """bf16 autocast where a CUDA GPU will be used, full fp32 elsewhere (CPU bf16 is slower)."""
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("auto_precision"):
        OmegaConf.register_new_resolver("auto_precision", auto_precision)


def friendly_errors(main: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a DGBenchError into one line on stderr and exit status 2; anything else propagates."""

    @functools.wraps(main)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return main(cfg)
        except Exception as err:
            # Hydra wraps errors raised while instantiating a config; the user's error is the cause.
            cause = err if isinstance(err, DGBenchError) else err.__cause__
            if not isinstance(cause, DGBenchError):
                raise
            exit_with(cause)

    return wrapped


def cpu_model() -> str:
    """The processor as /proc/cpuinfo names it, with its family and model numbers (the project's
    machines differ: AMD EPYC generations share one name), else what ``platform`` knows."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        return f"{info['model name']}, family {info['cpu family']} model {info['model']}"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores, {cpu_model()})"
    )
    return {"device": device, "torch_version": str(torch.__version__), "python": platform.python_version()}


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file beside it, fsync, then rename it over ``path``.

    ``os.replace`` is atomic on POSIX and Windows, so a reader never sees half a file and a process
    killed mid-write leaves the previous file whole; fsync first, so that the rename never lands
    before the data on a machine crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, "w") as file:
        json.dump(payload, file, indent=2, default=float)
        file.write("\n")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a half-written checkpoint (see :func:`atomic_file`)."""
    with atomic_file(path) as file:
        torch.save(obj, file)


def exit_with(err: DGBenchError) -> NoReturn:
    """How every entry point reports a user error: one line on stderr, exit status 2."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def compose_config(overrides: list[str], output_dir: str | Path, config_name: str = "train") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` as the command line would, for
    running ``train``/``evaluate`` in-process (benchmarks, tests), writing into ``output_dir``."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):  # ${hydra:runtime.output_dir} only resolves inside a Hydra app
        cfg.paths.output_dir = cfg.paths.log_dir = str(output_dir)
    return cfg
