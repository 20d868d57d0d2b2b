"""Suffix-aware reranking of single lines (diffusion_core/rerank.py) on tiny random models."""

from __future__ import annotations

import pytest
import torch

from diffusion_core.engine import Engine
from diffusion_core.rerank import branch_continuations, line_starts, rerank_lines
from diffusion_core.sampler import encode
from diffusion_core.scoring import causal_next_tokens, causal_sequence_scores, encode_causal
from diffusion_core.testing import make_tiny_model_dir, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def joint(tok):
    return tiny_model(tok, "joint", seed=5).eval()


def _greedy_alone(model, context, start, max_tokens, done, exclude):
    """Greedy decoding from one start, one uncached causal pass per token."""
    ids = list(start)
    while not done(ids) and len(ids) < max_tokens:
        best = causal_next_tokens(model, context, ids, [len(ids)], k=1)[0][0][0]
        if best in exclude:
            break
        ids.append(best)
    return ids


CONTEXT = "def f(x):\n    return"


def _context(tok):
    return [tok.special.suf, *tok.encode("\n"), tok.special.pre, *tok.encode(CONTEXT), tok.special.mid]


@pytest.mark.parametrize("stop_every", [3, 1000])
def test_batched_branches_equal_greedy_from_each_start(tok, joint, stop_every):
    context = _context(tok)
    top = [t for t, _ in causal_next_tokens(joint, context, [], [0], k=4)[0]]
    # starts of one, two and three tokens run in lockstep with the rest
    starts = [[top[0]], [top[1], top[2]], [top[3], top[0], top[1]], [top[2]]]

    def done(ids):  # some branches stop early, others run to max_tokens
        return sum(ids) % stop_every == 0

    exclude = frozenset({tok.special.eoi})
    got = branch_continuations(joint, context, starts, max_tokens=9, done=done, exclude=exclude)
    want = [_greedy_alone(joint, context, s, 9, done, exclude) for s in starts]
    assert got == want
    assert all(len(s) <= len(b) <= 9 and b[: len(s)] == s for b, s in zip(got, starts, strict=True))
    with pytest.raises(ValueError, match="start"):
        branch_continuations(joint, context, [[]], max_tokens=4, done=done)


def test_causal_encoding_on_a_cache_equals_encoding_from_scratch(tok, joint):
    context = _context(tok)
    whole = encode_causal(joint, context)
    assert whole.cache.length == len(context)
    for cached in (1, len(context) - 1, len(context)):  # the infill leaves all but the last token
        part = encode(joint, context[:cached], block_size=4)
        assert part.length == cached
        got = encode_causal(joint, context, part)
        assert got.cache.length == len(context)
        assert torch.allclose(got.next_log_probs, whole.next_log_probs, atol=1e-4)
        for a, b in zip(got.cache.keys, whole.cache.keys, strict=True):
            assert torch.allclose(a, b, atol=1e-4)
    # the encoding is the first token's distribution of the scores
    ids = [[t] for t, _ in causal_next_tokens(joint, context, [], [0], k=3)[0]]
    assert causal_sequence_scores(joint, context, ids, [], encoded=whole) == pytest.approx(
        [whole.next_log_probs[i[0]].item() for i in ids], abs=1e-4)
    with pytest.raises(ValueError, match="prompt of"):
        causal_sequence_scores(joint, context[:-1], ids, [], encoded=whole)


class _Planted(torch.nn.Module):
    """A causal model whose next token depends only on the last input token, by a table of
    token text -> {next token text: logit} (every other token: -20)."""

    def __init__(self, tok, inner, table: dict[str, dict[str, float]]):
        super().__init__()
        self.inner, self.cfg = inner, inner.cfg

        def one(x: str) -> int:
            (i,) = tok.encode(x)
            return i

        rows = {a: {one(b): v for b, v in row.items()} for a, row in table.items()}
        self.start = rows.pop("<start>", {})  # after any token not in the table
        self.table = {one(a): row for a, row in rows.items()}

    def empty_cache(self):
        return self.inner.empty_cache()

    def forward(self, x, pos, mask=None, cache=None, *, select=None, causal=False):
        o = self.inner(x, pos, mask, cache, select=select, causal=causal)
        last = (x if select is None else x[select]).reshape(-1)  # (rows,)
        logits = torch.full((last.numel(), o.logits.shape[-1]), -20.0)
        for r, t in enumerate(last.tolist()):
            for u, v in self.table.get(t, self.start).items():
                logits[r, u] = v
        o.logits = logits.reshape(o.logits.shape)
        return o


