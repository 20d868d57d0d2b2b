"""Corruption processes: pure functions of (tokens, rate, generator).

1. `mask_corrupt`: every token is replaced by <mask> with probability t (stage 1).
2. `edit_corrupt`: Seed Diffusion's edit-based corruption (stage 2): k = floor(len * a)
   random deletions, insertions and substitutions on a fixed-length canvas, so that the
   model learns to re-check every token, not only masked ones.
3. `format_infill`: prefix/suffix/middle layout with the middle padded by <eoi>, so the
   model learns the length of the hole instead of being told it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def mask_corrupt(
    tokens: torch.Tensor, t: float, mask_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (N,) -> (corrupted (N,), masked (N,) bool); each position masked w.p. t."""
    masked = torch.rand(tokens.shape, generator=generator) < t
    return torch.where(masked, torch.full_like(tokens, mask_id), tokens), masked


@dataclass(frozen=True)
class EditResult:
    canvas: torch.Tensor  # (L,) corrupted tokens padded with <eoi>
    target: torch.Tensor  # (L,) clean tokens padded with <eoi>
    n_insert: int
    n_delete: int
    n_substitute: int


def edit_corrupt(
    tokens: torch.Tensor,
    a: float,
    canvas_len: int,
    filler_id: int,
    vocab: torch.Tensor,
    generator: torch.Generator,
) -> EditResult:
    """Apply k = floor(len * a) random edits to `tokens` (N,), on a canvas of `canvas_len`.

    Each edit is a deletion, an insertion or a substitution with equal odds; inserted and
    substituted tokens are drawn from `vocab` (ids of ordinary tokens). Insertions never
    overflow the canvas: once it is full, further insertions become substitutions.
    """
    n = int(tokens.numel())
    if canvas_len < n:
        raise ValueError(f"canvas of {canvas_len} cannot hold {n} tokens")
    k = math.floor(n * a)
    seq = tokens.tolist()
    counts = {"insert": 0, "delete": 0, "substitute": 0}
    kinds = ("delete", "insert", "substitute")
    for _ in range(k):
        kind = kinds[int(torch.randint(3, (1,), generator=generator))]
        if kind == "insert" and len(seq) >= canvas_len:
            kind = "substitute"
        if kind in ("delete", "substitute") and not seq:
            kind = "insert"
        new_tok = int(vocab[int(torch.randint(vocab.numel(), (1,), generator=generator))])
        if kind == "insert":
            pos = int(torch.randint(len(seq) + 1, (1,), generator=generator))
            seq.insert(pos, new_tok)
        else:
            pos = int(torch.randint(len(seq), (1,), generator=generator))
            if kind == "delete":
                del seq[pos]
            else:
                seq[pos] = new_tok
        counts[kind] += 1
    canvas = torch.full((canvas_len,), filler_id, dtype=tokens.dtype)
    canvas[: len(seq)] = torch.tensor(seq, dtype=tokens.dtype)
    target = torch.full((canvas_len,), filler_id, dtype=tokens.dtype)
    target[:n] = tokens
    return EditResult(canvas, target, counts["insert"], counts["delete"], counts["substitute"])


def padded_middle_length(n_middle: int, block_size: int) -> int:
    """Length of a middle of n tokens plus at least one <eoi>, rounded up to whole blocks."""
    return max(1, math.ceil((n_middle + 1) / block_size)) * block_size


def format_infill(
    prefix: list[int], suffix: list[int], middle: list[int], block_size: int, special
) -> tuple[list[int], list[int]]:
    """Return (context, padded middle) token lists.

    context = <suf> suffix <pre> prefix <mid>   (suffix first: typing at the cursor only
    changes the end of the context, so the cached blocks before it stay valid)
    middle  = middle <eoi> ... <eoi>             (padded to whole blocks)
    """
    context = [special.suf, *suffix, special.pre, *prefix, special.mid]
    m = padded_middle_length(len(middle), block_size)
    return context, [*middle, *([special.eoi] * (m - len(middle)))]
