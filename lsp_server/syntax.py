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
    """A parseable stand-in for a broken block, at the indentation of its first code line,
    that can also take an indented continuation: a broken block is often a header whose
    body the block finder put in the next block (`def f()` without its colon, then the
    body), and a bare `pass` made that body an "unexpected indent" error of its own."""
    lines = [s for s in block_text.splitlines() if s.strip()]
    first = _INDENT.match(lines[0]).group(0) if lines else ""
    last = _INDENT.match(lines[-1]).group(0) if lines else ""
    inner = last if len(last) > len(first) else first + "    "
    return f"{first}if True:\n{inner}pass\n"


@dataclass
class BlockSplice:
    """`text` cut at `spans` (offsets [start, end) of blocks); `broken` are the indices of
    the blocks that hold a syntax error."""

    text: str
    spans: list[tuple[int, int]]
    broken: set[int]

    def assemble(self, i: int, own: str) -> str:
        """The file with `own` for block i and stubs for the other broken blocks (i = -1:
        every broken block stubbed)."""
        parts, pos = [], 0
        for j in sorted(self.broken | ({i} if i >= 0 else set())):
            s, e = self.spans[j]
            parts.append(self.text[pos:s])
            parts.append(own if j == i else stub(self.text[s:e]))
            pos = e
        parts.append(self.text[pos:])
        return "".join(parts)

    def original_offset(self, x: int) -> int | None:
        """The offset in `text` of offset x of `assemble(-1, "")`; None inside a stub."""
        shift = 0  # assembled offset minus original offset, so far
        for j in sorted(self.broken):
            s, e = self.spans[j]
            if x < s + shift:
                return x - shift
            n = len(stub(self.text[s:e]))
            if x < s + shift + n:
                return None
            shift += n - (e - s)
        return x - shift

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
    """Every syntax error of a Python text, one per broken block, in CPython's order: the
    block holding CPython's first error is broken; with it stubbed, CPython's next error
    (if any) blames the next block; and so on (the first `limit` broken blocks only: each
    costs a parse of the file). A text that does not parse always gets at least one.

    Only CPython blames blocks. Tree-sitter's ERROR/MISSING nodes (which the repair uses
    to focus inside a block) are not used here: after one missing colon its recovery can
    flag blocks hundreds of lines further down, and stubbing those made the real fix fail
    to parse (argparse.py with one colon dropped: 11 findings, none with a fix)."""
    whole = python_error(text)
    if whole is None:
        return BlockSplice(text, spans, set()), []
    broken: set[int] = set()
    splice = BlockSplice(text, spans, broken)
    p, assembled = whole, text  # the file with every broken block so far stubbed
    while p is not None and (limit is None or len(broken) < limit):
        at = splice.original_offset(offset_at(assembled, p.line, p.column))
        if at is None:
            break  # the error is in a stub: the blocks around it do not stand alone
        line = text.count("\n", 0, at)
        hit = [i for i, b in enumerate(blocks) if b.contains(line) and i not in broken]
        if not hit:
            break
        broken.add(hit[0])
        assembled = splice.assemble(-1, "")
        p = python_error(assembled)
    out = []
    for i in sorted(broken):
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
