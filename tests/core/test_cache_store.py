"""DocumentCacheStore without a model: reuse, LRU budget, spill/restore, bad files, threads."""

from __future__ import annotations

import errno
import logging
import os
import random
import stat
import threading
import time

import pytest
import torch

from diffusion_core.kv_cache import KVCache
from diffusion_core.layout import reusable_prefix
from dlsp_cache import spill
from dlsp_cache.store import DocumentCacheStore

MODEL = "model-aaaa"
B = 16
LAYERS, HEADS, DIM = 2, 2, 4


def make_cache(ids, dtype=torch.float32) -> KVCache:
    """A fake cache whose contents spell out its ids and positions, so that any mix-up
    between a cache and the ids it is said to encode is detectable."""
    n = len(ids)
    base = torch.zeros(1, HEADS, n, DIM)
    base[0, :, :, 0] = torch.tensor(ids, dtype=torch.float32)
    base[0, :, :, 1] = torch.arange(n, dtype=torch.float32)
    keys = tuple((base + 1000 * layer).to(dtype) for layer in range(LAYERS))
    values = tuple((base - 1000 * layer).to(dtype) for layer in range(LAYERS))
    return KVCache(keys, values)


def entry_bytes(n: int, dtype=torch.float32) -> int:
    return make_cache(list(range(n)), dtype).nbytes


def check_consistent(cache: KVCache, cache_ids: list[int]) -> None:
    assert cache.length == len(cache_ids)
    want = make_cache(cache_ids, cache.keys[0].dtype)
    for a, b in zip((*cache.keys, *cache.values), (*want.keys, *want.values), strict=True):
        assert torch.equal(a, b)


def ids_of(doc: int, n: int) -> list[int]:
    return [doc * 10 + (i % 7) for i in range(n)]


def acquire(store: DocumentCacheStore, uri: str, ids: list[int], block_size: int):
    """What a completion reuses of the entry: `lookup`, then the leading whole blocks that
    still match `ids`, as `Engine.infill` keeps them."""
    cache, cached = store.lookup(uri, block_size)
    n = 0 if cache is None else reusable_prefix(cached, ids, cache.length, block_size)
    return (cache.truncate(n), cached[:n]) if n else (None, None)


def put(store: DocumentCacheStore, uri: str, ids: list[int], encoded: int | None = None) -> None:
    store.update(uri, ids, make_cache(ids), B, len(ids) if encoded is None else encoded)


# -- reuse ----------------------------------------------------------------------------
def test_miss_then_whole_block_reuse():
    store = DocumentCacheStore(model_hash=MODEL)
    ids = list(range(70))
    assert acquire(store, "a", ids, B) == (None, None)
    put(store, "a", ids)
    cache, cache_ids = acquire(store, "a", ids, B)
    assert cache_ids == ids[:64] and cache.length == 64  # whole blocks only
    check_consistent(cache, cache_ids)

    edited = ids[:40] + [999] + ids[41:]
    cache, cache_ids = acquire(store, "a", edited, B)
    assert cache_ids == ids[:32]  # the block containing position 40 and all after it go
    check_consistent(cache, cache_ids)

    assert acquire(store, "a", [999] + ids[1:], B) == (None, None)  # first block changed
    s = store.stats()
    assert (s["hits"], s["misses"]) == (0, 1)  # counted by `update`, from what the job reused
    assert s["encoded_tokens"] == 70 and s["encoded_blocks"] == 5
    assert s["documents"] == 1 and s["bytes_in_memory"] == entry_bytes(70)
    store.update("a", edited, make_cache(edited), B, encoded_tokens=38, reused_tokens=32)
    s = store.stats()
    assert (s["hits"], s["misses"]) == (1, 1)
    assert s["reused_tokens"] == 32 and s["reused_blocks"] == 2
    assert s["encoded_tokens"] == 108 and s["encoded_blocks"] == 8


def test_block_size_is_part_of_the_entry():
    store = DocumentCacheStore(model_hash=MODEL)
    ids = list(range(64))
    put(store, "a", ids)
    assert acquire(store, "a", ids, 8) == (None, None)
    assert acquire(store, "a", ids, B)[0] is not None


def test_documents_are_separate():
    store = DocumentCacheStore(model_hash=MODEL)
    put(store, "a", ids_of(1, 40))
    put(store, "b", ids_of(2, 40))
    cache, cache_ids = acquire(store, "b", ids_of(2, 40), B)
    assert cache_ids == ids_of(2, 32)
    check_consistent(cache, cache_ids)
    assert acquire(store, "c", ids_of(1, 40), B) == (None, None)


