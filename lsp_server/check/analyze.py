"""One file through the model: read it safely, split it into blocks, turn proposals into
findings.

- `read_source`: bytes -> text, or a `Skipped` reason (missing, unreadable, binary, too
  large, undecodable, symlink loop). Never raises for bad input.
- `check_text`: the findings of one decoded text, given a `Repairer`.
- `check_file`: both, into a `FileResult`; internal errors are caught per file.

Rules: a file that does not parse always gets a DL001 finding at the parser's error, with
its message: one per broken block (a block with a tree-sitter ERROR/MISSING node or
CPython's error line that still fails with the other broken blocks stubbed out), or one
for the file when no block can be blamed. The fix is attached only when the file parses
with it in place of the block (`lsp_server.syntax_repair` verifies every candidate; the
shared repair job, `lsp_server.repair.repair_block`, checks the result again), whatever
the confidence, and only when all the DL001 fixes of the file, applied together, make it
parse. Any other block is reported as
DL002 when the model changes it with confidence >= threshold and, for Python, the
proposal still parses; a repairer with a cheap `suspects` pass (one pass over the file,
`lsp_server.suspect`) sends only the blocks it flags to the full repair. In a file that
parses, a use of a name nothing binds that is one or two edits from a name in scope
(`check.names`) is DL003 when the repairer's `rank` puts the other name at or above the
name threshold; the block's DL002 fix, if any, takes precedence (one fix per block).
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import os
import time
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

from lsp_server.blocks import PYTHON, Block, find_blocks, language_of
from lsp_server.check import build
from lsp_server.check.findings import SUSPICIOUS_CODE, SYNTAX_ERROR, FileResult, Finding
from lsp_server.check.fix import fixed_text
from lsp_server.check.names import NAME_THRESHOLD, NameUse, in_spans, misspelt_names
from lsp_server.check.repairer import Repairer
from lsp_server.repair import Broken, repair_block
from lsp_server.suspect import SCAN_LEVEL
from lsp_server.syntax import locate, python_error, python_parses

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
def python_error_line(text: str) -> tuple[int, str] | None:
    """0-based line and message of CPython's first syntax error, or None."""
    p = python_error(text)
    return None if p is None else (p.line, p.message)


# -- the check ---------------------------------------------------------------------------
@dataclass
class TextCheck:
    findings: list[Finding]
    blocks: int
    long_blocks: int
    unrepaired_syntax_errors: int
    suspect_blocks: int = 0


BlockFn = Callable[[int], None]


def count_blocks(text: str, language: str) -> int:
    """How many blocks `check_text` walks (for a progress bar counting blocks)."""
    return len(find_blocks(text, language, BLOCK_MAX_CHARS))


def check_text(
    text: str, display: str, language: str, repairer: Repairer, threshold: float,
    *, lines: set[int] | None = None, on_block: BlockFn | None = None,
    scan_level: float = SCAN_LEVEL, name_threshold: float = NAME_THRESHOLD,
) -> TextCheck:
    """Findings of one text. `lines` (0-based): only blocks touching them go to the model
    for DL002/DL003 (syntax errors are found and repaired wherever they are). `on_block`
    is called with 1 after each block (progress). `scan_level`: the repairer's cheap pass
    (`suspects`, when it has one) flags the blocks the full repair sees.
    `name_threshold`: DL003's confidence bar (a repairer without `rank` finds none)."""
    table = LineTable(text, language)
    blocks = [b for b in find_blocks(text, language, BLOCK_MAX_CHARS) if b.start_line < table.n_lines]
    spans = [table.span(b) for b in blocks]
    splice, located = locate(text, blocks, spans) if language == PYTHON else (None, [])
    errors = {loc.block: loc for loc in located}
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    n_blocks = long_blocks = unrepaired = suspects = 0

    def wanted(i: int) -> bool:  # a parsing block the model should look at
        s, e = spans[i]
        return (bool(text[s:e].strip()) and i not in errors
                and not (splice is not None and i in splice.broken)
                and (lines is None or any(blocks[i].contains(ln) for ln in lines)))

    fitting = [i for i in range(len(spans)) if wanted(i) and repairer.fits(text[slice(*spans[i])])]
    flagged = _flagged(repairer, text, spans, fitting, scan_level)
    fits = set(fitting)
    rank = getattr(repairer, "rank", None)
    names = _names_by_block(text, spans, fits) if language == PYTHON and not located and rank else {}
    for i, (s, e) in enumerate(spans):
        block = text[s:e]
        try:
            if not block.strip():
                continue
            if i in errors:
                loc = errors[i]
                got = repair_block(repairer, text, s, e, language=language,
                                   broken=Broken(splice, i, loc.start, loc.end))
                n_blocks += got is not None
                long_blocks += got is None
                new, conf = (None, 0.0) if got is None or got.text == block else (got.text, got.confidence)
                unrepaired += new is None
                findings.append(build.syntax_finding(display, table, text, s, block, new, conf,
                                                (loc.start, loc.end, loc.problem), blocks[i], seen))
                continue
            if not wanted(i):
                continue  # outside the changed lines, or flagged but parses once the
                # other broken blocks are stubbed
            if i not in fits:
                long_blocks += 1
                continue
            n_blocks += 1
            if i in flagged:
                suspects += 1
                got = _proposal(repairer, text, s, e, language, threshold, bool(located))
                if got is not None:
                    findings.append(build.finding(SUSPICIOUS_CODE, "the model proposes a change", display,
                                                  table, text, s, block, got[0], got[1], blocks[i], seen))
                    continue  # one fix per block: its names are in the proposal's hands
            found = (build.name_finding(rank, display, table, text, s, e, use, name_threshold,
                                        blocks[i], seen) for use in names.get(i, ()))
            findings.extend(f for f in found if f is not None)
        finally:
            if on_block is not None:
                on_block(1)
    if -1 in errors:
        # the error lies outside every block the splitter found (or only shows with them
        # all together): reported where the parser stops, without a fix
        loc = errors[-1]
        line = table.position(loc.start)[0] - 1
        findings.append(build.syntax_finding(display, table, text, loc.start, "", None, 0.0,
                                        (loc.start, loc.end, loc.problem),
                                        Block(line, line, "line"), seen))
        unrepaired += 1
    if language == PYTHON and located:
        findings, dropped = _fixes_that_parse_together(text, table, findings)
        unrepaired += dropped
    findings.sort(key=lambda f: (f.line, f.column, f.rule_id))
    return TextCheck(findings, n_blocks, long_blocks, unrepaired, suspects)


