"""The store with a real (tiny) engine: cached completions equal uncached ones, and a
keystroke at the cursor re-encodes only the context's last block."""

from __future__ import annotations

import difflib
import inspect

import pytest
import torch

from diffusion_core.checkpoint import load_model_dir
from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from diffusion_core.layout import Window, prefix_window_start
from diffusion_core.testing import make_tiny_model_dir
from dlsp_cache.store import DocumentCacheStore

URI = "file:///work/difflib.py"
SOURCE = inspect.getsource(difflib)  # ~2,000 lines of real Python
# Its first 900 lines: still far longer than the context window, and half the tokenizing.
HEAD = "".join(SOURCE.splitlines(keepends=True)[:900])
# Short completions keep the suite fast; the cache is about the context, not the output.
SAMPLER = SamplerConfig(max_tokens=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("cache_engine") / "m")


@pytest.fixture(scope="module")
def engine(model_dir):
    return Engine(load_model_dir(model_dir), SAMPLER)


def complete(engine: Engine, store: DocumentCacheStore | None, prefix: str, suffix: str, uri: str = URI):
    b = engine.sampler.block_size
    cache = cache_ids = None
    if store is not None:  # as lsp_server.service.Service.complete does
        cache, cache_ids = store.lookup(uri, b)
    out = engine.infill(prefix, suffix, cache=cache, cache_ids=cache_ids)
    if store is not None:
        store.update(uri, out.context_ids, out.context_cache, b, out.encoded_tokens,
                     out.reused_tokens)
    return out


def assert_same(cached, plain) -> None:
    assert cached.tokens == plain.tokens
    assert cached.text == plain.text
    assert cached.context_ids == plain.context_ids
    for a, b in zip(
        (*cached.context_cache.keys, *cached.context_cache.values),
        (*plain.context_cache.keys, *plain.context_cache.values),
        strict=True,
    ):
        assert torch.equal(a, b)


def session(text: str, cursor: int):
    """An editing session: typing at the cursor, backspace, a paste, a jump elsewhere."""
    edits = []
    for ch in "result = sel":  # typing, one character at a time
        text = text[:cursor] + ch + text[cursor:]
        cursor += 1
        edits.append((text, cursor))
    for _ in range(3):  # backspace
        text = text[: cursor - 1] + text[cursor:]
        cursor -= 1
        edits.append((text, cursor))
    paste = "\n    for i in range(10):\n        total += i\n"
    text = text[:cursor] + paste + text[cursor:]
    cursor += len(paste)
    edits.append((text, cursor))
    cursor = text.index("def get_close_matches")  # jump to another place
    edits.append((text, cursor))
    text = text[:cursor] + "#" + text[cursor:]
    edits.append((text, cursor + 1))
    return edits


@pytest.mark.slow
@pytest.mark.parametrize("window", [Window(), Window(max_prefix=96, max_suffix=40)], ids=["default", "small"])
def test_completion_with_the_cache_equals_completion_without(model_dir, window):
    engine = Engine(load_model_dir(model_dir), SAMPLER, window=window)
    store = DocumentCacheStore(model_hash=engine.model_hash)
    cursor = HEAD.index("def _keep_original_ws")
    reused = 0
    for text, pos in [(HEAD, cursor), *session(HEAD, cursor)]:
        cached = complete(engine, store, text[:pos], text[pos:])
        plain = complete(engine, None, text[:pos], text[pos:])
        assert_same(cached, plain)
        reused += cached.reused_tokens
    s = store.stats()
    assert reused > 0 and s["hits"] > 0 and s["reused_tokens"] == reused


