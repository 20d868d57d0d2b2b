"""Per-document block KV cache: reuse by whole blocks, LRU within a memory budget,
checksummed msgpack spill files, thread-safe, with counters (see `dlsp_cache.store`)."""

from dlsp_cache.spill import SpillError
from dlsp_cache.store import DEFAULT_BUDGET_BYTES, CacheEntry, DocumentCacheStore

__all__ = ["DEFAULT_BUDGET_BYTES", "CacheEntry", "DocumentCacheStore", "SpillError"]
