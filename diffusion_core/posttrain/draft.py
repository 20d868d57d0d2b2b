"""On-policy drafter distillation for joint models: Seed's step reduction with the causal
path as the verifier (issue 19, item 3).

Seed Diffusion's on-policy stage trains the model to reach a verified answer in fewer
steps (E[log V(x) - lambda |tau|], with V a verifier and |tau| the number of steps). For
draft and verify (`diffusion_core.speculative`) the answer is fixed, it is always the
network's own greedy output, and |tau| (forward passes) falls exactly when the mask rows
draft what the causal path accepts. The surrogate trained here:

1. roll the decoder out on a training context: greedy decoding, i.e. exactly what draft
   and verify writes (the states the decoder visits, so the data is on-policy);
2. at a few positions s of the rollout, a block of K mask rows placed right after
   context + rollout[:s] learns to predict rollout[s : s + K], the tokens the verifier
   would accept there (cross-entropy per row, so a longer agreeing prefix of the draft,
   fewer forwards);
3. the context's own rows keep their next-token loss on the real text (weight
   `DataConfig.ar_weight`), so the causal path, which decides every answer, stays where
   pre-training left it.

The mask block sees the clean prefix causally encoded, as in pre-training
(`masks.two_stream_mask(..., causal_clean=True)`) and at inference (`verify_mask`).
"""

from __future__ import annotations

import torch

from diffusion_core.data import Example
from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.stage import StageBatch
from diffusion_core.posttrain.trajectories import Source
from diffusion_core.sampler import StopRule, encode, sample_ar


def greedy_rollout(model: CodeTransformer, context: list[int], n: int, eoi: int) -> tuple[list[int], int]:
    """(the greedy continuation of `context`, ending with <eoi> if it stopped; forwards)."""
    cache = encode(model, context[:-1], 32)
    res = sample_ar(model, cache, context[-1], max_tokens=n, stop=StopRule(eoi))
    stopped = len(res.tokens) < n or res.stats.steps > len(res.tokens)
    return res.tokens + ([eoi] if stopped else []), res.stats.steps


def draft_example(prefix: list[int], target: list[int], n_real: int, k: int, mask_id: int,
                  ar_weight: float, draft_weight: float = 1.0) -> Example:
    """Clean causal `prefix` (its first `n_real` tokens real text), then k mask rows at the
    next k positions whose targets are `target` (shorter: the rest carry no loss)."""
    t = len(prefix)
    ids = torch.tensor([*prefix, *([mask_id] * k)])  # (t + k,)
    positions = torch.arange(t + k)
    mask = torch.zeros(t + k, t + k, dtype=torch.bool)
    mask[:t, :t] = torch.ones(t, t, dtype=torch.bool).tril()  # causal clean rows
    mask[t:, :] = True  # the mask block sees every clean row and itself
    targets = torch.full((t + k,), -100)
    weights = torch.zeros(t + k)
    n_t = min(k, len(target))
    targets[t : t + n_t] = torch.tensor(target[:n_t])
    weights[t : t + n_t] = draft_weight
    ar_rows = torch.zeros(t + k, dtype=torch.bool)
    n_ar = max(0, min(n_real, t) - 1)  # real text only: the rollout is the model's own
    if n_ar and ar_weight > 0:
        targets[:n_ar] = ids[1 : n_ar + 1]
        weights[:n_ar] = ar_weight * k / n_ar
        ar_rows[:n_ar] = True
    return Example(ids=ids, positions=positions, mask=mask, targets=targets, weights=weights,
                   region=k, ar_rows=ar_rows, source=t)


def draft_batch(model: CodeTransformer, sources: list[Source], cfg, g: torch.Generator, special) -> StageBatch:
    """Roll out every source greedily and build `states_per_trajectory` drafter examples
    from each rollout (positions drawn with `g`)."""
    examples: list[Example] = []
    steps = tokens = 0
    for src in sources:
        rollout, n_fwd = greedy_rollout(model, src.context, cfg.draft_rollout_tokens, special.eoi)
        steps, tokens = steps + n_fwd, tokens + len(rollout)
        seq = [*src.context, *rollout]
        lo, hi = len(src.context), len(seq) - 1  # s in [lo, hi]: at least one target token
        if hi < lo:
            continue
        for _ in range(cfg.states_per_trajectory):
            s = lo + int(torch.randint(hi - lo + 1, (1,), generator=g))
            examples.append(draft_example(seq[:s], seq[s : s + cfg.draft_block], len(src.context),
                                          cfg.draft_block, special.mask, cfg.data.ar_weight))
    return StageBatch(examples, kept=len(sources), rejected=0, rollout_steps=steps, rollout_tokens=tokens)
