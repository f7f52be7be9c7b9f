"""Plumbing shared by the entry points: one-line errors, config resolvers, run records."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dgbench import DGBenchError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def auto_precision(accelerator: str = "auto") -> str:
    """bf16 autocast where a CUDA GPU will be used, full fp32 elsewhere. (On a CPU with native bf16 the
    generative presets opt in with ``trainer=cpu_bf16``: bf16 in training steps only, dgbench/precision.py.)"""
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("auto_precision"):
        OmegaConf.register_new_resolver("auto_precision", auto_precision)


# Lines third-party libraries print on every run that tell a dgbench user nothing: an advertisement,
# restatements of the configuration, and a restore message for the test of the checkpoint just written.
# Matched from the start of the message; everything else (real warnings, errors, a resume's
# "Restored all states") still prints.
THIRD_PARTY_NOISE = (
    "💡 Tip:",  # Lightning's litlogger / litmodels advertisements
    "`Trainer(limit_",  # "`Trainer(limit_val_batches=2)` was configured so 2 batches will be used"
    "`Trainer(val_check_interval=1.0)` was configured",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "TPU available: False",
    "HPU available: False",
    "Restoring states from the checkpoint path",  # trainer.test(ckpt_path=best) after fitting
    "Loaded model weights from the checkpoint",
)
# Library-internal deprecations (one library calling another's deprecated API, e.g. Lightning's use of
# torch's LeafSpec): nothing a user can act on. Deprecations raised in dgbench's own code still show.
LIBRARY_MODULES = r"(lightning|lightning_fabric|lightning_utilities|pytorch_lightning|torch|torchvision|torchmetrics|hydra|omegaconf|tensorboard|mlflow|wandb|optuna|google|pydantic|matplotlib)(\.|$)"


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # "GPU available: False, used: False": on a machine without a GPU there is nothing to say
        return not (message.startswith(THIRD_PARTY_NOISE) or message.startswith("GPU available: False"))


def quiet_third_party() -> None:
    """Silence the third-party lines listed above at their source: a filter on the loggers Lightning
    prints them through and warning filters for library-internal deprecations. Idempotent."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoiseFilter) for f in logger.filters):
            logger.addFilter(_NoiseFilter())
    # optuna's and MLflow's database layers announce every migration step
    for name in ("alembic", "mlflow.store.db.utils", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
    # The EMA copies of the GAN and the diffusion model stay in eval mode by design (models/nets/ema.py)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    with contextlib.suppress(ImportError):  # Lightning's deprecations of what a config asks for: keep them
        from lightning.fabric.utilities.rank_zero import LightningDeprecationWarning

        warnings.filterwarnings("default", category=LightningDeprecationWarning)


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


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``: a CUDA GPU, or a CPU with native bf16 arithmetic that
    oneDNN uses (AVX512-BF16 or AMX; /proc/cpuinfo flags). Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return True
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def environment() -> dict[str, Any]:
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores, {cpu_model()})"
    )
    return {"device": device, "torch_version": str(torch.__version__), "python": platform.python_version()}


def hardware() -> dict[str, Any]:
    """What a timing was measured on: :func:`environment` with the CPU model, cores, torch threads
    and torchvision version (the probes under benchmarks/probes/ record it beside their numbers)."""
    import torchvision

    return {
        **environment(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torchvision_version": torchvision.__version__,
    }


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
