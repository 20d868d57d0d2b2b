"""Apply findings to files (`--fix`) or show them as a unified diff (`--diff`).

A file is rewritten only if its bytes still hash to what the check read, and always
atomically: the new content goes to a temporary file in the same directory, is flushed
and fsynced, takes the old file's owner, group and permission bits, and replaces the file
with `os.replace` (then the directory is fsynced). A reader, or a kill at any moment, sees
the old file or the new one, never a mix. The replacement's line breaks take the file's
own style (CRLF stays CRLF).

Refused, with the reason in the report (never half done): a file that is not a regular
file, a read-only file (no owner write bit: 0444 stays untouched, even for root), a file
with several hard links (a rename would split them), a file whose owner or group cannot
be kept (not root), and a symlink whose target lies outside the checked paths unless
`--follow-symlinks` (a link inside them is resolved: the target is rewritten and the link
stays a link).

Temp files (`.NAME.XXXXXXXX.dlsp-tmp`) are locked (`flock`) while written; a run killed
mid-write leaves one, and the next `--fix` run removes every such file nobody holds
locked in the directories it checks (`remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from diffusion_core.checkpoint import read_regular
from lsp_server.check.findings import FileResult, Finding
from lsp_server.edits import Edit, apply_edits

TMP_SUFFIX = ".dlsp-tmp"
MAX_FIX_BYTES = 256 * 2**20  # what is read again before a rewrite (check bounds it lower)


def fixed_text(text: str, findings: list[Finding]) -> str:
    """`text` with the replacement of every finding that has one (they never overlap: one
    per block); findings without a fix (a syntax error the model cannot repair) are left."""
    eol = line_break_of(text)
    return apply_edits(
        text, [Edit(f.start_offset, f.end_offset, with_line_breaks(f.replacement, eol))
               for f in findings if f.has_fix]
    )


_BARE_LF = re.compile(r"(?<!\r)\n")
_ANY_BREAK = re.compile(r"\r\n|\r|\n")


def line_break_of(text: str) -> str | None:
    """The line break to give replacements: CRLF or CR when the file uses only that one;
    None (leave the replacement as proposed) for LF, mixed or single-line files."""
    if _BARE_LF.search(text):
        return None
    if "\r\n" in text:
        return None if re.search(r"\r(?!\n)", text) else "\r\n"
    return "\r" if "\r" in text else None


def with_line_breaks(replacement: str | None, eol: str | None) -> str | None:
    """The model proposes LF; a CRLF (or CR) file keeps its own line breaks."""
    if replacement is None or eol is None:
        return replacement
    return _ANY_BREAK.sub(eol, replacement)


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


class FixRefused(OSError):
    """A file `--fix` will not rewrite; the message says why."""


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def refusal(path: str, roots: Iterable[str] | None = None, follow_symlinks: bool = False) -> str:
    """Why `path` must not be rewritten ('' when it may be). `roots`: the checked paths."""
    real = os.path.realpath(path)
    if roots is not None and not follow_symlinks:
        real_roots = [os.path.realpath(r) for r in roots]
        if not any(_within(real, r) for r in real_roots):
            return (f"it resolves to {real}, outside the checked paths (a symlink); not "
                    "rewritten without --follow-symlinks")
    try:
        st = os.stat(real)
    except OSError as e:
        return f"cannot stat it: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not st.st_mode & stat.S_IWUSR:
        return f"it is read-only (mode {stat.S_IMODE(st.st_mode):04o}); not rewritten"
    if st.st_nlink > 1:
        return (f"it has {st.st_nlink} hard links; replacing it would split them (fix it by "
                "hand or break the links first)")
    return ""


def atomic_write(path: str, data: bytes) -> None:
    """Replace the file `path` resolves to with `data`, keeping owner, group and mode.
    Raises FixRefused (before anything is written) when `refusal` objects, or when the
    owner or group cannot be kept."""
    why = refusal(path)
    if why:
        raise FixRefused(errno.EPERM, why)
    real = os.path.realpath(path)
    directory, name = os.path.split(real)
    st = os.stat(real)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # "being written": the cleanup leaves it alone
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
            try:
                os.fchown(fd, st.st_uid if mine.st_uid != st.st_uid else -1,
                          st.st_gid if mine.st_gid != st.st_gid else -1)
            except PermissionError:
                raise FixRefused(errno.EPERM, (
                    f"it is owned by {st.st_uid}:{st.st_gid} and a rewrite cannot keep that "
                    "owner (run as its owner or as root)")) from None
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after fchown, which clears set-id bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
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


_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}" + re.escape(TMP_SUFFIX) + "$")


def remove_stale_temp_files(directories: Iterable[str]) -> list[str]:
    """Delete the temp files of earlier `--fix` runs that were killed mid-write: regular
    files named like ours that no process holds locked. Returns the paths removed."""
    removed = []
    for d in dict.fromkeys(directories):
        try:
            entries = [e for e in os.scandir(d) if _TMP_NAME.match(e.name)]
        except OSError:
            continue
        for e in entries:
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live run is writing it
                os.close(fd)
                continue
            try:
                os.unlink(e.path)
                removed.append(e.path)
            except OSError:
                pass
            finally:
                os.close(fd)
    return removed


def current_text(result: FileResult) -> tuple[str | None, str]:
    """The file's text if its bytes are still the ones checked, else (None, reason)."""
    try:
        data = read_regular(result.path, MAX_FIX_BYTES)
    except OSError as e:
        return None, f"cannot read it again: {e.strerror or e}"
    if hashlib.sha256(data).hexdigest() != result.digest:
        return None, "changed since it was checked; not fixed"
    return data.decode(result.encoding), ""


def apply_fix(result: FileResult, roots: Iterable[str] | None = None,
              follow_symlinks: bool = False) -> FixOutcome:
    """Write the fixes of one file; `roots` (the checked paths) bound where a symlink may
    lead unless `follow_symlinks`."""
    if not any(f.has_fix for f in result.findings):
        return FixOutcome(False, "nothing to fix")
    why = refusal(result.path, roots, follow_symlinks)
    if why:
        return FixOutcome(False, why)
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
    except FixRefused as e:
        return FixOutcome(False, e.strerror or str(e))
    except OSError as e:
        return FixOutcome(False, f"cannot write: {e.strerror or e}")
    return FixOutcome(True)


def result_diff(result: FileResult) -> str:
    """Unified diff of the fixes of one file ('' when it has none or changed meanwhile)."""
    if not any(f.has_fix for f in result.findings):
        return ""
    text, _ = current_text(result)
    if text is None:
        return ""
    return unified_diff(result.display, text, fixed_text(text, result.findings))
