"""ResNet family: network shapes, its anomaly scores' definitions and what they can and cannot detect.

Shapes, capabilities and checkpoints: tests/test_family_contract.py; train.py end to end: test_train.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
from models.nets.resnet import ResNet
from models.resnet import ResNetClassifier


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The last 2000 test images: the tiny run is tested on the first 1000, not these."""
    images, labels = load_split("mnist", default_data_root(), train=False)
    return to_float(images[-2000:]), labels[-2000:]


@pytest.fixture(scope="module")
def trained(tiny_resnet_run: Path) -> ResNetClassifier:
    model = load_model(tiny_resnet_run / "checkpoints" / "best.ckpt")
    assert isinstance(model, ResNetClassifier)
    return model


@pytest.mark.parametrize(("num_stages", "stem_stride"), [(1, 1), (3, 1), (2, 2)])
def test_resnet_shapes(num_stages: int, stem_stride: int) -> None:
    net = ResNet(10, width=4, depth=1, num_stages=num_stages, stem_stride=stem_stride).eval()
    x = torch.rand(3, 1, 28, 28)
    assert net.features(x).shape == (3, 4 * 2 ** (num_stages - 1))
    assert net(x).shape == (3, 10)


def test_without_a_mask_channel_the_classifier_ignores_the_mask(trained: ResNetClassifier, digits: tuple) -> None:
    # It sees a masked image zero-filled; the mask itself changes nothing (it has no p(x) to marginalise).
    assert not trained.hparams.get("mask_channel", False)
    x = digits[0][:100]
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    assert torch.equal(trained.classify(x * observed, observed), trained.classify(x * observed))


def test_score_anomalies_match_their_definitions(trained: ResNetClassifier, digits: tuple) -> None:
    x, _ = digits
    scores, logits = trained.score_anomalies(x[:100]), trained(x[:100])
    assert set(scores) == {"max_softmax", "energy"}
    assert torch.allclose(scores["max_softmax"], -trained.classify(x[:100]).exp().amax(1), atol=1e-6)
    assert torch.allclose(scores["energy"], -torch.logsumexp(logits, 1), atol=1e-5)


def test_max_softmax_flags_the_digits_it_gets_wrong(trained: ResNetClassifier, digits: tuple) -> None:
    # Hendrycks & Gimpel (2017), first experiment: errors get lower confidence than correct
    # predictions. Holds even for the barely trained tiny model (AUROC 0.72-0.82 over seeds).
    x, y = digits
    wrong = trained.classify(x).argmax(1) != y
    assert 100 < wrong.sum() < 1900, "both groups need enough images for the AUROC to mean something"
    assert binary_auroc(trained.score_anomalies(x)["max_softmax"], wrong.long()) > 0.6


def test_far_from_the_data_a_relu_classifier_is_confidently_wrong(trained: ResNetClassifier, digits: tuple) -> None:
    """Hein et al. (CVPR 2019), theorem 3.1: a ReLU network (here with BatchNorm in eval mode: affine) is
    piecewise affine, so along a ray a * z its logits grow linearly in a and the softmax saturates:
    max p(y | a z) -> 1 for almost every z. Both scores then call scaled noise *less* anomalous than
    every real digit: this is why softmax-based OOD detection cannot be trusted far from the data."""
    x, _ = digits
    noise = 1e4 * torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    far, real = trained.score_anomalies(noise), trained.score_anomalies(x[:500])
    assert (far["max_softmax"] < -0.999).all()  # max p(y|x) > 0.999
    assert far["max_softmax"].max() <= real["max_softmax"].min()
    assert far["energy"].max() < real["energy"].min()
