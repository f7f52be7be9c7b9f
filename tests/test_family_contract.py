"""One contract for every model family: its declared capabilities, what each returns, seeded sampling,
and a weights-only checkpoint round trip that reproduces every output.

Parametrised over ``FAMILIES`` (tests/helpers.py: every configs/model/*.yaml): a new family is covered
the moment its config exists, and fails the first test until its kind and capabilities are written
into ``EXPECTED`` below. Each family's smallest model is built once (module-scoped fixture) from its
config with the tiny overrides of configs/benchmark.yaml, and its weights are moved off their
initialisation (a family that declares ``fits_without_gradients`` is fitted on 1 000 digits instead):
zero-initialised layers would otherwise make outputs degenerate, and an EMA copy equal to its network
would hide a reload that restored the wrong one. The conventions checked are
those of the docstring of :mod:`dgbench.capabilities`. Per-family files test each family's mathematics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dgbench.capabilities import CAPABILITIES, capabilities_of
from dgbench.checkpoint import family_class, load_model
from dgbench.data import default_data_root, load_split
from dgbench.family import FamilyModule
from dgbench.runtime import compose_config
from dgbench.settings import apply_settings
from tests.helpers import FAMILIES, TINY, TINY_MODELS, TINY_PRESET

EVERYTHING = ("classify", "sample", "score_anomalies", "log_likelihood", "impute", "explain")
# What each family can do and is: written out here, not read off the code.
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "logistic_regression": ("discriminative", ("classify", "score_anomalies", "explain")),
    "resnet": ("discriminative", ("classify", "score_anomalies", "explain")),
    "gan": ("generative", ("sample", "score_anomalies", "impute")),
    "naive_bayes": ("generative", EVERYTHING),
    "vae": ("generative", EVERYTHING),
    "pixelcnn": ("generative", EVERYTHING),
    "gpt": ("generative", EVERYTHING),
    "diffusion": ("generative", EVERYTHING),
    "hmm": ("generative", EVERYTHING),
    "hcrf": ("discriminative", ("classify", "score_anomalies", "explain")),
    "svm": ("discriminative", ("classify", "score_anomalies", "explain")),
    "random_forest": ("discriminative", ("classify", "score_anomalies", "explain")),
    "decision_tree": ("discriminative", ("classify", "score_anomalies", "explain")),
    "m2": ("hybrid", ("classify", "sample", "score_anomalies", "log_likelihood", "explain")),
    "vae_finetuned": ("hybrid", ("classify", "score_anomalies", "explain")),
    "gpt_finetuned": ("hybrid", ("classify", "score_anomalies", "log_likelihood")),
}


# The inference settings the tiny preset gives evaluate.py for a family (its evaluate list, then the
# family's own): they keep the slow capabilities (diffusion's) to a few network evaluations per image.
def inference_settings(family: str) -> dict[str, Any]:
    overrides = [*TINY_PRESET.evaluate, *(TINY_PRESET.get("evaluate_families") or {}).get(family, [])]
    dotlist = [o.lstrip("+") for o in overrides if o.lstrip("+").startswith("inference.")]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)).get("inference", {})


N = 4  # images per capability call
LABELS = torch.tensor([0, 3, 7, 9])


def declaring(capability: str) -> list[str]:
    return [family for family in FAMILIES if capability in EXPECTED.get(family, ("", ()))[1]]


@dataclass
class Built:
    family: str
    model: FamilyModule
    outputs: dict[str, Any]  # every declared capability's result on the module's digits and mask


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N test digits, a fixed mask with about half the pixels observed, and 1000 digits to fit on."""
    images, labels = load_split("mnist", default_data_root(), train=False)
    images = images.unsqueeze(1).float() / 255
    observed = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.5
    return images[:N], observed, (images[1000:2000], labels[1000:2000])


def apply_inference_knobs(model: FamilyModule, family: str) -> FamilyModule:
    apply_settings({family: model}, inference_settings(family))  # as evaluate.py does (dgbench.settings)
    return model


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def capability_outputs(model: FamilyModule, x: torch.Tensor, observed: torch.Tensor) -> dict[str, Any]:
    """Every declared capability on (x, observed); sampling with the fixed labels and seed 0."""
    capabilities, out = capabilities_of(model), {}
    if "classify" in capabilities:
        out["classify"] = model.classify(x)
        # Missing pixels arrive zero-filled (what a discriminative family sees).
        out["classify_observed"] = model.classify(torch.where(observed, x, torch.zeros_like(x)), observed)
    if "sample" in capabilities:
        out["sample"] = model.sample(N, LABELS, seeded(0))
    if "score_anomalies" in capabilities:
        out["score_anomalies"] = model.score_anomalies(x)
    if "log_likelihood" in capabilities:
        out["log_likelihood"] = model.log_likelihood(x)
    if "impute" in capabilities:
        out["impute"] = model.impute(x, observed)
    return out


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest, digits: tuple, tmp_path_factory: pytest.TempPathFactory) -> Built:
    family = request.param
    assert family in TINY_MODELS, f"configs/benchmark.yaml: add tiny.families.{family} (its smallest settings)"
    cfg = compose_config([*TINY, *TINY_MODELS[family]], tmp_path_factory.mktemp(family))
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    if model.fits_without_gradients:  # closed form (counts, grown trees): nothing to perturb
        model.fit(*digits[2])
    else:
        generator = seeded(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=generator))
    model = apply_inference_knobs(model.eval(), family)
    x, observed, _ = digits
    outputs = capability_outputs(model, x, observed)
    if "sample" in outputs:
        outputs["sample_same_seed"] = model.sample(N, LABELS, seeded(0))
        outputs["sample_other_seed"] = model.sample(N, LABELS, seeded(1))
        outputs["sample_default_labels"] = model.sample(2, generator=seeded(2))
    return Built(family, model, outputs)


