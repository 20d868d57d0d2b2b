"""`--changed-since REF`: which files, and which lines of them, changed since a git ref.

The working tree (staged and unstaged changes) is compared with REF by
`git diff --unified=0 REF`; untracked files that are not ignored count as changed
everywhere. A deletion marks the lines on both sides of it, so the block around it is
checked. Renames count as changes of the new path. Git is run as a subprocess (argument
list, no shell); a bad ref or a directory outside a repository is a `ChangedError`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


class ChangedError(Exception):
    """git could not answer (not a repository, unknown ref, git missing)."""


@dataclass(frozen=True)
class Changes:
    top: str  # the repository's top directory
    lines: dict[str, frozenset[int] | None]  # real path -> changed 0-based lines (None: all)

    def of(self, path: str) -> frozenset[int] | None | bool:
        """The changed lines of `path`, None for the whole file, False when unchanged."""
        return self.lines.get(os.path.realpath(path), False)


def _git(cwd: str, *args: str) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                           encoding="utf-8", errors="surrogateescape", timeout=120)
    except FileNotFoundError:
        raise ChangedError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise ChangedError(f"git {args[0]} took too long") from None
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        raise ChangedError(f"git {args[0]}: {msg}")
    return p.stdout


def parse_diff(diff: str) -> dict[str, set[int]]:
    """`git diff --unified=0` output -> new-side path (relative) -> changed 0-based lines."""
    out: dict[str, set[int]] = {}
    current: set[int] | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = line[4:]
            if name == "/dev/null":
                current = None
                continue
            name = name[2:] if name.startswith("b/") else name
            current = out.setdefault(name, set())
            continue
        m = _HUNK.match(line)
        if m and current is not None:
            start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
            if count == 0:  # a pure deletion after line `start`: both neighbours
                current.update(x for x in (start - 1, start) if x >= 0)
            else:
                current.update(range(start - 1, start - 1 + count))
    return out


def changed_since(ref: str, cwd: str) -> Changes:
    top = _git(cwd, "rev-parse", "--show-toplevel").strip()
    _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    diff = _git(top, "diff", "--unified=0", "--no-color", "--no-ext-diff", "--find-renames",
                "--diff-filter=ACMRT", "--src-prefix=a/", "--dst-prefix=b/",
                ref, "--")
    lines: dict[str, frozenset[int] | None] = {}
    for rel, changed in parse_diff(diff).items():
        lines[os.path.realpath(os.path.join(top, rel))] = frozenset(changed)
    untracked = _git(top, "ls-files", "--others", "--exclude-standard", "-z")
    for rel in filter(None, untracked.split("\0")):
        lines[os.path.realpath(os.path.join(top, rel))] = None
    return Changes(top, lines)
