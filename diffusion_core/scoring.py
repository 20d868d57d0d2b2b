"""The edit model as a scorer: how likely it finds a canvas clean, and what it would put
in a masked slot. Used to rank repair candidates (the caller generates and verifies them).

Both work on edit-mode canvases, as `sampler.repair_canvas` does: the block's tokens
padded with `<eoi>` to a fixed `canvas_len`, after a context cache that ends with
`<edit>`. The edit stage of training teaches the model to predict the clean canvas from
a corrupted one, so log p(canvas | canvas) (summed over every canvas position) measures
how much the model would leave the canvas as it is: comparable between candidates that
share `canvas_len`. Canvases go through the model in batches; the batch-1 context cache
is broadcast to each batch.
"""

from __future__ import annotations

import torch

from diffusion_core.kv_cache import KVCache

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
