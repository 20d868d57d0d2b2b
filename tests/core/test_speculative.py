"""Draft and verify (diffusion_core.speculative): exactly greedy AR output, fewer forwards."""

from pathlib import Path

import pytest
import torch

from diffusion_core.checkpoint import LoadedModel
from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from diffusion_core.sampler import Cancelled, StopRule, encode, sample_ar
from diffusion_core.speculative import DraftConfig, NgramIndex, sample_draft_verify, verify_mask
from diffusion_core.testing import tiny_model

NEVER = StopRule(eoi_id=-1)  # random models write <eoi> early; these tests want long outputs


@pytest.fixture(scope="module")
def joint64(tok):
    return tiny_model(tok, kind="joint", seed=3).double()


def _ids(tok, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, tok.vocab_size, (n,), generator=g).tolist()


def _greedy(model, ctx, n, stop=NEVER):
    return sample_ar(model, encode(model, ctx[:-1], 8), ctx[-1], max_tokens=n, stop=stop)


def _dv(model, tok, ctx, n, cfg, history=None, stop=NEVER, **kw):
    cache = encode(model, ctx[:-1], 8)
    return sample_draft_verify(model, cache, ctx[-1], max_tokens=n, stop=stop, mask_id=tok.special.mask,
                               draft=cfg, history=ctx[:-1] if history is None else history, **kw)


CONFIGS = [
    DraftConfig(masks=0, source="none"),
    DraftConfig(),  # the default: document n-grams
    DraftConfig(source="diffusion"),
    DraftConfig(source="diffusion", masks=8, max_draft=7),
    DraftConfig(source="diffusion", masks=1, max_draft=1),
    DraftConfig(source="ngram", masks=0, ngram=1),
    DraftConfig(source="both", masks=2, max_draft=4),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.source}-m{c.masks}-d{c.max_draft}")
@pytest.mark.parametrize("seed", range(3))
def test_output_is_exactly_greedy_decoding(joint64, tok, cfg, seed):
    ctx = _ids(tok, 20 + 9 * seed, seed)
    ref = _greedy(joint64, ctx, 40)
    got = _dv(joint64, tok, ctx, 40, cfg)
    assert got.tokens == ref.tokens
    assert got.stats.steps <= ref.stats.steps
    assert got.stats.tokens == len(got.tokens)
    # the returned cache is the context and the output but the last token, as one causal pass
    fresh = encode(joint64, ctx + got.tokens[:-1], 8)
    assert got.cache.length == ref.cache.length == fresh.length
    for k1, k2 in zip(got.cache.keys, fresh.keys, strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[6]], ids=["ngram", "both"])
