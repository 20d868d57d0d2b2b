"""Held-out loss (diffusion_core.heldout): the numbers behind issue 19's training curve."""

import pytest
import torch
import torch.nn.functional as F

from diffusion_core.corruption import format_infill
from diffusion_core.data import Corpus, DataConfig
from diffusion_core.heldout import heldout_examples, heldout_loss
from diffusion_core.masks import causal_mask
from diffusion_core.testing import sample_code, tiny_model


@pytest.fixture(scope="module")
def corpus():
    texts = sample_code()
    return Corpus(texts, [f"pkg{i}/m.py" for i in range(len(texts))])


@pytest.fixture(scope="module")
def examples(corpus, tok):
    return heldout_examples(corpus, tok, DataConfig(max_prefix=48, max_suffix=16, max_middle=12), 6, seed=3)


def test_examples_are_a_function_of_the_seed(corpus, tok, examples):
    cfg = DataConfig(max_prefix=48, max_suffix=16, max_middle=12)
    assert heldout_examples(corpus, tok, cfg, 6, seed=3) == examples
    assert heldout_examples(corpus, tok, cfg, 6, seed=4) != examples
    assert all(middle for _, _, middle, _ in examples)


def test_each_kind_reports_the_losses_of_its_paths(tok, examples):
    diff = heldout_loss(tiny_model(tok, "diffusion"), tok, examples)
    ar = heldout_loss(tiny_model(tok, "ar"), tok, examples)
    joint = heldout_loss(tiny_model(tok, "joint"), tok, examples)
    assert diff.next_token_nll is None and diff.diffusion_nll_bound > 0
    assert ar.diffusion_nll_bound is None and ar.next_token_nll > 0
    assert joint.next_token_nll > 0 and joint.diffusion_nll_bound > 0
    # the middles and one <eoi> each, whatever the block padding
    assert diff.middle_tokens == ar.middle_tokens == sum(len(m) + 1 for _, _, m, _ in examples)


def test_next_token_nll_is_the_one_token_at_a_time_likelihood(tok, examples):
    """No row sees its own target: the batched number equals a fresh forward per token."""
    model = tiny_model(tok, "joint").double()
    total = n = 0
    for prefix, suffix, middle, block in examples:
        context, mid = format_infill(prefix, suffix, middle, block, tok.special)
        seq = [*context, *mid[: len(middle) + 1]]
        for i in range(len(context), len(seq)):
            x = torch.tensor([seq[:i]])
            with torch.no_grad():
                logits = model(x, torch.arange(i)[None], causal_mask(i)[None]).logits  # (1, i, V)
            total += float(F.cross_entropy(logits[0, -1:], torch.tensor([seq[i]])))
            n += 1
    got = heldout_loss(model, tok, examples).next_token_nll
    assert got == pytest.approx(total / n, rel=1e-9)


def test_diffusion_bound_is_deterministic_and_tracks_the_weights(tok, examples):
    model = tiny_model(tok, "diffusion")
    a = heldout_loss(model, tok, examples, seed=1)
    assert heldout_loss(model, tok, examples, seed=1) == a
    other = heldout_loss(tiny_model(tok, "diffusion", seed=5), tok, examples, seed=1)
    assert other.diffusion_nll_bound != a.diffusion_nll_bound
