"""Commit policy of the block sampler: threshold, fallback, and <eoi> only at the frontier."""

import pytest
import torch

from diffusion_core.policy import commit_mask
from diffusion_core.sampler import StopRule, encode, sample_blocks

M, E = 99, 98  # mask and <eoi> ids


def _commit(block, conf, pred, **kw):
    kw = {"mask_id": M, "eoi_id": E, "threshold": 0.9, "last_step": False, **kw}
    return commit_mask(torch.tensor(block), torch.tensor(conf), torch.tensor(pred), **kw).tolist()


def test_every_position_past_the_threshold_commits():
    assert _commit([M, M, M, M], [0.95, 0.2, 0.91, 0.99], [1, 2, 3, 4]) == [True, False, True, True]


@pytest.mark.parametrize(("fallback", "expected"), [
    ("confident", [False, False, True, False]),
    ("leftmost", [False, True, False, False]),
])
def test_fallback_when_nothing_passes(fallback, expected):
    block, conf, pred = [5, M, M, M], [1.0, 0.1, 0.6, 0.3], [5, 2, 3, 4]
    assert _commit(block, conf, pred, fallback=fallback) == expected


def test_eoi_only_at_the_frontier_and_last_step_commits_all():
    # the confident <eoi> at position 2 may not commit; the frontier's may
    assert _commit([M, M, M], [0.5, 0.1, 0.99], [1, 2, E]) == [True, False, False]
    assert _commit([M, M, M], [0.95, 0.1, 0.99], [E, 2, E]) == [True, False, False]
    assert _commit([M, 3, M], [0.1, 1.0, 0.1], [1, 3, 2], last_step=True) == [True, False, True]


def test_leftmost_fallback_decodes_left_to_right(model64, tok):
    sp = tok.special
    ctx = [sp.suf, 11, 12, 13, sp.pre, *range(20, 40), sp.mid]
    states: list[list[int]] = []
    sample_blocks(model64, encode(model64, ctx, 8), block_size=8, threshold=1.0, max_tokens=16,
                  mask_id=sp.mask, stop=StopRule(-1), fallback="leftmost",
                  on_step=lambda start, block: states.append(block.tolist()))
    assert len(states) == 16  # one position per step at threshold 1.0
    for s in states:  # the decided positions are always a prefix of the block
        decided = [t != sp.mask for t in s]
        assert decided == sorted(decided, reverse=True)
