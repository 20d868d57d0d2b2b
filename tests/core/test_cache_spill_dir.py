"""The spill directory as an attacker or a full disk sees it (issue 23, cases 3, 8, 9):
FIFOs, devices and symlinks at a spill file's (predictable) name, the directory's size and
age budget, URIs with lone surrogates, and the warning about a directory others can read."""

from __future__ import annotations

import os
import threading
import time

import pytest

from diffusion_core.checkpoint import UnreadableFileError, read_regular
from dlsp_cache import spill
from dlsp_cache.store import DocumentCacheStore
from tests.core.test_cache_store import MODEL, B, acquire, ids_of, make_cache, put


def _store(tmp_path, **kw) -> DocumentCacheStore:
    return DocumentCacheStore(model_hash=MODEL, spill_dir=tmp_path / "spill",
                              background_spill=False, **kw)


def _restore_in_thread(store, uri, ids, timeout=20.0):
    """acquire() in a thread: a FIFO would block it forever, so the test waits bounded."""
    out: list = []
    th = threading.Thread(target=lambda: out.append(acquire(store, uri, ids, B)), daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), "acquire() hangs on the planted file"
    return out[0]


def test_a_fifo_at_the_spill_name_is_refused_not_waited_for(tmp_path):
    store = _store(tmp_path)
    path = store.spill_dir / spill.spill_name(MODEL, "file:///a.py")
    os.mkfifo(path)
    assert _restore_in_thread(store, "file:///a.py", ids_of(1, 40)) == (None, None)
    assert store.stats()["rejected_spill_files"] == 1
    assert not os.path.lexists(path)


def test_a_symlink_to_dev_zero_or_another_file_is_never_read(tmp_path):
    store = _store(tmp_path, budget_bytes=1 << 20)
    zero = store.spill_dir / spill.spill_name(MODEL, "file:///z.py")
    zero.symlink_to("/dev/zero")
    assert _restore_in_thread(store, "file:///z.py", ids_of(1, 40)) == (None, None)
    # a valid spill of the right document, reached through a symlink: not read either
    other = tmp_path / "elsewhere.kv"
    other.write_bytes(spill.encode(model_hash=MODEL, uri="file:///o.py", block_size=B,
                                   ids=ids_of(2, 40), cache=make_cache(ids_of(2, 40))))
    link = store.spill_dir / spill.spill_name(MODEL, "file:///o.py")
    link.symlink_to(other)
    assert _restore_in_thread(store, "file:///o.py", ids_of(2, 40)) == (None, None)
    assert other.exists()  # the target is left alone; the link itself is removed
    assert not os.path.lexists(link) and not os.path.lexists(zero)
    assert store.stats()["rejected_spill_files"] == 2


def test_read_regular_refuses_fifos_devices_and_oversized_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1001)
    for path in (fifo, "/dev/zero", big):
        with pytest.raises(UnreadableFileError):
            read_regular(path, 1000)
    (tmp_path / "link").symlink_to(big)
    with pytest.raises(OSError):
        read_regular(tmp_path / "link", 10_000, follow_symlinks=False)
    assert read_regular(tmp_path / "link", 10_000) == b"x" * 1001


def test_the_spill_directory_has_a_size_budget(tmp_path):
    one = len(spill.encode(model_hash=MODEL, uri="file:///d00.py", block_size=B,
                           ids=ids_of(0, 40), cache=make_cache(ids_of(0, 40))))
    store = _store(tmp_path, budget_bytes=1 << 20, spill_max_bytes=5 * one + one // 2)
    for d in range(40):
        uri = f"file:///d{d:02}.py"
        put(store, uri, ids_of(d, 40))
        store.close(uri)  # spilled
    files = [p for p in store.spill_dir.iterdir() if spill.is_spill_name(p.name)]
    assert sum(p.stat().st_size for p in files) <= 5 * one + one // 2
    assert len(files) == 5 and store.stats()["expired_spill_files"] == 35
    # the newest survive: the last document still restores
    cache, _ids = acquire(store, "file:///d39.py", ids_of(39, 40), B)
    assert cache is not None


def test_the_spill_directory_has_an_age_budget(tmp_path):
    store = _store(tmp_path)
    put(store, "file:///old.py", ids_of(1, 40))
    store.close("file:///old.py")
    put(store, "file:///new.py", ids_of(2, 40))
    store.close("file:///new.py")
    old = store.spill_dir / spill.spill_name(MODEL, "file:///old.py")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    again = _store(tmp_path)  # the next server start applies the default of 7 days
    assert not old.exists()
    assert (again.spill_dir / spill.spill_name(MODEL, "file:///new.py")).exists()
    assert again.stats()["expired_spill_files"] == 1


def test_uris_with_lone_surrogates_spill_and_restore(tmp_path):
    uri = "file:///\ud800odd\udfff.py"
    store = _store(tmp_path)
    put(store, uri, ids_of(3, 40))
    store.close(uri)
    assert store.stats()["spills"] == 1 and store.stats()["spill_errors"] == 0
    cache, _ids = acquire(store, uri, ids_of(3, 40), B)
    assert cache is not None and store.stats()["restores"] == 1


def test_a_directory_others_can_read_is_a_warning_for_the_user(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    store = DocumentCacheStore(model_hash=MODEL, spill_dir=shared)
    assert len(store.warnings) == 1 and "accessible to other users" in store.warnings[0]
    private = tmp_path / "private"
    assert DocumentCacheStore(model_hash=MODEL, spill_dir=private).warnings == []
