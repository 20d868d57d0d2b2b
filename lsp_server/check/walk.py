"""Which files a check run reads: arguments expanded into files, filtered by `.gitignore`,
include/exclude globs and the shard, in a deterministic order.

Globs use gitignore syntax (pathspec): `*.py` matches at any depth, `build/` a directory,
`/x` only at the root. Directories named on the command line are walked; files named on
the command line skip the include globs (pre-commit passes exactly the files to check)
but not the exclude globs. Symlinked directories are followed only with
`follow_symlinks`, and then every real directory is entered once (loops are reported).
Nothing here raises for bad input: problems become skipped entries with a reason.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

DEFAULT_INCLUDE = ("*.py", "*.pyi")
DEFAULT_EXCLUDE = (
    ".git/", ".hg/", ".svn/", "__pycache__/", ".venv/", "venv/", ".tox/", ".nox/",
    "node_modules/", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/",
)


@dataclass(frozen=True)
class WalkOptions:
    root: str  # display paths and shard keys are relative to this (normally the cwd)
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()  # added to DEFAULT_EXCLUDE
    gitignore: bool = True
    follow_symlinks: bool = False


@dataclass(frozen=True)
class Target:
    path: str  # absolute path to read (as found; symlinks not resolved)
    display: str  # relative to the root with "/" separators, else absolute


@dataclass
class Walk:
    files: list[Target] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (display, reason)
    missing: list[str] = field(default_factory=list)  # arguments that do not exist


def display_path(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return Path(path).as_posix()
    return Path(rel).as_posix()


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" (1 <= K <= N) -> (K, N); ValueError with a usable message otherwise."""
    try:
        k_s, n_s = text.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise ValueError(f"--shard wants K/N such as 2/8, got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def in_shard(display: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic on every machine: sha256 of the display path, modulo N."""
    if shard is None:
        return True
    k, n = shard
    digest = hashlib.sha256(display.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


class _Ignores:
    """gitignore decisions: every .gitignore from the repository top down, deeper wins."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}
        self._tops: dict[str, str] = {}

    def _spec(self, d: str, top: str) -> pathspec.GitIgnoreSpec | None:
        if d not in self._specs:
            lines: list[str] = []
            files = [os.path.join(d, ".gitignore")]
            if d == top:
                files.insert(0, os.path.join(d, ".git", "info", "exclude"))
            for f in files:
                try:
                    with open(f, encoding="utf-8", errors="replace") as fh:
                        lines += fh.read().splitlines()
                except OSError:
                    pass
            self._specs[d] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[d]

    def top(self, d: str) -> str:
        """The repository top above directory d (the directory holding .git), else d."""
        if d not in self._tops:
            cur = d
            while True:
                if os.path.exists(os.path.join(cur, ".git")):
                    break
                parent = os.path.dirname(cur)
                if parent == cur:
                    cur = d
                    break
                cur = parent
            self._tops[d] = cur
        return self._tops[d]

    def ignored(self, path: str, is_dir: bool, top: str) -> bool:
        if not self.enabled:
            return False
        result = False
        d = os.path.dirname(path)
        chain = []
        while True:
            chain.append(d)
            if d == top or os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
        for base in reversed(chain):
            spec = self._spec(base, top)
            if spec is None:
                continue
            rel = Path(os.path.relpath(path, base)).as_posix() + ("/" if is_dir else "")
            r = spec.check_file(rel)
            if r.include is not None:
                result = r.include
        return result


def _glob(patterns) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(list(patterns))


def _first_visit(d: str, seen_dirs: set[tuple[int, int]], skip) -> bool:
    """Following symlinks: whether directory `d` is entered (not one already visited, which
    a symlink loop would bring back, and one that can be entered); skipped with a reason."""
    try:
        st = os.stat(d)
    except OSError as e:
        skip(d, f"cannot enter directory: {e.strerror or e}")
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:
        skip(d, "symlink loop (directory already visited)")
        return False
    seen_dirs.add(key)
    return True


def walk(paths: list[str], opts: WalkOptions, shard: tuple[int, int] | None = None) -> Walk:
    root = os.path.abspath(opts.root)
    include = _glob(opts.include)
    exclude = _glob(DEFAULT_EXCLUDE + tuple(opts.exclude))
    ignores = _Ignores(opts.gitignore)
    out = Walk()
    found: dict[str, Target] = {}  # real path -> first target (a file is checked once)
    seen_dirs: set[tuple[int, int]] = set()

    def rel_for_globs(path: str, base: str) -> str:
        d = display_path(path, root)
        return d if not d.startswith("/") else Path(os.path.relpath(path, base)).as_posix()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in found:
            found[real] = Target(path, display_path(path, root))

    def skip(path: str, reason: str) -> None:
        out.skipped.append((display_path(path, root), reason))

    for arg in paths:
        path = os.path.abspath(arg)
        if not os.path.lexists(path):
            out.missing.append(arg)
            continue
        if not os.path.isdir(path):
            if os.path.islink(path) and not os.path.exists(path):
                try:
                    os.stat(path)
                except OSError as e:
                    loop = e.errno == errno.ELOOP
                    skip(path, "symlink loop" if loop else "dangling symlink")
                continue
            if not exclude.match_file(rel_for_globs(path, os.path.dirname(path))):
                add(path)
            continue
        top = ignores.top(path)

        def onerror(e: OSError, path: str = path) -> None:
            skip(e.filename or path, f"cannot list directory: {e.strerror or e}")

        for d, dirnames, filenames in os.walk(path, onerror=onerror, followlinks=opts.follow_symlinks):
            if opts.follow_symlinks and not _first_visit(d, seen_dirs, skip):
                dirnames[:] = []
                continue
            keep = []
            for name in sorted(dirnames):
                sub = os.path.join(d, name)
                if exclude.match_file(rel_for_globs(sub, path) + "/"):
                    continue
                if ignores.ignored(sub, True, top):
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                f = os.path.join(d, name)
                rel = rel_for_globs(f, path)
                if not include.match_file(rel) or exclude.match_file(rel):
                    continue
                if ignores.ignored(f, False, top):
                    continue
                if os.path.islink(f) and not os.path.exists(f):
                    try:
                        os.stat(f)
                    except OSError as e:
                        skip(f, "symlink loop" if e.errno == errno.ELOOP else "dangling symlink")
                    continue
                add(f)
    out.files = sorted((t for t in found.values() if in_shard(t.display, shard)), key=lambda t: t.display)
    out.skipped = sorted({s for s in out.skipped if in_shard(s[0], shard)})
    return out
