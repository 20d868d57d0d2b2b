"""LSP positions <-> Python string offsets, for the UTF-8, UTF-16 and UTF-32 encodings.

An LSP position is (line, character) where `character` counts *code units* of the
negotiated position encoding (UTF-16 by default) within the line. Python strings index
code points, so an emoji is one index but two UTF-16 units and four UTF-8 units.

Rules (LSP 3.17):
- lines end at "\\n", "\\r\\n" or "\\r"; the terminator is not part of the line;
- a character past the end of a line means the end of the line (before its terminator);
- a line past the last line means the end of the document;
- a character that falls inside a code point (half of a surrogate pair) rounds down to
  the start of that code point.

Pure functions on plain ints and strings; no LSP types, so the module can be fuzzed.
"""

from __future__ import annotations

import re
from bisect import bisect_right

UTF8 = "utf-8"
UTF16 = "utf-16"
UTF32 = "utf-32"
ENCODINGS = (UTF8, UTF16, UTF32)


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown position encoding {encoding!r}; expected one of {ENCODINGS}")


def code_units(ch: str, encoding: str = UTF16) -> int:
    """Code units of one code point in `encoding` (lone surrogates count as in UTF-16)."""
    o = ord(ch)
    if encoding == UTF16:
        return 2 if o > 0xFFFF else 1
    if encoding == UTF32:
        return 1
    if o < 0x80:
        return 1
    if o < 0x800:
        return 2
    if o < 0x10000:
        return 3
    return 4


def column_to_index(line: str, column: int, encoding: str = UTF16) -> int:
    """Index into `line` (no terminator) of an LSP character offset; clamped, rounded down."""
    _check_encoding(encoding)
    if column <= 0:
        return 0
    if encoding == UTF32 or line.isascii():
        return min(column, len(line))
    units = 0
    for i, ch in enumerate(line):
        units += code_units(ch, encoding)
        if units > column:
            return i  # column falls inside (or at the start of) this code point
        if units == column:
            return i + 1
    return len(line)


def index_to_column(line: str, index: int, encoding: str = UTF16) -> int:
    """LSP character offset of `line[:index]` in `encoding`."""
    _check_encoding(encoding)
    index = max(0, min(index, len(line)))
    if encoding == UTF32 or line.isascii():
        return index
    return sum(code_units(ch, encoding) for ch in line[:index])


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins; "\\r\\n", "\\r" and "\\n" all end a line."""
    return [0, *(m.end() for m in _LINE_BREAK.finditer(text))]


class LineIndex:
    """Line table of one text: converts positions to offsets and back."""

    def __init__(self, text: str, starts: list[int] | None = None) -> None:
        self.text = text
        self.starts = line_starts(text) if starts is None else starts  # `replaced` passes its own

    @property
    def line_count(self) -> int:
        return len(self.starts)

    def line_bounds(self, line: int) -> tuple[int, int]:
        """[start, end) of a line's content, terminator excluded."""
        start = self.starts[line]
        end = self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)
        if end > start and self.text[end - 1] == "\n":
            end -= 1
        if end > start and self.text[end - 1] == "\r":
            end -= 1
        return start, end

    def changed(self, start: tuple[int, int], end: tuple[int, int], new_text: str,
                encoding: str = UTF16) -> LineIndex:
        """The index after replacing the LSP range [start, end) by `new_text` (a reversed
        range is read in order)."""
        a, b = self.offset(*start, encoding), self.offset(*end, encoding)
        return self.replaced(min(a, b), max(a, b), new_text)

    def replaced(self, a: int, b: int, new_text: str) -> LineIndex:
        """The index of `text[:a] + new_text + text[b:]`, re-scanning only the edited lines.

        The old line starts before the edit are kept, those after it are shifted, and the
        breaks are looked for again from one line before the edit to one line after it
        (so a "\r" + "\n" pair that the edit joins or splits is seen); a keystroke in a
        5 MB file costs a shift of the later line starts, not a scan of the whole text.
        """
        text = self.text[:a] + new_text + self.text[b:]
        starts = self.starts
        first = max(0, bisect_right(starts, a) - 2)  # the line before the edited one
        last = bisect_right(starts, b) + 1  # index of the start of the line after the next
        lo = starts[first]
        delta = len(new_text) - (b - a)
        hi_old = starts[last] if last < len(starts) else len(self.text)
        hi = hi_old + delta
        mid = [m.end() for m in _LINE_BREAK.finditer(text, lo, hi)]  # absolute offsets
        return LineIndex(text, [*starts[: first + 1], *mid, *(x + delta for x in starts[last + 1 :])])

    def line_text(self, line: int) -> str:
        start, end = self.line_bounds(line)
        return self.text[start:end]

    def offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        """String offset of an LSP position (clamped to the document)."""
        if line < 0:
            return 0
        if line >= len(self.starts):
            return len(self.text)
        start, end = self.line_bounds(line)
        return start + column_to_index(self.text[start:end], character, encoding)

    def position(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        """LSP (line, character) of a string offset (clamped; inside "\\r\\n" means line end)."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        start, end = self.line_bounds(line)
        return line, index_to_column(self.text[start:end], min(offset, end) - start, encoding)


def apply_change(text: str, start: tuple[int, int], end: tuple[int, int], new_text: str,
                 encoding: str = UTF16) -> str:
    """Replace the LSP range [start, end) of `text` by `new_text` (an incremental didChange)."""
    return LineIndex(text).changed(start, end, new_text, encoding).text
