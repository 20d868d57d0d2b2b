"""The one repair job: "repair this block" for the server, the `repair` CLI and `check`.

`repair_block(model, text, start, end, ...)` turns a block [start, end) of a text into the
model's proposal for it:

- a block that fits the model's repair limit goes to `model.repair` whole; for Python, a
  proposal that stops the block parsing is dropped (the block is kept, confidence 0);
- a block that holds a syntax error (`Broken`: the splice that blames it and the error's
  offsets) goes to the parser-verified repair (`model.repair_syntax`, see
  `lsp_server.syntax_repair`) with the error and tree-sitter's ERROR/MISSING nodes as the
  focus; when the whole block is too long, whole lines around the error are sent
  (`repair_window`); nothing that does not parse is ever returned;
- the proposal keeps the block's own final line ending (`keep_line_ending`): the model's
  canvas may drop or add it, and a `\\r\\n` must stay `\\r\\n`.

`model` is a `RepairModel`: the engine behind `lsp_server.service.Service`, or any other
implementation (tests plant known proposals). No LSP types and no engine here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lsp_server.blocks import PYTHON, syntax_errors
from lsp_server.syntax import BlockSplice, offset_at, python_error, python_parses

ErrorAt = Callable[[str], "int | None"]
WINDOW_LINES = (6, 3, 1)  # lines either side of the error when its block is too long


@dataclass(frozen=True)
class Proposal:
    text: str  # the block as the model would write it
    confidence: float  # in [0, 1]
    steps: int = 0  # denoising steps it took (0 when unknown)


class RepairModel(Protocol):
    """`fits` and `repair` are required. Optional, used when present:

    - `repair_syntax(prefix, block, suffix, error_at, focus) -> Proposal | None`: a repair
      of a block that does not parse, searched among candidates the parser accepts; without
      it `repair` is asked and its proposal kept only if it parses.
    - `suspects(text, spans, level) -> list[bool]`: a cheap pass over a whole text
      (`check` sends only the [start, end) spans it flags to the repair; `level` is
      `check --scan-level`).
    - `rank(prefix, block, suffix, variants) -> list[float]`: log-likelihoods of variants
      of a block, comparable within one call (`check`'s rule DL003 chooses between a name
      as written and the near names in scope with it).
    """

    def fits(self, block: str) -> bool:
        """Whether `block` is short enough for one repair job."""
        ...

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal: ...


@dataclass(frozen=True)
class Broken:
    """Block `index` of `splice` holds a syntax error at offsets [start, end) of the text."""

    splice: BlockSplice
    index: int
    start: int
    end: int


@dataclass(frozen=True)
class BlockRepair:
    text: str  # the whole block [start, end) as proposed (the old block when nothing changes)
    confidence: float
    steps: int
    verified: bool  # the parser-verified path ran


def keep_line_ending(old: str, new: str) -> str:
    """`new` ending with the final line break of `old` (none if `old` has none)."""
    ending = old[len(old.rstrip("\r\n")) :]
    return new.rstrip("\r\n") + ending if ending else new


def breaks_syntax(old: str, new: str) -> bool:
    """A Python block that parses on its own (dedented) and no longer does with `new`."""
    return python_parses(textwrap.dedent(old)) and not python_parses(textwrap.dedent(new))


def repair_window(fits: Callable[[str], bool], text: str, s: int, e: int, err: int):
    """The part [a, b) of block [s, e) that goes to the model: the whole block if it fits,
    else whole lines around the error at `err` (tree-sitter's recovery can make one huge
    ERROR node of everything after a missing colon); (None, None) when nothing fits."""
    if fits(text[s:e]):
        return s, e
    for n in WINDOW_LINES:
        a, pos = s, err
        for _ in range(n + 1):
            a = text.rfind("\n", s, pos)
            if a < 0:
                a = s
                break
            pos = a
            a += 1
        b = err
        for _ in range(n + 1):
            nl = text.find("\n", b, e)
            if nl < 0:
                b = e
                break
            b = nl + 1
        a = max(a, s)
        if fits(text[a:b]):
            return a, b
    return None, None


def repair_block(
    model: RepairModel, text: str, start: int, end: int, *, language: str | None = None,
    broken: Broken | None = None,
) -> BlockRepair | None:
    """The proposal for block [start, end) of `text`; None when the block (or, for a broken
    one, every window around its error) is too long for the model."""
    block = text[start:end]
    if broken is not None:
        return _repair_broken(model, text, broken)
    if not model.fits(block):
        return None
    prop = model.repair(text[:start], block, text[end:])
    new, conf = keep_line_ending(block, prop.text), float(prop.confidence)
    if language == PYTHON and new != block and breaks_syntax(block, new):
        new, conf = block, 0.0  # never offer an edit that stops it parsing
    return BlockRepair(new, conf, prop.steps, False)


def _focus(text: str, a: int, part: str, err_a: int, err_b: int) -> list[tuple[int, int]]:
    """Character ranges of `part` (at `a`) to edit: CPython's error first, then tree-sitter's
    ERROR / MISSING nodes on its lines."""
    focus = [(err_a, err_b)]
    first = text.count("\n", 0, a)  # the part's first line
    last = first + part.count("\n")
    for lo, hi in syntax_errors(text, PYTHON):
        if hi >= first and lo <= last:
            fa = offset_at(part, max(0, lo - first), 0)
            focus.append((fa, offset_at(part, min(hi, last) - first + 1, 0)))
    return focus


def _repair_broken(model: RepairModel, text: str, broken: Broken) -> BlockRepair | None:
    splice, i = broken.splice, broken.index
    s, e = splice.spans[i]
    block = text[s:e]
    a, b = repair_window(model.fits, text, s, e, broken.start)
    if a is None:
        return None
    part, head, tail = text[a:b], text[s:a], text[b:e]
    base = splice.offset_of(i) + (a - s)

    def error_at(candidate: str) -> int | None:
        assembled = splice.assemble(i, head + candidate + tail)
        p = python_error(assembled)
        return None if p is None else offset_at(assembled, p.line, p.column) - base

    focus = _focus(text, a, part, broken.start - a, broken.end - a)
    verified = getattr(model, "repair_syntax", None)
    if verified is not None:
        prop = verified(text[:a], part, text[b:], error_at, focus)
    else:
        prop = model.repair(text[:a], part, text[b:])
    if prop is None:
        return BlockRepair(block, 0.0, 0, True)
    new = head + keep_line_ending(part, prop.text) + tail
    if new == block or not splice.validator(i)(new):  # never offer a repair that does not parse
        return BlockRepair(block, 0.0, prop.steps, True)
    return BlockRepair(new, float(prop.confidence), prop.steps, True)
