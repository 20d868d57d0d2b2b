"""Held-out loss of one of our models on infill examples of the held-out split.

The training logs show the loss of training batches (context tokens included, the noisy
stream's ELBO mixed in); to compare recipes against training tokens (issue 19's curve)
every model is scored here on the same held-out middles, per middle token (the middle
and its first `<eoi>`):

- `next_token_nll`: models with a causal path (`ar`, `joint`): the exact negative
  log-likelihood of the middle under the causal mask, `<suf> suffix <pre> prefix <mid>`
  first, as the completion job conditions it.
- `diffusion_nll_bound`: models with a mask path (`diffusion`, `joint`): the MDLM bound
  (Sahoo et al. 2024), E_t[1/t * sum over masked middle tokens of -log p], one mask rate
  per block and the clean blocks before it visible (BD3-LM, as the block sampler decodes),
  averaged over `draws` corruptions. It bounds the NLL from above, so it is comparable
  across diffusion recipes and an upper reference against the causal number.

Examples are a pure function of `seed`, so two models scored with the same arguments
see the same middles.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffusion_core.corruption import format_infill
from diffusion_core.data import (
    Corpus,
    DataConfig,
    ExampleBuilder,
    infill_block_ids,
    masked_infill_example,
)
from diffusion_core.masks import causal_mask, two_stream_mask
from diffusion_core.model import CodeTransformer
from diffusion_core.schedule import loss_weight
from diffusion_core.tokenizer import CodeTokenizer


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision logits; fp32/fp64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


@dataclass(frozen=True)
class HeldoutLoss:
    examples: int
    middle_tokens: int  # scored tokens per pass: the middles and one <eoi> each
    next_token_nll: float | None  # nats per middle token; None without a causal path
    diffusion_nll_bound: float | None  # nats per middle token (upper bound); None without a mask path


def heldout_examples(
    corpus: Corpus, tokenizer: CodeTokenizer, cfg: DataConfig, n: int, seed: int = 0
) -> list[tuple[list[int], list[int], list[int], int]]:
    """`n` (prefix, suffix, middle, block) infill cuts of `corpus`, a function of `seed`."""
    builder = ExampleBuilder(corpus, tokenizer, cfg, "diffusion", seed)
    rng = random.Random(f"heldout/{seed}")
    out = []
    while len(out) < n:
        prefix, suffix, middle, block = builder.infill_source(rng)
        if middle:
            out.append((prefix, suffix, middle, block))
    return out


@torch.inference_mode()
def heldout_loss(
    model: CodeTransformer,
    tokenizer: CodeTokenizer,
    examples: list[tuple[list[int], list[int], list[int], int]],
    *,
    draws: int = 2,
    seed: int = 0,
) -> HeldoutLoss:
    cfg = model.cfg
    if cfg.shifted_logits:
        raise ValueError("held-out loss is defined for our own unshifted models only")
    sp = tokenizer.special
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    ar_sum = dm_sum = 0.0
    scored = 0
    for prefix, suffix, middle, block in examples:
        context, mid = format_infill(prefix, suffix, middle, block, sp)
        k = len(middle) + 1  # the middle and its first <eoi>
        scored += k
        if cfg.has_causal_path:
            seq = torch.tensor([*context, *mid[:k]], device=device)  # (T,)
            t = seq.numel()
            sel = torch.zeros(1, t, dtype=torch.bool, device=device)
            sel[0, len(context) - 1 : t - 1] = True  # the rows that predict the middle
            o = model(seq[None], torch.arange(t, device=device)[None], causal_mask(t, device)[None], select=sel)
            ar_sum += float(F.cross_entropy(_wide(o.logits), seq[len(context) :], reduction="sum"))
        if cfg.has_mask_path:
            blocks = infill_block_ids(len(context), len(mid), block)  # (T,)
            bid = blocks[len(context) :] - blocks[len(context)]  # (n,) middle blocks from 0
            in_middle = torch.arange(len(mid)) < k  # (n,) the scored positions
            for _ in range(draws):
                rate = 1e-3 + (1 - 1e-3) * torch.rand(int(bid[-1]) + 1, generator=g)  # one t per block
                t_tok = rate[bid]
                masked = torch.rand(len(mid), generator=g) < t_tok
                ex = masked_infill_example(context, mid, block, masked, loss_weight(t_tok), sp.mask,
                                           scored=in_middle)
                sel = ex.targets != -100  # (L,)
                if not bool(sel.any()):
                    continue
                # the clean stream as the model was trained: causal for joint models
                mask = two_stream_mask(blocks, torch.arange(len(context), len(context) + len(mid)),
                                       causal_clean=cfg.kind == "joint")
                o = model(ex.ids[None].to(device), ex.positions[None].to(device), mask[None].to(device),
                          select=sel[None].to(device))
                ce = F.cross_entropy(_wide(o.logits), ex.targets[sel].to(device), reduction="none")
                dm_sum += float((ce * ex.weights[sel].to(device)).sum()) / draws
    per = max(1, scored)
    return HeldoutLoss(
        examples=len(examples),
        middle_tokens=scored,
        next_token_nll=ar_sum / per if cfg.has_causal_path else None,
        diffusion_nll_bound=dm_sum / per if cfg.has_mask_path else None,
    )
