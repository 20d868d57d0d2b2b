"""Context layouts for inference, chosen so the block KV cache survives typing.

The context is `<suf> suffix <pre> prefix <mid|edit>`. The suffix window is the first
`max_suffix` tokens after the cursor (unchanged while the user types at the cursor).
The prefix window starts at a token offset that is a multiple of the block size, so it
moves only in whole blocks: a keystroke at the cursor changes only the context's last
block, and every earlier block can be reused from the cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    max_prefix: int = 768
    max_suffix: int = 256


def prefix_window_start(n_prefix: int, max_prefix: int, block_size: int) -> int:
    """Smallest multiple of block_size such that n_prefix - start <= max_prefix."""
    if n_prefix <= max_prefix:
        return 0
    return math.ceil((n_prefix - max_prefix) / block_size) * block_size


def build_context(
    prefix_ids: list[int],
    suffix_ids: list[int],
    block_size: int,
    special,
    window: Window = Window(),
    task_token: int | None = None,
) -> list[int]:
    """Token ids of the suffix-first context; `task_token` defaults to <mid>."""
    start = prefix_window_start(len(prefix_ids), window.max_prefix, block_size)
    return [
        special.suf,
        *suffix_ids[: window.max_suffix],
        special.pre,
        *prefix_ids[start:],
        special.mid if task_token is None else task_token,
    ]


def reusable_prefix(cached_ids: list[int], ids: list[int], cached_len: int, block_size: int) -> int:
    """How many leading tokens of a cache built for `cached_ids` serve `ids`: whole blocks only.

    The cache holds keys/values of cached_ids[:cached_len]; a block can be reused only if
    its token ids (and therefore positions) are all unchanged.
    """
    n = min(len(cached_ids), len(ids), cached_len)
    i = 0
    while i < n and cached_ids[i] == ids[i]:
        i += 1
    return (i // block_size) * block_size