def test_the_context_tail_is_encoded_by_the_first_forward(joint64, tok, cfg):
    """The engine encodes whole blocks and hands the rest of the context to the decoder:
    the same output and cache as encoding all of it first, one forward fewer."""
    ctx = _ids(tok, 45, 7)  # 44 cached by the plain path; 40 (5 blocks) + a tail of 4
    ref = _dv(joint64, tok, ctx, 30, cfg)
    got = sample_draft_verify(joint64, encode(joint64, ctx[:40], 8), ctx[-1], context_tail=ctx[40:-1],
                              max_tokens=30, stop=NEVER, mask_id=tok.special.mask, draft=cfg,
                              history=ctx[:-1])
    assert got.tokens == ref.tokens and got.stats.steps == ref.stats.steps
    assert got.cache.length == ref.cache.length
    for a, b in zip((*got.cache.keys, *got.cache.values), (*ref.cache.keys, *ref.cache.values),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_accepted_drafts_commit_several_tokens_per_forward_and_stay_exact(joint64, tok):
    ctx = _ids(tok, 24, 7)
    ref = _greedy(joint64, ctx, 32)
    # an oracle draft: the history holds the context followed by its true continuation,
    # then the context again, so the 2-gram lookup copies the right next tokens
    oracle = [*ctx, *ref.tokens, *ctx[:-1]]
    got = _dv(joint64, tok, ctx, 32, DraftConfig(source="ngram", masks=0, max_draft=4), history=oracle)
    assert got.tokens == ref.tokens
    assert got.stats.accepted >= 16 and got.stats.steps <= ref.stats.steps // 2
    wrong = [t if i % 3 else (t + 1) % tok.vocab_size for i, t in enumerate(oracle)]
    bad = _dv(joint64, tok, ctx, 32, DraftConfig(source="ngram", masks=0, max_draft=4), history=wrong)
    assert bad.tokens == ref.tokens  # rejected or half-right drafts change nothing


def test_stop_rule_and_max_tokens_cut_inside_an_accepted_draft(joint64, tok):
    ctx = _ids(tok, 24, 7)
    ref = _greedy(joint64, ctx, 32)
    oracle = [*ctx, *ref.tokens, *ctx[:-1]]
    cfg = DraftConfig(source="ngram", masks=0, max_draft=6)
    assert _dv(joint64, tok, ctx, 5, cfg, history=oracle).tokens == ref.tokens[:5]
    stop = StopRule(eoi_id=ref.tokens[9])
    cut = ref.tokens[: ref.tokens.index(ref.tokens[9])]
    assert _dv(joint64, tok, ctx, 32, cfg, history=oracle, stop=stop).tokens == cut
    assert _greedy(joint64, ctx, 32, stop).tokens == cut


def test_an_ar_model_verifies_ngram_drafts_too(ar64, tok):
    ctx = _ids(tok, 30, 2)
    ref = _greedy(ar64, ctx, 30)
    assert _dv(ar64, tok, ctx, 30, DraftConfig(source="both")).tokens == ref.tokens


def test_diffusion_only_models_are_refused(model64, tok):
    with pytest.raises(ValueError, match="causal path"):
        _dv(model64, tok, _ids(tok, 10, 0), 4, DraftConfig())


def test_verify_mask_is_causal_then_one_block():
    m = verify_mask(3, 2, 4, "cpu")  # 3 clean rows, 2 mask rows, 4 cached
    assert m.shape == (5, 9) and bool(m[:, :4].all())
    inner = m[:, 4:].int().tolist()
    assert inner == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]


def test_ngram_index_copies_what_followed_the_last_earlier_occurrence():
    idx = NgramIndex([1, 2, 3, 9, 1, 2, 4, 5, 1], 2)
    assert idx.draft(3) == []  # (5, 1) never occurred before
    idx.extend([2])
    assert idx.draft(3) == [4, 5, 1]  # the latest earlier (1, 2) was followed by 4, 5, 1
    assert NgramIndex([1, 2], 1).draft(2) == []


def test_cancel_and_deadline_act_per_forward(joint64, tok):
    ctx = _ids(tok, 20, 1)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        _dv(joint64, tok, ctx, 40, DraftConfig(), cancel=cancel)
    assert len(calls) == 3
    late = _dv(joint64, tok, ctx, 40, DraftConfig(), deadline=0.0)
    assert late.stats.steps == 1 and late.stats.out_of_time and 1 <= len(late.tokens) <= 4


@pytest.fixture(scope="module")
def joint_engine(tok):
    model = tiny_model(tok, kind="joint", seed=3).double()
    return Engine(LoadedModel(model, tok, Path("."), "joint"), SamplerConfig(block_size=8, max_tokens=24))


