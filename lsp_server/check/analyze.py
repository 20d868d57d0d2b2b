"""One file through the model: read it safely, split it into blocks, turn proposals into
findings.

- `read_source`: bytes -> text, or a `Skipped` reason (missing, unreadable, binary, too
  large, undecodable, symlink loop). Never raises for bad input.
- `check_text`: the findings of one decoded text, given a `Repairer`.
- `check_file`: both, into a `FileResult`; internal errors are caught per file.

Rules: a block with a syntax error (tree-sitter ERROR/MISSING node or CPython's own
error line) is reported as DL001 when the file parses with the proposal in place of the
block (other broken blocks stubbed out) and did not parse before, whatever the
confidence. Any other block is reported as DL002 when the model changes it with
confidence >= threshold and, for Python, the proposal still parses.
"""

from __future__ import annotations

import ast
import codecs
import errno
import hashlib
import io
import os
import re
import textwrap
import time
import tokenize
import warnings
from dataclasses import dataclass

from lsp_server.blocks import PYTHON, Block, find_blocks, language_of, syntax_errors
from lsp_server.check.findings import (
    SUSPICIOUS_CODE,
    SYNTAX_ERROR,
    FileResult,
    Finding,
    fingerprint,
)
from lsp_server.check.fix import block_diff
from lsp_server.check.repairer import Repairer
from lsp_server.edits import apply_edits, minimal_edits, shift

DEFAULT_MAX_FILE_SIZE = 1_000_000  # bytes
BLOCK_MAX_CHARS = 1200  # first cut of the splitter; the repairer has the last word (`fits`)
_SNIFF = 8192


class Skipped(Exception):  # noqa: N818 - a reason, not a failure
    """The file cannot be checked; the message says why (shown to the user)."""


@dataclass(frozen=True)
class Source:
    text: str
    encoding: str  # codec to write the text back with (BOM kept via utf-8-sig)
    digest: str  # sha256 of the bytes read


def read_bytes(path: str, max_size: int) -> bytes:
    try:
        st = os.stat(path)
    except OSError as e:
        raise Skipped(_os_reason(e)) from None
    if not os.path.isfile(path):
        raise Skipped("not a regular file")
    if st.st_size > max_size:
        raise Skipped(f"file is {st.st_size} bytes, over the --max-file-size limit of {max_size}")
    try:
        with open(path, "rb") as f:
            data = f.read(max_size + 1)
    except OSError as e:
        raise Skipped(_os_reason(e)) from None
    if len(data) > max_size:  # grew since stat
        raise Skipped(f"file is over the --max-file-size limit of {max_size} bytes")
    return data


def _os_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if e.errno == errno.ENOENT:
        return "no such file (dangling symlink?)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read: {e.strerror or e}"


def decode(data: bytes, language: str) -> tuple[str, str]:
    """(text, encoding); Python honours PEP 263 coding cookies and a UTF-8 BOM."""
    if b"\0" in data[:_SNIFF]:
        raise Skipped("binary file (NUL byte)")
    encoding = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    cookie_error = None
    if language == PYTHON:
        try:
            encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
        except SyntaxError as e:  # also raised for non-UTF-8 bytes without a cookie
            cookie_error = e
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise Skipped(f"cannot decode as {encoding} at byte {e.start}") from None
    except LookupError:
        raise Skipped(f"unknown encoding {encoding!r}") from None
    if cookie_error is not None:
        raise Skipped(f"bad coding cookie: {cookie_error}")
    return text, encoding


def read_source(path: str, max_size: int, language: str) -> Source:
    data = read_bytes(path, max_size)
    text, encoding = decode(data, language)
    return Source(text, encoding, hashlib.sha256(data).hexdigest())


# -- positions ---------------------------------------------------------------------------
class LineTable:
    """Line starts of a text, split the way the block finder numbers lines."""

    def __init__(self, text: str, language: str) -> None:
        parts = text.split("\n") if language == PYTHON else text.splitlines(keepends=True)
        if language == PYTHON:
            parts = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        self.starts = [0]
        for p in parts:
            self.starts.append(self.starts[-1] + len(p))
        self.n_lines = len(parts)

    def span(self, block: Block) -> tuple[int, int]:
        """Code-point offsets [start, end) of a block's lines, line breaks included."""
        last = min(block.end_line, self.n_lines - 1)
        return self.starts[block.start_line], self.starts[last + 1]

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of an offset."""
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:  # last start <= offset
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self.starts[lo] + 1


# -- syntax ------------------------------------------------------------------------------
def python_parses(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes etc.
            ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def python_error_line(text: str) -> tuple[int, str] | None:
    """0-based line and message of CPython's first syntax error, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except SyntaxError as e:
        return max(0, (e.lineno or 1) - 1), e.msg
    except (ValueError, MemoryError, RecursionError) as e:
        return 0, str(e)
    return None


def _block_parses(block: str) -> bool:
    """A block on its own (dedented) parses: methods and bodies are fine outside a def."""
    return python_parses(textwrap.dedent(block))


_INDENT = re.compile(r"[ \t]*")


def _stub(block_text: str) -> str:
    """A parseable stand-in for a broken block, at its indentation."""
    first = next((s for s in block_text.splitlines() if s.strip()), "")
    return _INDENT.match(first).group(0) + "pass\n"


