"""evaluate.py: suites on tiny budgets, metric sanity, N/A reporting, a throw-away family, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.family import FamilyModule
from dgbench.runtime import compose_config
from evaluate import evaluate
from tests.helpers import TINY, run_python
from train import train

TINY_BUDGET = [
    "budget.classification=200",
    "budget.ood=100",
    "budget.missing_features=50",
    "budget.sample_quality=50",
    "budget.cost=50",
    "budget.interpretability=20",
    "budget.calibration=100",
    "batch_size=100",
    "device=cpu",
]


class PixelBayes(FamilyModule):
    """A throw-away generative family defined only here: per-class independent Bernoulli pixels.

    It exists to prove that a new family needs one model class + one config and no edit to
    evaluate.py: everything below is discovered through the capability protocol.
    """

    family = "pixel_bayes"
    kind = "generative"
    primary_score = "neg_log_likelihood"
    monitor = ("val/loss", "min")

    def __init__(self, optimizer=None, scheduler=None) -> None:  # noqa: ANN001
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.logits = nn.Parameter(torch.zeros(10, 1, 28, 28))

    def _log_px_given_y(self, x: Tensor, observed: Tensor | None = None) -> Tensor:  # (N, 10)
        per_pixel = -F.binary_cross_entropy_with_logits(
            self.logits[None].expand(len(x), -1, -1, -1, -1), x[:, None].expand(-1, 10, -1, -1, -1), reduction="none"
        )
        if observed is not None:
            per_pixel = per_pixel * observed[:, None]
        return per_pixel.flatten(2).sum(2)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return -self._log_px_given_y(x).gather(1, y[:, None]).mean()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.log("val/loss", -self._log_px_given_y(batch[0]).logsumexp(1).mean())

    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        return self._log_px_given_y(x, observed).log_softmax(1)

    def log_likelihood(self, x: Tensor) -> Tensor:
        return self._log_px_given_y(x).logsumexp(1) - torch.log(torch.tensor(10.0))

    likelihood_protocol = "continuous-relaxed Bernoulli pixels, exact"

    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        return {"neg_log_likelihood": -self.log_likelihood(x)}

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        labels = labels if labels is not None else torch.arange(n) % 10
        probs = self.logits.sigmoid()[labels.cpu()].cpu()
        return torch.bernoulli(probs, generator=generator).to(self.device)

    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        posterior = self.classify(x, observed).exp()  # (N, 10)
        mean = torch.einsum("nk,kchw->nchw", posterior, self.logits.sigmoid())
        return torch.where(observed, x, mean)


def eval_config(tmp_path: Path, ckpts: list[Path], *extra: str, feature_net: Path | None = None):
    overrides = [f"ckpts=[{','.join(str(c) for c in ckpts)}]", *TINY_BUDGET, *extra]
    if feature_net is not None:
        overrides.append(f"feature_net={feature_net}")
    return compose_config(overrides, tmp_path / "eval", config_name="evaluate")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the throw-away family through train.py with one config of its own."""
    out = tmp_path_factory.mktemp("toy")
    cfg = compose_config([*TINY, "model=resnet"], out)
    cfg.model = {
        "_target_": f"{__name__}.PixelBayes",
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.05},
    }
    train(cfg)
    return out


@pytest.mark.slow  # evaluate() end to end, every suite
def test_every_suite_runs_and_incapable_ones_are_na(tmp_path: Path, tiny_resnet_run: Path, toy_run: Path) -> None:
    results = evaluate(eval_config(tmp_path, [tiny_resnet_run, toy_run], feature_net=tiny_resnet_run))
    assert set(results) == {"resnet", "pixel_bayes"}
    resnet, toy = results["resnet"]["suites"], results["pixel_bayes"]["suites"]
    assert resnet["sample_quality"] is None  # a discriminative model cannot generate: N/A, not skipped
    for suite in ("classification", "ood", "missing_features", "sample_quality", "cost"):
        assert toy[suite] is not None, suite
    assert toy["classification"]["accuracy"] > 0.5  # naive Bayes learns something in two tiny epochs
    assert all(row["observed_unchanged"] for row in toy["missing_features"].values() if isinstance(row, dict))
    assert set(resnet["ood"]["scores"]) == {"max_softmax", "energy"}

    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["models"]["resnet"]["suites"]["sample_quality"] is None
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "Head-to-head" in markdown and "N/A" in markdown
    for figure in ("roc.png", "missing_features.png", "samples_pixel_bayes.png"):
        assert (tmp_path / "eval" / figure).stat().st_size > 0


def test_explicit_suite_no_model_can_run_is_an_error(tmp_path: Path, tiny_resnet_run: Path) -> None:
    with pytest.raises(DGBenchError, match="sample_quality"):
        evaluate(eval_config(tmp_path, [tiny_resnet_run], "suites=[sample_quality]"))


