"""What the server underlines, free of LSP: the syntax errors of a document, one per broken
block (the same rule as `check`'s DL001, see `lsp_server.syntax.locate`), the names that
are probably misspelt (`check`'s DL003), and a debouncer that runs the computation once
the user pauses typing.

The syntax errors and the DL003 candidates are cheap (CPython's parser, `ast` and
tree-sitter, no model) and never run on the model worker: completion never waits for
them. Only the model's choice between a name and its near names (`names.choose`, the one
place of that decision) runs there, in `name_decisions`, a job that completions cancel.
The server maps `SyntaxDiagnostic` and `NameDiagnostic` to LSP types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from lsp_server.blocks import PYTHON, find_blocks
from lsp_server.check.names import NAME_THRESHOLD, NameUse, choose, in_spans, misspelt_names
from lsp_server.jobs import block_spans
from lsp_server.syntax import locate, offset_at, python_error

SOURCE = "diffusion-lsp"
SYNTAX_CODE = "DL001"
NAME_CODE = "DL003"
DEBOUNCE_S = 0.3
NAMES_DEBOUNCE_S = 1.5  # the model's DL003 choice waits for a longer pause than syntax
MAX_NAMES = 20  # DL003 candidates sent to the model per document version
BLOCK_MAX_CHARS = 1200  # as `check`
MAX_BLOCK_CHARS_TEXT = 200_000  # larger documents: CPython's first error only (one parse)
MAX_BROKEN = 20  # broken blocks examined (each costs a parse of the document)


@dataclass(frozen=True)
class SyntaxDiagnostic:
    start: int  # offsets in the document text
    end: int
    message: str
    block_start_line: int  # 0-based, inclusive: the block "Repair this block" fixes
    block_end_line: int
    code: str = SYNTAX_CODE


def syntax_diagnostics(text: str, language: str) -> list[SyntaxDiagnostic]:
    if language != PYTHON:
        return []
    if len(text) > MAX_BLOCK_CHARS_TEXT:
        p = python_error(text)
        if p is None:
            return []
        a = offset_at(text, p.line, p.column)
        return [SyntaxDiagnostic(a, max(a, offset_at(text, p.end_line, p.end_column)),
                                 f"syntax error: {p.message}", p.line, p.line)]
    blocks = find_blocks(text, PYTHON, BLOCK_MAX_CHARS)
    spans = block_spans(text, blocks)
    _, located = locate(text, blocks, spans, limit=MAX_BROKEN)
    out = []
    for loc in located:
        if loc.block >= 0:
            first, last = blocks[loc.block].start_line, blocks[loc.block].end_line
        else:
            first = last = text.count("\n", 0, loc.start)
        out.append(SyntaxDiagnostic(loc.start, loc.end, f"syntax error: {loc.problem.message}",
                                    first, last))
    return out


# -- DL003: names that are probably misspelt ------------------------------------------------
@dataclass(frozen=True)
class NameSite:
    """A DL003 candidate (`check.names.NameUse`) and the block [start, end) that holds it."""

    use: NameUse
    start: int
    end: int

    def key(self, text: str) -> tuple:
        """What the model's decision is remembered by: the block's text, the use's place
        in it and its candidates (an edit elsewhere keeps the decision; the model's view
        of the rest of the file is not part of it)."""
        u = self.use
        return text[self.start : self.end], u.start - self.start, u.name, u.candidates


@dataclass(frozen=True)
class NameDiagnostic:
    start: int  # offsets of the name in the document text
    end: int
    name: str
    replacement: str
    confidence: float
    code: str = NAME_CODE

    @property
    def message(self) -> str:  # as `check`'s DL003 finding
        return (f"{self.name!r} is not defined; did you mean {self.replacement!r}? "
                f"(confidence {self.confidence:.2f})")


Decision = tuple[str, float] | None  # (replacement, confidence), or None: the name stays


def name_sites(text: str, language: str) -> list[NameSite]:
    """The DL003 candidates of a document (no model): unbound names near names in scope,
    each with its block as `check` cuts it; [] for other languages, a text that does not
    parse, or one too large to split into blocks."""
    if language != PYTHON or len(text) > MAX_BLOCK_CHARS_TEXT:
        return []
    uses = misspelt_names(text)
    if not uses:
        return []
    blocks = find_blocks(text, PYTHON, BLOCK_MAX_CHARS)
    spans = block_spans(text, blocks)
    return [NameSite(use, *spans[i]) for i, use in in_spans(uses, spans)][:MAX_NAMES]


def name_decisions(model, text: str, sites: list[NameSite], known: dict[tuple, Decision],
                   bar: float = NAME_THRESHOLD) -> dict[tuple, Decision]:
    """The model's choice (`names.choose`) for each site not in `known`, added to `known`
    as it goes (a cancelled job keeps what it decided). `model`: `service.EngineModel`
    (`fits`, `rank`; its cancel flag is checked between forward passes). Runs on the
    model worker."""
    for site in sites:
        key = site.key(text)
        if key in known:
            continue
        got = None
        if model.fits(key[0]):
            got = choose(model.rank, text, site.start, site.end, site.use, bar)
        known[key] = None if got is None else (got[0], got[1])
    return known


def name_diagnostics(text: str, sites: list[NameSite], known: dict[tuple, Decision]
                     ) -> list[NameDiagnostic]:
    """DL003 for the sites whose decision is known and names another name."""
    out = []
    for site in sites:
        got = known.get(site.key(text))
        if got is not None:
            u = site.use
            out.append(NameDiagnostic(u.start, u.end, u.name, got[0], got[1]))
    return out


@dataclass
class DocumentDiagnostics:
    """What the server last computed for one document (its `version`): the syntax errors,
    the DL003 sites and the model's decisions (kept across versions, by `NameSite.key`)."""

    version: int | None = None
    syntax: list[SyntaxDiagnostic] = field(default_factory=list)
    sites: list[NameSite] = field(default_factory=list)
    text: str = ""
    decisions: dict[tuple, Decision] = field(default_factory=dict)
    pending: tuple | None = None  # (version, text, future of `analyze`) being computed

    def undecided(self) -> list[NameSite]:
        return [s for s in self.sites if s.key(self.text) not in self.decisions]

    def names(self) -> list[NameDiagnostic]:
        return name_diagnostics(self.text, self.sites, self.decisions)

    def update(self, version: int, text: str, syntax: list[SyntaxDiagnostic],
               sites: list[NameSite]) -> None:
        """A new version: decisions for blocks no longer there are forgotten."""
        keys = {s.key(text) for s in sites}
        self.decisions = {k: v for k, v in self.decisions.items() if k in keys}
        self.version, self.text, self.syntax, self.sites = version, text, syntax, sites


