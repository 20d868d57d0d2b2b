"""Text-level jobs on top of the model: masked infill and insert/delete repair.

The engine turns (prefix, suffix) text into the suffix-first context, encodes it into an
explicit `KVCache` (reusing a cache the caller passes in), runs a sampler and decodes the
result. It holds no per-document state: the caller owns every cache it gets back.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_core.checkpoint import MAX_SMALL_FILE_BYTES, LoadedModel, read_regular
from diffusion_core.config import SamplerConfig
from diffusion_core.errors import MAX_REPAIR_TOKENS
from diffusion_core.healing import Healing, TokenHealer
from diffusion_core.kv_cache import KVCache
from diffusion_core.layout import Window, build_context, reusable_prefix
from diffusion_core.rerank import Candidate, rerank_lines
from diffusion_core.sampler import (
    CancelFn,
    Cancelled,
    SampleStats,
    StopRule,
    encode,
    repair_canvas,
    sample_ar,
    sample_blocks,
)
from diffusion_core.speculative import DraftConfig, sample_draft_verify

__all__ = ["MAX_REPAIR_TOKENS", "Cancelled", "Engine", "InfillOutput", "RepairOutput"]


RANK_TAIL = 32  # suffix tokens that score variants of a span (causal ranking)


@dataclass
class InfillOutput:
    text: str
    tokens: list[int]
    confidence: list[float]
    stats: SampleStats
    context_ids: list[int]  # what `context_cache` encodes
    context_cache: KVCache  # keys/values of context_ids, for the caller to keep
    reused_tokens: int = 0
    encoded_tokens: int = 0
    total_ms: float = 0.0


@dataclass
class RepairOutput:
    text: str
    changed: bool
    confidence: float
    stats: SampleStats
    total_ms: float = 0.0


def change_ratio(old: list[int], new: list[int]) -> float:
    """Token edits (a replacement of n by m tokens counts max(n, m)) from `old` to `new`,
    relative to len(old)."""
    sm = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    edits = sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal")
    return edits / max(1, len(old))


def trained_window(model_dir: Path) -> Window | None:
    """The context window a model of ours was trained on, from its `training.json`
    (post-trained models: their base's), or None when not recorded (e.g. Hugging Face models).

    A small model sees no positions beyond its training examples; feeding it more context
    hurts: on the phase-2 default model, held-out next-line NLL was 5.88 nats/token with the
    trained 192/96-token window against 6.14 with the generic 768/256.
    """
    try:
        # regular files only, size bounded (a FIFO or a huge file there is not read)
        record = json.loads(read_regular(Path(model_dir) / "training.json", MAX_SMALL_FILE_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    while isinstance(record, dict):
        tc = record.get("train_config")
        data = tc.get("data") if isinstance(tc, dict) else None
        if isinstance(data, dict):
            try:
                return Window(max_prefix=int(data["max_prefix"]), max_suffix=int(data["max_suffix"]))
            except (KeyError, TypeError, ValueError):
                return None
        record = record.get("base_training")
    return None


class Engine:
    def __init__(
        self, loaded: LoadedModel, sampler: SamplerConfig | None = None, window: Window | None = None
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        # without a sampler, the one of the model: its trained block size (block families)
        self.sampler = sampler or SamplerConfig(block_size=self.default_block_size)
        self.window = window or trained_window(loaded.path) or Window()
        self.special = self.tokenizer.special
        self.healer = TokenHealer(self.tokenizer)

    @classmethod
    def from_path(
        cls, path=None, *, device: str | None = "cpu", sampler: SamplerConfig | None = None,
        quantize: str | None = None,
    ) -> Engine:
        """Our own model directory or a local Hugging Face one (None: the shipped default).

        device None picks CUDA when present; fp32 on CPU, bf16/fp16 on GPU. `quantize`
        "int8": dynamic int8 Linear layers (CPU only, `diffusion_core.quantize`); None: what
        the model directory's diffusion-lsp.json says, else none.
        """
        from diffusion_core.hf_loader import load_any_model_dir

        dtype = None if device is None else (torch.float32 if device == "cpu" else None)
        q = None if quantize == "none" else quantize
        return cls(load_any_model_dir(path, device=device, dtype=dtype, quantize=q), sampler)

    @property
    def default_block_size(self) -> int:
        """The block size the model was trained with (`ModelConfig.trained_block_size`, e.g.
        4 for SDAR), else `SamplerConfig`'s default; used when no block size is set."""
        return self.model.cfg.trained_block_size or SamplerConfig().block_size

    @property
    def model_hash(self) -> str:
        return self.loaded.model_hash

    @property
    def is_ar(self) -> bool:
        return self.model.cfg.kind == "ar"

    # -- contexts -------------------------------------------------------------------
    def healing(self, prefix: str, sampler: SamplerConfig | None = None) -> Healing:
        """The prefix an infill is conditioned on (see `diffusion_core.healing`)."""
        return self.healer.split(prefix) if (sampler or self.sampler).heal else Healing(prefix, "")

    def infill_context(
        self, prefix: str, suffix: str, block_size: int | None = None, sampler: SamplerConfig | None = None
    ) -> list[int]:
        """Token ids of the infill context, the prefix token-healed if the sampler says so."""
        b = block_size or (sampler or self.sampler).block_size
        return self._context_ids(self.healing(prefix, sampler).prefix, suffix, b)

    def _context_ids(self, prefix: str, suffix: str, block_size: int) -> list[int]:
        tok = self.tokenizer
        return self.context_ids(tok.encode(prefix), tok.encode(suffix), block_size)

    def context_ids(self, prefix_ids: list[int], suffix_ids: list[int], block_size: int) -> list[int]:
        """The infill context of an (already healed) prefix's and a suffix's token ids."""
        return build_context(prefix_ids, suffix_ids, block_size, self.special, self.window)

    def repair_context(self, prefix: str, suffix: str, block_size: int | None = None) -> list[int]:
        b = block_size or self.sampler.block_size
        tok = self.tokenizer
        return build_context(
            tok.encode(prefix), tok.encode(suffix), b, self.special, self.window, task_token=self.special.edit
        )

    def rank_context(self, prefix: str, suffix: str, tail: int = RANK_TAIL) -> tuple[list[int], list[int]]:
        """(prompt, tail) ids for ranking variants of a span with the causal path
        (`scoring.causal_sequence_scores`): `<suf> <pre>` and the prefix window, then the
        first `tail` tokens of the suffix, so the code after the span votes too."""
        tok, sp = self.tokenizer, self.special
        pre = tok.encode(prefix)[-self.window.max_prefix :] if self.window.max_prefix else []
        return [sp.suf, sp.pre, *pre], tok.encode(suffix[: 8 * tail])[:tail]

    def encode_context(
        self, ids: list[int], cache: KVCache | None = None, cancel: CancelFn | None = None,
        block_size: int | None = None,
    ) -> KVCache:
        """Encode `ids`, reusing `cache` (whose tokens must be a prefix of ids) at block granularity."""
        return encode(self.model, ids, block_size or self.sampler.block_size, cache, cancel)

    def text_after(self, tokens: list[int], removed: str) -> str:
        """The text of infill `tokens` that follows the prefix: the sampler made it start
        with the healed-away piece `removed`; cut short before that piece ends, nothing."""
        text = self.tokenizer.decode(tokens)
        if removed:
            text = text[len(removed) :] if text.startswith(removed) else ""
        return text

    # -- jobs -----------------------------------------------------------------------
    def infill(
        self,
        prefix: str,
        suffix: str,
        *,
        cache: KVCache | None = None,
        cache_ids: list[int] | None = None,
        cancel: CancelFn | None = None,
        max_tokens: int | None = None,
        stop_at_newline: bool = False,
        sampler: SamplerConfig | None = None,
        context_ids: list[int] | None = None,
    ) -> InfillOutput:
        """Fill the hole between prefix and suffix.

        `cache`/`cache_ids`: a cache from an earlier call and the ids it encodes; its
        longest block-aligned run that still matches the new context is reused.
        `context_ids`: `infill_context(prefix, suffix)` if the caller already has it
        (tokenizing a large prefix twice per keystroke is a visible share of latency).
        With `sampler.heal`, the model rewrites the prefix's last piece (token healing) and
        the returned text starts at the end of `prefix` all the same; `tokens` include it.
        """
        t0 = time.perf_counter()
        sc = sampler or self.sampler
        b = sc.block_size
        healed = self.healing(prefix, sc)
        ids = context_ids if context_ids is not None else self._context_ids(healed.prefix, suffix, b)
        healing = self.healer.constraint(healed.removed)
        decoder = sc.decoder_for(self.model.cfg.kind)
        # Causal decoders feed the last context token themselves: one token less cached.
        target = ids[:-1] if decoder in ("greedy", "draft") else ids
        reuse = 0
        if cache is not None and cache_ids is not None:
            reuse = reusable_prefix(cache_ids, target, cache.length, b)
            cache = cache.truncate(reuse)
        else:
            cache = None
        t_enc = time.perf_counter()
        # Draft and verify encodes whole blocks only: the rest of the context rides in its
        # first forward, whose causal rows compute the same keys/values (a keystroke: one
        # forward less). The store keeps block-aligned caches, so reuse ends on the grid.
        full = len(target) if decoder != "draft" else (reuse + (len(target) - reuse) // b * b)
        tail = target[full:]
        ctx_cache = encode(self.model, target[:full], b, cache, cancel)
        enc_ms = (time.perf_counter() - t_enc) * 1000
        stop = StopRule(self.special.eoi, self.tokenizer.newline_ids, stop_at_newline, sc.min_prob)
        n = max_tokens or sc.max_tokens
        deadline = t0 + sc.budget_ms / 1000 if sc.budget_ms > 0 else None
        if decoder == "greedy":
            res = sample_ar(self.model, ctx_cache, ids[-1], max_tokens=n, stop=stop, cancel=cancel,
                            deadline=deadline, healing=healing)
        elif decoder == "draft":
            res = sample_draft_verify(
                self.model, ctx_cache, ids[-1], max_tokens=n, stop=stop, mask_id=self.special.mask,
                draft=DraftConfig(masks=sc.draft_masks, max_draft=sc.draft_max, source=sc.draft_source),
                history=target, cancel=cancel, deadline=deadline, healing=healing,
                context_tail=tail,
            )
            # the context's cache, the tail included (a view of the decoder's cache)
            if res.cache is not None and res.cache.length >= len(target):
                ctx_cache = res.cache.truncate(len(target))
        else:
            res = sample_blocks(
                self.model, ctx_cache, block_size=b, threshold=sc.threshold, max_tokens=n,
                mask_id=self.special.mask, stop=stop, cancel=cancel,
                max_steps_per_block=sc.max_steps_per_block, deadline=deadline, fallback=sc.fallback,
                healing=healing,
            )
        res.stats.encode_ms = enc_ms
        return InfillOutput(
            text=self.text_after(res.tokens, healed.removed),
            tokens=res.tokens,
            confidence=res.confidence,
            stats=res.stats,
            context_ids=target,
            context_cache=ctx_cache,
            reused_tokens=reuse,
            encoded_tokens=len(target) - reuse,
            total_ms=(time.perf_counter() - t0) * 1000,
        )

    def rerank_line(
        self, prefix: str, suffix: str, greedy_line: str, *, k: int, max_tokens: int,
        inserts_line_break: bool = False, cancel: CancelFn | None = None,
        sampler: SamplerConfig | None = None, after: InfillOutput | None = None,
        context_ids: list[int] | None = None,
    ) -> list[Candidate]:
        """Candidate lines at the cursor, best first (`diffusion_core.rerank`): `greedy_line`
        (what `infill` wrote, up to its line break) and `k` branches from the most likely
        starts of the line, scored by the infill and by the suffix read after them.
        `inserts_line_break`: the completion ends with its own line break (a whole new line
        before the suffix, as HumanEval's holes); else the suffix follows the line directly.
        `after`: the `infill` of this hole with this sampler; the context cache it left is
        reused (when its ids start the context, as they do), so the context is not encoded
        again. `context_ids`: `infill_context(prefix, suffix, sampler=sampler)` if the
        caller already has it (as `infill` takes it), so the prefix is not tokenized again."""
        if not self.model.cfg.has_causal_path:
            raise ValueError("reranking needs a model with a causal path (kind ar or joint)")
        healed = self.healing(prefix, sampler)
        plain, tail = self.rank_context(healed.prefix, ("\n" if inserts_line_break else "") + suffix)
        ids = context_ids if context_ids is not None else self.infill_context(prefix, suffix, sampler=sampler)
        cache = None
        if after is not None and after.context_ids == ids[: len(after.context_ids)] \
                and after.context_cache.length <= len(after.context_ids):
            cache = after.context_cache
        return rerank_lines(
            self.model, self.tokenizer, infill_context=ids,
            plain_prompt=plain, removed=healed.removed, tail=tail,
            lines=[greedy_line.split("\n")[0]], k=k, max_tokens=max_tokens, cancel=cancel,
            context_cache=cache,
        )

    def repair(
        self,
        prefix: str,
        block: str,
        suffix: str,
        *,
        cancel: CancelFn | None = None,
        sampler: SamplerConfig | None = None,
    ) -> RepairOutput:
        """Re-check every token of `block` given its surroundings; return the repaired text."""
        if self.is_ar:
            raise ValueError("repair needs a diffusion model; this one is autoregressive")
        t0 = time.perf_counter()
        sc = sampler or self.sampler
        block_ids = self.tokenizer.encode(block)
        if len(block_ids) > MAX_REPAIR_TOKENS:
            raise ValueError(
                f"block of {len(block_ids)} tokens is longer than the repair limit of {MAX_REPAIR_TOKENS}"
            )
        ctx = self.repair_context(prefix, suffix, sc.block_size)
        cache = encode(self.model, ctx, sc.block_size, None, cancel)
        canvas_len = len(block_ids) + max(4, math.ceil(sc.repair_slack * len(block_ids)))
        res = repair_canvas(
            self.model, cache, block_ids, canvas_len=canvas_len, steps=sc.repair_steps,
            threshold=sc.repair_threshold, mask_id=self.special.mask, eoi_id=self.special.eoi,
            cancel=cancel,
        )
        text = self.tokenizer.decode(res.tokens)
        changed = res.tokens != block_ids
        if changed and change_ratio(block_ids, res.tokens) > sc.repair_max_change:
            # not a repair but a rewrite: keep the block, report no confidence in a change
            return RepairOutput(block, False, 0.0, res.stats, (time.perf_counter() - t0) * 1000)
        return RepairOutput(
            text=text,
            changed=changed,
            confidence=res.confidence,
            stats=res.stats,
            total_ms=(time.perf_counter() - t0) * 1000,
        )
