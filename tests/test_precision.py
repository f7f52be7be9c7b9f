"""trainer=cpu_bf16: bf16 autocast in training steps, fp32 in validation and test steps."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from dgbench.precision import TrainingAutocast
from dgbench.runtime import compose_config
from tests.helpers import TINY, TINY_MODELS
from train import train


class Recorder(L.LightningModule):
    """Records the dtype of a linear layer's output in each kind of step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.dtypes: dict[str, set[torch.dtype]] = {"train": set(), "val": set(), "test": set()}

    def _step(self, kind: str, batch: list[Tensor]) -> Tensor:
        out = self.layer(batch[0])
        self.dtypes[kind].add(out.dtype)
        return out.float().pow(2).mean()

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._step("test", batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_and_test(plugin: TrainingAutocast, tmp_path: Path) -> Recorder:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    model = Recorder()
    trainer = L.Trainer(
        accelerator="cpu", plugins=[plugin], max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, data, data)
    trainer.test(model, data, verbose=False)
    return model


def test_training_steps_autocast_and_evaluation_stays_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dgbench.precision.fast_bf16", lambda device: True)  # as on an AVX512-BF16 CPU
    model = fit_and_test(TrainingAutocast(), tmp_path)
    assert model.dtypes == {"train": {torch.bfloat16}, "val": {torch.float32}, "test": {torch.float32}}
    assert model.layer.weight.dtype == torch.float32  # the weights themselves stay fp32


def test_without_native_bf16_it_trains_in_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dgbench.precision.fast_bf16", lambda device: False)  # emulated bf16 would be slower
    model = fit_and_test(TrainingAutocast(), tmp_path)
    assert model.dtypes == {"train": {torch.float32}, "val": {torch.float32}, "test": {torch.float32}}


def test_the_cpu_bf16_trainer_config_builds_the_plugin(tmp_path: Path) -> None:
    cfg = compose_config(["trainer=cpu_bf16", "logger=none"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.precision_plugin, TrainingAutocast)


def test_a_run_records_what_was_autocast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dgbench.precision.fast_bf16", lambda device: True)
    metrics = train(compose_config([*TINY, *TINY_MODELS["vae"], "trainer=cpu_bf16"], tmp_path))
    assert metrics["precision"] == "bf16-mixed in training steps, fp32 evaluation"
    assert metrics["complete"]
