"""GPT over 2x2 patch tokens: the tokeniser, exact normalisation, the key-value cache, Bayes classification,
exact marginals of missing tokens, imputation and explanations.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

from dgbench import DGBenchError
from dgbench.binarize import fixed_binarization
from models.gpt import GPT
from models.nets.gpt import DecoderTransformer, detokenize, to_patches, tokenize


def tiny_gpt(image_size: int = 28, **overrides: object) -> GPT:
    torch.manual_seed(0)
    model = GPT(**{"width": 16, "depth": 2, "heads": 2, "image_size": image_size, **overrides}).eval()
    with torch.no_grad():  # off GPT-2's small initialisation, so that outputs differ visibly by class and token
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def images(n: int, side: int = 28, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed))
    return ((x - 0.3) * 2).clamp(0, 1)


def every_binary_image(side: int) -> torch.Tensor:
    pixels = side * side
    return ((torch.arange(2**pixels)[:, None] >> torch.arange(pixels)) & 1).float().view(-1, 1, side, side)


def labels_of(n: int, label: int) -> torch.Tensor:
    return torch.full((n,), label)


@pytest.fixture(scope="module")
def enumerated() -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """A model of 4x4 images (4 tokens), every one of the 65 536 binary images, and log p(b | y) (65 536, 10)."""
    model, every = tiny_gpt(4, width=8, depth=1), every_binary_image(4)
    with torch.no_grad():
        return model, every, model.log_px_given_y(every)


def test_user_errors() -> None:
    with pytest.raises(DGBenchError, match="must be even"):
        GPT(image_size=27)
    with pytest.raises(DGBenchError, match="multiple of heads"):
        GPT(width=10, heads=4)
    with pytest.raises(DGBenchError, match="one label per image"):
        tiny_gpt(4).sample(4, labels=torch.arange(3))


# --- the tokeniser -----------------------------------------------------------------------------------
def test_every_2x2_pattern_is_its_own_token_and_round_trips() -> None:
    patterns = every_binary_image(2)  # all 16 patterns
    b = patterns[:, 0].long()
    expected = b[:, 0, 0] + 2 * b[:, 0, 1] + 4 * b[:, 1, 0] + 8 * b[:, 1, 1]  # tl, tr, bl, br
    tokens = tokenize(patterns)
    assert tokens.shape == (16, 1) and torch.equal(tokens[:, 0], expected)
    assert sorted(tokens[:, 0].tolist()) == list(range(16))  # lossless: 16 patterns, 16 symbols
    assert torch.equal(detokenize(tokens, 2), patterns)
    binary = fixed_binarization(images(3))
    assert torch.equal(detokenize(tokenize(binary), 28), binary)


def test_tokens_are_the_patches_in_raster_order() -> None:
    for row in range(6):
        for col in range(6):
            image = torch.zeros(1, 1, 6, 6)
            image[0, 0, row, col] = 1
            expected = torch.zeros(1, 9, dtype=torch.long)
            expected[0, (row // 2) * 3 + col // 2] = 2 ** ((row % 2) * 2 + col % 2)
            assert torch.equal(tokenize(image), expected), (row, col)


# --- exact probabilities --------------------------------------------------------------------------
@pytest.mark.parametrize("side", [2, 4])
def test_probabilities_over_every_binary_image_sum_to_one(side: int, enumerated: tuple) -> None:
    # The chain rule over tokens is normalised only if no token sees itself or its future: 2x2 images are
    # one token (the 16 symbols), 4x4 images four tokens (65 536 images).
    model, every, log_px_given_y = enumerated if side == 4 else (tiny_gpt(2), every_binary_image(2), None)
    with torch.no_grad():
        log_px_given_y = model.log_px_given_y(every) if log_px_given_y is None else log_px_given_y  # (2^pixels, 10)
        unconditional = -model.negative_log_likelihood(every, labels_of(len(every), -1))
    torch.testing.assert_close(log_px_given_y.logsumexp(0).exp(), torch.ones(10))  # p(x | y), each class
    torch.testing.assert_close(unconditional.logsumexp(0).exp(), torch.tensor(1.0))  # p(x | no class)
    log_px = log_px_given_y.logsumexp(1) - math.log(10)  # p(x) = sum_y p(x | y) p(y)
    torch.testing.assert_close(log_px.logsumexp(0).exp(), torch.tensor(1.0))


def brute_force_log_px_given_y(model: GPT, binary: torch.Tensor, label: int) -> torch.Tensor:
    """log p(b | y) token by token, the whole prefix recomputed for each factor (no teacher forcing)."""
    tokens, start = tokenize(binary), torch.full((len(binary), 1), 16 + label)
    total = torch.zeros(len(binary))
    for t in range(tokens.shape[1]):
        logits, _ = model.net(torch.cat([start, tokens[:, :t]], 1))
        total += logits[:, -1].log_softmax(-1).gather(1, tokens[:, t, None])[:, 0]
    return total


def test_classify_is_a_softmax_over_the_class_likelihoods_one_class_at_a_time() -> None:
    model, x = tiny_gpt(12), images(3, side=12)
    with torch.no_grad():
        binary = fixed_binarization(x)
        log_px_given_y = torch.stack([brute_force_log_px_given_y(model, binary, y) for y in range(10)], 1)
    close = {"atol": 1e-4, "rtol": 1e-5}  # float32 sums of 36 terms, in another order
    torch.testing.assert_close(model.classify(x), log_px_given_y.log_softmax(1), **close)
    torch.testing.assert_close(model.log_likelihood(x), log_px_given_y.logsumexp(1) - math.log(10), **close)
    scores = model.score_anomalies(x)
    torch.testing.assert_close(scores["nll"], -model.log_likelihood(x))
    assert set(scores) == {"nll", "nll_unconditional", "complexity_corrected"}
    torch.testing.assert_close(model.classify(x[1:]), model.classify(x)[1:])  # independent of the batch


def observed_suffix_mask() -> torch.Tensor:
    """4x4: token 0 observed, token 1 half observed (its top row), tokens 2 and 3 missing."""
    observed = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    observed[..., :2, :2] = True
    observed[..., 0, 2:] = True
    return observed


def test_missing_token_suffix_is_marginalised_exactly(enumerated: tuple) -> None:
    (model, every, joint), observed = enumerated, observed_suffix_mask()
    with torch.no_grad():
        image = every[1234:1235]
        agrees = (every == image).logical_or(~observed).flatten(1).all(1)
        exact = joint[agrees].logsumexp(0)
        marginal = model.log_px_given_y(image, observed)[0]
    torch.testing.assert_close(marginal, exact)
    # Unobserved pixels are never read
    torch.testing.assert_close(
        model.classify(torch.where(observed, image, 1 - image), observed), marginal.log_softmax(0)[None]
    )


# --- the key-value cache ---------------------------------------------------------------------------
def test_incremental_decoding_with_the_cache_gives_the_full_logits() -> None:
    torch.manual_seed(0)
    net = DecoderTransformer(vocabulary=27, outputs=16, length=10, width=16, depth=2, heads=2).eval()
    tokens = torch.randint(0, 27, (3, 10))
    with torch.no_grad():
        full, _ = net(tokens)
        logits, cache = net(tokens[:, :4])  # a prefix at once, then one token at a time
        steps = [logits]
        for t in range(4, 10):
            logits, cache = net(tokens[:, t : t + 1], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full)
    with torch.no_grad():
        changed = tokens.clone()
        changed[:, 6:] = (changed[:, 6:] + 1) % 16
        assert torch.equal(net(changed)[0][:, :6], full[:, :6])  # causal: a later token changes no earlier logit


def test_cached_and_uncached_sampling_give_the_same_images() -> None:
    model, labels = tiny_gpt(), torch.tensor([0, 3, 7, 9])
    cached = model.sample(4, labels, torch.Generator().manual_seed(3))
    assert torch.equal(cached, model.sample(4, labels, torch.Generator().manual_seed(3), cached=False))
    assert set(cached.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(cached, model.sample(4, labels.roll(1), torch.Generator().manual_seed(3)))


# --- imputation and explanations -------------------------------------------------------------------
def test_imputation_keeps_observed_pixels_and_reads_nothing_else() -> None:
    model, x = tiny_gpt(), images(3)
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) >= 0.3
    filled = model.impute(x, observed)
    assert torch.equal(filled[observed], x[observed]) and (filled[~observed] != x[~observed]).any()
    assert torch.equal(model.impute(torch.where(observed, x, 1 - x), observed), filled)  # reads observed only
    assert torch.equal(model.impute(x[1:], observed[1:]), filled[1:])  # independent of the batch
    assert torch.equal(model.impute(x, torch.ones_like(observed)), x)  # nothing missing: the input


def test_a_missing_suffix_is_filled_with_its_exact_conditional_probabilities(enumerated: tuple) -> None:
    # The last token's two bottom pixels missing: generate's per-pixel probability of a 1 given the
    # label and the observed pixels must be the enumerated conditional p(b_j = 1 | b_obs, y).
    model, every, log_px_given_y = enumerated
    observed = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    observed[..., 3, 2:] = False
    image, label = every[777:778] * observed, 5
    with torch.no_grad():
        joint = log_px_given_y[:, label]
        agrees = (every == image).logical_or(~observed).flatten(1).all(1)
        weights = (joint[agrees] - joint[agrees].logsumexp(0)).exp()
        exact = (weights[:, None] * every[agrees][:, 0, 3, 2:]).sum(0)
        _, probabilities = model.generate(
            torch.tensor([label]), tokenize(image), to_patches(observed), torch.rand(1, 4)
        )
    torch.testing.assert_close(probabilities[0, 3, 2:], exact)


def test_explanations_sum_to_the_log_odds_of_the_decision() -> None:
    model, x = tiny_gpt(), images(3)
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) >= 0.5
    attributions = model.explain(x, observed)
    log_probs = model.classify(x, observed).sort(1, descending=True).values
    torch.testing.assert_close(attributions.sum((1, 2, 3)), log_probs[:, 0] - log_probs[:, 1], atol=1e-4, rtol=1e-4)
    assert (attributions[~observed] == 0).all()
