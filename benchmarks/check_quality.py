"""`diffusion-lsp eval` rows for repair and `check`, measured through the product's own path.

Every number runs `lsp_server.check.analyze.check_text` with the service's `EngineModel`
(what `diffusion-lsp check` and "Repair this block" run) on a held-out file with one
corruption in one top-level function, and applies the findings' fixes as `check --fix`
would (`check.fix.fixed_text`):

- syntax: one single-token edit that stops the file parsing (`syntax_corruption`, from
  `diffusion_core.corruption.syntax_edits`: a missing or extra colon, paren, bracket,
  brace or comma, a dropped quote, a misspelt keyword, a bad dedent). Rows: the fix restores the original exactly; the fixed file
  parses; proposals that do not parse (must be 0).
- typo: one use of a name bound in the file, misspelt by one edit into a name nothing
  binds (`name_typo`). Row: a DL003 fix restores the original exactly.
- clean: the untouched held-out files, checked whole. Row: findings per 1,000 lines.

The file is cut to the function's neighbourhood (`neighbourhoods`: whole top-level
statements, about `CONTEXT_CHARS` either side) so an example costs a short file's check.
"""

from __future__ import annotations

import ast
import keyword
import random
import time

from diffusion_core.corruption import syntax_edits
from lsp_server.blocks import PYTHON
from lsp_server.check.analyze import check_text
from lsp_server.check.fix import fixed_text
from lsp_server.check.names import NAME_THRESHOLD, misspelt_names
from lsp_server.syntax import python_parses

CONTEXT_CHARS = 3000


def neighbourhoods(texts: list[str], max_lines: int = 25) -> list[tuple[str, str, str]]:
    """(prefix, function, suffix) for each small top-level function of the texts, prefix
    and suffix cut at top-level statement boundaries to at most CONTEXT_CHARS each (so
    they parse around the function as the whole file does)."""
    out = []
    for t in texts:
        try:
            body = ast.parse(t).body
        except SyntaxError:
            continue
        lines = t.splitlines(keepends=True)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))

        def first(node) -> int:  # 0-based first line, decorators included
            return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1

        for i, node in enumerate(body):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.end_lineno:
                continue
            a, b = first(node), node.end_lineno
            if not 3 <= b - a <= max_lines:
                continue
            lo = a
            for prev in reversed(body[:i]):
                if starts[a] - starts[first(prev)] > CONTEXT_CHARS:
                    break
                lo = first(prev)
            hi = b
            for nxt in body[i + 1 :]:
                if starts[nxt.end_lineno] - starts[b] > CONTEXT_CHARS:
                    break
                hi = nxt.end_lineno
            out.append(("".join(lines[lo:a]), "".join(lines[a:b]), "".join(lines[b:hi])))
    return out


def syntax_corruption(prefix: str, src: str, suffix: str, rng: random.Random) -> str | None:
    """`src` with one edit after which prefix + src + suffix no longer parses."""
    for bad in syntax_edits(src, rng)[:20]:
        if not python_parses(prefix + bad + suffix):
            return bad
    return None


def name_typo(prefix: str, src: str, suffix: str, rng: random.Random) -> tuple[str, int] | None:
    """(`src` with one use of a bound name misspelt, offset of the use in the file) such
    that DL003's candidate search offers the original name back."""
    text = prefix + src + suffix
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and len(n.id) >= 5 and n.id.isascii() and not keyword.iskeyword(n.id)]
    rng.shuffle(uses)
    lines = src.splitlines(keepends=True)
    for n in uses[:10]:
        w = n.id
        k = rng.randrange(len(w) - 1)
        op = rng.choice(("swap", "drop", "double"))
        bad = {"swap": w[:k] + w[k + 1] + w[k] + w[k + 2 :], "drop": w[:k] + w[k + 1 :],
               "double": w[:k] + w[k] + w[k:]}[op]
        if bad == w:
            continue
        at = sum(len(x) for x in lines[: n.lineno - 1]) + n.col_offset
        new_src = src[:at] + bad + src[at + len(w) :]
        offset = len(prefix) + at
        got = [u for u in misspelt_names(prefix + new_src + suffix) if u.start == offset]
        if got and w in got[0].candidates and text[offset : offset + len(w)] == w:
            return new_src, offset
    return None


def _lines_of(prefix: str, src: str) -> set[int]:
    a = prefix.count("\n")
    return set(range(a, a + max(1, src.count("\n"))))


def check_scores(model, funcs, texts: list[str], n: int, rng: random.Random,
                 threshold: float = 0.9, clean_files: int = 10, log=None) -> dict:
    """The repair/check rows (module docstring). `model`: a `RepairModel`
    (`Service(engine).model()`); `funcs`: `neighbourhoods(texts)`."""
    sample = rng.sample(funcs, min(n, len(funcs)))
    syn = syn_exact = syn_parse = syn_bad = typo = typo_exact = 0
    t0 = time.perf_counter()
    for i, (prefix, src, suffix) in enumerate(sample):
        if not python_parses(prefix + src + suffix):
            continue
        bad = syntax_corruption(prefix, src, suffix, rng)
        if bad is not None:
            text = prefix + bad + suffix
            out = check_text(text, "x.py", PYTHON, model, threshold, lines=_lines_of(prefix, bad))
            fixed = fixed_text(text, out.findings)
            proposed = any(f.has_fix for f in out.findings)
            syn += 1
            syn_exact += fixed == prefix + src + suffix
            syn_parse += proposed and python_parses(fixed)
            syn_bad += proposed and not python_parses(fixed)
        got = name_typo(prefix, src, suffix, rng)
        if got is not None:
            new_src, offset = got
            text = prefix + new_src + suffix
            out = check_text(text, "x.py", PYTHON, model, threshold,
                             lines=_lines_of(prefix, new_src), name_threshold=NAME_THRESHOLD)
            typo += 1
            typo_exact += fixed_text(text, out.findings) == prefix + src + suffix
        if log is not None and (i + 1) % 10 == 0:
            log(f"  check rows: {i + 1}/{len(sample)} functions, {time.perf_counter() - t0:.0f} s")
    findings = lines = 0
    for text in texts[:clean_files]:
        out = check_text(text, "x.py", PYTHON, model, threshold)
        findings += len(out.findings)
        lines += text.count("\n") + 1
    return {
        "functions": len(sample),
        "syntax_errors": syn,
        "syntax_restored_exactly": syn_exact / max(1, syn),
        "syntax_fixed_and_parses": syn_parse / max(1, syn),
        "syntax_proposals_not_parsing": syn_bad,
        "typos": typo,
        "typos_restored": typo_exact / max(1, typo),
        "clean_files": min(clean_files, len(texts)),
        "clean_lines": lines,
        "findings_per_1000_clean_lines": 1000 * findings / max(1, lines),
        "seconds": time.perf_counter() - t0,
    }
