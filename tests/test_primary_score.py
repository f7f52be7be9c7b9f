"""The head-to-head's outlier score is the one each family declares in code, whatever the OOD sets say."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from dgbench.capabilities import capabilities_of
from dgbench.evaluation.suites import ood as ood_suite
from dgbench.evaluation.suites.common import NEAR_OOD, Context, EvalData
from dgbench.runtime import compose_config
from dgbench.settings import apply_settings
from tests.helpers import FAMILIES, TINY, TINY_MODELS


def test_every_scorer_declares_a_primary_score_it_computes(tmp_path) -> None:
    models = {
        family: instantiate(compose_config([*TINY, *TINY_MODELS[family]], tmp_path).model, _convert_="all").eval()
        for family in FAMILIES
    }
    scorers = {family: model for family, model in models.items() if "score_anomalies" in capabilities_of(model)}
    # the slow scorers (diffusion's) kept to a few network evaluations, as evaluate.py would set them
    apply_settings(scorers, {"likelihood_timesteps": 2, "recon_steps": 2, "impute_steps": 2})
    for family, model in scorers.items():
        scores = model.score_anomalies(torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
        assert model.primary_score in scores, family


class TwoScores:
    """A scorer whose declared score is the worse one on every OOD set."""

    primary_score = "declared"

    def score_anomalies(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = x.flatten(1).mean(1)
        return {"declared": torch.zeros_like(mean) + 0.5 * (mean > 0.2).float(), "better": mean}


def evaluation_data(ood_sets: dict[str, torch.Tensor]) -> EvalData:
    digits = torch.full((8, 1, 28, 28), 0.1)
    return EvalData("mnist", digits, torch.zeros(8, dtype=torch.long), digits, digits, ood_sets)


def test_the_summary_uses_the_declared_score_whatever_the_ood_sets() -> None:
    summaries = []
    for level in (0.3, 0.9):  # two different OOD test sets: the summary's score must not follow them
        sets = {name: torch.full((8, 1, 28, 28), level) for name in ("fashion_mnist", *NEAR_OOD)}
        ctx = Context(evaluation_data(sets), {"ood": 8}, torch.device("cpu"), 4, 0, None)
        result = ood_suite.ood(TwoScores(), ctx)
        assert result["scores"]["better"]["mean_auroc"]["all"] >= result["scores"]["declared"]["mean_auroc"]["all"]
        (cell,) = ood_suite.summary(result, {}).values()
        assert "declared" in cell and "better" not in cell
        summaries.append(cell)
    assert all("declared, n = 8" in cell for cell in summaries)