def test_store_is_not_changed_through_its_arguments_or_results():
    store = DocumentCacheStore(model_hash=MODEL)
    ids = list(range(48))
    put(store, "a", ids)
    ids[3] = -5  # the caller reuses its list
    _, cache_ids = acquire(store, "a", list(range(48)), B)
    cache_ids[0] = -7
    cache, cache_ids = acquire(store, "a", list(range(48)), B)
    assert cache_ids == list(range(48))
    check_consistent(cache, cache_ids)


def test_views_are_stored_compactly():
    store = DocumentCacheStore(model_hash=MODEL)
    ids = list(range(200))
    big = make_cache(ids)
    store.update("a", ids[:64], big.truncate(64), B)
    e = store.entry("a")
    assert e.nbytes == entry_bytes(64) == store.stats()["bytes_in_memory"]
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in e.cache.keys)


def test_update_validates_its_arguments():
    store = DocumentCacheStore(model_hash=MODEL)
    with pytest.raises(ValueError):
        store.update("a", list(range(10)), make_cache(list(range(20))), B)
    with pytest.raises(ValueError):
        store.update("a", list(range(20)), make_cache(list(range(20))), 0)


def test_a_cache_shorter_than_a_block_is_not_kept():
    store = DocumentCacheStore(model_hash=MODEL)
    put(store, "a", list(range(40)))
    put(store, "a", list(range(5)))  # replaces the old entry, but holds nothing reusable
    assert "a" not in store and store.stats()["bytes_in_memory"] == 0


# -- budget -----------------------------------------------------------------------------
def test_budget_holds_under_many_documents():
    n = 48
    budget = int(entry_bytes(n) * 3.5)  # room for three documents
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=budget)
    rng = random.Random(0)
    for doc in range(200):
        put(store, f"doc{doc}", ids_of(doc, n))
        if doc >= 2:  # keep touching one document: it must survive everything
            cache, _ = acquire(store, "doc0", ids_of(0, n), B)
            assert cache is not None
        if rng.random() < 0.3:
            acquire(store, f"doc{rng.randrange(doc + 1)}", ids_of(doc, n), B)
        s = store.stats()
        assert s["bytes_in_memory"] <= budget
        assert s["bytes_in_memory"] == sum(store.entry(u).nbytes for u in [f"doc{i}" for i in range(doc + 1)] if store.entry(u))
    s = store.stats()
    assert s["documents"] == 3 and s["evictions"] == 197
    assert "doc0" in store and "doc199" in store and "doc198" in store


def test_least_recently_used_goes_first():
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=int(entry_bytes(48) * 2.5))
    put(store, "a", ids_of(1, 48))
    put(store, "b", ids_of(2, 48))
    acquire(store, "a", ids_of(1, 48), B)  # a is now more recent than b
    put(store, "c", ids_of(3, 48))
    assert "a" in store and "c" in store and "b" not in store


def test_an_entry_larger_than_the_budget_is_not_kept():
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=entry_bytes(48) - 1)
    put(store, "a", ids_of(1, 48))
    assert "a" not in store and store.stats()["oversize"] == 1
    assert store.stats()["bytes_in_memory"] == 0


def test_close_frees_the_entry_and_clear_drops_everything():
    store = DocumentCacheStore(model_hash=MODEL)
    put(store, "a", ids_of(1, 48))
    put(store, "b", ids_of(2, 48))
    store.close("a")
    assert "a" not in store and store.stats()["bytes_in_memory"] == entry_bytes(48)
    store.close("never-opened")
    store.clear()
    assert len(store) == 0 and store.stats()["bytes_in_memory"] == 0