def test_one_character_edit_reencodes_only_the_last_block(engine):
    b = engine.sampler.block_size
    store = DocumentCacheStore(model_hash=engine.model_hash)
    tok = engine.tokenizer
    # A cursor inside a 2,000-line file (so the prefix window is in use) where typing one
    # character leaves the window start where it is and the last block has room.
    cursor = SOURCE.index("\n", len(SOURCE) // 2) + 1
    while True:
        prefix, suffix = SOURCE[:cursor], SOURCE[cursor:]
        n_before = len(tok.encode(prefix))
        n_after = len(tok.encode(prefix + "x"))
        start = prefix_window_start(n_before, engine.window.max_prefix, b)
        ids = engine.infill_context(prefix, suffix)
        if (
            n_before > engine.window.max_prefix
            and start == prefix_window_start(n_after, engine.window.max_prefix, b)
            and 4 <= len(ids) % b <= b - 4
        ):
            break
        cursor = SOURCE.index("\n", cursor) + 1

    cold = complete(engine, store, prefix, suffix)
    assert cold.reused_tokens == 0 and cold.encoded_tokens == len(cold.context_ids)
    assert len(cold.context_ids) > 20 * b  # a whole window, many blocks

    edited = prefix + "x"
    warm = complete(engine, store, edited, suffix)
    last_block = (len(warm.context_ids) - 1) // b * b
    assert warm.reused_tokens == last_block
    assert 0 < warm.encoded_tokens <= b
    assert warm.encoded_tokens == len(warm.context_ids) - last_block
    assert_same(warm, complete(engine, None, edited, suffix))
    s = store.stats()
    assert s["encoded_tokens"] == cold.encoded_tokens + warm.encoded_tokens
    assert s["encoded_blocks"] == -(-cold.encoded_tokens // b) + 1
    assert s["reused_blocks"] == last_block // b


def test_typing_a_line_reencodes_about_one_block_per_keystroke(engine):
    b = engine.sampler.block_size
    store = DocumentCacheStore(model_hash=engine.model_hash)
    cursor = HEAD.index("def _keep_original_ws")
    text = HEAD
    complete(engine, store, text[:cursor], text[cursor:])
    encoded = []
    for ch in "def helper(x):":
        text = text[:cursor] + ch + text[cursor:]
        cursor += 1
        out = complete(engine, store, text[:cursor], text[cursor:])
        encoded.append(out.encoded_tokens)
    # Each keystroke re-encodes the block(s) holding the changed tail, except when the
    # prefix window moves (every ~b tokens typed), which re-encodes the prefix part.
    small = [e for e in encoded if e <= 2 * b]
    assert len(small) >= len(encoded) - 2, encoded
    assert sorted(encoded)[len(encoded) // 2] <= b


def spill(engine, store, prefix, suffix) -> None:
    """Complete once, then close the document so that its cache is written to the spill dir."""
    complete(engine, store, prefix, suffix)
    store.close(URI)
    store.wait_for_spills()


def test_restored_cache_gives_the_same_completion(model_dir, tmp_path):
    engine = Engine(load_model_dir(model_dir), SAMPLER)
    cursor = SOURCE.index("def unified_diff")
    prefix, suffix = SOURCE[:cursor], SOURCE[cursor:]
    first = DocumentCacheStore(model_hash=engine.model_hash, spill_dir=tmp_path / "kv")
    spill(engine, first, prefix + "d", suffix)
    # a restarted server with the same model and cache directory, one keystroke later
    second = DocumentCacheStore(model_hash=engine.model_hash, spill_dir=tmp_path / "kv")
    warm = complete(engine, second, prefix + "de", suffix)
    assert second.stats()["restores"] == 1
    assert warm.reused_tokens >= len(warm.context_ids) - 2 * engine.sampler.block_size
    assert_same(warm, complete(engine, None, prefix + "de", suffix))


def test_bfloat16_model_round_trips_through_the_spill_dir(model_dir, tmp_path):
    engine = Engine(load_model_dir(model_dir, dtype=torch.bfloat16), SAMPLER)
    cursor = SOURCE.index("class Differ")
    prefix, suffix = SOURCE[:cursor], SOURCE[cursor:]
    store = DocumentCacheStore(model_hash=engine.model_hash, spill_dir=tmp_path / "kv", dtype=torch.bfloat16)
    spill(engine, store, prefix, suffix)
    warm = complete(engine, store, prefix + "#", suffix)
    assert store.stats()["restores"] == 1 and warm.reused_tokens > 0
    assert warm.context_cache.keys[0].dtype == torch.bfloat16
    assert_same(warm, complete(engine, None, prefix + "#", suffix))


def test_another_model_never_reuses_the_cache(model_dir, tmp_path):
    engine = Engine(load_model_dir(model_dir), SAMPLER)
    other = Engine(load_model_dir(make_tiny_model_dir(tmp_path / "other", seed=1)), SAMPLER)
    assert other.model_hash != engine.model_hash
    cursor = SOURCE.index("class Differ")
    prefix, suffix = SOURCE[:cursor], SOURCE[cursor:]
    mine = DocumentCacheStore(model_hash=engine.model_hash, spill_dir=tmp_path / "kv")
    spill(engine, mine, prefix, suffix)
    theirs = DocumentCacheStore(model_hash=other.model_hash, spill_dir=tmp_path / "kv")
    out = complete(other, theirs, prefix, suffix)
    assert out.reused_tokens == 0 and theirs.stats()["restores"] == 0
    assert_same(out, complete(other, None, prefix, suffix))
