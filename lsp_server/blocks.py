"""Which lines make up a "block": statements, functions and classes.

Python goes through tree-sitter (packages tree-sitter + tree-sitter-python), which also
reports syntax errors (ERROR / MISSING nodes). Other languages fall back to indentation:
a header line plus the more-indented lines under it (and a closing `}`-style line).

- `enclosing_block(text, line, language)`: the block "Repair this block" works on when
  there is no selection: the innermost enclosing function/class that fits, else the
  innermost enclosing statement that fits, else the line itself.
- `find_blocks(text, language, max_chars)`: ordered, non-overlapping blocks that cover the
  code of a file, each small enough for one repair job (for the headless `check` mode).
- `syntax_errors(text, language)`: line ranges of parse errors (Python only).

Lines are 0-based and `end_line` is inclusive. No LSP types here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

PYTHON = "python"
_PY_SUFFIXES = (".py", ".pyi", ".pyw")
_DEF_TYPES = frozenset({"function_definition", "class_definition", "decorated_definition"})
_COMPOUND_TYPES = _DEF_TYPES | frozenset({
    "if_statement", "for_statement", "while_statement", "try_statement", "with_statement",
    "match_statement",
})
_CLOSER = re.compile(r"^\s*(\}|\)|\]|end\b|fi\b|done\b|esac\b|</)")


@dataclass(frozen=True)
class Block:
    start_line: int
    end_line: int  # inclusive
    kind: str  # tree-sitter node type, "lines" (indentation) or "group" (merged statements)
    has_error: bool = False

    def contains(self, line: int) -> bool:
        return self.start_line <= line <= self.end_line

    @property
    def n_lines(self) -> int:
        return self.end_line - self.start_line + 1


def language_of(name: str | None) -> str:
    """Normalise an LSP languageId or a file name to a language key ("python" or other)."""
    if not name:
        return "text"
    low = name.lower()
    if low in ("python", "py") or low.endswith(_PY_SUFFIXES):
        return PYTHON
    return low.rsplit(".", 1)[-1] if "." in low else low


@functools.lru_cache(maxsize=1)
def _python_parser():
    import tree_sitter_python
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_python.language()))


@functools.lru_cache(maxsize=1)
def _parse(text: str):
    """The tree of `text`; a code action asks for the block and for its syntax errors, and
    the cache makes that one parse (a 5 MB file takes about a second)."""
    return _python_parser().parse(text.encode("utf-8"))


def _end_line(node) -> int:
    row, col = node.end_point
    return row - 1 if col == 0 and row > node.start_point[0] else row


def _statements(node) -> list:
    """Named statement children of a module/block node (comments included)."""
    return [c for c in node.named_children if c.type != "block" or c.children]


def _body(node):
    """The `block` child holding a compound statement's body (the last one)."""
    if node.type == "decorated_definition":
        node = node.child_by_field_name("definition") or node
    blocks = [c for c in node.named_children if c.type == "block"]
    return blocks[-1] if blocks else None


def python_blocks(text: str, line: int | None = None) -> list[Block]:
    """Every statement-level node of a Python file, outer before inner; with `line`, only
    the ones that contain it (the walk then descends into those alone, so its cost does
    not grow with the file)."""
    out: list[Block] = []

    def visit(node) -> None:
        for child in _statements(node):
            if line is not None and not (child.start_point[0] <= line <= _end_line(child)):
                continue
            out.append(Block(child.start_point[0], _end_line(child), child.type, child.has_error))
            for sub in child.named_children:
                if sub.type == "block":
                    visit(sub)
                elif sub.type in ("function_definition", "class_definition"):
                    body = _body(sub)
                    if body is not None:
                        visit(body)
                elif sub.type in ("elif_clause", "else_clause", "except_clause", "finally_clause"):
                    for b in sub.named_children:
                        if b.type == "block":
                            visit(b)

    visit(_parse(text).root_node)
    return out


def syntax_errors(text: str, language: str = PYTHON) -> list[tuple[int, int]]:
    """(start_line, end_line) of every ERROR or MISSING node; [] for non-Python text."""
    if language != PYTHON:
        return []
    root = _parse(text).root_node
    if not root.has_error:
        return []
    out: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing or node.type == "ERROR":
            out.append((node.start_point[0], max(node.start_point[0], _end_line(node))))
            continue
        if node.has_error:
            stack.extend(node.children)
    return sorted(out)


# -- indentation fallback ---------------------------------------------------------------
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _blank(line: str) -> bool:
    return not line.strip()


