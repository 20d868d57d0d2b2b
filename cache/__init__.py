"""Per-document block KV cache: reuse by whole blocks, LRU within a memory budget,
checksummed msgpack spill files, thread-safe, with counters (see `cache.store`)."""

from cache.spill import SpillError
from cache.store import DEFAULT_BUDGET_BYTES, CacheEntry, DocumentCacheStore

__all__ = ["DEFAULT_BUDGET_BYTES", "CacheEntry", "DocumentCacheStore", "SpillError"]
