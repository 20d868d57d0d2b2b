"""The causal path's whole-file pass (`check`'s cheap scan) and its sequence scores."""

from __future__ import annotations

import pytest
import torch

from diffusion_core.masks import causal_mask
from diffusion_core.scoring import causal_next_tokens, causal_sequence_scores, causal_token_scores
from diffusion_core.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def joint(tok):
    return tiny_model(tok, "joint", seed=3)


def _direct(model, seq: list[int]) -> torch.Tensor:
    """(T-1, V) log-probabilities of seq[1:] from one plain causal pass."""
    t = len(seq)
    with torch.inference_mode():
        o = model(torch.tensor([seq]), torch.arange(t)[None], causal_mask(t)[None])
    return torch.log_softmax(o.logits[0, :-1].float(), dim=-1)


def test_one_window_is_one_causal_pass(tok, joint):
    ids = tok.encode("def add(a, b):\n    return a + b\n")
    prompt = [tok.special.suf, tok.special.pre]
    got = causal_token_scores(joint, ids, prompt=prompt, window=len(ids), stride=len(ids))
    lp = _direct(joint, prompt + ids)[len(prompt) - 1 :]  # rows predicting ids
    own = lp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    assert got.own == pytest.approx(own.tolist(), abs=1e-4)
    for i, t in enumerate(ids):
        rest = lp[i].clone()
        rest[t] = float("-inf")
        assert got.other[i] == pytest.approx(float(rest.max()), abs=1e-4)


def test_windows_score_each_token_with_its_own_left_context(tok, joint):
    ids = tok.encode("import os\n\n\ndef walk(top):\n    for name in os.listdir(top):\n        yield name\n")
    prompt = [tok.special.suf, tok.special.pre]
    window, stride = 8, 5
    got = causal_token_scores(joint, ids, prompt=prompt, window=window, stride=stride)
    assert len(got.own) == len(got.other) == len(ids)
    for i in (0, 4, 5, 7, 12, len(ids) - 1):  # window starts, middles and the end
        a = (i // stride) * stride
        start = max(0, a - (window - stride))
        ctx = prompt + ids[start:i + 1]
        lp = _direct(joint, ctx)[-1]
        assert got.own[i] == pytest.approx(float(lp[ids[i]]), abs=1e-4), i
    # the best other token is never the token itself, and the two cannot both be likely
    assert all(o <= torch.log1p(-torch.tensor(x).exp().clamp(max=1 - 1e-6)) + 1e-4
               for x, o in zip(got.own, got.other, strict=True))


def test_ranges_skip_windows_but_not_the_scores_asked_for(tok, joint):
    ids = tok.encode("import os\n\n\ndef walk(top):\n    for name in os.listdir(top):\n        yield name\n")
    prompt = [tok.special.suf, tok.special.pre]
    full = causal_token_scores(joint, ids, prompt=prompt, window=8, stride=5)
    part = causal_token_scores(joint, ids, prompt=prompt, window=8, stride=5, ranges=[(11, 13)])
    assert part.own[10:15] == pytest.approx(full.own[10:15], abs=1e-5)  # window [10, 15) ran
    assert part.other[10:15] == pytest.approx(full.other[10:15], abs=1e-5)
    skipped = [i for i in range(len(ids)) if not 10 <= i < 15]
    assert skipped and all(part.own[i] == part.other[i] == float("-inf") for i in skipped)


def test_next_tokens_are_the_causal_paths_top_k_at_each_slot(tok, joint):
    prompt = [tok.special.suf, tok.special.pre] + tok.encode("x = 1\n")
    ids = tok.encode("y = (x + 2\n")
    slots = [0, 3, len(ids)]
    got = causal_next_tokens(joint, prompt, ids, slots, k=3, exclude=(tok.special.mask,))
    lp = _direct(joint, prompt + ids + [0])[len(prompt) - 1 :]  # row j predicts position j
    for j, top in zip(slots, got, strict=True):
        row = lp[j].clone()
        row[tok.special.mask] = float("-inf")
        vals, idx = row.topk(3)
        assert [t for t, _ in top] == idx.tolist()
        assert [v for _, v in top] == pytest.approx(vals.tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="slots"):
        causal_next_tokens(joint, prompt, ids, [len(ids) + 1], k=2)


def test_sequence_scores_are_sums_of_next_token_log_probs(tok, joint):
    prompt = [tok.special.suf, tok.special.pre] + tok.encode("x = 1\n")
    variants = [tok.encode("y = x\n"), tok.encode("y = some_long_name + 1\n"), []]
    tail = tok.encode("print(y)\n")
    got = causal_sequence_scores(joint, prompt, variants, tail)  # one padded batch
    assert got == pytest.approx(causal_sequence_scores(joint, prompt, variants, tail, batch=1), abs=1e-4)
    for v, g in zip(variants, got, strict=True):
        seq = prompt + v + tail
        lp = _direct(joint, seq)[len(prompt) - 1 :]
        want = float(lp.gather(-1, torch.tensor(seq[len(prompt):])[:, None]).sum())
        assert g == pytest.approx(want, abs=1e-3)


def test_models_without_a_causal_path_are_refused(tok):
    diffusion = tiny_model(tok, "diffusion")
    with pytest.raises(ValueError, match="causal path"):
        causal_token_scores(diffusion, [5, 6], prompt=[1], window=4, stride=2)
    with pytest.raises(ValueError, match="causal path"):
        causal_sequence_scores(diffusion, [1], [[5]], [])


@pytest.mark.parametrize("window,stride", [(4, 0), (4, 5)])
def test_bad_windows_are_refused(joint, window, stride):
    with pytest.raises(ValueError, match="stride"):
        causal_token_scores(joint, [5, 6, 7], prompt=[1], window=window, stride=stride)


def test_causal_flag_is_the_causal_mask(tok, joint):
    """`causal=True` (SDPA's is_causal kernel, what the scans use) computes what the explicit
    causal mask does, and refuses the cases where its top-left triangle would be wrong."""
    ids = torch.tensor([tok.encode("for i in range(10):\n    print(i * i)\n")])
    t = ids.shape[1]
    pos = torch.arange(t)[None]
    with torch.inference_mode():
        want = joint(ids, pos, causal_mask(t)[None])
        got = joint(ids, pos, causal=True)
        assert torch.allclose(got.logits, want.logits, atol=1e-5)
        for (k1, v1), (k2, v2) in zip(got.kv, want.kv, strict=True):
            assert torch.equal(k1, k2) and torch.equal(v1, v2)
        with pytest.raises(ValueError, match="causal=True"):
            joint(ids, pos, causal_mask(t)[None], causal=True)
        cache = joint.empty_cache().extend(want.kv)
        with pytest.raises(ValueError, match="causal=True"):
            joint(ids, pos + t, None, cache, causal=True)
