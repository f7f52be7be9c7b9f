"""The GPT steered with labels (models/gpt_finetuned.py): its stages, its features and its exact p(x)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from dgbench import DGBenchError
from dgbench.binarize import fixed_binarization
from models.gpt import GPT
from models.gpt_finetuned import FinetunedGPT
from models.nets.gpt import tokenize


def tiny(**kw) -> FinetunedGPT:
    torch.manual_seed(0)
    model = FinetunedGPT(width=16, depth=2, heads=2, image_size=4, **kw)
    for p in model.parameters():  # off the initialisation, so every output depends on every weight
        p.data.add_(0.3 * torch.randn_like(p))
    return model.eval()


def every_image() -> torch.Tensor:
    """All 2^16 binary 4x4 images."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=16))).view(-1, 1, 4, 4)


def test_log_likelihood_is_a_distribution_over_every_binary_image() -> None:
    model = tiny()
    total = torch.logsumexp(model.log_likelihood(every_image()).double(), 0)
    assert total.item() == pytest.approx(0.0, abs=1e-4)  # sum_b p(b) = 1, exactly by the chain rule


def test_its_likelihood_is_the_gpt_familys_no_class_chain_rule() -> None:
    model = tiny()
    gpt = GPT(width=16, depth=2, heads=2, image_size=4)
    gpt.net.load_state_dict(model.net.state_dict())
    images = every_image()[::997]
    binary = fixed_binarization(images, 0)
    expected = -gpt.negative_log_likelihood(binary, torch.full((len(images),), -1))
    assert torch.allclose(model.log_likelihood(images), expected, atol=1e-5)


def test_features_are_the_probe_blocks_output_averaged_over_positions() -> None:
    model = tiny(probe_layer=1)
    images = every_image()[::4001]
    tokens = tokenize(fixed_binarization(images, 0))
    start = torch.full((len(tokens), 1), model.net.embed.num_embeddings - 1)  # the no-class token: the last
    sequence = torch.cat([start, tokens[:, :-1]], 1)
    h = model.net.embed(sequence) + model.net.position(torch.arange(sequence.shape[1]))
    h, _ = model.net.blocks[0](h, None)  # block 1 by hand
    pooled = h.mean(1)
    expected = (pooled - pooled.mean(1, keepdim=True)) / (pooled.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    assert torch.allclose(model(images), model.head(expected), atol=1e-4)


def one_step(model: FinetunedGPT, global_step: int) -> dict[str, torch.Tensor]:
    """The parameters after one SGD step of training_step at ``global_step``."""
    model.train()
    images = every_image()[::3001].clone()
    labels = torch.arange(len(images)) % 10
    labels[::2] = -1  # unlabelled images
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.log = lambda *a, **k: None  # outside a Trainer
    type(model).global_step = property(lambda self: global_step)
    try:
        optimizer.zero_grad()
        model.training_step((images, labels), 0).backward()
        optimizer.step()
    finally:
        del type(model).global_step
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(("probe_layer", "stage", "net_moves", "head_moves"), [
    (1, 0, True, False),    # stage 1: next-token prediction, no head
    (1, 5, False, True),    # linear probe: the transformer frozen
    (None, 5, True, True),  # fine-tune: everything, with the generative loss
])  # fmt: skip
def test_each_stage_trains_what_it_should(
    probe_layer: int | None, stage: int, net_moves: bool, head_moves: bool
) -> None:
    model = tiny(probe_layer=probe_layer, pretrain_steps=3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    after = one_step(model, stage)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(n.startswith("net.") for n in moved) == net_moves
    assert any(n.startswith("head.") for n in moved) == head_moves


def test_fine_tuning_loss_is_cross_entropy_plus_the_weighted_per_token_nll() -> None:
    model = tiny(pretrain_steps=0, aux_weight=0.5)
    images = every_image()[::5003]
    labels = torch.arange(len(images)) % 10
    torch.manual_seed(1)  # the dynamic binarization's draw
    model.log = lambda *a, **k: None
    loss = model.training_step((images, labels), 0)
    torch.manual_seed(1)
    binary = torch.bernoulli(images)  # dgbench.binarize.dynamic_binarization, drawn the same way
    with torch.no_grad():
        gpt = GPT(width=16, depth=2, heads=2, image_size=4)
        gpt.net.load_state_dict(model.net.state_dict())
        nll = gpt.negative_log_likelihood(binary, torch.full((len(images),), -1)) / 4  # 4 tokens
        logits = model.head(model.features(model._pass(binary)[1]))  # the same binarization's features
    expected = F.cross_entropy(logits, labels) + 0.5 * nll.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(DGBenchError, match="probe_layer=3"):
        FinetunedGPT(width=16, depth=2, heads=2, probe_layer=3)
    with pytest.raises(DGBenchError, match="aux_weight=-1"):
        FinetunedGPT(width=16, depth=2, heads=2, aux_weight=-1)