def _fixes_that_parse_together(text: str, table: LineTable, findings: list[Finding]
                               ) -> tuple[list[Finding], int]:
    """Each DL001 fix was verified with the other broken blocks stubbed out; offered
    together they must make the file parse too. When they do not (one unclosed string or
    bracket garbles the blocks after it, and their "fixes" answer that garbling), every
    DL001 loses its fix. Returns the findings and how many fixes were dropped."""
    fixes = [f for f in findings if f.rule_id == SYNTAX_ERROR.id and f.has_fix]
    if not fixes or python_parses(fixed_text(text, fixes)):
        return findings, 0
    out = [build.without_fix(f, table.starts[f.line - 1] + f.column - 1) if f in fixes else f
           for f in findings]
    return out, len(fixes)


def _flagged(repairer, text: str, spans, fitting: list[int], level: float) -> set[int]:
    """The blocks (indices into `spans`) of `fitting` that the repairer's cheap pass sends
    to the full repair: all of them without one."""
    scan = getattr(repairer, "suspects", None)
    if scan is None or not fitting:
        return set(fitting)
    flags = scan(text, [spans[i] for i in fitting], level)
    return {i for i, f in zip(fitting, flags, strict=True) if f}


def _names_by_block(text: str, spans, fits: set[int]) -> dict[int, list[NameUse]]:
    """DL003 candidates (`check.names`) by the fitting block that holds them."""
    out: dict[int, list[NameUse]] = {}
    for i, use in in_spans(misspelt_names(text), spans):
        if i in fits:
            out.setdefault(i, []).append(use)
    return out


def _proposal(repairer, text: str, s: int, e: int, language: str, threshold: float,
              broken_file: bool) -> tuple[str, float] | None:
    """(new block, confidence) of a DL002 finding for the parsing block [s, e), or None:
    no change, below the threshold, or (Python, in a file that parses) a change after
    which the file no longer parses (one that breaks the block's own syntax already comes
    back unchanged from the repair job)."""
    got = repair_block(repairer, text, s, e, language=language)
    if got is None or got.text == text[s:e] or got.confidence < threshold:
        return None
    if language == PYTHON and not broken_file and not python_parses(text[:s] + got.text + text[e:]):
        return None
    return got.text, got.confidence


def check_file(
    path: str, display: str, repairer: Repairer, threshold: float, max_size: int,
    *, lines: set[int] | None = None, on_block: BlockFn | None = None,
    scan_level: float = SCAN_LEVEL, name_threshold: float = NAME_THRESHOLD,
) -> FileResult:
    """One file; `lines`, `on_block`, `scan_level` and `name_threshold` as in `check_text`."""
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
        out = check_text(src.text, display, language, repairer, threshold, lines=lines,
                         on_block=on_block, scan_level=scan_level, name_threshold=name_threshold)
    except Exception as e:  # one bad file must not end the run; reported, exit code 2
        res.error = f"{type(e).__name__}: {e}"
    else:
        res.findings = out.findings
        res.blocks, res.long_blocks = out.blocks, out.long_blocks
        res.unrepaired_syntax_errors = out.unrepaired_syntax_errors
        res.suspect_blocks = out.suspect_blocks
    res.seconds = time.perf_counter() - t0
    return res
