"""The explain capability and the interpretability suite, each against an independent computation:
exact decompositions sum to log-odds computed by hand, integrated gradients satisfy completeness and
are exact on a linear function, and deletion / insertion areas match a hand-computed example."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench.attribution import area_under_curve, integrated_gradients
from dgbench.data import default_data_root, load_split, to_float
from dgbench.evaluation.suites import SUITES
from dgbench.evaluation.suites.common import Context, EvalData
from dgbench.runtime import compose_config
from evaluate import evaluate
from models.diffusion.model import DiffusionModel
from models.logistic_regression import LogisticRegression
from models.naive_bayes import BernoulliNaiveBayes
from models.pixelcnn import ConditionalPixelCNN
from models.resnet import ResNetClassifier
from tests.helpers import TINY, TINY_MODELS
from train import train


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """8 test digits, a mask with about 60 % of pixels observed, and 1000 labelled digits to fit on."""
    images, labels = load_split("mnist", default_data_root(), train=False)
    images = to_float(images)
    observed = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.6
    return images[:8], observed, images[1000:2000], labels[1000:2000]


def top_two(scores: Tensor) -> tuple[Tensor, Tensor]:
    order = scores.double().argsort(dim=1, descending=True)
    return order[:, 0], order[:, 1]


@pytest.mark.parametrize("mask_channel", [False, True])
def test_logistic_regression_terms_sum_to_the_logit_difference(digits: tuple, mask_channel: bool) -> None:
    x, observed, _, _ = digits
    model = LogisticRegression(mask_channel=mask_channel).eval()
    with torch.no_grad():
        model.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
        model.linear.bias.normal_(generator=torch.Generator().manual_seed(2))
    W, c = model.linear.weight.double(), model.linear.bias.double()
    for mask in (None, observed):
        seen = torch.ones_like(x) if mask is None else mask.double()
        u = (x.double() * seen).flatten(1)  # the zero-filled image, and the mask as a second input
        u = torch.cat([u, seen.flatten(1)], 1) if mask_channel else u
        logits = u @ W.T + c
        a, b = top_two(logits)
        rows = torch.arange(len(x))
        expected = logits[rows, a] - logits[rows, b] - (c[a] - c[b])
        attributions = model.explain(x, mask)
        assert attributions.shape == x.shape and attributions.dtype == torch.float32
        torch.testing.assert_close(attributions.double().flatten(1).sum(1), expected, atol=1e-4, rtol=1e-5)
        if mask is not None:
            assert (attributions[~mask] == 0).all()
    assert model.decision_parameters == 2 * (784 * (2 if mask_channel else 1) + 1)


def test_naive_bayes_terms_sum_to_the_log_likelihood_difference(digits: tuple) -> None:
    x, observed, fit_x, fit_y = digits
    model = BernoulliNaiveBayes(alpha=0.5).eval()
    model.count(fit_x, fit_y)
    # Independently: theta from the counts by hand, Bernoulli log-likelihoods of the gray image in float64.
    counts = torch.stack([fit_x[fit_y == k].flatten(1).double().sum(0) for k in range(10)])
    sizes = torch.bincount(fit_y, minlength=10).double()
    theta = (counts + 0.5) / (sizes[:, None] + 1.0)
    prior = (sizes + 0.5) / (sizes.sum() + 5.0)
    for mask in (None, observed):
        keep = torch.ones_like(x).flatten(1).double() if mask is None else mask.flatten(1).double()
        v = x.flatten(1).double()
        log_lik = (keep * v) @ theta.log().T + (keep * (1 - v)) @ torch.log1p(-theta).T  # (N, 10)
        a, b = top_two(log_lik + prior.log())
        rows = torch.arange(len(x))
        expected = log_lik[rows, a] - log_lik[rows, b]
        attributions = model.explain(x, mask)
        torch.testing.assert_close(attributions.double().flatten(1).sum(1), expected, atol=1e-3, rtol=1e-5)
    assert model.decision_parameters == 2 * 784 + 2


def test_integrated_gradients_is_exact_on_a_linear_function() -> None:
    generator = torch.Generator().manual_seed(0)
    w, x, x0 = (torch.randn(3, 5, generator=generator) for _ in range(3))
    attributions = integrated_gradients(lambda p: (p * w).sum(1), x, x0, steps=4)
    torch.testing.assert_close(attributions, w * (x - x0))  # IG_i = w_i (x_i - x'_i), any step count


def test_integrated_gradients_completeness_on_a_small_network() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.randn(5, 6)
    target = torch.tensor([0, 1, 2, 3, 0])
    f = lambda p: F.log_softmax(net(p), 1)[torch.arange(5), target]  # noqa: E731
    with torch.inference_mode():  # works inside inference mode, as evaluate.py calls capabilities
        attributions = integrated_gradients(f, x, steps=32)
    with torch.no_grad():
        expected = f(x) - f(torch.zeros_like(x))
    torch.testing.assert_close(attributions.sum(1), expected, atol=2e-3, rtol=1e-3)


def test_resnet_integrated_gradients_sum_to_the_log_probability_change(digits: tuple) -> None:
    x, _, _, _ = digits
    torch.manual_seed(0)
    model = ResNetClassifier(width=4, depth=1, num_stages=2).eval()
    attributions = model.explain(x[:4])
    log_p, log_p0 = model.classify(x[:4]), model.classify(torch.zeros_like(x[:4]))
    predicted = log_p.argmax(1)
    rows = torch.arange(4)
    expected = log_p[rows, predicted] - log_p0[rows, predicted]
    # ReLUs make the path integrand piecewise: the midpoint rule is close, not exact.
    torch.testing.assert_close(
        attributions.flatten(1).sum(1), expected, atol=0.05 + 0.05 * expected.abs().max().item(), rtol=0
    )


@pytest.mark.parametrize("family", ["pixelcnn", "diffusion"])
def test_generative_terms_sum_to_the_log_odds_classify_reports(digits: tuple, family: str) -> None:
    """PixelCNN's chain-rule terms and the diffusion classifier's per-pixel error differences add up to
    log p(ŷ|x) - log p(y'|x) of classify, computed there by its own code path (Bayes' rule, elimination)."""
    x, observed, _, _ = digits
    torch.manual_seed(0)
    if family == "pixelcnn":
        model = ConditionalPixelCNN(width=4, dilations=[1])
    else:
        model = DiffusionModel(channels=(8, 16, 16), classify_pairs=4, classify_first_pairs=2, classify_keep=2)
    with torch.no_grad():  # off the (partly zero) initialisation
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    model.eval()
    for mask in (None, observed):
        x_in = x[:4] if mask is None else x[:4] * mask[:4]
        m = None if mask is None else mask[:4]
        log_p = model.classify(x_in, m).double()
        a, b = top_two(log_p)
        rows = torch.arange(4)
        attributions = model.explain(x_in, m)
        torch.testing.assert_close(
            attributions.double().flatten(1).sum(1), log_p[rows, a] - log_p[rows, b], atol=1e-3, rtol=1e-4
        )


class HalfPixels(nn.Module):
    """A model by hand: p(class 0) = 0.1 + 0.8 * (observed pixels of the left half) / 392, the other
    classes share the rest; its explanation is 1 on the left half, 0 elsewhere."""

    explanation_method = "exact: by hand"
    decision_parameters = 392

    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        seen = torch.ones_like(x) if observed is None else observed.float()
        p0 = 0.1 + 0.8 * seen[..., :14].flatten(1).sum(1) / 392
        return torch.cat([p0[:, None], ((1 - p0) / 9)[:, None].expand(-1, 9)], 1).log()

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        a = torch.zeros_like(x)
        a[..., :14] = 1.0
        return a


def test_deletion_and_insertion_areas_match_a_hand_computation() -> None:
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    data = EvalData("mnist", images, torch.arange(6), images, images)
    ctx = Context(data, {"interpretability": 6}, torch.device("cpu"), 4, 0, None)
    result = SUITES["interpretability"].run(HalfPixels(), ctx)
    # Deleting the top fraction f removes min(round(784 f), 392) left-half pixels first.
    counts = [round(784 * k / 10) for k in range(11)]
    deletion = [0.1 + 0.8 * (1 - min(c, 392) / 392) for c in counts]
    insertion = [0.1 + 0.8 * min(c, 392) / 392 for c in counts]
    trapezoid = lambda ys: sum((ys[k] + ys[k + 1]) / 2 * 0.1 for k in range(10))  # noqa: E731
    assert result["deletion_auc"] == pytest.approx(trapezoid(deletion), abs=1e-5)
    assert result["insertion_auc"] == pytest.approx(trapezoid(insertion), abs=1e-5)
    # A random order removes left-half pixels at the average rate: the curve is linear in expectation.
    assert result["random_deletion_auc"] == pytest.approx(0.5, abs=0.02)
    lo, hi = result["deletion_auc_ci"]
    assert lo <= result["deletion_auc"] <= hi and result["decision_parameters"] == 392
    assert area_under_curve(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([[1.0, 0.0, 1.0]])).item() == 0.5


@pytest.fixture(scope="module")
def tiny_naive_bayes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_naive_bayes")
    train(compose_config([*TINY, *TINY_MODELS["naive_bayes"]], out))
    return out


def test_the_suite_runs_on_tiny_models_and_reports(
    tmp_path: Path, tiny_resnet_run: Path, tiny_naive_bayes_run: Path
) -> None:
    overrides = [
        f"ckpts=[{tiny_resnet_run},{tiny_naive_bayes_run}]",
        "suites=[interpretability]",
        "++budget.interpretability=20",
        "batch_size=20",
        "device=cpu",
    ]
    results = evaluate(compose_config(overrides, tmp_path / "eval", config_name="evaluate"))
    for name, parameters in (("resnet", None), ("naive_bayes", 2 * 784 + 2)):
        r = results[name]["suites"]["interpretability"]
        assert r["n"] == 20 and all(0 <= r[f"{c}_auc"] <= 1 for c in ("deletion", "insertion", "random_deletion"))
        assert parameters is None or r["decision_parameters"] == parameters
        assert r["_attributions"].shape == (10, 1, 28, 28) and torch.isfinite(r["_attributions"]).all()
    # Naive Bayes' exact log-odds terms should beat a random order by a clear margin.
    assert results["naive_bayes"]["suites"]["interpretability"]["deletion_gain_auc"] > 0
    markdown = (tmp_path / "eval" / "report.md").read_text()
    assert "Interpretability (deletion" in markdown and "1,570" in markdown
    for figure in ("interpretability.png", "deletion_insertion.png"):
        assert (tmp_path / "eval" / figure).stat().st_size > 0
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["models"]["resnet"]["suites"]["interpretability"]
    assert not math.isnan(results["resnet"]["suites"]["interpretability"]["deletion_auc"])


def test_hmm_and_m2_attributions_sum_to_their_log_probability_change(digits: tuple) -> None:
    """Completeness, against log-probabilities computed without the attribution code: the HMM from nothing
    observed (its prior p(ŷ)) to the image, M2's classifier from the zero image to the image."""
    from models.hmm import RowHMM
    from models.m2 import M2

    x = digits[0][:4]
    torch.manual_seed(0)
    hmm = RowHMM(states=3).eval()
    m2 = M2(latent_dim=2, hidden=16).eval()
    with torch.no_grad():
        for p in [*hmm.parameters(), *m2.parameters()]:
            p.add_(0.3 * torch.randn_like(p))
        posterior = torch.log_softmax(hmm.log_joint(x), 1)
        predicted = posterior.argmax(1)
        expected = posterior.gather(1, predicted[:, None]).squeeze(1) - hmm.prior_logits.log_softmax(0)[predicted]
        q = lambda z: F.log_softmax(m2.class_logits(z), 1)  # noqa: E731
        guess = q(x).argmax(1)
        expected_m2 = q(x).gather(1, guess[:, None]).squeeze(1) - q(torch.zeros_like(x)).gather(
            1, guess[:, None]
        ).squeeze(1)
    torch.testing.assert_close(hmm.explain(x).flatten(1).sum(1), expected, atol=0.05, rtol=0.02)
    torch.testing.assert_close(m2.explain(x).flatten(1).sum(1), expected_m2, atol=0.05, rtol=0.02)
    assert hmm.decision_parameters == 2 * sum(p.numel() for p in hmm.parameters()) // 10
