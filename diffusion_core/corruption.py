"""Corruption processes: pure functions of (tokens, rate, generator).

1. `mask_corrupt`: every token is replaced by <mask> with probability t (stage 1).
2. `edit_corrupt`: Seed Diffusion's edit-based corruption (stage 2): k = floor(len * a)
   random deletions, insertions and substitutions on a fixed-length canvas, so that the
   model learns to re-check every token, not only masked ones.
3. `syntax_edits`: realistic single edits that break code (issue 20): a missing or extra
   colon, paren, bracket, brace or comma, a dropped quote, a misspelt keyword, a bad
   dedent; stage 2 trains on some of them besides the random token edits, and `eval`
   measures repairs with the same kinds.
4. `format_infill`: prefix/suffix/middle layout with the middle padded by <eoi>, so the
   model learns the length of the hole instead of being told it.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch

SYNTAX_KEYWORDS = ("return", "def", "for", "while", "import", "else", "elif", "class", "if",
                   "in", "not", "lambda", "yield", "with", "try", "except", "pass", "raise")
_KEYWORD = re.compile(r"\b(?:" + "|".join(SYNTAX_KEYWORDS) + r")\b")


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


def syntax_edits(text: str, rng: random.Random) -> list[str]:
    """Every candidate single edit of `text` of the kinds in the module docstring (most
    break Python; the caller checks when it matters), in random order."""
    out = []
    for i, c in enumerate(text):
        if c in ":)]},'\"":
            out.append(text[:i] + text[i + 1 :])  # missing
        if c in ":)],":
            out.append(text[:i] + c + text[i:])  # doubled
    for m in _KEYWORD.finditer(text):
        w = m.group(0)
        if len(w) < 3:  # "fi", "ni": too short to read as a misspelling
            continue
        k = rng.randrange(len(w) - 1)
        bad = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
        if bad != w:
            out.append(text[: m.start()] + bad + text[m.end() :])  # misspelt keyword
    for m in re.finditer(r"^( {2,})\S", text, re.M):
        if m.start() > 0:  # not the first line: its indentation is the context's
            out.append(text[: m.start()] + text[m.start() + 1 :])  # bad dedent (one space)
    rng.shuffle(out)
    return out