def output(built: Built, name: str) -> Any:
    assert name in built.outputs, f"{built.family} does not declare {name}"
    return built.outputs[name]


# --- what a family declares ----------------------------------------------------------------------
def test_expected_names_exactly_the_families() -> None:
    assert sorted(EXPECTED) == FAMILIES, "EXPECTED: one entry per configs/model/*.yaml, no other"


@pytest.mark.parametrize("built", FAMILIES, indirect=True)
def test_declares_exactly_its_capabilities_and_kind(built: Built) -> None:
    assert built.family in EXPECTED, f"add family {built.family!r} to EXPECTED in this file"
    kind, capabilities = EXPECTED[built.family]
    assert capabilities_of(built.model) == list(capabilities)
    assert built.model.kind == kind and built.model.family == built.family
    assert list(CAPABILITIES) == list(EVERYTHING)  # the protocol this table is written against


# --- what each capability returns ----------------------------------------------------------------
@pytest.mark.parametrize("built", declaring("classify"), indirect=True)
def test_classify_returns_normalised_class_log_probabilities(built: Built) -> None:
    for name in ("classify", "classify_observed"):
        log_probs = output(built, name)
        assert log_probs.shape == (N, 10) and log_probs.dtype == torch.float32, name
        assert torch.isfinite(log_probs).all() and (log_probs <= 1e-6).all(), name
        torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(N), atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("built", declaring("score_anomalies"), indirect=True)
def test_score_anomalies_returns_named_finite_scores_per_image(built: Built) -> None:
    scores = output(built, "score_anomalies")
    assert isinstance(scores, dict) and scores and all(isinstance(name, str) for name in scores)
    for name, score in scores.items():
        assert score.shape == (N,) and score.dtype.is_floating_point and torch.isfinite(score).all(), name


@pytest.mark.parametrize("built", declaring("log_likelihood"), indirect=True)
def test_log_likelihood_is_finite_per_image_and_states_its_protocol(built: Built) -> None:
    log_px = output(built, "log_likelihood")
    assert log_px.shape == (N,) and log_px.dtype.is_floating_point and torch.isfinite(log_px).all()
    protocol = built.model.likelihood_protocol
    assert isinstance(protocol, str) and protocol.strip()


@pytest.mark.parametrize("built", declaring("sample"), indirect=True)
def test_samples_are_images_in_the_unit_range(built: Built) -> None:
    for name, n in (("sample", N), ("sample_default_labels", 2)):
        images = output(built, name)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32, name
        assert images.min() >= 0 and images.max() <= 1, name


@pytest.mark.parametrize("built", declaring("sample"), indirect=True)
def test_a_seed_gives_the_same_samples_and_another_seed_others(built: Built) -> None:
    assert torch.equal(output(built, "sample"), output(built, "sample_same_seed"))
    assert not torch.equal(output(built, "sample"), output(built, "sample_other_seed"))


@pytest.mark.parametrize("built", declaring("impute"), indirect=True)
def test_impute_fills_missing_pixels_and_returns_observed_ones_bit_identical(built: Built, digits: tuple) -> None:
    x, observed, _ = digits
    filled = output(built, "impute")
    assert filled.shape == x.shape and filled.dtype == x.dtype
    assert filled.min() >= 0 and filled.max() <= 1
    assert torch.equal(filled[observed], x[observed])
    assert not torch.equal(filled[~observed], x[~observed])  # missing pixels were filled, not passed through


@pytest.mark.parametrize("built", declaring("explain"), indirect=True)
def test_explain_gives_finite_per_pixel_attributions_and_zero_where_unobserved(built: Built, digits: tuple) -> None:
    x, observed, _ = digits
    model = built.model
    for mask in (None, observed):
        attributions = model.explain(x if mask is None else torch.where(mask, x, torch.zeros_like(x)), mask)
        assert attributions.shape == x.shape and attributions.dtype == torch.float32
        assert torch.isfinite(attributions).all() and attributions.abs().sum() > 0
        if mask is not None:
            assert (attributions[~mask] == 0).all()
    assert isinstance(model.explanation_method, str) and model.explanation_method.strip()
    assert isinstance(model.decision_parameters, int) and 0 < model.decision_parameters <= model.num_parameters


# --- weights-only checkpoints --------------------------------------------------------------------
def assert_identical(a: Any, b: Any, name: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), name
        for key in a:
            assert_identical(a[key], b[key], f"{name}[{key}]")
    else:
        assert torch.equal(a, b), f"{name} differs after the reload"


@pytest.mark.parametrize("built", FAMILIES, indirect=True)
def test_weights_only_checkpoint_reproduces_every_output(built: Built, digits: tuple, tmp_path: Path) -> None:
    """The checkpoint as train.py writes it (Lightning's state_dict and hyper_parameters plus the entry
    FamilyModule.on_save_checkpoint adds), loaded by load_model: every capability gives the same
    tensors, bit for bit; sampling with the same seed, the same images."""
    model = built.model
    checkpoint: dict[str, Any] = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    meta = checkpoint["dgbench"]
    assert (meta["family"], meta["kind"]) == (model.family, model.kind)
    assert family_class(meta["class_path"]) is type(model)
    torch.save(checkpoint, tmp_path / "model.ckpt")

    reloaded = apply_inference_knobs(load_model(tmp_path / "model.ckpt"), built.family)
    assert type(reloaded) is type(model) and reloaded.family == built.family and not reloaded.training
    x, observed, _ = digits
    outputs = capability_outputs(reloaded, x, observed)
    assert sorted(outputs) == sorted(k for k in built.outputs if not k.startswith("sample_"))
    for name, value in outputs.items():
        assert_identical(built.outputs[name], value, name)