def analyze(text: str, language: str, names: bool) -> tuple[list[SyntaxDiagnostic], list[NameSite]]:
    """The model-free part for one version (off the event loop: in the server's analysis
    child, `analysis_process`): syntax errors, DL003 sites (none in a text that does not
    parse: `misspelt_names` needs its tree)."""
    syntax = syntax_diagnostics(text, language)
    return syntax, (name_sites(text, language) if names and not syntax else [])


def in_daemon_thread(fn, *args) -> asyncio.Future:
    """`fn(*args)` in a daemon thread, as a future of the running loop: unlike the default
    executor, a parse still running never holds up the process at exit."""
    import threading

    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def run() -> None:
        try:
            res = fn(*args)
        except BaseException as e:  # handed to the awaiting coroutine
            err = e
            done = lambda: fut.done() or fut.set_exception(err)  # noqa: E731
        else:
            done = lambda: fut.done() or fut.set_result(res)  # noqa: E731
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(done)

    threading.Thread(target=run, name="diffusion-lsp-diagnostics", daemon=True).start()
    return fut


class Debouncer:
    """`schedule(key, fn)` runs `fn()` (a coroutine function) `delay` seconds after the
    last `schedule` for the same key; an earlier pending run is dropped."""

    def __init__(self, delay: float = DEBOUNCE_S) -> None:
        self.delay = delay
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    def schedule(self, key: str, fn: Callable[[], object], delay: float | None = None) -> None:
        """`delay`: this run's wait instead of the debouncer's own."""
        loop = asyncio.get_running_loop()
        self.cancel(key)

        def fire() -> None:
            self._pending.pop(key, None)
            task = loop.create_task(fn())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._pending[key] = loop.call_later(self.delay if delay is None else delay, fire)

    def cancel(self, key: str) -> None:
        h = self._pending.pop(key, None)
        if h is not None:
            h.cancel()
