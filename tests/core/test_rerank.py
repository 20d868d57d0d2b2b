"""Suffix-aware reranking of single lines (diffusion_core/rerank.py) on tiny random models."""

from __future__ import annotations

import pytest

from diffusion_core.engine import Engine
from diffusion_core.rerank import branch_continuations, rerank_lines
from diffusion_core.scoring import causal_next_tokens, causal_sequence_scores
from diffusion_core.testing import make_tiny_model_dir, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def joint(tok):
    return tiny_model(tok, "joint", seed=5).eval()


def _greedy_alone(model, context, first, max_tokens, done, exclude):
    """Greedy decoding from one first token, one uncached causal pass per token."""
    ids = [first]
    while not done(ids) and len(ids) < max_tokens:
        best = causal_next_tokens(model, context, ids, [len(ids)], k=1)[0][0][0]
        if best in exclude:
            break
        ids.append(best)
    return ids


@pytest.mark.parametrize("stop_every", [3, 1000])
def test_batched_branches_equal_greedy_from_each_first_token(tok, joint, stop_every):
    context = [tok.special.suf, *tok.encode("\n"), tok.special.pre, *tok.encode("def f(x):\n    return"),
               tok.special.mid]
    firsts = [t for t, _ in causal_next_tokens(joint, context, [], [0], k=4)[0]]

    def done(ids):  # some branches stop early, others run to max_tokens
        return sum(ids) % stop_every == 0

    exclude = frozenset({tok.special.eoi})
    got = branch_continuations(joint, context, firsts, max_tokens=9, done=done, exclude=exclude)
    want = [_greedy_alone(joint, context, f, 9, done, exclude) for f in firsts]
    assert got == want
    assert all(1 <= len(b) <= 9 for b in got)


def test_candidates_are_scored_by_infill_and_suffix_and_sorted(tok, joint):
    prefix = tok.encode("def f(values):\n    out = []\n    for v in values:")
    context = [tok.special.suf, *tok.encode("\n    return out\n"), tok.special.pre, *prefix, tok.special.mid]
    plain = [tok.special.suf, tok.special.pre, *prefix]
    tail = tok.encode("\n    return out\n")
    cands = rerank_lines(joint, tok, infill_context=context, plain_prompt=plain, removed="", tail=tail,
                         lines=[" out.append(v)"], k=3, max_tokens=6)
    texts = [c.text for c in cands]
    assert " out.append(v)" in texts and len(set(texts)) == len(texts) <= 4
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    for c in cands:  # the two scores are the causal path's, recomputed one candidate at a time
        assert tuple(tok.encode(c.text)) == c.ids
        assert c.infill == pytest.approx(causal_sequence_scores(joint, context, [list(c.ids)], [])[0], abs=1e-3)
        assert c.plain == pytest.approx(causal_sequence_scores(joint, plain, [list(c.ids)], tail)[0], abs=1e-3)
        assert "\n" not in c.text
    only = rerank_lines(joint, tok, infill_context=context, plain_prompt=plain, removed="", tail=tail,
                        lines=[" out.append(v)"], k=0, max_tokens=6)
    assert [c.text for c in only] == [" out.append(v)"]


def test_engine_rerank_keeps_the_healed_piece_out_of_the_text(tmp_path):
    eng = Engine.from_path(make_tiny_model_dir(tmp_path / "joint", kind="joint"))
    prefix, suffix = "def f(values):\n    total = 0\n", "    return total\n"
    greedy = eng.infill(prefix, suffix, max_tokens=12).text
    cands = eng.rerank_line(prefix, suffix, greedy, k=3, max_tokens=12, inserts_line_break=True)
    removed = eng.healing(prefix).removed
    assert removed  # a line start: the prefix's line break is healed
    assert greedy.split("\n")[0] in [c.text for c in cands]
    for c in cands:
        assert eng.tokenizer.tok.decode(list(c.ids)) == removed + c.text


def test_models_without_a_causal_path_are_refused(tmp_path):
    eng = Engine.from_path(make_tiny_model_dir(tmp_path / "diffusion"))
    with pytest.raises(ValueError, match="causal path"):
        eng.rerank_line("x = ", "\n", "1", k=2, max_tokens=4)
