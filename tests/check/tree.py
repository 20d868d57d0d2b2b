"""The fixture tree, written by the tests (planted errors live in strings, so the
project's own linters never see them)."""

from __future__ import annotations

import os
from pathlib import Path

TYPO = """\
def total_of(xs):
    total = 0
    for x in xs:
        total =+ x
    return total


def unrelated():
    return 42
"""
TYPO_FIXED = TYPO.replace("total =+ x", "total += x")

BROKEN = """\
import os


def f(x):
    return (x + 1


def g():
    return os.sep
"""
BROKEN_FIXED = BROKEN.replace("return (x + 1\n", "return (x + 1)\n")

LOW = """\
def check(value):
    if value == None:
        return 0
    return value
"""

CLEAN = """\
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y
"""

# CRLF line endings and a non-ASCII character before the finding on its line
UNICODE_CRLF = 'def bump(count):\r\n    s = "h\u00e9llo\u2603"; count =+ 1\r\n    return count\r\n'

FILES: dict[str, str | bytes] = {
    ".gitignore": "ignored/\n*.log\n!keep.log\n",
    "pkg/__init__.py": "",
    "pkg/typo.py": TYPO,
    "pkg/broken.py": BROKEN,
    "pkg/low.py": LOW,
    "pkg/clean.py": CLEAN,
    "pkg/uni.py": UNICODE_CRLF,
    "pkg/notes.txt": "total =+ x is not Python here\n",
    "pkg/sub/.gitignore": "local_*.py\n",
    "pkg/sub/local_junk.py": TYPO,  # ignored by the nested .gitignore
    "pkg/sub/kept.py": CLEAN,
    "ignored/bad.py": TYPO,  # ignored by the top .gitignore
    "bad/blob.py": b"\x00\x01\x02binary\x00" * 10,
    "bad/latin.py": b"name = '\xe9t\xe9'\n",  # not UTF-8, no coding cookie
    "bad/cookie.py": "# -*- coding: latin-1 -*-\nname = '\u00e9t\u00e9'\n".encode("latin-1"),
    "bad/huge.py": "x = 1\n" * 2000,  # 12000 bytes, over the --max-file-size the tests pass
}
HUGE_LIMIT = "8k"
EXPECTED_SKIPS = {
    "bad/blob.py": "binary",
    "bad/latin.py": "cannot decode",
    "bad/huge.py": "over the --max-file-size",
    "bad/loop.py": "symlink loop",
}


def write_tree(root: Path) -> Path:
    for rel, content in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_bytes(content.encode("utf-8"))
    (root / ".git").mkdir()  # the walk finds the repository top here
    os.symlink("loop2.py", root / "bad" / "loop.py")  # loop.py -> loop2.py -> loop.py
    os.symlink("loop.py", root / "bad" / "loop2.py")
    os.symlink("..", root / "pkg" / "sub" / "up")  # a directory loop (followed only on demand)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for d, _dirs, files in os.walk(root):
        for name in files:
            p = Path(d) / name
            if p.is_symlink():
                continue
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out