# -- spill and restore ------------------------------------------------------------------
def files(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_close_spills_and_reopen_restores(tmp_path, dtype):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    ids = ids_of(1, 50)
    store.update("file:///a.py", ids, make_cache(ids, dtype), B)
    store.close("file:///a.py")
    assert "file:///a.py" not in store
    store.wait_for_spills()
    assert files(d) == [spill.spill_name(MODEL, "file:///a.py")]
    cache, cache_ids = acquire(store, "file:///a.py", ids, B)
    assert cache_ids == ids[:48] and cache.keys[0].dtype == dtype
    check_consistent(cache, cache_ids)
    s = store.stats()
    assert (s["spills"], s["restores"]) == (1, 1)
    # A restored entry is already on disk: closing it again does not rewrite it.
    store.close("file:///a.py")
    store.wait_for_spills()
    assert store.stats()["spills"] == 1


def test_a_restarted_server_restores(tmp_path):
    d = tmp_path / "kv"
    first = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    put(first, "a", ids_of(1, 64))
    put(first, "b", ids_of(2, 64))
    first.flush()
    assert first.stats()["spills"] == 2 and len(first) == 2
    second = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    cache, cache_ids = acquire(second, "b", ids_of(2, 64), B)
    assert cache_ids == ids_of(2, 64)
    check_consistent(cache, cache_ids)
    # Another model never sees (nor deletes) these files: their names differ.
    other = DocumentCacheStore(model_hash="model-bbbb", spill_dir=d)
    assert acquire(other, "a", ids_of(1, 64), B) == (None, None)
    assert len(files(d)) == 2


def test_evicted_entries_are_spilled_and_come_back(tmp_path):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=int(entry_bytes(48) * 2.5), spill_dir=d)
    for doc in range(6):
        put(store, f"doc{doc}", ids_of(doc, 48))
    store.wait_for_spills()
    s = store.stats()
    assert s["evictions"] == 4 and s["spills"] == 4 and len(files(d)) == 4
    cache, cache_ids = acquire(store, "doc0", ids_of(0, 48), B)
    check_consistent(cache, cache_ids)
    assert cache_ids == ids_of(0, 48)
    assert store.stats()["restores"] == 1 and store.stats()["bytes_in_memory"] <= store.budget_bytes


def test_forget_and_clear_remove_files(tmp_path):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    put(store, "a", ids_of(1, 48))
    put(store, "b", ids_of(2, 48))
    store.close("a")
    store.close("b")
    (d / "unrelated.txt").write_text("keep me")
    store.forget("a")
    assert spill.spill_name(MODEL, "a") not in files(d)
    assert acquire(store, "a", ids_of(1, 48), B) == (None, None)
    store.clear()
    assert files(d) == ["unrelated.txt"]


def test_newer_entry_wins_over_an_older_file(tmp_path):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    put(store, "a", ids_of(1, 48))
    store.close("a")
    put(store, "a", ids_of(2, 48))  # the document was reopened and changed
    cache, cache_ids = acquire(store, "a", ids_of(2, 48), B)
    assert cache_ids == ids_of(2, 48)
    store.close("a")
    store.wait_for_spills()
    fresh = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    _, cache_ids = acquire(fresh, "a", ids_of(2, 48), B)
    assert cache_ids == ids_of(2, 48)


def test_directory_is_private_and_names_are_hashes(tmp_path):
    d = tmp_path / "deep" / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    evil = "file:///../../../../tmp/evil/../../etc/passwd"
    put(store, evil, ids_of(1, 48))
    store.close(evil)
    store.wait_for_spills()
    (name,) = files(d)
    assert name == spill.spill_name(MODEL, evil) and spill.is_spill_name(name)
    assert stat.S_IMODE((d / name).stat().st_mode) & 0o077 == 0
    assert not (tmp_path / "etc").exists()


def spilled(tmp_path, uri="file:///a.py", n=48):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    put(store, uri, ids_of(1, n))
    store.close(uri)
    store.wait_for_spills()
    return d, d / spill.spill_name(MODEL, uri)