@pytest.mark.parametrize("prefix", ["def parse(self, val", "import os\n", "    return self.va"])
def test_engine_draft_decoder_equals_greedy_with_healing_and_cache(joint_engine, prefix):
    suffix = "\n    return x\n"
    greedy = joint_engine.sampler.replace(decoder="greedy")
    ref = joint_engine.infill(prefix, suffix, sampler=greedy)
    got = joint_engine.infill(prefix, suffix)  # auto: draft and verify for a joint model
    assert got.tokens == ref.tokens and got.text == ref.text
    assert got.context_ids == ref.context_ids
    # the context cache covers the whole context, the tail the decoder encoded included
    assert got.context_cache.length == ref.context_cache.length == len(got.context_ids)
    for a, b in zip(got.context_cache.keys, ref.context_cache.keys, strict=True):
        torch.testing.assert_close(a, b)
    # cached: the next keystroke reuses the context cache and answers the same as fresh
    again = joint_engine.infill(prefix + "x", suffix, cache=got.context_cache, cache_ids=got.context_ids)
    fresh = joint_engine.infill(prefix + "x", suffix)
    assert again.tokens == fresh.tokens and again.reused_tokens > 0


def test_decoder_choice_is_checked_against_the_model_kind():
    sc = SamplerConfig()
    assert [sc.decoder_for(k) for k in ("joint", "ar", "diffusion")] == ["draft", "greedy", "threshold"]
    assert sc.replace(decoder="threshold").decoder_for("joint") == "threshold"
    with pytest.raises(ValueError, match="causal path"):
        sc.replace(decoder="draft").decoder_for("diffusion")
    with pytest.raises(ValueError, match="mask path"):
        sc.replace(decoder="threshold").decoder_for("ar")
    with pytest.raises(ValueError, match="decoder"):
        SamplerConfig(decoder="beam")


def _cut_at(conf, k):
    """A min_prob that keeps exactly the first k tokens of an output with confidences conf."""
    p = 1.0
    for c in conf[:k]:
        p *= c
    return p * (1 + conf[k]) / 2  # between the probability of k and of k + 1 tokens


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=lambda c: f"{c.source}-m{c.masks}-d{c.max_draft}")
def test_min_prob_stops_where_the_output_becomes_unlikely(joint64, tok, cfg):
    ctx = _ids(tok, 24, 5)
    ref = _greedy(joint64, ctx, 24)
    # the confidences are the causal path's probabilities of the greedy tokens
    full = joint64(torch.tensor([ctx + ref.tokens]), torch.arange(len(ctx) + len(ref.tokens))[None], None, None)
    probs = full.logits[0, len(ctx) - 1 : -1].softmax(-1)  # (24, V)
    expected = probs.max(-1).values.tolist()
    assert ref.tokens == probs.argmax(-1).tolist()
    assert ref.confidence == pytest.approx(expected, rel=1e-4)
    got = _dv(joint64, tok, ctx, 24, cfg)
    assert got.confidence == pytest.approx(expected, rel=1e-4)
    for k in (0, 3, 7):
        stop = StopRule(eoi_id=-1, min_prob=_cut_at(expected, k))
        assert _greedy(joint64, ctx, 24, stop).tokens == ref.tokens[:k]
        cut = _dv(joint64, tok, ctx, 24, cfg, stop=stop)
        assert cut.tokens == ref.tokens[:k] and cut.stats.tokens == k


def test_min_prob_cuts_the_threshold_decoder_to_a_prefix(joint64, tok):
    from diffusion_core.sampler import sample_blocks

    ctx = _ids(tok, 24, 6)
    kw = dict(block_size=8, threshold=0.9, max_tokens=24, mask_id=tok.special.mask)
    ref = sample_blocks(joint64, encode(joint64, ctx, 8), stop=NEVER, **kw)
    for k in (0, 5, 11):
        got = sample_blocks(joint64, encode(joint64, ctx, 8), stop=StopRule(-1, min_prob=_cut_at(ref.confidence, k)), **kw)
        assert got.tokens == ref.tokens[:k]


def test_stop_rule_confident_keeps_the_running_probability():
    rule = StopRule(-1, min_prob=0.25)
    assert rule.confident([0.9, 0.5, 0.5], 1.0) == (2, 0.45)
    assert rule.confident([0.9], 0.2) == (0, 0.2)
    assert StopRule(-1).confident([1e-9, 1e-9], 1.0) == (2, 1.0)  # 0: never cut
