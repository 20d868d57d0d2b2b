"""Latency budget: past the deadline the samplers answer with what is decided so far."""

import time

import pytest
import torch

from diffusion_core.config import SamplerConfig
from diffusion_core.sampler import StopRule, encode, sample_ar, sample_blocks

NEVER = float("inf")


def _context(tok, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(10, tok.vocab_size, (20,), generator=g).tolist()
    sp = tok.special
    return [sp.suf, *body[:9], sp.pre, *body[9:], sp.mid]


@pytest.mark.parametrize("threshold", [1.0, 0.0])
def test_block_sampler_out_of_time_keeps_the_decided_left_part(model64, tok, threshold):
    sp = tok.special
    # no stop token the random model could emit: every answer runs to max_tokens
    kw = dict(block_size=8, threshold=threshold, max_tokens=24, mask_id=sp.mask, stop=StopRule(-1))
    states: list[list[int]] = []  # the block after each denoising step
    for seed in range(4):
        ctx = _context(tok, seed)
        full = sample_blocks(model64, encode(model64, ctx, 8), **kw)
        assert not full.stats.out_of_time and len(full.tokens) == 24
        late = sample_blocks(model64, encode(model64, ctx, 8), **kw, deadline=NEVER)
        assert late.tokens == full.tokens and not late.stats.out_of_time
        states.clear()
        cut = sample_blocks(model64, encode(model64, ctx, 8), **kw, deadline=0.0,
                            on_step=lambda start, block: states.append(block.tolist()))
        assert cut.stats.out_of_time and cut.stats.steps == 1 == len(states)
        decided = states[0][: states[0].index(sp.mask)] if sp.mask in states[0] else states[0]
        assert cut.tokens == decided == full.tokens[: len(decided)]
        assert len(cut.confidence) == len(cut.tokens)
        if threshold == 0.0:  # everything passes: the first block is decided in its one step
            assert cut.tokens == full.tokens[:8]


def test_ar_sampler_out_of_time_after_one_token(ar64, tok):
    ctx = _context(tok, 5)
    cache = encode(ar64, ctx[:-1], 8)
    full = sample_ar(ar64, cache, ctx[-1], max_tokens=6, stop=StopRule(-1))
    cut = sample_ar(ar64, cache, ctx[-1], max_tokens=6, stop=StopRule(-1), deadline=time.perf_counter())
    assert cut.stats.out_of_time and cut.tokens == full.tokens[:1]
    assert not full.stats.out_of_time


def test_budget_is_validated():
    with pytest.raises(ValueError, match="budget_ms"):
        SamplerConfig(budget_ms=-1)
