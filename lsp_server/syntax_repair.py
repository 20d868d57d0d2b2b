"""Repair of a block that does not parse, verified by the parser and chosen by the model.

`verified_repair(engine, prefix, block, suffix, error_at, focus)`:

1. The caller locates the error (CPython's error and tree-sitter's ERROR/MISSING nodes)
   and passes `focus`: character ranges of the block around it, and `error_at`: for a
   candidate block, None when the file parses with it, else the offset (relative to the
   block) of the first syntax error that remains.
2. Candidates: the edit model's own repair of the block (`Engine.repair`), plus every
   single-token edit near the error: deleting a token, inserting a token, replacing a
   token, where the inserted or replacing token is one the model proposes there: with a
   causal path, the `CAUSAL_K` it finds most likely after the code before the slot (one
   forward pass for every slot, `scoring.causal_next_tokens`), and the `TOP_K` the edit
   model finds most likely in a masked slot (one canvas per slot); every word near the
   error respelt as a vocabulary word one edit away (`near_words`: a misspelt keyword);
   one-character edits inside tokens (`char_edits`: `))` is one token). No rule knows
   about colons or brackets: the model fills the slots and supplies the characters.
3. Only candidates that parse are kept, and none that writes a new '#' (`comments_out`:
   it would parse by hiding code in a comment). When none does, the candidates that move
   the first error furthest are edited once more (up to `rounds` edits).
4. The parsing candidates are scored: by the causal path where the model has one (log p of
   the block and the next 32 tokens after the code above it, `Engine.rank_context`), else
   by the edit model (log p(canvas | canvas)); see `diffusion_core.scoring`; a token
   deletion pays `DELETE_COST` per character it removes (shorter texts score higher).
   Among those within `margin` nats of the best, the one with the smallest edit wins
   (then the higher score). Its confidence is its share of the probability mass of all
   parsing candidates.

Nothing that does not parse is ever returned. No LSP types here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from diffusion_core.scoring import (
    canvas_scores,
    causal_next_tokens,
    causal_sequence_scores,
    slot_predictions,
)
from lsp_server.edits import minimal_edits
from lsp_server.repair import keep_line_ending
from lsp_server.repair_edits import (
    CONTEXT_LINES,
    char_edits,
    comments_out,
    edit_size,
    line_range,
    near_words,
)

ErrorAt = Callable[[str], "int | None"]
CancelFn = Callable[[], bool]

TOP_K = 4  # tokens per masked slot
CAUSAL_K = 8  # tokens per slot proposed by the causal path (one forward for all slots)
# masked-slot proposals from the edit model next to the causal path's (a model without a
# causal path always uses them). Off: with the joint model they found no repair the causal
# proposals missed and doubled the time (joint5, dev split "dev/check": 46/60 exact either
# way, 631 -> 303 s; the eval's split: 47 -> 48/60)
USE_SLOTS = False
CHAR_EDITS = True  # one-character deletions and insertions around the error (`char_edits`)
MARGIN = 2.0  # nats: candidates this close to the best count as equally likely
# nats per character a token deletion removes: log p of a text favours shorter ones, so
# deleting a word of code beat inserting the missing ',' (chosen on the dev split of the
# eval, seed "dev/check", 60 functions: 47 -> 48 exact; the eval's own split: 44 -> 46)
DELETE_COST = 1.0
MAX_SLOTS = 40  # token positions around the error that get edited
ROUNDS = 2  # single-token edits applied in sequence at most
BEAM = 3  # candidates carried into the next round
MAX_SCORED = 64  # parsing candidates scored by the model (fewest edits, nearest the error first)


@dataclass
class Candidate:
    text: str
    source: str  # "model", "delete", "insert", "replace" (joined with "+" over rounds)
    edit_chars: int  # characters deleted or inserted by the whole edit
    score: float = float("-inf")  # the model's log-likelihood (comparable within one call)
    at: int = 0  # where the edit starts (characters into the block)


@dataclass
class VerifiedRepair:
    text: str | None  # the chosen block; None: no candidate parses
    confidence: float = 0.0
    source: str = ""
    tried: int = 0  # distinct candidates checked by the parser
    parsed: int = 0  # of which parse
    seconds: float = 0.0
    ranked: list[Candidate] = field(default_factory=list)  # parsing candidates, best first


def _token_starts(tokenizer, ids: list[int]) -> list[int]:
    """Character offset where each token starts (approximate inside multi-byte characters)."""
    starts, prev = [], 0
    for j in range(len(ids)):
        starts.append(prev)
        prev = len(tokenizer.decode(ids[: j + 1]))
    starts.append(prev)
    return starts


def _slots(tokenizer, ids: list[int], text: str, focus: list[tuple[int, int]]) -> list[int]:
    """Token indices (0..len(ids)) whose text lies in the lines around `focus`, nearest to
    the error first, at most MAX_SLOTS."""
    starts = _token_starts(tokenizer, ids)
    ranges = [line_range(text, a, b, CONTEXT_LINES) for a, b in focus] or [(0, len(text))]
    centre = focus[0][0] if focus else 0
    picked = [j for j in range(len(ids) + 1) if any(lo <= starts[j] <= hi for lo, hi in ranges)]
    picked.sort(key=lambda j: abs(starts[j] - centre))
    return sorted(picked[:MAX_SLOTS])


class _Search:
    def __init__(self, engine, block: str, error_at: ErrorAt, cancel: CancelFn | None) -> None:
        self.engine = engine
        self.tok = engine.tokenizer
        self.special = engine.special
        self.block = block
        self.error_at = error_at
        self.cancel = cancel
        self.seen: dict[str, int | None] = {}  # text -> error offset (None: parses)
        self.cache = None
        self.canvas_len = 0
        self.causal: tuple[list[int], list[int]] | None = None  # (prompt, tail) ids

    def check(self, text: str) -> int | None:
        if text not in self.seen:
            self.seen[text] = self.error_at(text)
        return self.seen[text]

    def _cancelled(self) -> None:
        if self.cancel is not None and self.cancel():
            from diffusion_core.sampler import Cancelled

            raise Cancelled()

    def neighbours(self, text: str, focus: list[tuple[int, int]]) -> list[tuple[str, str]]:
        """(text, kind) of every single-token edit of `text` near `focus`."""
        ids = self.tok.encode(text)
        slots = _slots(self.tok, ids, text, focus)
        out: list[tuple[str, str]] = []
        for j in slots:
            if j < len(ids):
                out.append((self.tok.decode(ids[:j] + ids[j + 1 :]), "delete"))
        out.extend(near_words(self.tok, text, focus))
        proposed: set[int] = set()  # every token proposed at some slot
        if self.causal is not None:
            out.extend(self._causal_neighbours(ids, slots, proposed))
        if self.causal is None or USE_SLOTS:
            out.extend(self._slot_neighbours(ids, slots, proposed))
        if CHAR_EDITS:
            out.extend(char_edits(text, focus, {c for t in proposed for c in self.tok.decode([t])}))
        return out

    def _slot_neighbours(self, ids: list[int], slots: list[int], proposed: set[int]
                         ) -> list[tuple[str, str]]:
        """Insertions and replacements whose token the edit model proposes for a masked
        slot (one canvas per slot and kind)."""
        mask, eoi = self.special.mask, self.special.eoi
        out: list[tuple[str, str]] = []
        canvases, where, kinds = [], [], []
        for j in slots:
            canvases.append(ids[:j] + [mask] + ids[j:])
            where.append(j)
            kinds.append(("insert", None))
            if j < len(ids):
                canvases.append(ids[:j] + [mask] + ids[j + 1 :])
                where.append(j)
                kinds.append(("replace", ids[j]))
        need = max((len(c) for c in canvases), default=0)
        canvas_len = max(self.canvas_len, need)
        self._cancelled()
        preds = slot_predictions(
            self.engine.model, self.cache, canvases, where, canvas_len=canvas_len, eoi_id=eoi,
            k=TOP_K + 1, exclude=(eoi, self.special.pad, mask),
        )
        for canvas, j, (kind, old), top in zip(canvases, where, kinds, preds, strict=True):
            n = 0
            for tok_id, _lp in top:
                if tok_id == old:
                    continue
                new = canvas[:j] + [tok_id] + canvas[j + 1 :]
                out.append((self.tok.decode(new), kind))
                proposed.add(tok_id)
                n += 1
                if n >= TOP_K:
                    break
        return out

    def _causal_neighbours(self, ids: list[int], slots: list[int], proposed: set[int]
                           ) -> list[tuple[str, str]]:
        """Insertions and replacements whose token the causal path proposes: what it would
        write at slot j after the code above and ids[:j] (one forward pass for all slots)."""
        prompt, _tail = self.causal
        self._cancelled()
        preds = causal_next_tokens(
            self.engine.model, prompt, ids, slots, k=CAUSAL_K + 1,
            exclude=(self.special.eoi, self.special.pad, self.special.mask),
        )
        out: list[tuple[str, str]] = []
        for j, top in zip(slots, preds, strict=True):
            old = ids[j] if j < len(ids) else None
            for tok_id, _lp in top[:CAUSAL_K]:
                out.append((self.tok.decode(ids[:j] + [tok_id] + ids[j:]), "insert"))
                proposed.add(tok_id)
            for tok_id, _lp in [t for t in top if t[0] != old][:CAUSAL_K]:
                if old is not None:
                    out.append((self.tok.decode(ids[:j] + [tok_id] + ids[j + 1 :]), "replace"))
        return out

    def score(self, cands: list[Candidate]) -> None:
        self._cancelled()
        canvases = [self.tok.encode(c.text) for c in cands]
        if self.causal is not None:  # the causal path reads the block in its place
            prompt, tail = self.causal
            scores = causal_sequence_scores(self.engine.model, prompt, canvases, tail,
                                            cancel=self.cancel)
        else:
            n = max([len(c) for c in canvases] + [self.canvas_len])
            scores = canvas_scores(
                self.engine.model, self.cache, canvases, canvas_len=n, eoi_id=self.special.eoi
            )
        for c, s in zip(cands, scores, strict=True):
            c.score = s


def choose(cands: list[Candidate], margin: float = MARGIN) -> tuple[Candidate, float]:
    """The smallest edit among the candidates within `margin` nats of the most likely one
    (ties: the more likely), and its share of the probability mass of all of them."""
    top = max(c.score for c in cands)
    near = [c for c in cands if c.score >= top - margin]
    chosen = min(near, key=lambda c: (c.edit_chars, -c.score))
    mass = sum(math.exp(c.score - top) for c in cands)
    return chosen, math.exp(chosen.score - top) / mass


def _rank(s: _Search, valid: list[Candidate], focus, res: VerifiedRepair) -> None:
    """Score the parsing candidates and fill `res` with the chosen one. The model's own
    proposal goes first, then the fewest edits, nearest the error first (a respelt keyword
    is one edit of two characters): scoring is the expensive part when many edits parse."""
    centre = focus[0][0] if focus else 0
    cands = sorted(valid, key=lambda c: (c.source != "model", c.source.count("+"),
                                         abs(c.at - centre), c.edit_chars))[:MAX_SCORED]
    s.score(cands)
    for c in cands:
        if c.source.rsplit("+", 1)[-1] == "delete":
            c.score -= DELETE_COST * c.edit_chars
    chosen, res.confidence = choose(cands)
    res.text, res.source = chosen.text, chosen.source
    res.ranked = sorted(cands, key=lambda c: -c.score)


def verified_repair(
    engine,
    prefix: str,
    block: str,
    suffix: str,
    error_at: ErrorAt,
    focus: list[tuple[int, int]],
    *,
    cancel: CancelFn | None = None,
    use_model_proposal: bool = True,
    rounds: int = ROUNDS,
    sampler=None,
) -> VerifiedRepair:
    """`sampler`: the engine's own when None."""
    t0 = time.perf_counter()
    sc = sampler or engine.sampler
    s = _Search(engine, block, error_at, cancel)
    ctx = engine.repair_context(prefix, suffix, sc.block_size)
    s.cache = engine.encode_context(ctx, cancel=cancel, block_size=sc.block_size)
    if engine.model.cfg.has_causal_path:
        s.causal = engine.rank_context(prefix, suffix)
    n_block = len(s.tok.encode(block))
    s.canvas_len = n_block + max(4, math.ceil(sc.repair_slack * n_block))
    valid: dict[str, Candidate] = {}

    def consider(text: str, source: str) -> int | None:
        if text == block:
            return -1
        err = s.check(text)
        if err is None and text not in valid:
            edits = minimal_edits(block, text)
            if edits and not comments_out(block, text, edits):
                valid[text] = Candidate(text, source, edit_size(block, text, edits),
                                        at=edits[0].start)
        return err

    if use_model_proposal and not engine.is_ar:
        try:
            out = engine.repair(prefix, block, suffix, cancel=cancel, sampler=sc)
        except ValueError:  # too long for the canvas: the token edits still run
            out = None
        if out is not None and out.changed:
            consider(keep_line_ending(block, out.text), "model")
    frontier = [(block, "", focus)]
    base_err = s.check(block)
    base_err = -1 if base_err is None else base_err
    for _round in range(max(1, rounds)):
        progress: list[tuple[int, str, str]] = []
        for text, src, foc in frontier:
            for cand, kind in s.neighbours(text, foc):
                source = f"{src}+{kind}" if src else kind
                err = consider(cand, source)
                if err is not None and err > base_err:
                    progress.append((err, cand, source))
        if valid or not progress:
            break
        # nothing parses yet: carry on from the candidates the model likes best among
        # those that moved the first error furthest
        far = max(e for e, _, _ in progress)
        best = [Candidate(c, src, edit_size(block, c)) for e, c, src in progress if e == far]
        best = list({c.text: c for c in best}.values())
        best.sort(key=lambda c: c.edit_chars)
        best = best[:MAX_SCORED]
        s.score(best)
        best.sort(key=lambda c: -c.score)
        frontier = []
        for c in best[:BEAM]:
            e = far
            frontier.append((c.text, c.source, [(max(0, e - 1), min(len(c.text), e + 1))]))
        base_err = far
    res = VerifiedRepair(None, tried=len(s.seen), parsed=len(valid))
    if valid:
        _rank(s, list(valid.values()), focus, res)
    res.seconds = time.perf_counter() - t0
    return res
