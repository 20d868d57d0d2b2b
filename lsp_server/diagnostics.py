"""What the server underlines, free of LSP: the syntax errors of a document, one per broken
block (the same rule as `check`'s DL001, see `lsp_server.syntax.locate`), and a debouncer
that runs the computation once the user pauses typing.

Cheap by design (CPython's parser and tree-sitter, no model), and never on the model
worker: completion never waits for it. The server maps `SyntaxDiagnostic` to LSP types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from lsp_server.blocks import PYTHON, find_blocks
from lsp_server.jobs import line_span
from lsp_server.syntax import locate, offset_at, python_error

SOURCE = "diffusion-lsp"
SYNTAX_CODE = "DL001"
DEBOUNCE_S = 0.3
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
    spans = [line_span(text, b.start_line, b.end_line) for b in blocks]
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
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(err))
        else:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(res))

    threading.Thread(target=run, name="diffusion-lsp-diagnostics", daemon=True).start()
    return fut


class Debouncer:
    """`schedule(key, fn)` runs `fn()` (a coroutine function) `delay` seconds after the
    last `schedule` for the same key; an earlier pending run is dropped."""

    def __init__(self, delay: float = DEBOUNCE_S) -> None:
        self.delay = delay
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    def schedule(self, key: str, fn: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        self.cancel(key)

        def fire() -> None:
            self._pending.pop(key, None)
            task = loop.create_task(fn())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._pending[key] = loop.call_later(self.delay, fire)

    def cancel(self, key: str) -> None:
        h = self._pending.pop(key, None)
        if h is not None:
            h.cancel()