def assert_rejected(tmp_path, d, path, caplog, uri="file:///a.py"):
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    with caplog.at_level(logging.WARNING, logger="dlsp_cache"):
        assert acquire(store, uri, ids_of(1, 48), B) == (None, None)
    assert not path.exists()
    assert store.stats()["rejected_spill_files"] == 1
    assert any("ignoring cache file" in r.getMessage() for r in caplog.records)
    # and the store carries on: a new entry is stored and spilled normally
    put(store, uri, ids_of(1, 48))
    store.close(uri)
    store.wait_for_spills()
    assert path.exists()


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, 0.99])
def test_truncated_file_is_rejected_and_deleted(tmp_path, caplog, keep):
    d, path = spilled(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    assert_rejected(tmp_path, d, path, caplog)


def test_corrupted_file_is_rejected_and_deleted(tmp_path, caplog):
    d, path = spilled(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_rejected(tmp_path, d, path, caplog)


def test_file_from_another_model_is_rejected_and_deleted(tmp_path, caplog):
    d, path = spilled(tmp_path)
    ids = ids_of(1, 48)
    path.write_bytes(
        spill.encode(model_hash="model-bbbb", uri="file:///a.py", block_size=B, ids=ids, cache=make_cache(ids))
    )
    assert_rejected(tmp_path, d, path, caplog)


def test_file_of_another_format_version_is_rejected_and_deleted(tmp_path, caplog, monkeypatch):
    d, path = spilled(tmp_path)
    ids = ids_of(1, 48)
    monkeypatch.setattr(spill, "FORMAT_VERSION", spill.FORMAT_VERSION + 1)
    path.write_bytes(spill.encode(model_hash=MODEL, uri="file:///a.py", block_size=B, ids=ids, cache=make_cache(ids)))
    monkeypatch.undo()
    assert_rejected(tmp_path, d, path, caplog)


def test_file_of_another_document_is_rejected_and_deleted(tmp_path, caplog):
    d, path = spilled(tmp_path, uri="file:///b.py")
    target = d / spill.spill_name(MODEL, "file:///a.py")
    path.rename(target)  # b's cache put where a's belongs
    assert_rejected(tmp_path, d, target, caplog)


def test_file_of_another_dtype_is_rejected_when_the_store_knows_its_dtype(tmp_path, caplog):
    d, path = spilled(tmp_path)  # float32
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d, dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING, logger="dlsp_cache"):
        assert acquire(store, "file:///a.py", ids_of(1, 48), B) == (None, None)
    assert not path.exists() and store.stats()["rejected_spill_files"] == 1


def test_oversized_file_is_rejected_without_reading_it(tmp_path, caplog):
    d, path = spilled(tmp_path)
    with open(path, "ab") as f:
        f.truncate(64 * 2**20)
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=2**20, spill_dir=d)
    with caplog.at_level(logging.WARNING, logger="dlsp_cache"):
        assert acquire(store, "file:///a.py", ids_of(1, 48), B) == (None, None)
    assert not path.exists() and store.stats()["rejected_spill_files"] == 1


def test_unusable_spill_dir_disables_spilling(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="dlsp_cache"):
        store = DocumentCacheStore(model_hash=MODEL, spill_dir=blocker / "kv")
    assert store.stats()["spill_enabled"] is False
    assert any("spilling disabled" in r.getMessage() for r in caplog.records)
    put(store, "a", ids_of(1, 48))
    store.close("a")
    assert acquire(store, "a", ids_of(1, 48), B) == (None, None)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_full_or_read_only_directory_only_costs_the_spill(tmp_path, caplog, monkeypatch, err):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, budget_bytes=int(entry_bytes(48) * 1.5), spill_dir=d)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).startswith(str(d)):
            raise OSError(err, os.strerror(err))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with caplog.at_level(logging.WARNING, logger="dlsp_cache"):
        for doc in range(5):
            put(store, f"doc{doc}", ids_of(doc, 48))  # each evicts the previous one
        store.close("doc4")
        store.wait_for_spills()
    monkeypatch.undo()
    assert files(d) == []  # no temp files left behind
    s = store.stats()
    assert s["spill_errors"] == 5 and s["spills"] == 0 and s["evictions"] == 4
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not on every eviction
    put(store, "x", ids_of(9, 48))
    assert acquire(store, "x", ids_of(9, 48), B)[0] is not None
    store.close("x")  # the directory works again
    store.wait_for_spills()
    assert files(d) == [spill.spill_name(MODEL, "x")]


def test_directory_without_write_permission(tmp_path, monkeypatch):
    """What a directory without write permission does, injected (CI runs as root, which
    ignores permissions): EACCES at the first file created in it. The spill is lost, the
    store and a second one on the same directory carry on, nothing is left behind."""
    import tempfile

    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    real = tempfile.mkstemp
    denied = []

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, d):
            denied.append(dir)
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    put(store, "a", ids_of(1, 48))
    store.close("a")
    store.wait_for_spills()
    assert denied and store.stats()["spill_errors"] == 1 and store.stats()["spills"] == 0
    again = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    assert acquire(again, "a", ids_of(1, 48), B) == (None, None)
    put(again, "b", ids_of(2, 48))
    assert acquire(again, "b", ids_of(2, 48), B)[0] is not None  # memory still works
    assert files(d) == []


