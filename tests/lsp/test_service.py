"""The service every entry point runs: typed results, the sampler per call, one block reuse."""

from __future__ import annotations

import dataclasses

import pytest

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from dlsp_cache import DocumentCacheStore
from lsp_server import jobs
from lsp_server.service import RERANK_MAX_TOKENS, Completion, Repair, Service, Timings

URI = "file:///work/a.py"
TEXT = "import os\n\n\ndef area(radius):\n    return 3.14 * radius * radius\n\n\nprint(area(2))\n"


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine.from_path(tiny_model, sampler=SamplerConfig(max_tokens=4, block_size=8))


def test_completion_is_typed_and_reuses_the_document_cache(engine):
    store = DocumentCacheStore(model_hash=engine.model_hash)
    svc = Service(engine, store)
    offset = TEXT.index("print")
    cold = svc.complete(TEXT, offset, uri=URI)
    assert isinstance(cold, Completion) and isinstance(cold.timings, Timings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cold.timings.steps = 0  # type: ignore[misc]
    assert cold.timings.reused_tokens == 0 and cold.timings.encoded_tokens > 0
    warm = svc.complete(TEXT[:offset] + "p" + TEXT[offset:], offset + 1, uri=URI)
    assert warm.timings.reused_tokens > 0  # decided once, by the engine, from lookup
    s = store.stats()
    assert (s["hits"], s["misses"]) == (1, 1) and s["reused_tokens"] == warm.timings.reused_tokens
    assert warm.to_json()["timings"]["reused_tokens"] == warm.timings.reused_tokens


def test_sampler_settings_come_with_each_call(engine):
    svc = Service(engine, DocumentCacheStore(model_hash=engine.model_hash))
    before = engine.sampler
    svc.complete(TEXT, 10, uri=URI, sampler=engine.sampler.replace(block_size=16))
    assert svc.engine is engine and engine.sampler == before  # nothing rebuilt or changed
    assert svc.store.entry(URI).block_size == 16
    # an entry of another block size is not handed to the engine
    out = svc.complete(TEXT, 10, uri=URI, sampler=engine.sampler.replace(block_size=8))
    assert out.timings.reused_tokens == 0


def test_repair_is_typed_and_keeps_crlf(engine):
    svc = Service(engine)
    text = TEXT.replace("\n", "\r\n")
    res = svc.repair(text, 3, 4, language="python")
    assert isinstance(res, Repair) and isinstance(res.edits, tuple)
    assert res.old_block.endswith("\r\n") and res.new_block.endswith("\r\n")  # its own ending


def test_score_is_the_lowest_log_prob(engine):
    svc = Service(engine)
    s = svc.score("import os\n", "x = 1\n", "\n")
    assert s <= 0.0


@pytest.fixture(scope="module")
def joint_engine(tmp_path_factory):
    from diffusion_core.testing import make_tiny_model_dir

    path = make_tiny_model_dir(tmp_path_factory.mktemp("joint") / "joint", kind="joint")
    return Engine.from_path(path, sampler=SamplerConfig(max_tokens=8, min_prob=0.0))


def test_a_reranked_single_line_offers_the_candidates_best_first(joint_engine):
    svc = Service(joint_engine, DocumentCacheStore(model_hash=joint_engine.model_hash))
    offset = TEXT.index("3.14")  # mid-line: single-line mode
    greedy = svc.complete(TEXT, offset, uri=URI)
    assert greedy.mode == "single" and greedy.alternatives == () and greedy.timings.candidates == 0
    ranked = svc.complete(TEXT, offset, uri=URI, rerank=4)
    lines = [ranked.text, *ranked.alternatives]
    assert ranked.timings.candidates >= len(lines) >= 2 and ranked.timings.rerank_ms > 0
    assert len(set(lines)) == len(lines) and all(x.strip() and "\n" not in x for x in lines)
    # the same ranking as the engine's, on the infill's context cache or from scratch
    prefix, suffix = TEXT[:offset], TEXT[offset:]
    want = joint_engine.rerank_line(prefix, suffix, ranked.raw, k=4, max_tokens=RERANK_MAX_TOKENS)
    shown = (jobs.trim_completion(c.text, jobs.SINGLE, TEXT, offset) for c in want)
    assert lines == [x for x in dict.fromkeys(shown) if x.strip()]
    assert ranked.to_json()["alternatives"] == list(ranked.alternatives)
    # a multi-line job is not reranked
    multi = svc.complete(TEXT, offset, uri=URI, rerank=4, mode="multi")
    assert multi.alternatives == () and multi.timings.candidates == 0


def test_a_budget_spent_before_the_ranking_keeps_the_greedy_line(joint_engine):
    svc = Service(joint_engine)
    offset = TEXT.index("3.14")
    sc = joint_engine.sampler.replace(budget_ms=1e-6)
    res = svc.complete(TEXT, offset, rerank=4, sampler=sc)
    assert res.timings.out_of_time and res.alternatives == () and res.timings.candidates == 0


def test_a_cancelled_ranking_raises(joint_engine, monkeypatch):
    from diffusion_core.errors import Cancelled

    svc = Service(joint_engine)
    infilled = []
    infill = joint_engine.infill

    def infill_then_cancel(*a, **k):  # the greedy line runs; the ranking is cancelled
        out = infill(*a, **k)
        infilled.append(out)
        return out

    monkeypatch.setattr(joint_engine, "infill", infill_then_cancel)
    with pytest.raises(Cancelled):
        svc.complete(TEXT, TEXT.index("3.14"), rerank=4, cancel=lambda: bool(infilled))
    assert len(infilled) == 1


def test_models_without_a_causal_path_are_not_reranked(engine):
    res = Service(engine).complete(TEXT, TEXT.index("3.14"), rerank=4)
    assert res.alternatives == () and res.timings.candidates == 0
