"""The service every entry point runs: typed results, the sampler per call, one block reuse."""

from __future__ import annotations

import dataclasses

import pytest

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from dlsp_cache import DocumentCacheStore
from lsp_server.service import Completion, Repair, Service, Timings

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
