"""Gated PixelCNN: causality, exact normalisation, exact suffix marginals, Bayes classification, imputation.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

from dgbench import DGBenchError
from dgbench.binarize import fixed_binarization
from models.nets.pixelcnn import GatedPixelCNN
from models.pixelcnn import ConditionalPixelCNN


def tiny_pixelcnn(**overrides: object) -> ConditionalPixelCNN:
    torch.manual_seed(0)
    return ConditionalPixelCNN(**{"width": 4, "dilations": [1, 2], **overrides}).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return ((x - 0.3) * 2).clamp(0, 1)


def every_binary_image(height: int, width: int) -> torch.Tensor:
    pixels = height * width
    return ((torch.arange(2**pixels)[:, None] >> torch.arange(pixels)) & 1).float().view(-1, 1, height, width)


def test_user_errors() -> None:
    model = tiny_pixelcnn()
    with pytest.raises(DGBenchError, match="one per layer"):
        ConditionalPixelCNN(dilations=[])
    with pytest.raises(DGBenchError, match="one label per image"):
        model.sample(4, labels=torch.arange(3))


@pytest.mark.parametrize("size", [(2, 2), (3, 3)])
def test_p_x_sums_to_one_over_every_binary_image(size: tuple[int, int]) -> None:
    # The chain rule is a normalised distribution only if no pixel sees itself or its future.
    with torch.no_grad():
        log_px_given_y = tiny_pixelcnn().log_px_given_y(every_binary_image(*size))  # (2^pixels, 10)
    torch.testing.assert_close(log_px_given_y.logsumexp(0).exp(), torch.ones(10))


def test_each_logit_depends_on_the_past_only_and_has_no_blind_spot() -> None:
    net = GatedPixelCNN(width=4, dilations=(1, 1, 1)).eval()
    inputs = torch.zeros(1, 1, 8, 8, requires_grad=True)
    row, col = 4, 4
    net(inputs, torch.tensor([3]))[0, 0, row, col].backward()
    influence = inputs.grad[0, 0].abs() > 0
    order = torch.arange(64).view(8, 8)
    assert not influence[order >= row * 8 + col].any()  # causal: not itself, nothing later
    assert influence[row, col - 1] and influence[row - 1, col + 2]  # left and up-right: a plain PixelCNN's blind spot


def test_windowed_passes_give_the_full_logits() -> None:
    # Sequential sampling runs the network on the window a pixel can see; the logit must not change.
    model = tiny_pixelcnn()
    binary = fixed_binarization(images(2))
    inputs, labels, reach = 2 * binary - 1, torch.tensor([1, 7]), model.net.receptive_rows
    with torch.no_grad():
        full = model.net(inputs, labels)
        for row, col in [(20, 14), (5, 1), (27, 27)]:
            top, left = max(0, row - reach), max(0, col - reach)
            window = model.net(inputs[:, :, top : row + 1, left : col + reach + 1], labels)
            torch.testing.assert_close(window[:, 0, row - top, col - left], full[:, 0, row, col])
    # ...and the reach is not larger than needed: one column less would change a logit.
    net = GatedPixelCNN(width=4, dilations=(1, 2)).eval()
    grad_in = torch.zeros(1, 1, 12, 12, requires_grad=True)
    net(grad_in, torch.tensor([0]))[0, 0, 8, 6].backward()
    reached = grad_in.grad[0, 0].abs() > 0
    assert reached[8 - net.receptive_rows].any() and reached[:, 6 - net.receptive_rows].any()


def test_classify_likelihood_and_scores_are_bayes_rule_on_the_exact_likelihood() -> None:
    model, x = tiny_pixelcnn(), images(5)
    log_probs, log_px = model.classify(x), model.log_likelihood(x)
    log_px_given_y = model.log_px_given_y(fixed_binarization(x))
    torch.testing.assert_close(log_probs, log_px_given_y.log_softmax(1))
    torch.testing.assert_close(log_px, log_px_given_y.logsumexp(1) - math.log(10))  # uniform p(y)
    scores = model.score_anomalies(x)
    torch.testing.assert_close(scores["nll"], -log_px)
    assert set(scores) == {"nll", "complexity_corrected"} and torch.isfinite(scores["complexity_corrected"]).all()
    # Results do not depend on the batch an image comes in.
    torch.testing.assert_close(model.log_likelihood(x[2:4]), log_px[2:4])


def test_missing_suffix_is_marginalised_exactly() -> None:
    # p(b_obs | y) for a suffix mask is the sum over every completion: check it by enumeration on 3x3.
    model = tiny_pixelcnn()
    every = every_binary_image(3, 3)
    observed = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    observed[..., :1, :], observed[..., 1, 0] = True, True  # first four pixels in raster order
    with torch.no_grad():
        joint = model.log_px_given_y(every)  # (512, 10)
        prefix = (every.flatten(1)[:, :4] * 2 ** torch.arange(4)).sum(1).long()
        exact = torch.stack([joint[prefix == k].logsumexp(0) for k in range(16)])
        first_of_each = torch.stack([every[prefix == k][0] for k in range(16)])
        approx = model.log_px_given_y(first_of_each, observed.expand(16, -1, -1, -1))
    torch.testing.assert_close(approx, exact)


def test_classification_ignores_missing_values() -> None:
    model, x = tiny_pixelcnn(), images(3)
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) >= 0.5
    log_probs = model.classify(x, observed)
    torch.testing.assert_close(model.classify(torch.where(observed, x, 1 - x), observed), log_probs)


def test_imputation_reads_the_observed_pixels_only_and_does_not_depend_on_the_batch() -> None:
    model, x = tiny_pixelcnn(), images(3)
    observed = torch.ones_like(x, dtype=torch.bool)
    observed[..., 24:, :] = False  # a suffix: the last four rows
    observed[0, 0, 3, 5] = False
    filled = model.impute(x, observed)
    assert torch.equal(model.impute(torch.where(observed, x, 1 - x), observed), filled)  # reads observed only
    assert torch.equal(model.impute(x[1:], observed[1:]), filled[1:])  # independent of the batch


def test_fill_is_ancestral_sampling_with_full_passes() -> None:
    # Brute force: every pixel in raster order, the whole network on the whole batch, each image
    # drawing only where its own mask says so; fill's windows and per-pixel image subsets must agree.
    model = tiny_pixelcnn()
    generator = torch.Generator().manual_seed(2)
    todo = torch.rand(3, 1, 28, 28, generator=generator) < torch.tensor([0.1, 0.5, 0.0]).view(3, 1, 1, 1)
    todo[2, 0, 20:] = True  # a missing bottom: the third image takes part from row 20 on only
    start = (2 * (torch.rand(3, 1, 28, 28, generator=generator) < 0.5).float() - 1) * ~todo
    labels, uniforms = torch.tensor([3, 7, 1]), torch.rand(1, 784, generator=generator)
    with torch.no_grad():
        inputs, probabilities = model.fill(start.clone(), labels, todo, uniforms)
        expected, expected_p = start.clone(), torch.zeros_like(start)
        for t in range(784):
            row, col = divmod(t, 28)
            p = torch.sigmoid(model.net(expected, labels)[:, 0, row, col])
            here = todo[:, 0, row, col]
            expected[here, 0, row, col] = 2 * (uniforms[0, t] < p[here]).float() - 1
            expected_p[here, 0, row, col] = p[here]
    assert torch.equal(inputs, expected)
    torch.testing.assert_close(probabilities, expected_p)


def test_samples_are_binary_and_follow_their_labels() -> None:
    model, labels = tiny_pixelcnn(), torch.arange(4)
    first = model.sample(4, labels, torch.Generator().manual_seed(3))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, model.sample(4, labels.roll(1), torch.Generator().manual_seed(3)))