# -- the check ---------------------------------------------------------------------------
@dataclass
class TextCheck:
    findings: list[Finding]
    blocks: int
    long_blocks: int
    unrepaired_syntax_errors: int


def check_text(
    text: str, display: str, language: str, repairer: Repairer, threshold: float
) -> TextCheck:
    table = LineTable(text, language)
    blocks = [b for b in find_blocks(text, language, BLOCK_MAX_CHARS) if b.start_line < table.n_lines]
    spans = [table.span(b) for b in blocks]
    broken: set[int] = set()
    error_msg = ""
    if language == PYTHON:
        err = python_error_line(text)
        if err is not None:
            error_msg = err[1]
            bad_lines = {err[0]} | {s for s, _ in syntax_errors(text, language)}
            broken = {i for i, b in enumerate(blocks) if any(b.contains(ln) for ln in bad_lines)}
            if not broken:  # CPython and tree-sitter disagree on where: take every flagged block
                broken = {i for i, b in enumerate(blocks) if b.has_error}
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    n_blocks = long_blocks = unrepaired = 0
    for i, (s, e) in enumerate(spans):
        block = text[s:e]
        if not block.strip():
            continue
        if not repairer.fits(block):
            long_blocks += 1
            unrepaired += i in broken
            continue
        n_blocks += 1
        prop = repairer.repair(text[:s], block, text[e:])
        new = prop.text
        if block.endswith("\n") and not new.endswith("\n"):
            new += "\n"  # the model may drop the block's final line break
        if i in broken:
            if new != block and _repairs_syntax(text, spans, broken, i, new):
                rule, msg = SYNTAX_ERROR, f"syntax error ({error_msg}); the model proposes a fix"
            else:
                unrepaired += 1
                continue
        else:
            if new == block or prop.confidence < threshold:
                continue
            if language == PYTHON and _block_parses(block) and not _block_parses(new):
                continue  # a proposal that breaks the syntax is not worth reporting
            rule, msg = SUSPICIOUS_CODE, "the model proposes a change"
        findings.append(_finding(rule, msg, display, table, text, s, block, new, prop, blocks[i], seen))
    return TextCheck(findings, n_blocks, long_blocks, unrepaired)


def _repairs_syntax(text: str, spans, broken: set[int], i: int, new: str) -> bool:
    """The file parses with `new` for block i and stubs for the other broken blocks, and
    does not parse with block i as it was (so block i really held an error)."""
    def assemble(own: str) -> str:
        parts, pos = [], 0
        for j in sorted(broken):
            s, e = spans[j]
            parts.append(text[pos:s])
            parts.append(own if j == i else _stub(text[s:e]))
            pos = e
        parts.append(text[pos:])
        return "".join(parts)

    s, e = spans[i]
    return python_parses(assemble(new)) and not python_parses(assemble(text[s:e]))


def _finding(rule, msg, display, table, text, base, block, new, prop, blk, seen) -> Finding:
    edits = minimal_edits(block, new)
    lo, hi = edits[0].start, edits[-1].end
    replacement = apply_edits(block[lo:hi], shift(edits, -lo))
    start, end = base + lo, base + hi
    line, col = table.position(start)
    end_line, end_col = table.position(end)
    original = text[start:end]
    summary = _short(original), _short(replacement)
    if original and replacement:
        detail = f"replace {summary[0]} with {summary[1]}"
    elif replacement:
        detail = f"insert {summary[1]}"
    else:
        detail = f"delete {summary[0]}"
    key = rule.id + block
    nth = seen.get(key, 0)
    seen[key] = nth + 1
    return Finding(
        rule_id=rule.id, path=display, line=line, column=col, end_line=end_line, end_column=end_col,
        message=f"{msg}: {detail} (confidence {prop.confidence:.2f})",
        original=original, replacement=replacement, confidence=round(float(prop.confidence), 4),
        start_offset=start, end_offset=end,
        block_start_line=blk.start_line + 1, block_end_line=blk.end_line + 1,
        fingerprint=fingerprint(rule.id, display, block, replacement, nth),
        diff=block_diff(display, block, new, blk.start_line + 1),
    )


def _short(s: str, limit: int = 60) -> str:
    s = s if len(s) <= limit else s[: limit - 3] + "..."
    return repr(s)


def check_file(
    path: str, display: str, repairer: Repairer, threshold: float, max_size: int
) -> FileResult:
    t0 = time.perf_counter()
    res = FileResult(path=path, display=display)
    language = language_of(path)
    try:
        src = read_source(path, max_size, language)
    except Skipped as e:
        res.skipped = str(e)
        return res
    res.digest, res.encoding = src.digest, src.encoding
    try:
        out = check_text(src.text, display, language, repairer, threshold)
    except Exception as e:  # one bad file must not end the run; reported, exit code 2
        res.error = f"{type(e).__name__}: {e}"
    else:
        res.findings = out.findings
        res.blocks, res.long_blocks = out.blocks, out.long_blocks
        res.unrepaired_syntax_errors = out.unrepaired_syntax_errors
    res.seconds = time.perf_counter() - t0
    return res
