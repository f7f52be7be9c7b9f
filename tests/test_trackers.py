"""Experiment trackers (configs/logger/): each trains a tiny model and the metrics are read back from
what the tracker itself wrote, with the tracker's own reader (TensorBoard's EventAccumulator,
MLflow's client, wandb's protobuf records), and compared with the run's metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TINY, TINY_MODELS

pytestmark = pytest.mark.slow  # train() end to end with each tracker, read back by its own reader

TINY_LR = [o for o in TINY if not o.startswith("logger=")] + TINY_MODELS["logistic_regression"]


def tensorboard_scalars(out: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted((out / "tensorboard").glob("events.out.tfevents.*")):  # fit and test write one each
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values += [event.value for event in accumulator.Scalars(tag)]
    return values


def mlflow_scalars(out: Path, tag: str) -> list[float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert str(out) in run.info.artifact_uri  # artifacts in the run directory too, not in ./mlruns
    return [metric.value for metric in client.get_metric_history(run.info.run_id, tag)]


def wandb_records(path: Path):
    """The protobuf records of an offline run file: LevelDB's log format (32 KiB blocks, each record
    a 7-byte header: crc32, little-endian length, type FULL/FIRST/MIDDLE/LAST) after W&B's 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or kind == 0:  # block trailer or zero padding
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_scalars(out: Path, tag: str) -> list[float]:
    import time

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    deadline = time.monotonic() + 60
    while True:  # wandb's service process writes the file: complete once its exit record is there
        records = list(wandb_records(run_file))
        kinds = [record.WhichOneof("record_type") for record in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    values = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            values += [
                json.loads(i.value_json) for i in record.history.item if (i.key or "/".join(i.nested_key)) == tag
            ]
    assert values, f"no {tag} in {run_file}: records {kinds}"
    return values


READERS = {"tensorboard": tensorboard_scalars, "mlflow": mlflow_scalars, "wandb": wandb_scalars}
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


@pytest.mark.parametrize("tracker", list(READERS))
def test_tracker_logs_what_the_run_measured(tracker: str, make_config, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip(PACKAGES[tracker])
    from train import train

    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_config(*TINY_LR, f"logger={tracker}")
    metrics = train(cfg)
    read = READERS[tracker]
    test_acc, val_acc = read(tmp_path, "test/acc"), read(tmp_path, "val/acc")
    assert len(test_acc) == 1 and len(val_acc) == 2  # one test, one validation per epoch
    assert test_acc[0] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert max(val_acc) == pytest.approx(metrics["val/acc_best"], abs=1e-6)  # the best checkpoint's score
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"]
