"""The cheap pass of `check`: which blocks are worth a full repair.

Two passes, by what the model has:

- `causal_flags(engine, text, spans, level)`, models with a causal path (`ar`, `joint`,
  the shipped default): ONE causal pass over the whole file, in windows
  (`diffusion_core.scoring.causal_token_scores`; 512-token windows scoring 448 each),
  about len/448 forwards per file instead of one context encode per block, on an int8
  twin of the model on the CPU (`scan_model`). A block is flagged when some token in it
  has another token the model is at least `level` sure of (p(best other token | left
  context) >= level): "the model strongly expected something else here". Measured on 271
  blocks of 8 stdlib files with the shipped joint model (session 8): at level 0.9, 23% of
  clean blocks and 49% of blocks with one transposed-letter typo are flagged; 0.95: 10% /
  19%; 0.99: 1% / 0%. Every flagged block costs a full repair (~0.45 s here), which the
  shipped model has not once turned into a change on clean stdlib code, so the default
  `SCAN_LEVEL` is 0.99: `check` stays within its time budget (100 stdlib files, 794k
  tokens, in under 3 minutes on 2 cores) and misspelt names, the typos that matter, have
  their own rule (DL003).
- `lowest_log_prob(engine, prefix, block, suffix, sampler)`, diffusion-only models: the
  lowest log p(its own token | canvas) over the block's repair canvas (its tokens, then
  the `<eoi>` padding the engine's repair adds), one context encode per block. When no
  position is at or below log(repair threshold), the first step of `Engine.repair` commits
  every position unchanged and the repair stops, so this gate is exact (it skips only
  blocks the full repair would leave unchanged) but flags nearly every block of a weak
  model.

Only the windows that score a token of the asked spans run (`check --changed-since` and
`lines` ask for the changed blocks only).

A token belongs to the block that holds its last character, so a token that spells a
line break and the next line's indentation counts for the next line.
"""

from __future__ import annotations

import bisect
import math

SCAN_LEVEL = 0.99  # default --scan-level (see the module docstring for the measurement)
SCAN_STRIDE = 0.875  # share of a window that is scored; the rest is left context


def scan_model(model):
    """The network the scan runs: on the CPU, a dynamic-int8 twin of a float32 model
    (`diffusion_core.quantize`; 1.3x faster per token here, and the scan only compares
    probabilities with a level), else the model itself."""
    import copy

    import torch

    from diffusion_core.quantize import is_quantized, quantize_int8

    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype != torch.float32 or is_quantized(model):
        return model
    return quantize_int8(copy.deepcopy(model))


def causal_flags(engine, text: str, spans: list[tuple[int, int]], level: float,
                 model=None) -> list[bool]:
    """For each [start, end) code-point span of `text`: whether the causal pass flags it.
    `model`: the network to scan with (default: the engine's; see `scan_model`)."""
    if not spans:
        return []
    if level <= 0.0:
        return [True] * len(spans)
    from diffusion_core.scoring import causal_token_scores  # torch: only when scanning

    ids, offsets = engine.tokenizer.encode_offsets(text)
    last = [end - 1 for _, end in offsets]  # code point of each token's last character
    ranges = [(bisect.bisect_left(last, s), bisect.bisect_left(last, e)) for s, e in spans]
    window = max(8, engine.window.max_prefix)
    sp = engine.special
    scores = causal_token_scores(model or engine.model, ids, prompt=[sp.suf, sp.pre], window=window,
                                 stride=max(1, int(window * SCAN_STRIDE)), ranges=ranges)
    limit = math.log(level)
    return [any(x >= limit for x in scores.other[i:j]) for i, j in ranges]


def has_causal_scan(engine) -> bool:
    return engine.model.cfg.has_causal_path and hasattr(engine.tokenizer, "encode_offsets")


def lowest_log_prob(engine, prefix: str, block: str, suffix: str, sampler=None) -> float:
    from diffusion_core.scoring import token_log_probs

    sc = sampler or engine.sampler
    ids = engine.tokenizer.encode(block)
    canvas_len = len(ids) + max(4, math.ceil(sc.repair_slack * len(ids)))
    canvas = ids + [engine.special.eoi] * (canvas_len - len(ids))
    cache = engine.encode_context(engine.repair_context(prefix, suffix, sc.block_size),
                                  block_size=sc.block_size)
    lps = token_log_probs(engine.model, cache, canvas, canvas_len=canvas_len,
                          eoi_id=engine.special.eoi)
    return min(lps, default=0.0)
