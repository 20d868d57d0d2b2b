"""One service for every entry point: completion, repair and scoring of documents.

`Service` owns the `Engine` and, for the server, the per-document `DocumentCacheStore`.
The language server, the `complete`/`repair` CLI and `check` all call it, so every entry
point runs the same job. Sampler settings come with each call: the engine is never
rebuilt for them.

Block reuse has one owner: `complete` takes the document's last context cache from the
store as it is (`lookup`), `Engine.infill` keeps its leading whole blocks that still match
the new context (`diffusion_core.layout.reusable_prefix`) and encodes the rest, and
`complete` stores the new cache back with the counts (`update`). Nothing else hands a
stored cache to the engine.

Results are frozen dataclasses with typed `Timings`; `to_json` is for the CLI's `--json`
and the status command. No LSP types here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from diffusion_core.config import SamplerConfig
from diffusion_core.errors import MAX_REPAIR_TOKENS, Cancelled
from lsp_server import jobs
from lsp_server.blocks import PYTHON, Block, enclosing_block
from lsp_server.edits import Edit, minimal_edits, shift
from lsp_server.positions import LineIndex
from lsp_server.repair import Proposal, repair_block

if TYPE_CHECKING:  # the engine imports torch: the server loads it in the background
    from diffusion_core.engine import Engine

CancelFn = Callable[[], bool]
RERANK_MAX_TOKENS = 32  # longest branch of a reranked line, in tokens (a longer one is cut)


@dataclass(frozen=True)
class Timings:
    """Where a job's time went. Completion fills the token counts, repair `verified`."""

    total_ms: float
    engine_ms: float
    steps: int
    encode_ms: float = 0.0
    tokens: int = 0
    out_of_time: bool = False
    reused_tokens: int = 0
    encoded_tokens: int = 0
    verified: bool = False
    candidates: int = 0  # lines ranked for a reranked single-line completion (0: greedy)
    rerank_ms: float = 0.0

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        for k in ("total_ms", "engine_ms", "encode_ms", "rerank_ms"):
            out[k] = round(out[k], 2)
        return out


@dataclass(frozen=True)
class Completion:
    text: str  # what to insert at the cursor ("" if nothing useful)
    mode: str  # jobs.SINGLE or jobs.MULTI
    raw: str  # the model output before trimming
    timings: Timings
    # reranked single lines: the other candidates, best first (`text` is the best one)
    alternatives: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"text": self.text, "mode": self.mode, "raw": self.raw,
                "alternatives": list(self.alternatives), "timings": self.timings.to_json()}


@dataclass(frozen=True)
class Repair:
    start: int  # document offsets of the repaired block [start, end)
    end: int
    start_line: int
    end_line: int
    old_block: str
    new_block: str
    edits: tuple[Edit, ...]  # document offsets; empty if the model changed nothing
    confidence: float
    timings: Timings

    @property
    def changed(self) -> bool:
        return bool(self.edits)

    def to_json(self) -> dict:
        return {
            "start_line": self.start_line, "end_line": self.end_line,
            "changed": self.changed, "old_block": self.old_block, "new_block": self.new_block,
            "edits": [e.to_dict() for e in self.edits], "confidence": self.confidence,
            "timings": self.timings.to_json(),
        }