def _starts(tok, joint, table, removed, k):
    model = _Planted(tok, joint, table)
    enc = encode_causal(model, _context(tok))
    return [tok.tok.decode(s) for s in line_starts(model, enc, removed=removed, decode=tok.tok.decode, k=k)]


def test_whitespace_first_tokens_are_followed_to_the_first_word(tok, joint):
    # after the context "    " (whitespace only) is the most likely token; after it "b", then "a"
    table = {"<start>": {"    ": 0.0, "a": -2.0, "b": -3.0}, "    ": {"b": 0.0, "a": -2.0}}
    texts = _starts(tok, joint, table, removed="", k=3)
    # the indentation alone is no start: it is followed by its most likely next tokens,
    # ranked by the joint probability with the first-token starts
    assert texts == ["    b", "a", "    a"]
    assert _starts(tok, joint, table, removed="", k=0) == []


def test_a_first_token_that_is_a_piece_of_the_healed_text_is_followed_too(tok, joint):
    # the cursor is 5 spaces in (the healed piece "     "): the likely path is "    " and
    # then " b" (a word token with its own leading space), not one token of 5 spaces
    table = {"<start>": {"    ": 0.0, "a": -1.0}, "    ": {" b": 0.0, "b": -1.0, " a": -2.0}}
    texts = _starts(tok, joint, table, removed="     ", k=2)
    # "    b" does not spell the piece ("b" comes a space early), "a" neither
    assert texts == ["     b", "     a"]


def test_an_open_start_is_followed_for_more_than_one_token(tok, joint):
    # the healed piece is a line break and an indentation that this vocabulary spells in two
    # tokens ("\n", "    "): nothing is written after them yet, so the word comes third
    table = {"<start>": {"\n": 0.0, "a": -3.0}, "\n": {"    ": 0.0, "a": -4.0}, "    ": {"b": 0.0, "a": -1.0}}
    assert _starts(tok, joint, table, removed="\n    ", k=2) == ["\n    b", "\n    a"]


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


def test_engine_rerank_on_the_infills_cache_equals_rerank_from_scratch(tmp_path):
    eng = Engine.from_path(make_tiny_model_dir(tmp_path / "joint", kind="joint"))
    prefix, suffix = "def f(values):\n    total = 0\n    for v in values:\n", "    return total\n"
    out = eng.infill(prefix, suffix, max_tokens=12)
    assert 0 < out.context_cache.length <= len(out.context_ids)
    fresh = eng.rerank_line(prefix, suffix, out.text, k=4, max_tokens=10, inserts_line_break=True)
    reused = eng.rerank_line(prefix, suffix, out.text, k=4, max_tokens=10, inserts_line_break=True, after=out)
    assert [c.text for c in reused] == [c.text for c in fresh]
    assert [c.score for c in reused] == pytest.approx([c.score for c in fresh], abs=1e-3)
    # an infill of another hole is not used: its ids do not start this context
    other = eng.infill("import os\n", "", max_tokens=4)
    moved = eng.rerank_line(prefix, suffix, out.text, k=4, max_tokens=10, inserts_line_break=True, after=other)
    assert [c.text for c in moved] == [c.text for c in fresh]


def test_models_without_a_causal_path_are_refused(tmp_path):
    eng = Engine.from_path(make_tiny_model_dir(tmp_path / "diffusion"))
    with pytest.raises(ValueError, match="causal path"):
        eng.rerank_line("x = ", "\n", "1", k=2, max_tokens=4)
