"""Draft and verify: block-diffusion drafts checked by the same network's causal path.

For joint models (`ModelConfig.kind == "joint"`, issue 19), one forward pass does two jobs,
as in TiDAR (Liu et al. 2025, "Think in Diffusion, Talk in Autoregression"):

    input  = pending (p committed tokens not yet cached) + draft (m proposed tokens)
             + k mask tokens
    causal rows (pending, draft): the next-token prediction after each of them
    mask rows: one block-diffusion block that sees the cache, pending and draft

Verification is greedy speculative decoding (Leviathan et al. 2023, Stern et al. 2018's
blockwise parallel decoding): the longest prefix of the draft that equals the causal
path's own predictions is accepted, plus the causal prediction after it (the "bonus"
token), so every forward commits at least one token and the output is exactly what greedy
autoregressive decoding of the same network writes (`tests/core/test_speculative.py`).
The keys/values of the pending and accepted rows were computed on the right prefix
under the causal mask, so they go into the explicit cache unchanged; the bonus token
becomes the next pass's pending token.

The next draft is the rest of this pass's proposals after the bonus position: the
remaining draft tokens and the mask rows' predictions (when the whole draft was accepted,
the mask rows start right at the bonus position, so their first prediction is dropped).
A document n-gram draft (prompt-lookup decoding, Saxena 2023: copy what followed the last
earlier occurrence of the current n-gram, in the context or the output so far) can
replace or back up the diffusion draft; the verifier keeps the output identical either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import get_args

import torch

from diffusion_core.config import DraftSource
from diffusion_core.healing import HealingConstraint
from diffusion_core.kv_cache import KVCache
from diffusion_core.model import CodeTransformer
from diffusion_core.sampler import CancelFn, SampleResult, SampleStats, StopRule, _check

DRAFT_SOURCES: tuple[str, ...] = get_args(DraftSource)


class NgramIndex:
    """Recent positions of every n-gram of a growing token list (prompt-lookup drafts)."""

    KEEP = 4  # positions kept per n-gram

    def __init__(self, ids: list[int], n: int) -> None:
        self.n = n
        self.ids: list[int] = []
        self.seen: dict[tuple[int, ...], list[int]] = {}
        self.extend(ids)

    def extend(self, new: list[int]) -> None:
        for t in new:
            self.ids.append(t)
            end = len(self.ids)
            # index the n-gram ending one before the newest token: its continuation is known
            if end - 1 >= self.n:
                at = self.seen.setdefault(tuple(self.ids[end - 1 - self.n : end - 1]), [])
                at.append(end - 1)
                del at[: -self.KEEP]

    def draft(self, length: int) -> list[int]:
        """The tokens that followed the latest earlier occurrence of the final n-gram that
        has `length` of them (inside a repeated run the latest has only one), else the
        longest continuation among the recent occurrences."""
        if len(self.ids) < self.n or length <= 0:
            return []
        at = self.seen.get(tuple(self.ids[-self.n :]))
        if not at:
            return []
        full = [p for p in at if len(self.ids) - p >= length]
        start = full[-1] if full else at[0]
        return self.ids[start : start + length]


@dataclass(frozen=True)
class DraftConfig:
    """How drafts are made; verification is the same for all of them."""

    masks: int = 4  # mask rows per forward (the diffusion draft block); 0 = no diffusion draft
    max_draft: int = 3  # most draft tokens verified in one forward
    # n-gram drafts by default: measured faster than mask-row drafts on the trained joint
    # model (docs/quality.md, "Draft and verify"); "diffusion" and "both" stay selectable
    source: DraftSource = "ngram"
    ngram: int = 2  # n of the n-gram draft

    def __post_init__(self) -> None:
        if self.source not in DRAFT_SOURCES:
            raise ValueError(f"draft source must be one of {DRAFT_SOURCES}, got {self.source!r}")
        if self.masks < 0 or self.max_draft < 0 or self.ngram < 1:
            raise ValueError("masks and max_draft must be >= 0, ngram >= 1")

    @property
    def uses_masks(self) -> bool:
        return self.masks > 0 and self.source in ("diffusion", "both")


def verify_mask(n_clean: int, n_masks: int, n_cached: int, device) -> torch.Tensor:
    """(T, S+T) bool for [pending + draft (causal) ; masks (one bidirectional block)].

    Clean row i sees the cache and clean rows <= i; every mask row sees the cache, all
    clean rows and all mask rows: a block whose clean prefix ends right before it, as the
    noisy blocks of training (`masks.two_stream_mask(..., causal_clean=True)`).
    """
    t = n_clean + n_masks
    bid = torch.cat([torch.arange(n_clean, device=device), torch.full((n_masks,), n_clean, device=device)])
    inner = bid[None, :] <= bid[:, None]  # (T, T)
    return torch.cat([torch.ones(t, n_cached, dtype=torch.bool, device=device), inner], dim=1)


def _slice_kv(kv, n: int):
    return [(k[:, :, :n], v[:, :, :n]) for k, v in kv]


@torch.inference_mode()
def sample_draft_verify(
    model: CodeTransformer,
    cache: KVCache,  # the context except `context_tail` and its last token
    last_token: int,  # the context's last token, fed first
    *,
    context_tail: list[int] | tuple[int, ...] = (),  # context tokens after the cache
    max_tokens: int,
    stop: StopRule,
    mask_id: int,
    draft: DraftConfig = DraftConfig(),
    history: list[int] | None = None,  # context ids for the n-gram draft (default: none)
    cancel: CancelFn | None = None,
    deadline: float | None = None,
    healing: HealingConstraint | None = None,
) -> SampleResult:
    """Greedy decoding of a joint model, several tokens per forward when drafts hold.

    Same contract as `sampler.sample_ar` (and the same output): `cancel` is checked and
    `deadline` applied once per forward pass; while `healing` constrains the next token,
    passes are plain one-token causal steps. `stats.steps` counts forward passes,
    `stats.drafted`/`stats.accepted` the draft tokens verified and accepted.

    `context_tail`: uncached context tokens (the end of the context, before
    `last_token`), encoded by the causal rows of the first forward instead of a forward
    of their own; the returned cache holds them like the rest. The first pass also tries
    the document n-gram draft, which the context alone may already give.
    """
    if not model.cfg.has_causal_path:
        raise ValueError("draft-and-verify decoding needs a model with a causal path (kind ar or joint)")
    device = next(model.parameters()).device
    stats = SampleStats()
    out: list[int] = []
    conf: list[float] = []  # the causal path's probability of each committed token
    p_out = 1.0  # probability of everything returned (`StopRule.min_prob`)
    pending = [*context_tail, last_token]
    use_masks = draft.uses_masks and model.cfg.has_mask_path
    ngrams = (
        NgramIndex([*(history or []), last_token], draft.ngram) if draft.source in ("ngram", "both") else None
    )
    # draft for the positions right after `pending`
    proposal: list[int] = ngrams.draft(draft.max_draft) if ngrams is not None else []
    while len(out) < max_tokens:
        _check(cancel)
        t0 = time.perf_counter()
        allowed = healing.next_allowed(model.cfg.vocab_size, device) if healing is not None else None
        left = max_tokens - len(out)
        if allowed is not None:  # healing: one constrained causal step, no draft
            proposal, n_masks = [], 0
        else:
            proposal = proposal[: min(draft.max_draft, left - 1)]
            n_masks = draft.masks if use_masks and left > 1 else 0
        p, m = len(pending), len(proposal)
        x = torch.tensor([pending + proposal + [mask_id] * n_masks], device=device)  # (1, T)
        s = cache.length
        pos = torch.arange(s, s + p + m + n_masks, device=device)[None]  # (1, T)
        sel = torch.zeros(1, p + m + n_masks, dtype=torch.bool, device=device)
        sel[0, p - 1 :] = True  # the causal rows that predict, and every mask row
        o = model(x, pos, verify_mask(p + m, n_masks, s, device), cache, select=sel)
        logits = o.logits.float()  # (m + 1 + n_masks, V)
        ar_logits = logits[: m + 1]  # row j: the token after pending + proposal[:j]
        if allowed is not None:
            ar_logits = ar_logits.masked_fill(~allowed, float("-inf"))
        ar_pred = ar_logits.argmax(dim=-1).tolist()  # (m + 1,)
        a = 0
        while a < m and proposal[a] == ar_pred[a]:
            a += 1
        committed = [*proposal[:a], ar_pred[a]]
        probs = ar_logits[: a + 1].softmax(dim=-1).amax(dim=-1).tolist()  # (a + 1,): greedy picks
        inside = False  # the token only spells line breaks of the healed prefix
        if allowed is not None:
            inside = healing.advance(committed[0])
        stats.steps += 1
        stats.drafted += m
        stats.accepted += a
        cache = cache.extend(_slice_kv(o.kv, p + a))  # pending + accepted: right prefix, causal
        kept, stopped = stop.cut(committed, skip=int(inside))
        kept = kept[:left]
        n_sure, p_out = stop.confident(probs[: len(kept)], p_out)
        stopped = stopped or n_sure < len(kept)
        out.extend(kept[:n_sure])
        conf.extend(probs[:n_sure])
        stats.tokens_per_step.append(n_sure)
        stats.step_ms.append((time.perf_counter() - t0) * 1000)
        if stopped or len(out) >= max_tokens:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stats.out_of_time = True
            break
        pending = [committed[-1]]
        # proposals for positions s+p .. : the draft, then the mask rows' predictions
        mask_pred = logits[m + 1 :].argmax(dim=-1).tolist() if n_masks else []
        proposal = [*proposal, *mask_pred][a + 1 :]
        if ngrams is not None:
            ngrams.extend(committed)
            lookup = ngrams.draft(draft.max_draft)
            if lookup:  # "both": the document's continuation first, else the diffusion draft
                proposal = lookup
    return SampleResult(out[:max_tokens], stats, cache, conf[:max_tokens])