class EngineModel:
    """The engine behind `lsp_server.repair.RepairModel`, for one sampler and cancel flag.

    Each call cuts the context to the engine's window (`jobs.context_window`)."""

    def __init__(self, engine: Engine, sampler: SamplerConfig, cancel: CancelFn | None = None):
        self.engine, self.sampler, self.cancel = engine, sampler, cancel
        self.max_tokens = MAX_REPAIR_TOKENS
        self._scan = None  # the network `suspects` scans with, made on first use

    def _context(self, prefix: str, suffix: str) -> tuple[str, str]:
        return jobs.context_window(self.engine, prefix, suffix, self.sampler.block_size)

    def fits(self, block: str) -> bool:
        return len(self.engine.tokenizer.encode(block)) <= self.max_tokens

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal:
        prefix, suffix = self._context(prefix, suffix)
        out = self.engine.repair(prefix, block, suffix, cancel=self.cancel, sampler=self.sampler)
        return Proposal(out.text if out.changed else block, float(out.confidence), out.stats.steps)

    def repair_syntax(self, prefix, block, suffix, error_at, focus) -> Proposal | None:
        from lsp_server.syntax_repair import verified_repair

        prefix, suffix = self._context(prefix, suffix)
        res = verified_repair(self.engine, prefix, block, suffix, error_at, focus,
                              cancel=self.cancel, sampler=self.sampler)
        return None if res.text is None else Proposal(res.text, res.confidence)

    def score(self, prefix: str, block: str, suffix: str) -> float:
        """The lowest log p(own token | canvas) over the block's repair canvas (one forward)."""
        from lsp_server.suspect import lowest_log_prob

        prefix, suffix = self._context(prefix, suffix)
        return lowest_log_prob(self.engine, prefix, block, suffix, self.sampler)

    def rank(self, prefix: str, block: str, suffix: str, variants: list[str]) -> list[float]:
        """Log-likelihoods of variants of `block` in its place, comparable within the call.
        With a causal path: log p(variant + the next 32 tokens | prefix window,
        `Engine.rank_context`),
        so the code after the block votes too; without one: the edit model's canvas score
        (one context encode, canvases of one shared length; `diffusion_core.scoring`).
        The cancel flag is checked between forward passes (raises `Cancelled`)."""
        from diffusion_core.sampler import Cancelled
        from diffusion_core.scoring import canvas_scores, causal_sequence_scores

        def check() -> None:
            if self.cancel is not None and self.cancel():
                raise Cancelled()

        prefix, suffix = self._context(prefix, suffix)
        eng, sc = self.engine, self.sampler
        tok, sp = eng.tokenizer, eng.special
        canvases = [tok.encode(v) for v in variants]
        if eng.model.cfg.has_causal_path:
            prompt, tail = eng.rank_context(prefix, suffix)
            return causal_sequence_scores(eng.model, prompt, canvases, tail, cancel=self.cancel)
        n = max(len(c) for c in canvases)
        canvas_len = n + max(4, math.ceil(sc.repair_slack * n))
        cache = eng.encode_context(eng.repair_context(prefix, suffix, sc.block_size),
                                   cancel=self.cancel, block_size=sc.block_size)
        check()
        return canvas_scores(eng.model, cache, canvases, canvas_len=canvas_len, eoi_id=sp.eoi)

    def suspects(self, text: str, spans: list[tuple[int, int]], level: float) -> list[bool]:
        """Which [start, end) spans of `text` the full repair should see (`check`'s cheap
        pass, `lsp_server.suspect`): with a causal path, one pass over the file flags the
        blocks where the model is at least `level` sure of another token; without one,
        each block's own exact gate (`Engine.repair` changes nothing unless some canvas
        position has p(its own token) <= the repair threshold; `level` is not used)."""
        from lsp_server.suspect import causal_flags, has_causal_scan, scan_model

        if has_causal_scan(self.engine):
            if self._scan is None:
                self._scan = scan_model(self.engine.model)
            return causal_flags(self.engine, text, spans, level, self._scan)
        limit = math.log(max(self.sampler.repair_threshold, 1e-12))
        return [self.score(text[:s], text[s:e], text[e:]) <= limit for s, e in spans]