def test_stale_temp_files_are_removed_at_start(tmp_path):
    d = tmp_path / "kv"
    DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    old, new = d / ".tmp-old.kv", d / ".tmp-new.kv"
    old.write_bytes(b"partial")
    new.write_bytes(b"in progress")
    t = time.time() - 7200
    os.utime(old, (t, t))
    DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    assert files(d) == [".tmp-new.kv"]


# -- threads ----------------------------------------------------------------------------
def test_concurrent_requests_edits_closes_and_evictions(tmp_path):
    """Workers acquire, 'encode' and update documents while others edit, close and forget
    them, under a budget that forces evictions and spills. Every cache handed out must
    encode exactly the ids it is returned with, and those must prefix the request."""
    uris = [f"file:///d{i}.py" for i in range(5)]
    store = DocumentCacheStore(
        model_hash=MODEL, budget_bytes=int(entry_bytes(96) * 2.5), spill_dir=tmp_path / "kv"
    )
    versions = {u: [i * 50 + (j % 11) for j in range(96)] for i, u in enumerate(uris)}
    vlock = threading.Lock()
    errors: list[BaseException] = []
    stop = time.monotonic() + 3.0

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop:
                uri = rng.choice(uris)
                op = rng.random()
                if op < 0.15:  # an edit: change the tail of the document
                    with vlock:
                        ids = versions[uri]
                        cut = rng.randrange(len(ids))
                        versions[uri] = ids[:cut] + [rng.randrange(1000) for _ in range(rng.randrange(1, 40))]
                        versions[uri] = versions[uri][:120] or [1]
                elif op < 0.2:
                    store.close(uri)
                elif op < 0.22:
                    store.forget(uri)
                else:
                    with vlock:
                        ids = list(versions[uri])
                    cache, cache_ids = acquire(store, uri, ids, B)
                    if cache is not None:
                        check_consistent(cache, cache_ids)
                        assert ids[: len(cache_ids)] == cache_ids and len(cache_ids) % B == 0
                    reuse = 0 if cache is None else cache.length
                    full = make_cache(ids)  # what the engine would return for ids
                    store.update(uri, ids, full, B, len(ids) - reuse, reuse)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    store.wait_for_spills()
    s = store.stats()
    assert s["bytes_in_memory"] <= store.budget_bytes
    assert s["bytes_in_memory"] == sum(e.nbytes for e in (store.entry(u) for u in uris) if e)
    assert s["hits"] > 0 and s["evictions"] > 0 and s["spills"] > 0
    assert s["rejected_spill_files"] == 0
    # Whatever ended up on disk is valid and consistent.
    fresh = DocumentCacheStore(model_hash=MODEL, spill_dir=tmp_path / "kv")
    for uri in uris:
        cache, cache_ids = acquire(fresh, uri, versions[uri], B)
        if cache is not None:
            check_consistent(cache, cache_ids)
    assert fresh.stats()["rejected_spill_files"] == 0


def test_spills_are_written_in_the_background(tmp_path, monkeypatch):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d)
    real = spill.write_atomic
    started, release = threading.Event(), threading.Event()

    def slow_write(*args, **kw):
        started.set()
        release.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(spill, "write_atomic", slow_write)
    put(store, "a", ids_of(1, 48))
    t0 = time.perf_counter()
    store.close("a")
    assert time.perf_counter() - t0 < 1.0 and started.wait(10)
    assert store.stats()["bytes_pending_spill"] == entry_bytes(48)
    # While its file is being written, the document is served from memory.
    cache, cache_ids = acquire(store, "a", ids_of(1, 48), B)
    check_consistent(cache, cache_ids)
    assert store.stats()["restores"] == 0
    release.set()
    store.wait_for_spills()
    assert files(d) == [spill.spill_name(MODEL, "a")]
    assert store.stats()["spills"] == 1 and store.stats()["bytes_pending_spill"] == 0


def test_synchronous_spills(tmp_path):
    d = tmp_path / "kv"
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d, background_spill=False)
    put(store, "a", ids_of(1, 48))
    store.close("a")
    assert files(d) == [spill.spill_name(MODEL, "a")] and store.stats()["spills"] == 1


def test_restored_tensors_go_to_the_requested_device(tmp_path):
    d, _ = spilled(tmp_path)
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=d, device="meta")  # any non-CPU device
    cache, _ = acquire(store, "file:///a.py", ids_of(1, 48), B)
    assert cache.keys[0].device.type == "meta" and cache.length == 48
