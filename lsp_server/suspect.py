"""The cheap pass of `check`: one forward of the edit model over a block as it is.

`doubtful(engine, prefix, block, suffix)` is True when some position of the block's repair
canvas (its tokens, then the `<eoi>` padding the engine's repair adds) has
p(its own token | canvas) <= the sampler's repair threshold. When none has, the first
step of `Engine.repair` commits every position unchanged and the repair stops: the full
repair can only propose a change for a doubtful block, so `check` skips the others
without changing a single finding.
"""

from __future__ import annotations

import math

from diffusion_core.scoring import token_log_probs


def doubtful(engine, prefix: str, block: str, suffix: str) -> bool:
    ids = engine.tokenizer.encode(block)
    sc = engine.sampler
    canvas_len = len(ids) + max(4, math.ceil(sc.repair_slack * len(ids)))
    canvas = ids + [engine.special.eoi] * (canvas_len - len(ids))
    cache = engine.encode_context(engine.repair_context(prefix, suffix, sc.block_size),
                                  block_size=sc.block_size)
    lps = token_log_probs(engine.model, cache, canvas, canvas_len=canvas_len,
                          eoi_id=engine.special.eoi)
    limit = math.log(max(sc.repair_threshold, 1e-12))
    return min(lps, default=0.0) <= limit
