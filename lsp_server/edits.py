"""Minimal insert/delete edits between two texts, as string-offset spans.

`minimal_edits(old, new)` diffs line by line (difflib), then refines each changed run of
lines character by character, so a repair that fixes one token becomes one small edit
rather than a rewrite of the block. Offsets index `old`; applying the edits in reverse
order (or with `apply_edits`) yields `new`. No LSP types here: the server converts the
offsets to positions of the negotiated encoding.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# Character-level refinement only for changed runs up to this size (difflib is quadratic).
_MAX_REFINE_CHARS = 4000


@dataclass(frozen=True)
class Edit:
    start: int  # offset in the old text
    end: int  # exclusive; start == end is an insertion
    new_text: str  # "" is a deletion

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "new_text": self.new_text}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _units(text: str) -> list[str]:
    """Characters, with "\r\n" kept as one unit so that no edit splits a line break."""
    return _CHAR_UNITS.findall(text)


_CHAR_UNITS = re.compile(r"\r\n|.", re.DOTALL)


def _char_edits(old: str, new: str, base: int) -> list[Edit]:
    if len(old) + len(new) > _MAX_REFINE_CHARS:
        return [Edit(base, base + len(old), new)]
    a, b = _units(old), _units(new)
    a_off = [0]
    for u in a:
        a_off.append(a_off[-1] + len(u))
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    out = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            out.append(Edit(base + a_off[i1], base + a_off[i2], "".join(b[j1:j2])))
    return out


def _merge(edits: list[Edit], old: str) -> list[Edit]:
    """Merge edits that touch or are separated by fewer than 2 unchanged characters."""
    merged: list[Edit] = []
    for e in edits:
        if merged and e.start - merged[-1].end < 2:
            m = merged[-1]
            merged[-1] = Edit(m.start, e.end, m.new_text + old[m.end : e.start] + e.new_text)
        else:
            merged.append(e)
    return merged


def minimal_edits(old: str, new: str) -> list[Edit]:
    """Sorted, non-overlapping edits turning `old` into `new` (empty if equal)."""
    if old == new:
        return []
    a, b = _lines(old), _lines(new)
    a_off = [0]
    for line in a:
        a_off.append(a_off[-1] + len(line))
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    edits: list[Edit] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        old_run, new_run = "".join(a[i1:i2]), "".join(b[j1:j2])
        if tag == "replace":
            edits.extend(_char_edits(old_run, new_run, a_off[i1]))
        else:
            edits.append(Edit(a_off[i1], a_off[i2], new_run))
    return _merge(edits, old)


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply sorted, non-overlapping edits given in offsets of `text`."""
    parts, pos = [], 0
    for e in sorted(edits, key=lambda e: (e.start, e.end)):
        if e.start < pos:
            raise ValueError(f"overlapping edits at offset {e.start}")
        parts.append(text[pos : e.start])
        parts.append(e.new_text)
        pos = e.end
    parts.append(text[pos:])
    return "".join(parts)


def shift(edits: list[Edit], base: int) -> list[Edit]:
    """The same edits with offsets moved by `base` (block offsets -> document offsets)."""
    return [Edit(e.start + base, e.end + base, e.new_text) for e in edits]
