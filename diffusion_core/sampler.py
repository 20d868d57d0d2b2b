"""Samplers: block-wise parallel decoding, edit-mode repair, and the AR baseline.

Block decoding (Block Diffusion / Seed Diffusion inference): blocks are generated left
to right; inside a block every masked position is predicted in parallel and all those
whose confidence passes a threshold are committed in one step, at least one per step
(Fast-dLLM, Wu et al. 2025, "parallel decoding with confidence threshold"). A finished
block is encoded once more as clean context and appended to the explicit KV cache.

Every sampler checks `cancel()` between denoising steps and raises `Cancelled`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from diffusion_core.errors import Cancelled  # noqa: F401 - re-exported: sampler.Cancelled
from diffusion_core.healing import HealingConstraint
from diffusion_core.kv_cache import KVCache
from diffusion_core.model import CodeTransformer
from diffusion_core.policy import DEFAULT_FALLBACK, Fallback, commit_mask

CancelFn = Callable[[], bool]
StepHook = Callable[[int, torch.Tensor], None]  # (block start position, block ids (B,))


@dataclass
class SampleStats:
    steps: int = 0
    tokens_per_step: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    encode_ms: float = 0.0
    out_of_time: bool = False  # the deadline cut decoding short (see `sample_blocks`)
    drafted: int = 0  # draft-and-verify: draft tokens verified (diffusion_core.speculative)
    accepted: int = 0  # ... and accepted

    @property
    def tokens(self) -> int:
        return sum(self.tokens_per_step)

    @property
    def mean_tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "tokens_per_step": self.mean_tokens_per_step,
            "step_ms": sum(self.step_ms),
            "encode_ms": self.encode_ms,
            "out_of_time": self.out_of_time,
        }


@dataclass
class SampleResult:
    tokens: list[int]  # generated ids, <eoi> and everything after it removed
    stats: SampleStats
    cache: KVCache  # context + generated blocks (the last block is encoded only if asked)
    confidence: list[float] = field(default_factory=list)  # per returned token


def _check(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def _positions(start: int, n: int, device) -> torch.Tensor:
    return torch.arange(start, start + n, device=device)[None]  # (1, n)


@torch.inference_mode()
def encode(
    model: CodeTransformer,
    ids: list[int],
    block_size: int,
    cache: KVCache | None = None,
    cancel: CancelFn | None = None,
) -> KVCache:
    """Encode ids[cache.length:] block by block on the block grid of the whole sequence.

    Block i covers [i*B, (i+1)*B); a cache that ends inside a block is cut back to the
    block's start so that the grid (and therefore the keys/values) stays the same as in
    one full block-causal forward pass.
    """
    device = next(model.parameters()).device
    cache = cache if cache is not None else model.empty_cache()
    start = (cache.length // block_size) * block_size
    cache = cache.truncate(min(start, cache.length))
    if model.cfg.has_causal_path:  # AR and joint models: one causal pass
        if start < len(ids):
            x = torch.tensor([ids[start:]], device=device)
            n = x.shape[1]
            mask = causal_after_cache(n, start, device)
            none = torch.zeros_like(x, dtype=torch.bool)  # keys/values only: no LM head rows
            cache = cache.extend(model(x, _positions(start, n, device), mask, cache, select=none).kv)
        return cache
    for s in range(start, len(ids), block_size):
        _check(cancel)
        chunk = torch.tensor([ids[s : s + block_size]], device=device)  # (1, <=B)
        cache = cache.extend(_kv_only(model, chunk, _positions(s, chunk.shape[1], device), cache))
    return cache


def causal_after_cache(n: int, cached: int, device) -> torch.Tensor:
    """(n, cached + n) bool: n new tokens see every cached one and, causally, each other."""
    mask = torch.ones(n, cached + n, dtype=torch.bool, device=device)
    mask[:, cached:] = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    return mask


def _kv_only(model: CodeTransformer, ids: torch.Tensor, pos: torch.Tensor, cache: KVCache):
    """Keys/values of `ids` without the LM head (no row selected: the largest matmul skipped).

    A block is encoded bidirectionally, as training sees clean blocks, except for models
    with a causal path (joint), whose clean stream is causal."""
    mask = None
    if model.cfg.has_causal_path:
        n = ids.shape[1]
        mask = causal_after_cache(n, cache.length, ids.device)
    return model(ids, pos, mask, cache, select=torch.zeros_like(ids, dtype=torch.bool)).kv


@dataclass(frozen=True)
class StopRule:
    eoi_id: int
    newline_ids: frozenset[int] = frozenset()
    stop_at_newline: bool = False
    # Stop where the probability of the whole output so far (the product of its tokens'
    # confidences) falls below this; 0 = never. A suggestion shown while typing is cut
    # where the model stops being sure: on held-out mid-line cursors (a dev split), a start
    # of the rest of the line 15% -> 33% of the time at 0.1, at the cost of 35% empty
    # answers (docs/quality.md, "Where suggestions stop").
    min_prob: float = 0.0

    def confident(self, conf: list[float], p: float) -> tuple[int, float]:
        """How many of the next tokens (their confidences `conf`) keep the running
        probability `p` of the output at or above `min_prob`, and the new running value."""
        if self.min_prob <= 0.0:
            return len(conf), p
        for i, c in enumerate(conf):
            if p * c < self.min_prob:
                return i, p
            p *= c
        return len(conf), p

    def cut(self, tokens: list[int], skip: int = 0) -> tuple[list[int], bool]:
        """Cut generated tokens at <eoi> (or after the first newline); True if stopped.

        The newline rule ignores the first `skip` tokens: they spell line breaks of the
        prefix that token healing removed (`HealingConstraint.advance`)."""
        for i, t in enumerate(tokens):
            if t == self.eoi_id:
                return tokens[:i], True
            if self.stop_at_newline and i >= skip and t in self.newline_ids:
                return tokens[: i + 1], True
        return tokens, False


@torch.inference_mode()
def sample_blocks(
    model: CodeTransformer,
    cache: KVCache,  # the encoded context; generation starts at cache.length
    *,
    block_size: int,
    threshold: float,
    max_tokens: int,
    mask_id: int,
    stop: StopRule,
    cancel: CancelFn | None = None,
    max_steps_per_block: int = 0,
    on_step: StepHook | None = None,
    deadline: float | None = None,
    fallback: Fallback = DEFAULT_FALLBACK,
    healing: HealingConstraint | None = None,
) -> SampleResult:
    """Greedy block-wise parallel decoding with a confidence threshold (and `fallback`,
    see `policy.commit_mask`, when no position reaches it).

    `on_step(start, block)`, if given, sees the block's token ids (B,) after every
    denoising step (start = the block's first position): post-training records the order
    in which positions were committed with it.

    `deadline` (a `time.perf_counter()` value): once a step ends past it, decoding stops
    and returns what is decided so far, the finished blocks and the committed positions of
    the current block left of its first undecided one (`stats.out_of_time`). At least one
    step always runs. Unlike `cancel`, this is an answer, only a shorter one.

    `healing` (token healing, see `diffusion_core.healing`): until the generated text spells
    out the piece removed from the prefix, a step commits only the leftmost undecided
    position, with its prediction restricted to tokens that continue the piece.
    """
    device = next(model.parameters()).device
    stats = SampleStats()
    out: list[int] = []
    conf_out: list[float] = []
    p_out = 1.0  # probability of everything returned (`StopRule.min_prob`)
    max_steps = max_steps_per_block or block_size
    healed = 0  # leading output tokens that only spell healed line breaks (no newline stop)
    while len(out) < max_tokens:
        start = cache.length
        # the last block is cut to the tokens still wanted: no steps spent past max_tokens
        n = min(block_size, max_tokens - len(out))
        x = torch.full((1, n), mask_id, dtype=torch.long, device=device)  # (1, n)
        conf_block = torch.zeros(n, device=device)
        pos = _positions(start, n, device)
        for step in range(min(max_steps, n)):
            _check(cancel)
            t0 = time.perf_counter()
            masked = x == mask_id  # (1, B)
            # The LM head (the largest matmul) and the softmax only at still-masked rows:
            # committed rows are never re-predicted in this sampler.
            logits = model(x, pos, None, cache, select=masked).logits.float()  # (N, V)
            conf_m, pred_m = torch.softmax(logits, dim=-1).max(dim=-1)  # (N,)
            conf = torch.zeros(n, device=device).masked_scatter(masked[0], conf_m)  # (B,)
            pred = x[0].masked_scatter(masked[0], pred_m)  # (B,)
            allowed = healing.next_allowed(logits.shape[-1], device) if healing is not None else None
            if allowed is not None:
                commit, inside = _healing_commit(logits[0], allowed, healing, masked[0], conf, pred)
                healed += inside
            else:
                commit = commit_mask(
                    x[0], conf, pred, mask_id=mask_id, eoi_id=stop.eoi_id, threshold=threshold,
                    last_step=step == min(max_steps, n) - 1, fallback=fallback,
                )
            x[0] = torch.where(commit, pred, x[0])
            conf_block = torch.where(commit, conf, conf_block)
            # Everything after a committed end-of-infill (or newline, in single-line mode)
            # is discarded anyway: fill it now instead of spending steps on it.
            skip = torch.arange(n, device=device) < healed - len(out)  # (B,) healed line breaks
            ends = commit & ((pred == stop.eoi_id) | (_is_newline(pred, stop) & ~skip))
            if bool(ends.any()):
                first = int(ends.nonzero()[0])
                tail = x[0, first + 1 :]
                x[0, first + 1 :] = torch.where(tail == mask_id, torch.full_like(tail, stop.eoi_id), tail)
            n_new = int(commit.sum())
            if on_step is not None:
                on_step(start, x[0].clone())
            stats.steps += 1
            stats.tokens_per_step.append(n_new)
            stats.step_ms.append((time.perf_counter() - t0) * 1000)
            if not bool((x[0] == mask_id).any()):
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
        block = x[0].tolist()
        if mask_id in block:  # out of time inside the block: keep its decided left part
            block = block[: block.index(mask_id)]
        kept, stopped = stop.cut(block, skip=healed - len(out))
        kept_conf = conf_block[: len(kept)].tolist()
        n_sure, p_out = stop.confident(kept_conf, p_out)
        stopped = stopped or n_sure < len(kept)
        out.extend(kept[:n_sure])
        conf_out.extend(kept_conf[:n_sure])
        if stopped or len(out) >= max_tokens:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stats.out_of_time = True
            break
        _check(cancel)
        cache = cache.extend(_kv_only(model, x, pos, cache))
    return SampleResult(out[:max_tokens], stats, cache, conf_out[:max_tokens])


def _healing_commit(
    frontier_logits: torch.Tensor,  # (V,) the leftmost masked position's logits
    allowed: torch.Tensor,  # (V,) bool
    healing: HealingConstraint,
    masked: torch.Tensor,  # (B,) bool
    conf: torch.Tensor,  # (B,) updated in place at the frontier
    pred: torch.Tensor,  # (B,) updated in place at the frontier
) -> tuple[torch.Tensor, bool]:
    """Commit only the frontier, predicted among the tokens that continue the healed text;
    also whether its line breaks (if any) all belong to the healed text."""
    probs = torch.softmax(frontier_logits.masked_fill(~allowed, float("-inf")), dim=-1)  # (V,)
    c, p = probs.max(dim=-1)
    frontier = int(masked.nonzero()[0])
    conf[frontier], pred[frontier] = c, p
    inside = healing.advance(int(p))
    commit = torch.zeros_like(masked)
    commit[frontier] = True
    return commit, inside


def _is_newline(pred: torch.Tensor, stop: StopRule) -> torch.Tensor:
    if not stop.stop_at_newline or not stop.newline_ids:
        return torch.zeros_like(pred, dtype=torch.bool)
    ids = torch.tensor(sorted(stop.newline_ids), device=pred.device)
    return torch.isin(pred, ids)


@dataclass
class RepairResult:
    tokens: list[int]  # the repaired block, <eoi> filler removed
    confidence: float  # geometric mean of the final per-token confidences over the canvas
    min_confidence: float
    stats: SampleStats


@torch.inference_mode()
def repair_canvas(
    model: CodeTransformer,
    cache: KVCache,  # encoded context ending with <edit>
    block: list[int],
    *,
    canvas_len: int,
    steps: int,
    threshold: float,
    mask_id: int,
    eoi_id: int,
    cancel: CancelFn | None = None,
) -> RepairResult:
    """Edit-mode sampling (Seed Diffusion stage 2): the canvas is one bidirectional block.

    Predict the clean canvas from the current one, re-mask positions whose confidence is
    below `threshold`, and repeat until nothing changes or `steps` run out.
    """
    device = next(model.parameters()).device
    if canvas_len < len(block):
        raise ValueError(f"canvas of {canvas_len} is shorter than the block ({len(block)} tokens)")
    canvas = torch.full((1, canvas_len), eoi_id, dtype=torch.long, device=device)
    canvas[0, : len(block)] = torch.tensor(block, dtype=torch.long, device=device)
    pos = _positions(cache.length, canvas_len, device)
    stats = SampleStats()
    conf = torch.ones(canvas_len, device=device)
    for step in range(steps):
        _check(cancel)
        t0 = time.perf_counter()
        probs = torch.softmax(model(canvas, pos, None, cache).logits[0].float(), dim=-1)
        conf, pred = probs.max(dim=-1)  # (L,)
        last = step == steps - 1
        new = pred.clone() if last else torch.where(conf >= threshold, pred, torch.full_like(pred, mask_id))
        changed = int((new != canvas[0]).sum())
        stats.steps += 1
        stats.tokens_per_step.append(changed)
        stats.step_ms.append((time.perf_counter() - t0) * 1000)
        if changed == 0:
            break
        canvas[0] = new
    final = canvas[0]
    if bool((final == mask_id).any()):  # cannot happen after the last step, but be safe
        final = torch.where(final == mask_id, pred, final)
    tokens = [t for t in final.tolist() if t != eoi_id]
    logc = torch.log(conf.clamp_min(1e-9))
    return RepairResult(tokens, float(logc.mean().exp()), float(conf.min()), stats)


@torch.inference_mode()
def sample_ar(
    model: CodeTransformer,
    cache: KVCache,  # the context except its last token
    last_token: int,  # the context's last token, fed first
    *,
    max_tokens: int,
    stop: StopRule,
    cancel: CancelFn | None = None,
    deadline: float | None = None,
    healing: HealingConstraint | None = None,
) -> SampleResult:
    """Greedy next-token decoding for the autoregressive baseline (one token per step);
    `deadline` and `healing` as in `sample_blocks`."""
    device = next(model.parameters()).device
    stats = SampleStats()
    out: list[int] = []
    conf: list[float] = []  # probability of each returned token (under the healing constraint)
    p_out = 1.0  # probability of everything returned (`StopRule.min_prob`)
    tok = last_token
    for _ in range(max_tokens):
        _check(cancel)
        t0 = time.perf_counter()
        o = model(torch.tensor([[tok]], device=device), _positions(cache.length, 1, device), None, cache)
        cache = cache.extend(o.kv)
        logits = o.logits[0, -1]  # (V,)
        allowed = healing.next_allowed(logits.shape[-1], logits.device) if healing is not None else None
        inside = False  # the token only spells healed line breaks
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        p = logits.float().softmax(dim=-1)  # (V,)
        tok = int(p.argmax())
        if allowed is not None:
            inside = healing.advance(tok)
        stats.steps += 1
        stats.tokens_per_step.append(1)
        stats.step_ms.append((time.perf_counter() - t0) * 1000)
        kept, stopped = stop.cut([tok], skip=int(inside))
        n_sure, p_out = stop.confident([float(p[tok])] * len(kept), p_out)
        stopped = stopped or n_sure < len(kept)
        out.extend(kept[:n_sure])
        conf.extend([float(p[tok])] * n_sure)
        if stopped:
            break
        if deadline is not None and time.perf_counter() >= deadline and len(out) < max_tokens:
            stats.out_of_time = True
            break
    return SampleResult(out, stats, cache, conf)
