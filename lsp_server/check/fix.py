"""Apply findings to files (`--fix`) or show them as a unified diff (`--diff`).

A file is rewritten only if its bytes still hash to what the check read, and always
atomically: the new content goes to a temporary file in the same directory, is flushed
and fsynced, takes the old file's permission bits, and replaces the file with
`os.replace` (then the directory is fsynced). A reader, or a kill at any moment, sees the
old file or the new one, never a mix. Symlinks are resolved: the target is rewritten and
the link stays a link.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass

from lsp_server.check.findings import FileResult, Finding
from lsp_server.edits import Edit, apply_edits

TMP_SUFFIX = ".dlsp-tmp"


def fixed_text(text: str, findings: list[Finding]) -> str:
    """`text` with every finding's replacement in place (findings never overlap: one per block)."""
    return apply_edits(text, [Edit(f.start_offset, f.end_offset, f.replacement) for f in findings])


def unified_diff(display: str, old: str, new: str, context: int = 3) -> str:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = []
    for line in difflib.unified_diff(a, b, f"a/{display}", f"b/{display}", n=context):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def block_diff(display: str, old: str, new: str, first_line: int) -> str:
    """Unified diff of one block whose first line is line `first_line` (1-based) of the file."""
    diff = unified_diff(display, old, new)

    def shift(m: re.Match) -> str:
        a, b = int(m.group(1)) + first_line - 1, int(m.group(3)) + first_line - 1
        return f"@@ -{a}{m.group(2) or ''} +{b}{m.group(4) or ''} @@"

    return "".join(_HUNK.sub(shift, line) for line in diff.splitlines(keepends=True))


@dataclass
class FixOutcome:
    fixed: bool
    reason: str = ""  # why not, when not fixed


def atomic_write(path: str, data: bytes) -> None:
    real = os.path.realpath(path)
    directory, name = os.path.split(real)
    mode = stat.S_IMODE(os.stat(real).st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def current_text(result: FileResult) -> tuple[str | None, str]:
    """The file's text if its bytes are still the ones checked, else (None, reason)."""
    try:
        with open(result.path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read it again: {e.strerror or e}"
    if hashlib.sha256(data).hexdigest() != result.digest:
        return None, "changed since it was checked; not fixed"
    return data.decode(result.encoding), ""


def apply_fix(result: FileResult) -> FixOutcome:
    if not result.findings:
        return FixOutcome(False, "nothing to fix")
    text, reason = current_text(result)
    if text is None:
        return FixOutcome(False, reason)
    new = fixed_text(text, result.findings)
    try:
        data = new.encode(result.encoding)
    except UnicodeEncodeError as e:
        return FixOutcome(False, f"the fix cannot be written in {result.encoding}: {e.reason}")
    try:
        atomic_write(result.path, data)
    except OSError as e:
        return FixOutcome(False, f"cannot write: {e.strerror or e}")
    return FixOutcome(True)


def result_diff(result: FileResult) -> str:
    """Unified diff of the fixes of one file ('' when it has none or changed meanwhile)."""
    if not result.findings:
        return ""
    text, _ = current_text(result)
    if text is None:
        return ""
    return unified_diff(result.display, text, fixed_text(text, result.findings))
