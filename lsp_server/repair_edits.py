"""Text-level edits of a broken block for the parser-verified repair (`syntax_repair`).

Edits that do not come from a token slot: a word respelt as a word of the tokenizer's
vocabulary one edit away (`near_words`: a misspelt keyword), one-character edits inside
tokens (`char_edits`: `))` is one token, so no token edit deletes one of its parens), and
the measures the repair ranks and filters by (`edit_size`, `comments_out`).
No model and no LSP types here: the model supplies the characters and ranks the results.
"""

from __future__ import annotations

import functools
import re

from lsp_server.check.names import edit_distance
from lsp_server.edits import minimal_edits

CONTEXT_LINES = 1  # lines above and below the error's lines that are edited too
NEAR_WORDS = 6  # words nearest the error that may be respelt as a near word of the vocabulary
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def edit_size(old: str, new: str, edits=None) -> int:
    """Characters deleted or inserted (`edits`: `minimal_edits(old, new)` when known)."""
    edits = minimal_edits(old, new) if edits is None else edits
    return sum(max(e.end - e.start, len(e.new_text)) for e in edits)


def comments_out(old: str, new: str, edits=None) -> bool:
    """Whether turning `old` into `new` writes a new '#': such a "repair" parses by hiding
    code in a comment, so it is never offered (a product rule, like parsing)."""
    edits = minimal_edits(old, new) if edits is None else edits
    return any(e.new_text.count("#") > old[e.start : e.end].count("#") for e in edits)


def line_range(text: str, a: int, b: int, extra: int) -> tuple[int, int]:
    """[a, b) widened to whole lines, plus `extra` lines above and below."""
    lo = text.rfind("\n", 0, a)
    for _ in range(extra):
        if lo <= 0:
            break
        lo = text.rfind("\n", 0, lo)
    lo = lo + 1
    hi = text.find("\n", b)
    for _ in range(extra):
        if hi < 0:
            break
        hi = text.find("\n", hi + 1)
    return lo, len(text) if hi < 0 else hi + 1


def _deletions(w: str) -> set[str]:
    return {w[:i] + w[i + 1 :] for i in range(len(w))}


@functools.cache
def _vocabulary_index(tokenizer) -> dict[str, frozenset[str]]:
    """The whole words among the tokenizer's pieces (leading space dropped), indexed by
    themselves and by each of their one-letter deletions (symmetric delete: two words one
    edit apart share a key, adjacent transpositions included)."""
    index: dict[str, set[str]] = {}
    for piece in getattr(tokenizer, "pieces", ()):
        w = piece.strip()
        if len(w) >= 2 and WORD.fullmatch(w):
            for key in _deletions(w) | {w}:
                index.setdefault(key, set()).add(w)
    return {k: frozenset(v) for k, v in index.items()}


def near_words(tokenizer, text: str, focus: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """(text, "respell") for each word in the lines around `focus` (nearest the error first,
    at most NEAR_WORDS) replaced by a word of the tokenizer's vocabulary one edit away
    (adjacent transpositions count one): a misspelt keyword is one edit from a piece the
    model reads as one token. The model ranks them with the other candidates."""
    index = _vocabulary_index(tokenizer)
    if not index:
        return []
    ranges = [line_range(text, a, b, CONTEXT_LINES) for a, b in focus] or [(0, len(text))]
    centre = focus[0][0] if focus else 0
    words = [m for m in WORD.finditer(text)
             if len(m.group()) >= 3 and any(lo <= m.start() < hi for lo, hi in ranges)]
    words.sort(key=lambda m: abs(m.start() - centre))
    out = []
    for m in words[:NEAR_WORDS]:
        w = m.group()
        near = set().union(*(index.get(k, ()) for k in _deletions(w) | {w}))
        for v in sorted(near):
            if v != w and edit_distance(w, v, 1) == 1:
                out.append((text[: m.start()] + v + text[m.end() :], "respell"))
    return out


def char_edits(text: str, focus: list[tuple[int, int]], alphabet: set[str]) -> list[tuple[str, str]]:
    """Edits inside tokens, which token edits cannot make (`))` is one token, `"abc` may
    be too): deleting one non-alphanumeric character on the lines around the error, and
    inserting one character of `alphabet` (the non-alphanumeric characters of the tokens
    the model proposed at the slots) anywhere on the error's own line."""
    out: list[tuple[str, str]] = []
    ranges = [line_range(text, a, b, CONTEXT_LINES) for a, b in focus] or [(0, len(text))]
    at: set[int] = set()
    for lo, hi in ranges:
        at.update(c for c in range(lo, hi) if not text[c].isalnum() and text[c] != "\n")
    for c in sorted(at):
        out.append((text[:c] + text[c + 1 :], "delete-char"))
    chars = sorted(ch for ch in alphabet if not ch.isalnum() and ch != "\n")
    lo, hi = line_range(text, *focus[0], 0) if focus else (0, len(text))
    for c in range(lo, hi):
        for ch in chars:
            out.append((text[:c] + ch + text[c:], "insert-char"))
    return out
