"""The edit model as a scorer: how likely it finds a canvas clean, and what it would put
in a masked slot. Used to rank repair candidates (the caller generates and verifies them).
`causal_token_scores` is the causal path's view of a whole file (the cheap pass of `check`);
`causal_next_tokens` its proposals for every slot of a block from one forward pass.

`canvas_scores`, `token_log_probs` and `slot_predictions` work on edit-mode canvases, as `sampler.repair_canvas` does: the block's tokens
padded with `<eoi>` to a fixed `canvas_len`, after a context cache that ends with
`<edit>`. The edit stage of training teaches the model to predict the clean canvas from
a corrupted one, so log p(canvas | canvas) (summed over every canvas position) measures
how much the model would leave the canvas as it is: comparable between candidates that
share `canvas_len`. Canvases go through the model in batches; the batch-1 context cache
is broadcast to each batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_core.kv_cache import KVCache
from diffusion_core.masks import causal_mask
from diffusion_core.sampler import _check, causal_after_cache

DEFAULT_BATCH = 8


def _expand(cache: KVCache, n: int) -> KVCache:
    return KVCache(
        tuple(k.expand(n, -1, -1, -1) for k in cache.keys),
        tuple(v.expand(n, -1, -1, -1) for v in cache.values),
    )


def _log_probs(model, cache: KVCache, canvases: list[list[int]], canvas_len: int, eoi_id: int,
               select: torch.Tensor | None = None):
    """(canvas ids (n, L), log-probabilities (n, L, V), or (rows, V) for the `select`ed rows)."""
    device = next(model.parameters()).device
    n = len(canvases)
    x = torch.full((n, canvas_len), eoi_id, dtype=torch.long, device=device)
    for r, c in enumerate(canvases):
        if len(c) > canvas_len:
            raise ValueError(f"canvas of {len(c)} tokens is longer than canvas_len={canvas_len}")
        x[r, : len(c)] = torch.tensor(c, dtype=torch.long, device=device)
    pos = torch.arange(cache.length, cache.length + canvas_len, device=device)[None].expand(n, -1)
    if select is not None:
        select = select.to(device)
    logits = model(x, pos, None, _expand(cache, n), select=select).logits.float()
    return x, torch.log_softmax(logits, dim=-1)


@torch.inference_mode()
def canvas_scores(
    model, cache: KVCache, canvases: list[list[int]], *, canvas_len: int, eoi_id: int,
    batch: int = DEFAULT_BATCH,
) -> list[float]:
    """For each canvas c: sum over positions of log p(c_i | c), `<eoi>` padding included."""
    out: list[float] = []
    for i in range(0, len(canvases), batch):
        x, lp = _log_probs(model, cache, canvases[i : i + batch], canvas_len, eoi_id)
        out.extend(lp.gather(-1, x[..., None])[..., 0].sum(-1).tolist())
    return out


@torch.inference_mode()
def token_log_probs(
    model, cache: KVCache, canvas: list[int], *, canvas_len: int, eoi_id: int
) -> list[float]:
    """log p(c_i | c) for each token of one canvas (padding left out): the cheap pass that
    tells which tokens the model doubts."""
    x, lp = _log_probs(model, cache, [canvas], canvas_len, eoi_id)
    return lp[0].gather(-1, x[0][:, None])[:, 0][: len(canvas)].tolist()


@torch.inference_mode()
def slot_predictions(
    model, cache: KVCache, canvases: list[list[int]], slots: list[int], *, canvas_len: int,
    eoi_id: int, k: int, batch: int = DEFAULT_BATCH, exclude: tuple[int, ...] = (),
) -> list[list[tuple[int, float]]]:
    """For each canvas (normally holding a mask token at `slots[r]`): the model's `k` most
    likely tokens at that slot with their log-probabilities, best first."""
    if len(slots) != len(canvases):
        raise ValueError("one slot per canvas")
    out: list[list[tuple[int, float]]] = []
    for i in range(0, len(canvases), batch):
        chunk = canvases[i : i + batch]
        select = torch.zeros(len(chunk), canvas_len, dtype=torch.bool)
        select[torch.arange(len(chunk)), torch.tensor(slots[i : i + batch])] = True
        _, rows = _log_probs(model, cache, chunk, canvas_len, eoi_id, select)  # (n, V)
        if exclude:
            rows[:, list(exclude)] = float("-inf")
        vals, idx = rows.topk(min(k, rows.shape[-1]), dim=-1)
        for v, t in zip(vals.tolist(), idx.tolist(), strict=True):
            out.append([(tok, lp_) for tok, lp_ in zip(t, v, strict=True) if lp_ > float("-inf")])
    return out


@dataclass(frozen=True)
class CausalScores:
    """Per token of a sequence, under the causal (next-token) path."""

    own: list[float]  # log p(ids[i] | prompt, ids[:i])
    other: list[float]  # log p of the most likely token that is not ids[i]


@torch.inference_mode()
def causal_token_scores(
    model, ids: list[int], *, prompt: list[int], window: int, stride: int,
    ranges: list[tuple[int, int]] | None = None,
) -> CausalScores:
    """One causal pass over a long sequence, in windows: the cheap whole-file pass of
    `check` (a model with a causal path reads a file in ~len/stride forwards instead of one
    context encode per block).

    Window k scores ids[k*stride : (k+1)*stride] after up to `window - stride` earlier ids
    (so every token but the first `window - stride` sees at least that much of its left
    context), each window fed as `prompt + ids[start:end]` from position 0.
    `ranges`: [i, j) index ranges of ids that are wanted (None: all); a window that scores
    none of them is skipped and its tokens get -inf for both scores (`check --changed-since`
    reads only the windows of the changed blocks).
    """
    if not model.cfg.has_causal_path:
        raise ValueError("causal scores need a model with a causal path (kind ar or joint)")
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    if not prompt:
        raise ValueError("the prompt must hold at least one token (it predicts ids[0])")
    device = next(model.parameters()).device
    own: list[float] = []
    other: list[float] = []
    left = window - stride
    for a in range(0, len(ids), stride):
        b = min(a + stride, len(ids))
        if ranges is not None and not any(i < b and a < j for i, j in ranges):
            own.extend([float("-inf")] * (b - a))
            other.extend([float("-inf")] * (b - a))
            continue
        start = max(0, a - left)
        seq = torch.tensor([*prompt, *ids[start:b]], device=device)  # (T,)
        t = seq.numel()
        first = len(prompt) + (a - start)  # the row of ids[a] in seq
        sel = torch.zeros(1, t, dtype=torch.bool, device=device)
        sel[0, first - 1 : t - 1] = True  # row r predicts seq[r + 1]
        logits = model(seq[None], torch.arange(t, device=device)[None], select=sel,
                       causal=True).logits.float()  # (b-a, V)
        # log p = logit - logsumexp, and the best other token is the max once the target's
        # logit is set to -inf in place: two passes over the (b-a, V) logits instead of a
        # log-softmax, its scattered copy and a max (those were about a fifth of the scan)
        target = seq[first:]  # (b-a,)
        lse = torch.logsumexp(logits, dim=-1)  # (b-a,)
        mine = logits.gather(-1, target[:, None])[:, 0] - lse
        logits.scatter_(-1, target[:, None], float("-inf"))
        rest = logits.amax(dim=-1) - lse  # amax: no indices, half the time of max
        own.extend(mine.tolist())
        other.extend(rest.tolist())
    return CausalScores(own, other)


@dataclass(frozen=True)
class Encoded:
    """A prompt read by the causal path: what every continuation of it starts from."""

    cache: KVCache  # (1, H_kv, S, D) per layer, S = len(prompt)
    next_log_probs: torch.Tensor  # (V,): log p(next token | prompt), float32


@torch.inference_mode()
def encode_causal(model, prompt: list[int], cache: KVCache | None = None, cancel=None) -> Encoded:
    """Encode `prompt` with the causal mask, keeping its last row's next-token log-probs.

    `cache`: the causal keys/values of prompt[:cache.length] (an infill's context cache,
    `Engine.infill`'s `context_cache`), so only the rest is encoded; the caller vouches
    that it holds those tokens. A cache of the whole prompt is cut back by one token: the
    last row is needed for its logits."""
    if not model.cfg.has_causal_path:
        raise ValueError("causal scores need a model with a causal path (kind ar or joint)")
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    device = next(model.parameters()).device
    _check(cancel)
    cache = cache if cache is not None and cache.length > 0 else model.empty_cache()
    if cache.length > len(prompt):
        raise ValueError(f"a cache of {cache.length} tokens for a prompt of {len(prompt)}")
    cache = cache.truncate(min(cache.length, len(prompt) - 1))
    m = cache.length
    x = torch.tensor([prompt[m:]], device=device)  # (1, T)
    t = x.shape[1]
    last = torch.zeros(1, t, dtype=torch.bool, device=device)
    last[0, -1] = True  # the prompt's last row predicts what follows it
    o = model(x, torch.arange(m, m + t, device=device)[None], causal_after_cache(t, m, device)[None],
              cache, select=last)
    return Encoded(cache.extend(o.kv), torch.log_softmax(o.logits.float(), dim=-1)[0])


@torch.inference_mode()
def causal_sequence_scores(
    model, prompt: list[int], variants: list[list[int]], tail: list[int],
    batch: int = DEFAULT_BATCH, cancel=None, encoded: Encoded | None = None,
) -> list[float]:
    """For each variant v: log p(v + tail | prompt) under the causal path (the tail, the
    text after the variable part, lets right context vote: comparable within one call).
    The prompt is encoded once (causal mask) into a cache that every variant reads, or
    `encoded` is that encoding already (`encode_causal(model, prompt)`); variants go
    through `batch` at a time, packed into one row (below).
    `cancel`: checked before every forward pass (raises `sampler.Cancelled`)."""
    if not model.cfg.has_causal_path:
        raise ValueError("causal scores need a model with a causal path (kind ar or joint)")
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    if encoded is not None and encoded.cache.length != len(prompt):
        raise ValueError(f"an encoding of {encoded.cache.length} tokens for a prompt of {len(prompt)}")
    device = next(model.parameters()).device
    enc = encoded or encode_causal(model, prompt, cancel=cancel)
    first, cache, n_p = enc.next_log_probs, enc.cache, len(prompt)  # (V,), S = n_p cached
    out: list[float] = []
    for i in range(0, len(variants), batch):
        _check(cancel)
        seqs = [[*v, *tail] for v in variants[i : i + batch]]
        # Packed into one batch-1 row after the prompt's cache, each sequence seeing the
        # prompt and, causally, itself (block-diagonal mask): the prompt's keys are read
        # in place, not copied once per variant, and there is no padding.
        total = sum(len(q) for q in seqs)
        if total == 0:
            out.extend(0.0 for _ in seqs)
            continue
        x = torch.tensor([[t for q in seqs for t in q]], device=device)  # (1, N)
        pos = torch.cat([torch.arange(n_p, n_p + len(q), device=device) for q in seqs])[None]  # (1, N)
        mask = torch.zeros(total, n_p + total, dtype=torch.bool, device=device)  # (N, S+N)
        mask[:, :n_p] = True
        rows = torch.zeros(1, total, dtype=torch.bool, device=device)  # rows that predict a token
        a = 0
        for q in seqs:
            b = a + len(q)
            mask[a:b, n_p + a : n_p + b] = causal_mask(len(q), device)
            rows[0, a : b - 1] = True
            a = b
        lp = torch.log_softmax(model(x, pos, mask[None], cache, select=rows).logits.float(), -1)  # (R, V)
        targets = x[0][torch.roll(rows[0], 1)]  # (R,): each selected row's next token
        own = lp.gather(-1, targets[:, None])[:, 0].tolist()  # (R,)
        j = 0
        for q in seqs:
            if not q:
                out.append(0.0)
                continue
            out.append(float(first[q[0]]) + sum(own[j : j + len(q) - 1]))
            j += len(q) - 1
    return out


@torch.inference_mode()
def causal_next_tokens(
    model, prompt: list[int], ids: list[int], slots: list[int], *, k: int,
    exclude: tuple[int, ...] = (),
) -> list[list[tuple[int, float]]]:
    """For each slot j (0 <= j <= len(ids)): the `k` tokens the causal path finds most likely
    right after prompt + ids[:j], with their log-probabilities, best first. One forward pass
    over prompt + ids serves every slot (row len(prompt) + j - 1 predicts position j), so
    proposing the token for an insertion or a replacement anywhere in a block costs one
    forward, where a masked slot costs one canvas each (`slot_predictions`)."""
    if not model.cfg.has_causal_path:
        raise ValueError("causal predictions need a model with a causal path (kind ar or joint)")
    if not prompt:
        raise ValueError("the prompt must hold at least one token (it predicts ids[0])")
    if any(not 0 <= j <= len(ids) for j in slots):
        raise ValueError(f"slots must lie in [0, {len(ids)}]")
    if not slots:
        return []
    device = next(model.parameters()).device
    seq = torch.tensor([*prompt, *ids], device=device)  # (T,)
    t = seq.numel()
    rows = torch.tensor([len(prompt) + j - 1 for j in slots], device=device)  # (N,)
    sel = torch.zeros(1, t, dtype=torch.bool, device=device)
    sel[0, rows] = True
    logits = model(seq[None], torch.arange(t, device=device)[None], select=sel,
                   causal=True).logits.float()  # (R, V), R distinct rows in order
    lp = torch.log_softmax(logits, dim=-1)
    if exclude:
        lp[:, list(exclude)] = float("-inf")
    order = {r: i for i, r in enumerate(sorted(set(rows.tolist())))}
    vals, idx = lp.topk(min(k, lp.shape[-1]), dim=-1)  # (R, k)
    out = []
    for r in rows.tolist():
        v, tk = vals[order[r]].tolist(), idx[order[r]].tolist()
        out.append([(a, b) for a, b in zip(tk, v, strict=True) if b > float("-inf")])
    return out