@pytest.mark.parametrize("case", ["missing", "not_torch", "foreign", "pickled"])
def test_bad_checkpoints_give_one_clear_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "model.ckpt"
    marker = tmp_path / "code_ran"
    if case == "not_torch":
        path.write_text("certainly not a checkpoint")
    elif case == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    elif case == "pickled":

        class Exploit:  # unpickling would run a shell command
            def __reduce__(self):  # noqa: ANN204
                return (Path.touch, (marker,))

        torch.save({"dgbench": Exploit()}, path)
    with pytest.raises(DGBenchError) as err:
        load_model(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.slow
def test_cli_empty_checkpoint_list_exits_with_one_line(tmp_path: Path) -> None:
    result = run_python(["evaluate.py", "ckpts=[]", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no checkpoints given") and "Traceback" not in result.stderr
    assert not (tmp_path / "report.json").exists()


def test_a_first_look_caps_only_the_families_that_declare_caps() -> None:
    from evaluate import model_budget

    class Slow:
        first_look_budget = {"classification": 200, "ood": 100}

    budget = {"classification": 2000, "ood": 50, "cost": 500}
    assert model_budget(Slow(), budget, "first_look", "slow") == {"classification": 200, "ood": 50, "cost": 500}
    assert model_budget(Slow(), budget, "fixed", "slow") == budget
    assert model_budget(object(), budget, "first_look", "fast") == budget
    with pytest.raises(DGBenchError, match="budget_policy"):
        model_budget(Slow(), budget, "everything", "slow")


class Tunable(FamilyModule):
    """A family with one inference setting of each kind (dgbench.settings: plain hyper-parameter attributes)."""

    family = "tunable"
    kind = "generative"

    def __init__(self, steps: int = 5, scale: float = 1.0, sampler: str = "ddim", rows: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.steps, self.scale, self.sampler, self.rows = steps, scale, sampler, rows
        self.levels = [0.3, 0.5]  # an attribute, but no hyper-parameter: not a setting


def test_settings_are_checked_before_any_is_set_and_applied_where_they_exist() -> None:
    from dgbench.settings import apply_settings, settings_of

    a, b = Tunable(), PixelBayes()
    assert settings_of(a) == {"rows": None, "sampler": "ddim", "scale": 1.0, "steps": 5} and settings_of(b) == {}
    applied = apply_settings({"a": a, "b": b}, {"steps": 2, "scale": 3, "sampler": "dpmpp_2m", "rows": 7})
    assert applied == {"a": {"steps": 2, "scale": 3.0, "sampler": "dpmpp_2m", "rows": 7}, "b": {}}
    assert (a.steps, a.sampler, a.rows) == (2, "dpmpp_2m", 7) and type(a.scale) is float  # an int for a float
    assert apply_settings({"a": a}, {"rows": None}) == {"a": {"rows": None}}  # its constructor's default
    refused = [
        ({"steps": 4, "stesp": 3}, "inference.stesp: not a setting of a, b; the settings are rows, sampler, scale"),
        ({"steps": 4, "levels": [0.1]}, "inference.levels: not a setting"),
        ({"steps": 4, "scale": "big"}, "inference.scale='big' has the wrong type: a's scale takes float"),
        ({"steps": 2.5}, "inference.steps=2.5 has the wrong type: a's steps takes int"),
        ({"steps": True}, "inference.steps=True has the wrong type"),  # a bool is no count
        ({"sampler": 3}, "inference.sampler=3 has the wrong type: a's sampler takes str"),
        ({"steps": None}, "inference.steps=null: a's steps cannot be null"),
    ]
    for settings, message in refused:
        with pytest.raises(DGBenchError) as err:
            apply_settings({"a": a, "b": b}, settings)
        assert message in str(err.value) and "\n" not in str(err.value)
        assert a.steps == 2  # nothing was set: the valid setting before the refused one neither


def test_a_setting_only_one_model_has_is_applied_to_it_and_listed_in_the_report(
    tmp_path: Path, tiny_resnet_run: Path, toy_run: Path
) -> None:
    cfg = eval_config(tmp_path, [tiny_resnet_run, toy_run], "suites=[classification]", "+inference.max_missing=0.25")
    evaluate(cfg)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["inference_applied"] == {"resnet": {"max_missing": 0.25}, "pixel_bayes": {}}
    rebuilt = compose_config([f"records=[{tmp_path / 'eval'}]"], tmp_path / "rebuilt", config_name="evaluate")
    evaluate(rebuilt)  # the report rebuilt from the records lists it too
    assert json.loads((tmp_path / "rebuilt" / "report.json").read_text())["inference_applied"] == {
        "resnet": {"max_missing": 0.25},
        "pixel_bayes": {},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, message",
    [
        (
            "+inference.max_mising=0.25",
            "inference.max_mising: not a setting of resnet; the settings are label_smoothing",
        ),
        (
            "+inference.max_missing=most",
            "inference.max_missing='most' has the wrong type: resnet's max_missing takes float",
        ),
    ],
)
def test_cli_mistyped_inference_setting_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, tiny_resnet_run: Path, setting: str, message: str
) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [f"ckpts=[{tiny_resnet_run}]", *TINY_BUDGET, setting, f"hydra.run.dir={out}", f"cache_dir={cache}"]
    result = run_python(["evaluate.py", *args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (out / "report.json").exists() and not (out / "records").exists() and not cache.exists()
