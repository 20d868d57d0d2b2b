"""Suffix-aware reranking of a single-line completion, with the causal path as judge.

Greedy infill picks each token from the left; the code after the hole (the suffix) is only
context for it, and a small model often writes a line that reads well but does not fit what
follows (a new `def` at column 0 just before an indented body, a `return` where the suffix
goes on using a loop variable). Reranking a few whole-line candidates by how well the code
after them follows fixes part of that. Candidates: the greedy line, and one greedy
continuation for each of the `k` most likely first tokens (batched: one forward per token
for all of them). Score of a candidate c, both under the same network's causal path:

    log p(c | infill context)  +  log p(c + suffix head | <suf> <pre> prefix)

the first the infill's own view, the second the plain left-to-right one that reads the
first `tail` tokens of the suffix after c (the "channel" term of noisy-channel reranking,
Yee et al. 2019, with the suffix in the place of the source). It uses the prompt and the
suffix only, as an editor has them. Measured on HumanEval single-line infilling
(docs/quality.md, "Reranking single lines by the suffix").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_core.masks import causal_mask
from diffusion_core.sampler import CancelFn, _check
from diffusion_core.scoring import _expand, causal_next_tokens, causal_sequence_scores


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
    model, context: list[int], firsts: list[int], *, max_tokens: int,
    done: Callable[[list[int]], bool], exclude: frozenset[int] = frozenset(),
    cancel: CancelFn | None = None,
) -> list[list[int]]:
    """Greedy causal continuations of `context` + each first token, all branches in one batch.

    The context is encoded once (causal mask) into a cache that every branch reads; then one
    forward pass per generated token serves every branch that is not `done` yet (a row that
    is done keeps being computed with the rest and its tokens are dropped). A branch ends
    when `done(its ids)`, when the causal path's best token is in `exclude` (special
    tokens), or at `max_tokens` tokens (the first included). Equals running greedy decoding
    from each first token alone (tests/core/test_rerank.py)."""
    if not model.cfg.has_causal_path:
        raise ValueError("branching needs a model with a causal path (kind ar or joint)")
    if not context:
        raise ValueError("the context must hold at least one token")
    out = [[f] for f in firsts]
    live = [not done(o) and max_tokens > 1 for o in out]
    if not any(live):
        return out
    device = next(model.parameters()).device
    _check(cancel)
    n = len(context)
    ctx = torch.tensor([context], device=device)  # (1, S)
    o = model(ctx, torch.arange(n, device=device)[None], causal_mask(n, device)[None], model.empty_cache())
    cache = _expand(model.empty_cache().extend(o.kv), len(firsts))  # (K, H, S, D) per layer
    x = torch.tensor(firsts, device=device)[:, None]  # (K, 1)
    for step in range(1, max_tokens):
        _check(cancel)
        pos = torch.full((len(firsts), 1), n + step - 1, device=device)  # (K, 1)
        o = model(x, pos, None, cache)  # one new query per branch sees its own cache
        cache = cache.extend(o.kv)
        best = o.logits[:, -1].float().argmax(dim=-1)  # (K,)
        for r, t in enumerate(best.tolist()):
            if not live[r]:
                continue
            if t in exclude:
                live[r] = False
                continue
            out[r].append(t)
            live[r] = not done(out[r]) and len(out[r]) < max_tokens
        if not any(live):
            break
        x = best[:, None]
    return out


def rerank_lines(
    model, tokenizer, *, infill_context: list[int], plain_prompt: list[int], removed: str,
    tail: list[int], lines: list[str], k: int, max_tokens: int, cancel: CancelFn | None = None,
) -> list[Candidate]:
    """Candidates for the line at the cursor, best first.

    `lines`: lines proposed by the caller (the greedy answer); `k` more come from the `k`
    most likely first tokens that spell the start of `removed` (the healed piece; any token
    if empty). `plain_prompt`: `<suf> <pre>` and the (healed) prefix, which `removed` +
    the line continue; `tail`: the suffix's first tokens, starting with its line break."""
    special = tokenizer.special_ids
    decode = tokenizer.tok.decode

    def line_of(ids: list[int]) -> str:
        return decode(ids)[len(removed):].split("\n")[0]

    firsts = []
    if k > 0:
        top = causal_next_tokens(model, infill_context, [], [0], k=max(8 * k, 64), exclude=tuple(special))[0]
        firsts = [t for t, _ in top if decode([t]).startswith(removed)][:k]
    branches = branch_continuations(
        model, infill_context, firsts, max_tokens=max_tokens,
        done=lambda ids: "\n" in decode(ids)[len(removed):], exclude=special, cancel=cancel,
    )
    texts = list(dict.fromkeys([*lines, *(line_of(b) for b in branches)]))
    ids = [tokenizer.encode(removed + t) for t in texts]
    infill = causal_sequence_scores(model, infill_context, ids, [], cancel=cancel)
    plain = causal_sequence_scores(model, plain_prompt, ids, tail, cancel=cancel)
    cands = [Candidate(t, tuple(i), a, b) for t, i, a, b in zip(texts, ids, infill, plain, strict=True)]
    return sorted(cands, key=lambda c: -c.score)