class Service:
    """The engine and the per-document cache store, behind typed jobs."""

    def __init__(self, engine: Engine, store=None) -> None:
        self.engine = engine
        self.store = store  # a cache.DocumentCacheStore, or None: no reuse across calls

    def sampler(self, sampler: SamplerConfig | None = None) -> SamplerConfig:
        return sampler or self.engine.sampler

    def model(self, sampler: SamplerConfig | None = None, cancel: CancelFn | None = None
              ) -> EngineModel:
        """The engine as a `RepairModel` (what `check` and `repair` drive)."""
        return EngineModel(self.engine, self.sampler(sampler), cancel)

    # -- completion ---------------------------------------------------------------------
    def complete(
        self, text: str, offset: int, *, uri: str | None = None,
        sampler: SamplerConfig | None = None, cancel: CancelFn | None = None,
        max_tokens: int | None = None, mode: str | None = None, rerank: int = 0,
    ) -> Completion:
        """Infill at `offset`; with a store and `uri`, reuse and update the document's block
        KV cache. `rerank` K > 0, a single-line completion and a model with a causal path:
        the greedy line and K branches from the line's likely starts, ranked by the infill
        and the suffix read after them (`Engine.rerank_line`, on the context cache the
        infill left); the best is `text`, the others `alternatives`. A latency budget that
        runs out while ranking keeps the greedy line. Raises diffusion_core.sampler.Cancelled."""
        t0 = time.perf_counter()
        sc = self.sampler(sampler)
        text = jobs.clean(text)
        mode = mode or jobs.completion_mode(text, offset)
        prefix, suffix, ids = jobs.infill_text(self.engine, text, offset, offset, sc)
        store = self.store if uri is not None else None
        cache, cache_ids = store.lookup(uri, sc.block_size) if store is not None else (None, None)
        out = self.engine.infill(
            prefix, suffix, cache=cache, cache_ids=cache_ids, cancel=cancel,
            max_tokens=max_tokens, stop_at_newline=(mode == jobs.SINGLE), sampler=sc,
            context_ids=ids,
        )
        if store is not None:
            store.update(uri, out.context_ids, out.context_cache, sc.block_size,
                         encoded_tokens=out.encoded_tokens, reused_tokens=out.reused_tokens)
        best = jobs.trim_completion(out.text, mode, text, offset)
        ranked, n_ranked, rerank_ms, out_of_time = (), 0, 0.0, out.stats.out_of_time
        if rerank > 0 and mode == jobs.SINGLE and self.engine.model.cfg.has_causal_path \
                and not out_of_time:
            t1 = time.perf_counter()
            try:
                ranked, n_ranked = self._rerank(prefix, suffix, ids, out, text, offset, rerank,
                                                sc, cancel, t0)
            except Cancelled:
                if cancel is not None and cancel():
                    raise
                out_of_time = True  # the budget ran out: the greedy line stands
            rerank_ms = (time.perf_counter() - t1) * 1000
        timings = Timings(
            total_ms=(time.perf_counter() - t0) * 1000, engine_ms=out.total_ms + rerank_ms,
            steps=out.stats.steps, encode_ms=out.stats.encode_ms, tokens=len(out.tokens),
            out_of_time=out_of_time, reused_tokens=out.reused_tokens,
            encoded_tokens=out.encoded_tokens, candidates=n_ranked, rerank_ms=rerank_ms,
        )
        if ranked:
            best, alternatives = ranked[0], ranked[1:]
        else:
            alternatives = ()
        return Completion(best, mode, out.text, timings, alternatives)

    def _rerank(self, prefix, suffix, ids, out, text, offset, k, sc, cancel, t0
                ) -> tuple[tuple[str, ...], int]:
        """(the reranked lines as shown at `offset`: trimmed, distinct, non-empty, best
        first; how many lines were ranked)."""
        deadline = t0 + sc.budget_ms / 1000 if sc.budget_ms > 0 else None

        def stop() -> bool:
            return (cancel is not None and cancel()) or \
                (deadline is not None and time.perf_counter() > deadline)

        cands = self.engine.rerank_line(
            prefix, suffix, out.text, k=k, max_tokens=RERANK_MAX_TOKENS, cancel=stop,
            sampler=sc, after=out, context_ids=ids,
        )
        lines = (jobs.trim_completion(c.text, jobs.SINGLE, text, offset) for c in cands)
        return tuple(t for t in dict.fromkeys(lines) if t.strip()), len(cands)

    # -- repair -------------------------------------------------------------------------
    def fits(self, block: str) -> bool:
        return len(self.engine.tokenizer.encode(block)) <= MAX_REPAIR_TOKENS

    def choose_block(self, text: str, line: int, language: str = PYTHON) -> Block:
        """The enclosing block of `line` that the model can repair in one job."""
        text = jobs.clean(text)

        def fits(b: Block) -> bool:
            s, e = jobs.line_span(text, b.start_line, b.end_line)
            return self.fits(text[s:e])

        return enclosing_block(text, line, language, fits=fits)

    def repair(
        self, text: str, start_line: int, end_line: int, *, language: str | None = None,
        sampler: SamplerConfig | None = None, cancel: CancelFn | None = None,
    ) -> Repair:
        """Repair lines start_line..end_line (inclusive, 0-based) given the rest of the file
        (`lsp_server.repair.repair_block`: parser-verified for Python lines that hold a syntax
        error). Raises ValueError if the block is longer than the model's repair limit and
        diffusion_core.sampler.Cancelled when `cancel()` turns true."""
        if self.engine.is_ar:
            raise ValueError("repair needs a diffusion model; this one is autoregressive")
        t0 = time.perf_counter()
        text = jobs.clean(text)
        start, end = jobs.line_span(text, start_line, end_line)
        block = text[start:end]
        broken = jobs.broken_block(text, start, end) if language == PYTHON else None
        got = repair_block(self.model(sampler, cancel), text, start, end, language=language,
                           broken=broken)
        if got is None:
            raise ValueError(f"block is longer than the repair limit of {MAX_REPAIR_TOKENS} tokens")
        engine_ms = (time.perf_counter() - t0) * 1000
        edits = tuple(shift(minimal_edits(block, got.text), start))
        index = LineIndex(text)
        s_line = index.position(start)[0]
        e_line = index.position(start + len(block.rstrip("\r\n")))[0]
        timings = Timings(total_ms=(time.perf_counter() - t0) * 1000, engine_ms=engine_ms,
                          steps=got.steps, verified=got.verified)
        return Repair(start, end, s_line, e_line, block, got.text, edits, got.confidence, timings)

    # -- scoring ------------------------------------------------------------------------
    def score(self, prefix: str, block: str, suffix: str, *,
              sampler: SamplerConfig | None = None) -> float:
        """How sure the edit model is of `block` as it is: the lowest log p(own token) over
        its repair canvas, in one forward pass (see `lsp_server.suspect`)."""
        return self.model(sampler).score(prefix, block, suffix)

    # -- documents ----------------------------------------------------------------------
    def forget(self, uri: str) -> None:
        if self.store is not None:
            self.store.forget(uri)

    def close(self, uri: str) -> None:
        if self.store is not None:
            self.store.close(uri)

