"""The cheap pass of `check`: one forward of the edit model over a block as it is.

`lowest_log_prob(engine, prefix, block, suffix, sampler)` is the lowest
log p(its own token | canvas) over the block's repair canvas (its tokens, then the `<eoi>`
padding the engine's repair adds). When no position is at or below log(repair threshold),
the first step of `Engine.repair` commits every position unchanged and the repair stops:
the full repair can only propose a change for a block where one is
(`service.EngineModel.suspicious`), so `check` skips the others without changing a single
finding.
"""

from __future__ import annotations

import math

from diffusion_core.scoring import token_log_probs


def lowest_log_prob(engine, prefix: str, block: str, suffix: str, sampler=None) -> float:
    sc = sampler or engine.sampler
    ids = engine.tokenizer.encode(block)
    canvas_len = len(ids) + max(4, math.ceil(sc.repair_slack * len(ids)))
    canvas = ids + [engine.special.eoi] * (canvas_len - len(ids))
    cache = engine.encode_context(engine.repair_context(prefix, suffix, sc.block_size),
                                  block_size=sc.block_size)
    lps = token_log_probs(engine.model, cache, canvas, canvas_len=canvas_len,
                          eoi_id=engine.special.eoi)
    return min(lps, default=0.0)
