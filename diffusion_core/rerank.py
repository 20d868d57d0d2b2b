"""Suffix-aware reranking of a single-line completion, with the causal path as judge.

Greedy infill picks each token from the left; the code after the hole (the suffix) is only
context for it, and a small model often writes a line that reads well but does not fit what
follows (a new `def` at column 0 just before an indented body, a `return` where the suffix
goes on using a loop variable). Reranking a few whole-line candidates by how well the code
after them follows fixes part of that. Candidates: the greedy line, and one greedy
continuation for each of the `k` most likely starts of the line (batched: one forward per
token for all of them). A start is the first token, or, when that token writes no word
yet (only whitespace, or only a piece of the healed line break and indentation), that
token and the next one: a line's first word is what tells candidates apart, and first
tokens alone spend the branches on indentation variants of one line. Score of a
candidate c, both under the same network's causal path:

    log p(c | infill context)  +  log p(c + suffix head | <suf> <pre> prefix)

the first the infill's own view, the second the plain left-to-right one that reads the
first `tail` tokens of the suffix after c (the "channel" term of noisy-channel reranking,
Yee et al. 2019, with the suffix in the place of the source). It uses the prompt and the
suffix only, as an editor has them. The infill context is encoded once
(`scoring.encode_causal`, on top of the context cache the greedy infill left when the
caller passes it) and serves the starts, the branches and the infill scores. Measured on
HumanEval single-line infilling (docs/quality.md, "Reranking single lines by the suffix").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_core.kv_cache import KVCache
from diffusion_core.masks import causal_mask
from diffusion_core.sampler import CancelFn, _check
from diffusion_core.scoring import Encoded, _expand, causal_sequence_scores, encode_causal

TOP_FIRST = 64  # first tokens looked at for the starts
OPEN_EXPANDED = 3  # open starts (no word yet) whose next token is looked at, per token
OPEN_DEPTH = 4  # tokens an open start is followed to, at most (a healed blank line, indentation, word)


@dataclass(frozen=True)
class Candidate:
    text: str  # the line as it goes in at the cursor (no line break, healed piece removed)
    ids: tuple[int, ...]  # the tokens scored: the healed piece and the line
    infill: float  # log p(ids | infill context)
    plain: float  # log p(ids + suffix head | <suf> <pre> prefix), left to right

    @property
    def score(self) -> float:
        return self.infill + self.plain


@torch.inference_mode()
def branch_continuations(
    model, context: list[int], starts: list[list[int]], *, max_tokens: int,
    done: Callable[[list[int]], bool], exclude: frozenset[int] = frozenset(),
    cancel: CancelFn | None = None, encoded: Encoded | None = None,
) -> list[list[int]]:
    """Greedy causal continuations of `context` + each start (a token list), all branches
    in one sequence.

    The context is encoded once (causal mask; or `encoded` is that encoding); then one
    forward pass per position serves every live branch in lockstep: a branch is fed its
    start's tokens first, then its own greedy picks (a finished branch is no longer fed).
    The branches share one batch-1 cache, laid out as the context and then one token per
    live branch per step, each branch's rows seeing the context and its own earlier tokens
    only (tree attention, as SpecInfer and Medusa verify token trees): the context's keys
    are never copied per branch. A branch ends
    when `done(its ids)`, when the causal path's best token is in `exclude` (special
    tokens), or at `max_tokens` tokens (the start included). Equals running greedy
    decoding from each start alone (tests/core/test_rerank.py)."""
    if not model.cfg.has_causal_path:
        raise ValueError("branching needs a model with a causal path (kind ar or joint)")
    if not context:
        raise ValueError("the context must hold at least one token")
    if any(not s for s in starts):
        raise ValueError("every start must hold at least one token")
    out = [list(s) for s in starts]
    live = [not done(o) and len(o) < max_tokens for o in out]
    if not any(live):
        return out
    device = next(model.parameters()).device
    enc = encoded or encode_causal(model, context, cancel=cancel)
    cache, n = enc.cache, enc.cache.length  # (1, H, S, D) per layer
    cols: list[list[int]] = [[] for _ in out]  # each branch's own cache columns after the context
    for step in range(max_tokens - 1):
        _check(cancel)
        rows = [r for r in range(len(out)) if live[r]]  # finished branches are not computed
        x = torch.tensor([[out[r][step] for r in rows]], device=device)  # (1, L)
        pos = torch.full((1, len(rows)), n + step, device=device)  # (1, L): one position for all
        width = cache.length + len(rows)
        mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)  # (L, S + T + L)
        mask[:, :n] = True
        for i, r in enumerate(rows):
            cols[r].append(cache.length + i)
            mask[i, torch.tensor(cols[r], device=device)] = True  # its earlier tokens and itself
        o = model(x, pos, mask[None], cache)
        cache = cache.extend(o.kv)
        best = o.logits[0].float().argmax(dim=-1)  # (L,)
        for r, t in zip(rows, best.tolist(), strict=True):
            if len(out[r]) > step + 1:  # still in its start
                continue
            if t in exclude:
                live[r] = False
                continue
            out[r].append(t)
            live[r] = not done(out[r]) and len(out[r]) < max_tokens
        if not any(live):
            break
    return out


@torch.inference_mode()
def line_starts(
    model, enc: Encoded, *, removed: str, decode: Callable[[list[int]], str], k: int,
    exclude: frozenset[int] = frozenset(), cancel: CancelFn | None = None,
) -> list[list[int]]:
    """The `k` most likely starts of the line after an encoded context, best first.

    Among the `TOP_FIRST` most likely first tokens that agree with `removed` (the healed
    piece; any token if empty): one that writes a word after it (or ends the line) is a
    start by itself; one that is still open (only whitespace after the piece, or a piece of
    it: a line break and 15 spaces before " found" when the cursor is 16 spaces in) is
    followed, the `OPEN_EXPANDED` most likely open ones at a time (one batched forward over
    the context's cache per token), by its likely next tokens, up to `OPEN_DEPTH` tokens in
    all: those that complete the piece and write a word are starts, scored by the tokens'
    joint log-probability, and those still open are followed again (a healed blank line,
    "\n    \n", and the line's indentation are often three tokens before the word). Starts
    whose text is the same are one."""
    if k <= 0:
        return []
    lp = enc.next_log_probs.clone()  # (V,)
    if exclude:
        lp[list(exclude)] = float("-inf")
    vals, idx = lp.topk(min(TOP_FIRST, lp.shape[-1]))
    pool: list[tuple[float, list[int]]] = []
    open_: list[tuple[float, list[int]]] = []
    for v, t in zip(vals.tolist(), idx.tolist(), strict=True):
        if v == float("-inf"):
            continue
        kind = _start_kind(decode([t]), removed, first=True)
        if kind == "start":
            pool.append((v, [t]))
        elif kind == "open":
            open_.append((v, [t]))
    device = next(model.parameters()).device
    for _ in range(OPEN_DEPTH - 1):
        open_ = sorted(open_, key=lambda o: -o[0])[:OPEN_EXPANDED]
        if not open_:
            break
        _check(cancel)
        m, n, s = len(open_), len(open_[0][1]), enc.cache.length
        x = torch.tensor([ids for _, ids in open_], device=device)  # (M, n)
        pos = torch.arange(s, s + n, device=device)[None].expand(m, -1)  # (M, n)
        mask = torch.ones(n, s + n, dtype=torch.bool, device=device)  # (n, S+n)
        mask[:, s:] = causal_mask(n, device)
        logits = model(x, pos, mask, _expand(enc.cache, m)).logits[:, -1].float()  # (M, V)
        nxt = torch.log_softmax(logits, -1)
        if exclude:
            nxt[:, list(exclude)] = float("-inf")
        v2, i2 = nxt.topk(min(TOP_FIRST, nxt.shape[-1]), dim=-1)  # (M, TOP_FIRST)
        deeper: list[tuple[float, list[int]]] = []
        for (v, ids), vs, ts in zip(open_, v2.tolist(), i2.tolist(), strict=True):
            for w, u in zip(vs, ts, strict=True):
                if w == float("-inf"):
                    continue
                kind = _start_kind(decode([*ids, u]), removed, first=False)
                if kind == "start":
                    pool.append((v + w, [*ids, u]))
                elif kind == "open":
                    deeper.append((v + w, [*ids, u]))
        open_ = deeper
    pool.sort(key=lambda p: -p[0])
    seen: set[str] = set()
    starts = []
    for _, ids in pool:
        text = decode(ids)
        if text not in seen:
            seen.add(text)
            starts.append(ids)
        if len(starts) == k:
            break
    return starts


def _start_kind(text: str, removed: str, *, first: bool) -> str | None:
    """What the tokens spelling `text` are as the start of the line after the healed piece
    `removed`: "start" (they write a word after it; a first token that ends the line, an
    empty line, counts too), "open" (nothing written after it yet but whitespace, or a
    piece of it), or None (they disagree with it)."""
    if text.startswith(removed):
        rest = text[len(removed):]
        if rest.strip() or (first and "\n" in rest):
            return "start"
        return "open" if "\n" not in rest else None
    return "open" if text and removed.startswith(text) else None


def rerank_lines(
    model, tokenizer, *, infill_context: list[int], plain_prompt: list[int], removed: str,
    tail: list[int], lines: list[str], k: int, max_tokens: int, cancel: CancelFn | None = None,
    context_cache: KVCache | None = None,
) -> list[Candidate]:
    """Candidates for the line at the cursor, best first.

    `lines`: lines proposed by the caller (the greedy answer); `k` more come from the `k`
    most likely starts (`line_starts`) of a line that spells out `removed` (the healed
    piece) first. `plain_prompt`: `<suf> <pre>` and the (healed) prefix, which `removed` +
    the line continue; `tail`: the suffix's first tokens, starting with its line break.
    `context_cache`: causal keys/values of a prefix of `infill_context` (what the greedy
    infill encoded), so that only the rest of it is encoded here."""
    special = tokenizer.special_ids
    decode = tokenizer.tok.decode

    def line_of(ids: list[int]) -> str:
        return decode(ids)[len(removed):].split("\n")[0]

    enc = encode_causal(model, infill_context, context_cache, cancel)
    starts = line_starts(model, enc, removed=removed, decode=decode, k=k, exclude=special, cancel=cancel)
    branches = branch_continuations(
        model, infill_context, starts, max_tokens=max_tokens,
        done=lambda ids: "\n" in decode(ids)[len(removed):], exclude=special, cancel=cancel,
        encoded=enc,
    )
    texts = list(dict.fromkeys([*lines, *(line_of(b) for b in branches)]))
    ids = [tokenizer.encode(removed + t) for t in texts]
    infill = causal_sequence_scores(model, infill_context, ids, [], cancel=cancel, encoded=enc)
    plain = causal_sequence_scores(model, plain_prompt, ids, tail, cancel=cancel)
    cands = [Candidate(t, tuple(i), a, b) for t, i, a, b in zip(texts, ids, infill, plain, strict=True)]
    return sorted(cands, key=lambda c: -c.score)
