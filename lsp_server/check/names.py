"""Candidates for rule DL003 (likely misspelt names): pure `ast`, no model.

`misspelt_names(source)` lists every use of a bare name that nothing in the file binds and
that is not a builtin (it would raise NameError when run), together with the names in
scope one or two edits away from it (Damerau-Levenshtein, optimal string alignment; one
edit for names of four characters or fewer). The model decides between the name as
written and those candidates (`choose`, given the model's `rank`: the one place of that
decision, for `check` and the server alike); nothing else here says which is right.

"In scope" is deliberately wide: every name bound anywhere in the file (assignments,
definitions, parameters, imports, loop and `with`/`except`/`match` targets,
`global`/`nonlocal`), the builtins and the module attributes CPython provides. A file
with a star import is skipped: its names cannot be known without importing it; so is a
name that the file also spells as a whole string (`_convert_('Options', ...)`,
`globals()['name'] = ...`: defined at run time). The one finding on 100 stdlib files
(80k lines) before that last rule was such a name (`ssl.Options`).
"""

from __future__ import annotations

import ast
import bisect
import builtins
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

MODULE_NAMES = frozenset({
    "__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__", "__path__",
    "__builtins__", "__annotations__", "__dict__", "__debug__", "__class__", "__cached__",
    "__qualname__", "__module__",
})
MIN_LENGTH = 3  # shorter names are too often one edit from another real name
NAME_CANDIDATES = 4  # near names ranked against the name as written
NAME_THRESHOLD = 0.9  # the model's share for another name (check --name-threshold's default)


@dataclass(frozen=True)
class NameUse:
    name: str
    start: int  # code-point offsets of the use in the source
    end: int
    candidates: tuple[str, ...]  # nearest names in scope, closest first


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (adjacent transpositions count one), or
    `limit + 1` once it is known to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def bound_names(nodes: list[ast.AST]) -> set[str]:
    """The names that the nodes (every node of a tree: `list(ast.walk(tree))`) bind."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return names


def _lines(source: str) -> list[str]:
    """Lines as the parser counts them (only \\n, \\r\\n and \\r end a line)."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)


def misspelt_names(source: str) -> list[NameUse]:
    """Uses of unbound names with near names in scope, in source order; [] when the file
    does not parse or has a star import."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    nodes = list(ast.walk(tree))  # walked once: the walk is most of the time
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in nodes):
        return []
    strings = {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    scope = (bound_names(nodes) | set(dir(builtins)) | MODULE_NAMES | {"True", "False", "None"}
             | {w for w in strings if w.isidentifier()})
    pool = sorted(scope)
    lines = _lines(source)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out: list[NameUse] = []
    for node in nodes:
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
            continue
        name = node.id
        if name in scope or len(name) < MIN_LENGTH:
            continue
        limit = 1 if len(name) <= 4 else 2
        near = sorted((d, c) for c in pool if (d := edit_distance(name, c, limit)) <= limit)
        if not near:
            continue
        # ast columns are UTF-8 byte offsets within the line
        line = lines[node.lineno - 1]
        col = len(line.encode("utf-8")[: node.col_offset].decode("utf-8", "replace"))
        start = starts[node.lineno - 1] + col
        if source[start : start + len(name)] != name:
            continue  # a name spelt with escapes or NFKC-normalised: leave it alone
        out.append(NameUse(name, start, start + len(name), tuple(c for _, c in near)))
    out.sort(key=lambda u: u.start)
    return out


def in_spans(uses: list[NameUse], spans: list[tuple[int, int]]) -> list[tuple[int, NameUse]]:
    """(index of the [start, end) span that wholly holds it, use) for each use inside one
    of `spans` (sorted, not overlapping), in order; uses outside every span are left out."""
    starts = [s for s, _ in spans]
    out = []
    for use in uses:
        i = bisect.bisect_right(starts, use.start) - 1
        if i >= 0 and use.end <= spans[i][1]:
            out.append((i, use))
    return out


Rank = Callable[[str, str, str, list[str]], list[float]]  # (prefix, block, suffix, variants)


def choose(rank: Rank, text: str, s: int, e: int, use: NameUse, bar: float
           ) -> tuple[str, float, str] | None:
    """(name, confidence, block with it) when the model prefers a near name to the one
    written at `use` inside the block [s, e) of `text` with at least `bar` of the
    probability mass (softmax over the variants' log-likelihoods); else None."""
    block = text[s:e]
    a, b = use.start - s, use.end - s
    cands = use.candidates[:NAME_CANDIDATES]
    variants = [block] + [block[:a] + c + block[b:] for c in cands]
    scores = rank(text[:s], block, text[e:], variants)
    top = max(scores)
    mass = [math.exp(x - top) for x in scores]
    best = max(range(len(scores)), key=scores.__getitem__)
    conf = mass[best] / sum(mass)
    if best == 0 or conf < bar:
        return None
    return cands[best - 1], conf, variants[best]
