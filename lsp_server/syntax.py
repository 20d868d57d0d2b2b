"""Python syntax checks shared by `check`, the server's diagnostics and the verified repair.

- `python_error(text)`: CPython's first syntax error as a `SyntaxProblem` (0-based line,
  code-point columns), or None when the text parses.
- `BlockSplice`: a file cut into blocks, with the broken ones known; `validator(i)` says
  whether a candidate for block i makes the file parse (the other broken blocks replaced
  by `pass` stubs at their indentation), so one block's repair is judged on its own.

No LSP types and no model here.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SyntaxProblem:
    line: int  # 0-based
    column: int  # 0-based, code points
    end_line: int
    end_column: int  # exclusive; == column for a point
    message: str
    kind: str = "SyntaxError"  # SyntaxError, IndentationError, TabError, ValueError


def _parse(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes etc.
        ast.parse(text)


def python_parses(text: str) -> bool:
    try:
        _parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def python_error(text: str) -> SyntaxProblem | None:
    """CPython's first syntax error (None when `text` parses). Columns count code points:
    CPython's offsets for str input are 1-based characters; a bad end becomes a point."""
    try:
        _parse(text)
    except SyntaxError as e:
        n_lines = max(1, text.count("\n") + 1)
        line = min(max(0, (e.lineno or 1) - 1), n_lines - 1)
        col = max(0, (e.offset or 1) - 1)
        end_line = (e.end_lineno or 0) - 1
        end_col = (e.end_offset or 0) - 1
        if end_line < line or (end_line == line and end_col <= col) or end_col < 0:
            end_line, end_col = line, col
        line_len = _line_length(text, line)
        col = min(col, line_len)
        if end_line == line:
            end_col = min(end_col, line_len)
        return SyntaxProblem(line, col, end_line, end_col, e.msg or "invalid syntax", type(e).__name__)
    except (ValueError, MemoryError, RecursionError) as e:  # NUL bytes, too deep nesting
        return SyntaxProblem(0, 0, 0, 0, str(e) or type(e).__name__, type(e).__name__)
    return None


def _line_length(text: str, line: int) -> int:
    start = 0
    for _ in range(line):
        nl = text.find("\n", start)
        if nl < 0:
            return 0
        start = nl + 1
    end = text.find("\n", start)
    seg = text[start : len(text) if end < 0 else end]
    return len(seg.rstrip("\r"))


def offset_at(text: str, line: int, column: int) -> int:
    """Offset of a 0-based (line, code-point column) in `text` (clamped to the text)."""
    start = 0
    for _ in range(line):
        nl = text.find("\n", start)
        if nl < 0:
            return len(text)
        start = nl + 1
    return min(start + column, len(text))


_INDENT = re.compile(r"[ \t]*")


def stub(block_text: str) -> str:
    """A parseable stand-in for a broken block, at the indentation of its first code line."""
    first = next((s for s in block_text.splitlines() if s.strip()), "")
    return _INDENT.match(first).group(0) + "pass\n"


@dataclass
class BlockSplice:
    """`text` cut at `spans` (offsets [start, end) of blocks); `broken` are the indices of
    the blocks that hold a syntax error."""

    text: str
    spans: list[tuple[int, int]]
    broken: set[int]

    def assemble(self, i: int, own: str) -> str:
        """The file with `own` for block i and stubs for the other broken blocks."""
        parts, pos = [], 0
        for j in sorted(self.broken | {i}):
            s, e = self.spans[j]
            parts.append(self.text[pos:s])
            parts.append(own if j == i else stub(self.text[s:e]))
            pos = e
        parts.append(self.text[pos:])
        return "".join(parts)

    def offset_of(self, i: int) -> int:
        """Where block i starts in `assemble(i, ...)` (stubs above it change lengths)."""
        s = self.spans[i][0]
        shift = 0
        for j in self.broken:
            if j == i or self.spans[j][0] >= s:
                continue
            a, b = self.spans[j]
            shift += len(stub(self.text[a:b])) - (b - a)
        return s + shift

    def own_error(self, i: int) -> tuple[int, int, SyntaxProblem] | None:
        """The syntax error of the file with block i as it is and the other broken blocks
        stubbed: (start, end) offsets in `text`, kept inside block i, and the problem;
        None when that file parses (block i is not what breaks it)."""
        s, e = self.spans[i]
        assembled = self.assemble(i, self.text[s:e])
        p = python_error(assembled)
        if p is None:
            return None
        base = self.offset_of(i)
        a = offset_at(assembled, p.line, p.column) - base + s
        b = offset_at(assembled, p.end_line, p.end_column) - base + s
        last = s + len(self.text[s:e].rstrip("\r\n"))
        a = min(max(a, s), last)
        b = min(max(b, a), last)
        return a, b, p

    def validator(self, i: int) -> Callable[[str], bool]:
        """Whether a candidate for block i makes the file parse."""
        return lambda candidate: python_parses(self.assemble(i, candidate))


@dataclass(frozen=True)
class Located:
    """A syntax error blamed on one block (`block` is an index into the spans, -1 when no
    block can be blamed: the error is then where CPython stops, for the whole file)."""

    block: int
    start: int  # offsets in the text
    end: int
    problem: SyntaxProblem


def locate(
    text: str, blocks, spans: list[tuple[int, int]], limit: int | None = None
) -> tuple[BlockSplice, list[Located]]:
    """Every syntax error of a Python text, one per broken block: the blocks holding
    CPython's error line or a tree-sitter ERROR/MISSING node that still fail with the other
    broken blocks stubbed out (the first `limit` broken blocks only: each costs a parse).
    A text that does not parse always gets at least one."""
    from lsp_server.blocks import PYTHON, syntax_errors

    whole = python_error(text)
    if whole is None:
        return BlockSplice(text, spans, set()), []
    bad_lines = {whole.line}
    for a, b in syntax_errors(text, PYTHON):
        bad_lines.update(range(a, b + 1))
    broken = {i for i, b in enumerate(blocks) if any(b.contains(ln) for ln in bad_lines)}
    if not broken:  # CPython and tree-sitter disagree on where: take every flagged block
        broken = {i for i, b in enumerate(blocks) if b.has_error}
    splice = BlockSplice(text, spans, broken)
    out = []
    for i in sorted(broken)[:limit]:
        s, e = spans[i]
        if not text[s:e].strip():
            continue
        own = splice.own_error(i)
        if own is not None:
            out.append(Located(i, own[0], own[1], own[2]))
    if not out:
        a = offset_at(text, whole.line, whole.column)
        b = max(a, offset_at(text, whole.end_line, whole.end_column))
        out.append(Located(-1, a, b, whole))
    return splice, out
