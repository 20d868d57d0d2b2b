"""`check --fix` and the file system (issue 23, case 4): owner, group, mode, hard links,
read-only files, CRLF line breaks, symlinks out of the checked tree, and the temp file a
run killed mid-write leaves behind. CI runs as root: ownership is checked by chown to
another uid, read-only by the mode bits (root could write through them)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.check.fix import TMP_SUFFIX, remove_stale_temp_files
from tests.check.conftest import check
from tests.check.fakes import PlantedFactory
from tests.check.tree import HUGE_LIMIT, TYPO, TYPO_FIXED

LIMIT = ("--max-file-size", HUGE_LIMIT)
ROOT = Path(__file__).resolve().parents[2]


def _only(tree: Path, rel: str, *extra: str, factory=None):
    paths = [str(tree / rel)]
    if factory is None:
        return check(tree, "--fix", "--verbose", *LIMIT, *extra, paths=paths)
    return check(tree, "--fix", "--verbose", *LIMIT, *extra, paths=paths, factory=factory)


def test_fix_keeps_owner_group_and_mode(tree):
    typo = tree / "pkg" / "typo.py"
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another owner")
    os.chown(typo, 1234, 5678)
    typo.chmod(0o640)
    run = _only(tree, "pkg/typo.py")
    assert run.code == 0, run.err
    st = typo.stat()
    assert typo.read_text() == TYPO_FIXED
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o640)


def test_fix_refuses_a_file_whose_owner_it_cannot_keep(tree, monkeypatch):
    """As an ordinary user a rewrite would hand the file to us: refused, untouched."""
    typo = tree / "pkg" / "typo.py"
    st = typo.stat()
    calls = []

    def no_chown(fd, uid, gid):
        calls.append((uid, gid))
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", no_chown)
    monkeypatch.setattr(os, "fstat", _fake_owner(os.fstat, st.st_uid + 1))
    run = _only(tree, "pkg/typo.py")
    assert run.code == 1
    assert "cannot keep that owner" in run.err, run.err
    assert typo.read_text() == TYPO and calls
    assert not [p for p in typo.parent.iterdir() if p.name.endswith(TMP_SUFFIX)]


def _fake_owner(real_fstat, uid):
    """fstat as if the process ran as `uid` (the temp file's owner)."""

    def fstat(fd):
        st = real_fstat(fd)
        if not Path(f"/proc/self/fd/{fd}").resolve().name.endswith(TMP_SUFFIX):
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, uid, st.st_gid,
                               st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime)))

    return fstat


def test_fix_refuses_hard_linked_and_read_only_files(tree):
    typo = tree / "pkg" / "typo.py"
    twin = tree / "twin.py"
    os.link(typo, twin)
    run = _only(tree, "pkg/typo.py")
    assert run.code == 1 and "2 hard links" in run.err, run.err
    assert typo.read_text() == TYPO and os.path.samefile(typo, twin)
    twin.unlink()
    typo.chmod(0o444)  # root could write it anyway: the mode bits decide
    run = _only(tree, "pkg/typo.py")
    assert run.code == 1 and "read-only (mode 0444)" in run.err, run.err
    assert typo.read_text() == TYPO and typo.stat().st_mode & 0o777 == 0o444


def test_fix_keeps_crlf_line_breaks(tree):
    src = tree / "pkg" / "crlf.py"
    src.write_bytes(b"def f(xs):\r\n    total = 0\r\n    total =+ 1\r\n    return total\r\n")
    # a proposal that adds a line, with the model's LF
    factory = PlantedFactory(plants=(("total =+ 1", "total += 1\n    total *= 2", 0.97),))
    run = _only(tree, "pkg/crlf.py", factory=factory)
    assert run.code == 0, run.err
    assert src.read_bytes() == (b"def f(xs):\r\n    total = 0\r\n    total += 1\r\n"
                                b"    total *= 2\r\n    return total\r\n")


def test_fix_never_follows_a_symlink_out_of_the_checked_tree(tree, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "victim.py"
    target.write_text(TYPO)
    (tree / "pkg" / "escape.py").symlink_to(target)
    run = check(tree, "--fix", "--verbose", *LIMIT, paths=[str(tree / "pkg")])
    assert "escape.py" in run.err and "outside the checked paths" in run.err, run.err
    assert target.read_text() == TYPO
    assert (tree / "pkg" / "typo.py").read_text() == TYPO_FIXED  # the rest is fixed
    # asked for: the target is rewritten and the link stays a link
    run = check(tree, "--fix", "--follow-symlinks", *LIMIT, paths=[str(tree / "pkg")])
    assert target.read_text() == TYPO_FIXED and (tree / "pkg" / "escape.py").is_symlink()


_WRITER = """
import os, sys
from lsp_server.check import fix
def stuck(fd):  # the process dies here, in the middle of writing the temp file
    print("writing", flush=True)
    sys.stdin.read()
os.fsync = stuck
fix.atomic_write(sys.argv[1], b"x" * 900_000)
"""


def test_a_run_killed_mid_write_leaves_a_temp_file_the_next_run_removes(tree):
    typo = tree / "pkg" / "typo.py"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(typo)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        temps = [p for p in typo.parent.iterdir() if p.name.endswith(TMP_SUFFIX)]
        assert len(temps) == 1 and temps[0].name.startswith(".typo.py.")
        assert remove_stale_temp_files([str(typo.parent)]) == []  # locked: being written
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        proc.kill()
        proc.wait(60)
    assert temps[0].exists() and typo.read_text() == TYPO  # what the kill leaves
    # someone else's file with a similar name, a symlink and a live temp stay
    keep = typo.parent / ".notes.txt.backup"
    keep.write_text("mine")
    live = typo.parent / ".clean.py.abcdefgh.dlsp-tmp"
    live.write_text("being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        run = check(tree, "--fix", *LIMIT, paths=[str(tree / "pkg")])
    finally:
        os.close(fd)
    assert not temps[0].exists(), run.err
    assert f"removed {temps[0]}" in run.err
    assert keep.exists() and live.exists()
    assert typo.read_text() == TYPO_FIXED
