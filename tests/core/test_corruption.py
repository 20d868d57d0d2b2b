import ast
import math
import random

import torch

from diffusion_core.corruption import (
    edit_corrupt,
    format_infill,
    mask_corrupt,
    padded_middle_length,
    syntax_edits,
)
from diffusion_core.schedule import loss_weight


def test_mask_corrupt_rate_matches_t():
    g = torch.Generator().manual_seed(0)
    tokens = torch.arange(10, 20010)
    for t in (0.1, 0.5, 0.9):
        out, masked = mask_corrupt(tokens, t, mask_id=1, generator=g)
        rate = masked.float().mean().item()
        assert abs(rate - t) < 0.02
        assert torch.equal(out[masked], torch.ones(int(masked.sum()), dtype=torch.long))
        assert torch.equal(out[~masked], tokens[~masked])


def test_edit_corrupt_applies_floor_len_times_a_edits_on_fixed_canvas():
    g = torch.Generator().manual_seed(1)
    vocab = torch.arange(100, 200)
    tokens = torch.arange(10, 70)  # 60 tokens, none from vocab
    for a in (0.0, 0.05, 0.1):
        res = edit_corrupt(tokens, a, canvas_len=80, filler_id=2, vocab=vocab, generator=g)
        k = math.floor(60 * a)
        assert res.n_insert + res.n_delete + res.n_substitute == k
        assert res.canvas.numel() == res.target.numel() == 80
        assert torch.equal(res.target[:60], tokens) and (res.target[60:] == 2).all()
        n_left = 60 + res.n_insert - res.n_delete
        assert (res.canvas[n_left:] == 2).all() and not (res.canvas[:n_left] == 2).any()
        # every non-original token came from an insertion or substitution
        assert int((res.canvas[:n_left] >= 100).sum()) <= res.n_insert + res.n_substitute
        if a == 0.0:
            assert torch.equal(res.canvas, res.target)


def test_edit_corrupt_never_overflows_the_canvas():
    g = torch.Generator().manual_seed(2)
    tokens = torch.arange(10, 110)
    for _ in range(50):
        res = edit_corrupt(tokens, 0.1, canvas_len=101, filler_id=2, vocab=torch.arange(200, 300), generator=g)
        assert res.canvas.numel() == 101


def test_format_infill_pads_middle_with_eoi_to_whole_blocks(tok):
    sp = tok.special
    ctx, mid = format_infill([5, 6, 7], [8, 9], [11, 12, 13, 14, 15], 4, sp)
    assert ctx == [sp.suf, 8, 9, sp.pre, 5, 6, 7, sp.mid]
    assert mid == [11, 12, 13, 14, 15, sp.eoi, sp.eoi, sp.eoi]
    assert padded_middle_length(4, 4) == 8  # at least one <eoi>
    assert padded_middle_length(0, 4) == 4


def test_schedule_weights_masked_tokens_one_over_t():
    assert torch.allclose(loss_weight(torch.tensor([0.5, 0.25])), torch.tensor([2.0, 4.0]))


def test_syntax_edits_are_single_realistic_edits_that_mostly_break_the_code():
    src = "def f(items, n):\n    for x in items[:n]:\n        print({'x': x})\n    return n\n"
    edits = syntax_edits(src, random.Random(0))
    assert len(edits) == len(set(edits)) >= 10
    for bad in edits:  # one character dropped or doubled, or two swapped in a keyword
        assert abs(len(bad) - len(src)) <= 1 and bad != src
    broken = 0
    for bad in edits:
        try:
            ast.parse(bad)
        except SyntaxError:
            broken += 1
    assert broken / len(edits) > 0.7
    assert any("def f(items, n)\n" in e for e in edits)  # missing colon
    assert any("items[:n]]" in e for e in edits)  # doubled bracket
    assert any("return" not in e and len(e) == len(src) for e in edits)  # misspelt keyword
    assert any("\n   for" in e and "\n    for" not in e for e in edits)  # bad dedent
    assert syntax_edits("x = 1", random.Random(0)) == []  # nothing to break
