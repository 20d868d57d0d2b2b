"""Per-document block KV caches: reuse by whole blocks, LRU within a budget, spill to disk.

One entry per document URI: the token ids of the last context encoded for it, their
keys/values (`KVCache`), the block size and the model hash that produced them. A new
request gets the entry whole (`lookup`); the engine keeps the longest run of its leading
whole blocks whose ids are unchanged (`diffusion_core.layout.reusable_prefix`) and encodes
only the rest, and the job stores the new context back (`update`, with the counts).

Thread safety: one lock guards the in-memory state and counters and is only held for
dictionary work, never during model work or file I/O. Spill files are written by a
background thread by default, so `close` and an evicting `update` return at once; an entry
waiting for its spill is still served from memory. Entries are immutable (a `KVCache`
never changes, ids are tuples), so a cache handed out by `lookup` stays valid however the
store changes afterwards. File I/O runs under a second lock that serializes spills,
restores and deletions; a sequence number per entry keeps a late spill of an old entry from
overwriting a newer file or resurrecting a forgotten document.

Spill files (see `dlsp_cache.spill`) live in a directory created with mode 0700; their names
are sha256(model hash + URI). A file that cannot be validated is deleted with a log line,
and a directory that cannot be written (read-only, full) only costs the spill, logged.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_core.checkpoint import UnreadableFileError, read_regular
from diffusion_core.kv_cache import KVCache
from dlsp_cache import spill

__all__ = ["DEFAULT_BUDGET_BYTES", "CacheEntry", "DocumentCacheStore"]

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 256 * 2**20
# Spill files may hold a little more than the tensors (ids, msgpack framing).
_FILE_SLACK_BYTES = 16 * 2**20
# Temp files older than this found at start-up are leftovers of a crash.
_STALE_TMP_SECONDS = 3600.0
# The spill directory's own budget (the memory budget bounds each file, not their number).
DEFAULT_SPILL_MAX_BYTES = 1024 * 2**20
DEFAULT_SPILL_MAX_AGE_SECONDS = 7 * 86400.0
# Background spills waiting to be written: a caller evicting more blocks (back-pressure).
_SPILL_QUEUE = 4
# The spill writer thread exits after this long without work (and restarts on demand).
_WRITER_IDLE_SECONDS = 2.0


@dataclass
class CacheEntry:
    """The cached context of one document. `ids` and `cache` never change."""

    uri: str
    ids: tuple[int, ...]  # token ids of the context; cache covers ids[:cache.length]
    cache: KVCache
    block_size: int
    model_hash: str
    nbytes: int
    seq: int  # store-wide order of creation (newer entries have larger numbers)
    on_disk: bool = False  # an identical spill file exists: eviction need not write it again

    @property
    def length(self) -> int:
        return self.cache.length


def _compact(cache: KVCache) -> KVCache:
    """A cache whose tensors own exactly their bytes (views of larger storage are copied)."""

    def own(t: torch.Tensor) -> torch.Tensor:
        if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
            return t
        return t.contiguous().clone()

    return KVCache(tuple(own(k) for k in cache.keys), tuple(own(v) for v in cache.values))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


class DocumentCacheStore:
    """Block KV caches of open documents, shared by all requests of one server."""

    def __init__(
        self,
        *,
        model_hash: str,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        spill_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        background_spill: bool = True,
        spill_max_bytes: int = DEFAULT_SPILL_MAX_BYTES,
        spill_max_age_s: float = DEFAULT_SPILL_MAX_AGE_SECONDS,
    ) -> None:
        """`device`: where restored tensors go (default: the device of the latest `update`,
        else CPU; pass the model's device when it runs on a GPU). `dtype`: if given, a spill
        file holding another dtype is rejected (caches of another precision are not reused).
        `background_spill`: write spill files on a writer thread, so that `close` and an
        evicting `update` return at once (`flush` waits for them); False writes in the caller.
        `spill_max_bytes`, `spill_max_age_s`: the spill directory's budget; spill files older
        than the age, then the oldest while all together are larger than the size, are
        deleted at start and after every spill (0 = no limit). `warnings` collects what the
        user should hear about the directory (it is open to other users...)."""
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.model_hash = model_hash
        self.budget_bytes = int(budget_bytes)
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self._seen_device: torch.device | None = None  # of the latest update
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # LRU first
        # Entries evicted or closed whose spill is being written: still usable meanwhile.
        self._pending: dict[str, CacheEntry] = {}
        self._seq = 0
        self._min_seq = 0  # entries older than this were cleared: never spill them
        self._floor: dict[str, int] = {}  # per URI: entries with seq <= floor must not be spilled
        self._tick: dict[str, int] = {}  # per URI: bumped by update/forget (restores check it)
        self._epoch = 0  # bumped by clear()
        self._bytes = 0
        self._spill_warned = False
        self._background = background_spill
        self.spill_max_bytes = int(spill_max_bytes)
        self.spill_max_age_s = float(spill_max_age_s)
        self.warnings: list[str] = []
        self._queue: queue.Queue[CacheEntry] = queue.Queue(maxsize=_SPILL_QUEUE)
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._counters = dict.fromkeys(
            (
                "hits", "misses", "reused_tokens", "reused_blocks", "encoded_tokens",
                "encoded_blocks", "updates", "evictions", "spills", "restores",
                "rejected_spill_files", "spill_errors", "oversize", "expired_spill_files",
            ),
            0,
        )
        self.spill_dir: Path | None = self._init_spill_dir(spill_dir) if spill_dir is not None else None

    # -- public API -------------------------------------------------------------------
    def lookup(self, uri: str, block_size: int) -> tuple[KVCache | None, list[int] | None]:
        """The stored cache of `uri` and the ids it encodes, whole, or (None, None).

        For `Engine.infill(cache=..., cache_ids=...)`, which keeps the leading whole blocks
        that still match the new context (`diffusion_core.layout.reusable_prefix`); the
        store itself never decides what is reused. An entry of another block size is not
        returned. Restores the entry from the spill directory when it is not in memory.
        """
        entry, snapshot = self._lookup(uri)
        if entry is None and snapshot is not None:
            entry = self._restore(uri, snapshot)
        if entry is None or entry.block_size != block_size:
            return None, None
        return entry.cache, list(entry.ids)

    def update(
        self, uri: str, ids: list[int], cache: KVCache, block_size: int, encoded_tokens: int = 0,
        reused_tokens: int = 0,
    ) -> None:
        """Make (ids, cache) the entry of `uri`; evict least recently used entries over budget.

        `encoded_tokens`, `reused_tokens`: what the job that made `cache` encoded and
        reused of the previous entry (a hit when it reused any), for the counters."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if cache.length > len(ids):
            raise ValueError(f"cache of {cache.length} tokens does not fit {len(ids)} ids")
        with self._lock:
            if reused_tokens > 0:
                self._counters["hits"] += 1
                self._counters["reused_tokens"] += reused_tokens
                self._counters["reused_blocks"] += reused_tokens // block_size
            else:
                self._counters["misses"] += 1
            self._counters["updates"] += 1
            self._counters["encoded_tokens"] += max(0, encoded_tokens)
            self._counters["encoded_blocks"] += -(-max(0, encoded_tokens) // block_size)
        usable = cache.length >= block_size and cache.n_layers > 0
        if usable:
            self._seen_device = cache.keys[0].device
            cache = _compact(cache)  # outside the lock: may copy
        nbytes = cache.nbytes if usable else 0
        to_spill: list[CacheEntry] = []
        with self._lock:
            self._tick[uri] = self._tick.get(uri, 0) + 1
            self._drop_locked(uri)
            self._pending.pop(uri, None)  # superseded: its spill (if running) is harmless
            if not usable:
                return
            if nbytes > self.budget_bytes:
                self._counters["oversize"] += 1
                return
            self._seq += 1
            entry = CacheEntry(uri, tuple(ids), cache, block_size, self.model_hash, nbytes, self._seq)
            self._insert_locked(entry)
            to_spill = self._evict_locked()
        self._spill_all(to_spill)

    def close(self, uri: str) -> None:
        """The document was closed: spill its entry (if there is a spill dir) and free it."""
        with self._lock:
            entry = self._drop_locked(uri)
            if entry is not None and self._wants_spill(entry):
                self._pending[uri] = entry
            else:
                entry = None
        if entry is not None:
            self._spill_all([entry])

    def forget(self, uri: str) -> None:
        """Drop the entry of `uri` from memory and disk."""
        with self._lock:
            self._drop_locked(uri)
            self._pending.pop(uri, None)
            self._floor[uri] = self._seq  # any spill still queued for it is now stale
            self._tick[uri] = self._tick.get(uri, 0) + 1
        if self.spill_dir is not None:
            with self._io_lock:
                self._unlink(self.spill_dir / spill.spill_name(self.model_hash, uri))

    def clear(self) -> None:
        """Drop every entry, in memory and in the spill directory. Counters are kept."""
        with self._lock:
            self._entries.clear()
            self._pending.clear()
            self._bytes = 0
            self._min_seq = self._seq + 1
            self._epoch += 1
        if self.spill_dir is not None:
            with self._io_lock:
                try:
                    names = os.listdir(self.spill_dir)
                except OSError as e:
                    log.warning("cannot list cache directory %s: %s", self.spill_dir, e)
                    return
                for name in names:
                    if spill.is_spill_name(name):
                        self._unlink(self.spill_dir / name)

    def flush(self) -> None:
        """Write every in-memory entry not yet on disk to the spill directory and wait until
        all spills (also those of earlier closes and evictions) are written. Call it at
        shutdown so that a restarted server finds the open documents; entries stay in memory."""
        if self.spill_dir is None:
            return
        with self._lock:
            entries = [e for e in self._entries.values() if self._wants_spill(e)]
        self._spill_all(entries)
        self.wait_for_spills()

    def wait_for_spills(self) -> None:
        """Block until every spill queued so far (closes, evictions) is written or given up."""
        self._queue.join()

    def stats(self) -> dict:
        with self._lock:
            s: dict = dict(self._counters)
            s["bytes_in_memory"] = self._bytes
            s["bytes_pending_spill"] = sum(e.nbytes for e in self._pending.values())
            s["documents"] = len(self._entries)
            s["budget_bytes"] = self.budget_bytes
            lookups = s["hits"] + s["misses"]
            s["hit_rate"] = s["hits"] / lookups if lookups else 0.0
            s["spill_enabled"] = self.spill_dir is not None
            s["spill_dir"] = str(self.spill_dir) if self.spill_dir is not None else None
            s["model_hash"] = self.model_hash
        return s

    def entry(self, uri: str) -> CacheEntry | None:
        """The in-memory entry of `uri` (no restore, no LRU touch, no counters)."""
        with self._lock:
            return self._entries.get(uri)

    def __contains__(self, uri: object) -> bool:
        with self._lock:
            return uri in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- memory (all *_locked methods run under self._lock) ---------------------------
    def _lookup(self, uri: str) -> tuple[CacheEntry | None, tuple[int, int] | None]:
        """The in-memory (or spilling) entry, touched; else a snapshot for a restore."""
        with self._lock:
            entry = self._entries.get(uri)
            if entry is not None:
                self._entries.move_to_end(uri)
                return entry, None
            entry = self._pending.get(uri)
            if entry is not None:  # evicted, spill in flight: take it back
                self._insert_locked(entry)
                to_spill = self._evict_locked()
            elif self.spill_dir is None:
                return None, None
            else:
                return None, (self._epoch, self._tick.get(uri, 0))
        self._spill_all(to_spill)
        return entry, None

    def _insert_locked(self, entry: CacheEntry) -> None:
        self._entries[entry.uri] = entry
        self._entries.move_to_end(entry.uri)
        self._bytes += entry.nbytes

    def _drop_locked(self, uri: str) -> CacheEntry | None:
        entry = self._entries.pop(uri, None)
        if entry is not None:
            self._bytes -= entry.nbytes
        return entry

    def _evict_locked(self) -> list[CacheEntry]:
        out = []
        while self._bytes > self.budget_bytes and self._entries:
            _, entry = self._entries.popitem(last=False)
            self._bytes -= entry.nbytes
            self._counters["evictions"] += 1
            if self._wants_spill(entry):
                self._pending[entry.uri] = entry
                out.append(entry)
        return out

    def _wants_spill(self, entry: CacheEntry) -> bool:
        return (
            self.spill_dir is not None
            and not entry.on_disk
            and entry.seq >= self._min_seq
            and entry.seq > self._floor.get(entry.uri, 0)
        )

    # -- disk -------------------------------------------------------------------------
    def _init_spill_dir(self, spill_dir: str | Path) -> Path | None:
        path = Path(spill_dir).expanduser()
        try:
            if not _is_dir(path):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
            elif stat.S_IMODE(path.stat().st_mode) & 0o077:
                msg = (f"cache directory {path} is accessible to other users (mode "
                       f"{stat.S_IMODE(path.stat().st_mode):o}); they can read the cached "
                       "context of your documents: chmod 700 it or choose another")
                log.warning("%s", msg)
                self.warnings.append(msg)
        except OSError as e:
            if _is_dir(path):  # exists but we cannot change it: reading may still work
                log.warning("cache directory %s: %s; spilling may fail", path, e)
            else:
                log.warning("cannot create cache directory %s (%s); spilling disabled", path, e)
                return None
        self._remove_stale_temp_files(path)
        self._prune(path)
        return path

    def _prune(self, path: Path) -> None:
        """Apply the spill directory's age and size budget (oldest files go first). Only
        names this store writes are touched; a non-regular file at such a name (a FIFO, a
        symlink: never followed) is removed too."""
        now = time.time()
        files: list[tuple[float, int, str]] = []
        try:
            with os.scandir(path) as it:
                for d in it:
                    if not spill.is_spill_name(d.name):
                        continue
                    st = d.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        self._reject(Path(d.path), "not a regular file")
                    elif self.spill_max_age_s > 0 and now - st.st_mtime > self.spill_max_age_s:
                        self._expire(Path(d.path))
                    else:
                        files.append((st.st_mtime, st.st_size, d.path))
        except OSError as e:
            log.debug("cannot scan cache directory %s: %s", path, e)
            return
        total = sum(size for _, size, _ in files)
        if self.spill_max_bytes <= 0 or total <= self.spill_max_bytes:
            return
        for _, size, name in sorted(files):
            if total <= self.spill_max_bytes:
                break
            self._expire(Path(name))
            total -= size

    def _expire(self, path: Path) -> None:
        with self._lock:
            self._counters["expired_spill_files"] += 1
        log.debug("cache file %s is over the directory's budget; deleting it", path)
        self._unlink(path)

    def _remove_stale_temp_files(self, path: Path) -> None:
        now = time.time()
        try:
            with os.scandir(path) as it:
                for d in it:
                    if (
                        d.name.startswith(spill.TMP_PREFIX)
                        and d.is_file(follow_symlinks=False)
                        and now - d.stat(follow_symlinks=False).st_mtime > _STALE_TMP_SECONDS
                    ):
                        self._unlink(Path(d.path))
        except OSError as e:
            log.debug("cannot scan cache directory %s: %s", path, e)

    def _max_file_bytes(self) -> int:
        return self.budget_bytes + _FILE_SLACK_BYTES

    def _spill_all(self, entries: list[CacheEntry]) -> None:
        for entry in entries:
            if self._background:
                self._enqueue(entry)
            else:
                self._spill(entry)

    def _enqueue(self, entry: CacheEntry) -> None:
        with self._writer_lock:
            self._queue.put(entry)  # blocks while the writer is _SPILL_QUEUE entries behind
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="kv-spill", daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            try:
                entry = self._queue.get(timeout=_WRITER_IDLE_SECONDS)
            except queue.Empty:
                with self._writer_lock:  # puts happen under this lock: the check is exact
                    if self._queue.empty():
                        self._writer = None
                        return
                continue
            try:
                self._spill(entry)
            except Exception:  # _spill handles expected errors; never let the writer die
                log.exception("spilling the cache of %s failed", entry.uri)
            finally:
                self._queue.task_done()

    def _spill(self, entry: CacheEntry) -> None:
        """Write one entry (outside the state lock); never raises for I/O problems."""
        directory = self.spill_dir
        try:
            if directory is None:
                return
            with self._io_lock:
                with self._lock:
                    if not self._wants_spill(entry):
                        return
                try:
                    data = spill.encode_chunks(
                        model_hash=entry.model_hash, uri=entry.uri, block_size=entry.block_size,
                        ids=entry.ids, cache=entry.cache,
                    )
                    spill.write_atomic(directory, spill.spill_name(entry.model_hash, entry.uri), data)
                    self._prune(directory)
                except OSError as e:
                    self._spill_failed(directory, e)
                    return
                except (ValueError, TypeError, RuntimeError) as e:  # a tensor that cannot be spilled
                    with self._lock:
                        self._counters["spill_errors"] += 1
                    log.warning("cannot spill the cache of %s: %s", entry.uri, e)
                    return
                with self._lock:
                    entry.on_disk = True
                    self._floor[entry.uri] = max(self._floor.get(entry.uri, 0), entry.seq)
                    self._counters["spills"] += 1
                log.debug("spilled %s (%d tokens, %d bytes)", entry.uri, entry.length, data.nbytes)
        finally:
            with self._lock:
                if self._pending.get(entry.uri) is entry:
                    del self._pending[entry.uri]

    def _spill_failed(self, directory: Path, e: OSError) -> None:
        with self._lock:
            self._counters["spill_errors"] += 1
            first = not self._spill_warned
            self._spill_warned = True
        reason = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system"}.get(
            e.errno or 0, str(e)
        )
        # Warn once; a full or read-only directory would otherwise log on every eviction.
        (log.warning if first else log.debug)(
            "cannot write to cache directory %s (%s); continuing without spilling", directory, reason
        )

    def _restore(self, uri: str, snapshot: tuple[int, int]) -> CacheEntry | None:
        directory = self.spill_dir
        if directory is None:
            return None
        path = directory / spill.spill_name(self.model_hash, uri)
        with self._io_lock:
            try:
                # A regular file of bounded size, never through a symlink: a FIFO at this
                # (predictable) name blocked all model work, a symlink to /dev/zero grew
                # memory without bound (fstat says 0 bytes for both).
                data = read_regular(path, self._max_file_bytes(), follow_symlinks=False)
            except FileNotFoundError:
                return None
            except UnreadableFileError as e:
                self._reject(path, e.strerror or str(e))
                return None
            except OSError as e:
                if e.errno == errno.ELOOP:  # a symlink: removed, its target never read
                    self._reject(path, "a symlink, not a regular file")
                    return None
                log.warning("cannot read cache file %s: %s", path, e)
                return None
            try:
                device = self.device or self._seen_device
                rec = spill.decode(data, model_hash=self.model_hash, uri=uri, device=device)
                dtype = rec.cache.keys[0].dtype
                if self.dtype is not None and dtype != self.dtype:
                    raise spill.SpillError(f"holds {dtype}, the model runs in {self.dtype}")
            except spill.SpillError as e:
                self._reject(path, str(e))
                return None
            except Exception as e:  # never let a bad file take the server down
                self._reject(path, f"{type(e).__name__}: {e}")
                return None
        nbytes = rec.cache.nbytes
        to_spill: list[CacheEntry] = []
        with self._lock:
            current = self._entries.get(uri)
            if current is not None:  # an update or another restore won the race
                self._entries.move_to_end(uri)
                entry = current
            elif (self._epoch, self._tick.get(uri, 0)) != snapshot:
                return None  # forgotten, cleared or updated while we read: the file is stale
            elif nbytes > self.budget_bytes:
                self._counters["oversize"] += 1
                return None
            else:
                self._seq += 1
                entry = CacheEntry(
                    uri, rec.ids, rec.cache, rec.block_size, self.model_hash, nbytes, self._seq,
                    on_disk=True,
                )
                self._insert_locked(entry)
                self._counters["restores"] += 1
                to_spill = self._evict_locked()
        self._spill_all(to_spill)
        if current is None:
            log.debug("restored %s (%d tokens) from %s", uri, entry.length, path)
        return entry

    def _reject(self, path: Path, reason: str) -> None:
        """Log and delete a spill file that must not be loaded (caller holds the io lock)."""
        with self._lock:
            self._counters["rejected_spill_files"] += 1
        log.warning("ignoring cache file %s: %s; deleting it", path, reason)
        self._unlink(path)

    def _unlink(self, path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot delete cache file %s: %s", path, e)