def _indent_block_from(lines: list[str], header: int) -> Block:
    h = _indent(lines[header])
    end = header
    i = header + 1
    while i < len(lines) and (_blank(lines[i]) or _indent(lines[i]) > h):
        if not _blank(lines[i]):
            end = i
        i += 1
    if i < len(lines) and _indent(lines[i]) == h and _CLOSER.match(lines[i]):
        end = i
    return Block(header, end, "lines")


def indentation_blocks(text: str) -> list[Block]:
    """One block per non-blank line that has more-indented lines under it, plus each line."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not _blank(line):
            out.append(_indent_block_from(lines, i))
    return out


# -- queries ----------------------------------------------------------------------------
def _line_chars(text: str) -> list[int]:
    return [len(s) for s in text.splitlines(keepends=True)] or [0]


def _chars(sizes: list[int], block: Block) -> int:
    return sum(sizes[block.start_line : block.end_line + 1])


def enclosing_block(
    text: str, line: int, language: str = PYTHON, fits: Callable[[Block], bool] | None = None
) -> Block:
    """The block to repair around `line`: innermost def/class that fits, else the innermost
    statement that fits, else the line alone. `fits` defaults to "always fits"."""
    fits = fits or (lambda b: True)
    lines = text.splitlines()
    if not lines:
        return Block(0, 0, "lines")
    line = max(0, min(line, len(lines) - 1))
    # On a blank line, work on the nearest code line above (else below).
    probe = line
    while probe > 0 and _blank(lines[probe]):
        probe -= 1
    if _blank(lines[probe]):
        probe = next((i for i in range(line, len(lines)) if not _blank(lines[i])), line)
    if language == PYTHON:
        candidates = python_blocks(text, probe)
    else:
        # a header with the lines under it; the line alone only as the last resort
        candidates = [b for b in indentation_blocks(text) if b.contains(probe) and b.n_lines > 1]
    # innermost first: later start, then earlier end
    candidates.sort(key=lambda b: (-b.start_line, b.end_line))
    for b in candidates:
        if b.kind in _DEF_TYPES and fits(b):
            return b
    for b in candidates:
        if fits(b):
            return b
    return Block(probe, probe, "line")


def find_blocks(text: str, language: str = PYTHON, max_chars: int = 1200) -> list[Block]:
    """Ordered, non-overlapping blocks covering the code of `text`, each of at most
    `max_chars` characters where the structure allows (a longer single line stays whole).
    Small neighbouring simple statements are grouped; big definitions are split into their
    header and their body statements."""
    sizes = _line_chars(text)
    if language == PYTHON:
        units = _python_units(_parse(text).root_node, sizes, max_chars, text.splitlines(keepends=True))
    else:
        units = _indent_units(text, sizes, max_chars)
    return _group(units, sizes, max_chars)


def _python_units(node, sizes: list[int], max_chars: int, lines: list[str]) -> list[Block]:
    out: list[Block] = []
    for child in _statements(node):
        b = Block(child.start_point[0], _end_line(child), child.type, child.has_error)
        body = _body(child) if child.type in _COMPOUND_TYPES else None
        if _chars(sizes, b) <= max_chars or body is None or child.type not in _DEF_TYPES:
            if _chars(sizes, b) > max_chars and b.n_lines > 1:
                starts = _logical_starts(lines, b)
                out.extend(_split_statement(b, sizes, max_chars, starts, _statement_cuts(lines, starts)))
            else:
                out.append(b)
            continue
        body_start = body.start_point[0]
        if body_start > b.start_line:
            out.append(Block(b.start_line, body_start - 1, "header", child.has_error))
        out.extend(_python_units(body, sizes, max_chars, lines))
    return out


# Python's lexical structure, as far as line structure goes: strings (a triple-quoted one
# spans lines), comments, brackets, backslash continuations, line ends
_LEXEME = re.compile(r"""
    (?P<str> \"\"\"(?:\\.|[^\\])*?\"\"\" | '''(?:\\.|[^\\])*?'''
           | "(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*' )
  | (?P<comment> \#[^\n]* )
  | (?P<open> [(\[{] ) | (?P<close> [)\]}] )
  | (?P<cont> \\\n ) | (?P<nl> \n )
""", re.VERBOSE | re.DOTALL)


def _logical_starts(lines: list[str], b: Block) -> set[int]:
    """Lines of `b` where a Python logical line may start (outside brackets, strings and
    backslash continuations), blank and comment lines included.

    A long statement is cut only there: tree-sitter lumps the code after an error into one
    big ERROR node, and a cut inside a bracket made two blocks that cannot parse alone, so
    the error's own block was never found (a dropped ':' before a parenthesised call).
    A regular expression, not `tokenize`: 1 ms instead of 100 on argparse.py with one
    colon dropped, and it never gives up on broken code (an unclosed quote is skipped)."""
    line, depth, starts = b.start_line, 0, {b.start_line}
    for m in _LEXEME.finditer("".join(lines[b.start_line : b.end_line + 1])):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth = max(0, depth - 1)
        elif kind == "str":
            line += m.group().count("\n")
        elif kind == "cont":
            line += 1
        elif kind == "nl":
            line += 1
            if depth == 0:
                starts.add(line)
    return starts


_CLAUSE = re.compile(r"\s*(else|elif|except|finally)\b")


def _statement_cuts(lines: list[str], starts: set[int]) -> dict[int, int]:
    """{line: indentation} of the logical starts a statement may be cut before: code lines
    that do not continue a compound statement (else/elif/except/finally) or follow a
    decorator."""
    cuts: dict[int, int] = {}
    after_decorator = False
    for i in sorted(starts):
        text = lines[i] if i < len(lines) else ""
        body = text.lstrip()
        if not body or body.startswith("#"):
            continue
        if not after_decorator and not _CLAUSE.match(text):
            cuts[i] = len(text) - len(body)
        after_decorator = body.startswith("@")
    return cuts


def _split_statement(b: Block, sizes: list[int], max_chars: int, starts: set[int], cuts: dict[int, int]) -> list[Block]:
    """A long Python statement (or an ERROR node, which after a syntax error can hold the
    rest of the file) cut into runs of whole statements: first before the `cuts` of least
    indentation, neighbours merged while they fit, each run still too long cut the same
    way one level in; where there is no such line, at any logical line (`_split_lines`)."""
    inside = [i for i in range(b.start_line + 1, b.end_line + 1) if i in cuts]
    if not inside:
        return _split_lines(b, sizes, max_chars, starts)
    least = min(cuts[i] for i in inside)
    at = [i for i in inside if cuts[i] == least]
    runs: list[list[int]] = []  # [start, end, chars]
    for s, e in zip([b.start_line, *at], [c - 1 for c in at] + [b.end_line], strict=True):
        n = sum(sizes[s : e + 1])
        if runs and runs[-1][2] + n <= max_chars:
            runs[-1][1:] = [e, runs[-1][2] + n]
        else:
            runs.append([s, e, n])
    out: list[Block] = []
    for s, e, n in runs:
        r = Block(s, e, "lines", b.has_error)
        out.extend(_split_statement(r, sizes, max_chars, starts, cuts) if n > max_chars and s < e else [r])
    return out


def _split_lines(b: Block, sizes: list[int], max_chars: int, starts: set[int] | None = None) -> list[Block]:
    """`b` cut into runs of lines of at most `max_chars` where possible, each cut at a line
    in `starts` (None, or none inside `b`, as in one long literal: any line); a run with no
    allowed cut grows until the next one."""
    if starts is not None and not any(b.start_line < i <= b.end_line for i in starts):
        starts = None
    out, start, acc, cut = [], b.start_line, 0, None
    for i in range(b.start_line, b.end_line + 1):
        if i > start and (starts is None or i in starts):
            cut = i  # the latest line the current run may end before
        if acc + sizes[i] > max_chars and cut is not None:
            out.append(Block(start, cut - 1, "lines", b.has_error))
            acc -= sum(sizes[start:cut])
            start, cut = cut, None
        acc += sizes[i]
    out.append(Block(start, b.end_line, "lines", b.has_error))
    return out


def _indent_units(text: str, sizes: list[int], max_chars: int) -> list[Block]:
    lines = text.splitlines()
    out, i = [], 0
    base = min((_indent(s) for s in lines if not _blank(s)), default=0)
    while i < len(lines):
        if _blank(lines[i]):
            i += 1
            continue
        b = _indent_block_from(lines, i) if _indent(lines[i]) <= base else Block(i, i, "lines")
        out.extend(_split_lines(b, sizes, max_chars) if _chars(sizes, b) > max_chars else [b])
        i = b.end_line + 1
    return out


def _simple(b: Block) -> bool:
    return b.kind not in _COMPOUND_TYPES and b.kind != "header"


def _group(units: list[Block], sizes: list[int], max_chars: int) -> list[Block]:
    """Merge runs of adjacent short simple statements while they fit in max_chars."""
    out: list[Block] = []
    for b in units:
        prev = out[-1] if out else None
        if (
            prev is not None
            and _simple(prev) and _simple(b) and b.n_lines <= 2
            and (prev.kind == "group" or prev.n_lines <= 2)
            and b.start_line - prev.end_line <= 2
            and _chars(sizes, Block(prev.start_line, b.end_line, "group")) <= max_chars
        ):
            out[-1] = Block(prev.start_line, b.end_line, "group", prev.has_error or b.has_error)
        else:
            out.append(b)
    return out
