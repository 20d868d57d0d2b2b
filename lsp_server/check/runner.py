"""Run a set of files through the model: in this process, or in N worker processes that
each load the model once. Results come back in the order of the file list, whatever
order the workers finish in."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from lsp_server.check.analyze import check_file
from lsp_server.check.findings import FileResult
from lsp_server.check.names import NAME_THRESHOLD
from lsp_server.check.repairer import Repairer, RepairerFactory
from lsp_server.check.walk import Target
from lsp_server.suspect import SCAN_LEVEL


@dataclass(frozen=True)
class RunOptions:
    threshold: float = 0.9
    scan_level: float = SCAN_LEVEL  # --scan-level
    name_threshold: float = NAME_THRESHOLD  # --name-threshold
    max_file_size: int = 1_000_000
    jobs: int = 1
    # --changed-since: target path -> changed 0-based lines (None: the whole file)
    lines: dict[str, frozenset[int] | None] | None = None

    def lines_of(self, path: str) -> set[int] | None:
        if self.lines is None:
            return None
        got = self.lines.get(path)
        return None if got is None else set(got)


@dataclass
class Summary:
    files: int = 0  # files checked
    skipped: int = 0
    errors: int = 0
    blocks: int = 0
    long_blocks: int = 0
    unrepaired_syntax_errors: int = 0
    findings: int = 0
    fixed: int = 0
    seconds: float = 0.0

    def add(self, r: FileResult) -> None:
        if r.skipped:
            self.skipped += 1
        elif r.error:
            self.errors += 1
        else:
            self.files += 1
        self.blocks += r.blocks
        self.long_blocks += r.long_blocks
        self.unrepaired_syntax_errors += r.unrepaired_syntax_errors
        self.findings += len(r.findings)

    def line(self) -> str:
        parts = [
            f"{self.files} file{'s' * (self.files != 1)} checked",
            f"{self.blocks} blocks",
            f"{self.findings} finding{'s' * (self.findings != 1)}",
        ]
        if self.fixed:
            parts.append(f"{self.fixed} fixed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.errors:
            parts.append(f"{self.errors} failed")
        if self.long_blocks:
            parts.append(f"{self.long_blocks} blocks too long for the model")
        if self.unrepaired_syntax_errors:
            n = self.unrepaired_syntax_errors
            parts.append(f"{n} syntax error{'s' * (n != 1)} without a repair")
        return "check: " + ", ".join(parts) + f" in {self.seconds:.1f} s"


class ModelLoadFailed(RuntimeError):
    """The repairer could not be built (model directory missing or corrupt)."""


# -- workers -----------------------------------------------------------------------------
_worker: tuple[Repairer | None, str | None] = (None, None)


def _init_worker(factory: RepairerFactory) -> None:
    global _worker
    try:
        _worker = (factory(), None)
    except Exception as e:  # reported by every task, so the parent can stop cleanly
        _worker = (None, f"{type(e).__name__}: {e}")


def _work(target: Target, opts: RunOptions) -> FileResult:
    repairer, err = _worker
    if repairer is None:
        return FileResult(target.path, target.display, error=err, fatal=True)
    return check_file(target.path, target.display, repairer, opts.threshold, opts.max_file_size,
                      lines=opts.lines_of(target.path), scan_level=opts.scan_level,
                      name_threshold=opts.name_threshold)


def iter_results(
    targets: list[Target], factory: RepairerFactory, opts: RunOptions,
    on_block: Callable[[int], None] | None = None,
) -> Iterator[FileResult]:
    """Yield one result per target, in target order. Raises ModelLoadFailed. `on_block`
    hears of every block as it is done (in this process only; pools report per file)."""
    if not targets:
        return
    if opts.jobs <= 1:
        try:
            repairer = factory()
        except Exception as e:
            raise ModelLoadFailed(f"{type(e).__name__}: {e}") from e
        for t in targets:
            yield check_file(t.path, t.display, repairer, opts.threshold, opts.max_file_size,
                             lines=opts.lines_of(t.path), on_block=on_block,
                             scan_level=opts.scan_level, name_threshold=opts.name_threshold)
        return
    yield from _pool_results(targets, factory, opts)


def _pool_results(targets, factory, opts: RunOptions) -> Iterator[FileResult]:
    # spawn: torch and fork do not mix (threads held by the parent's intra-op pool).
    ctx = multiprocessing.get_context("spawn")
    jobs = min(opts.jobs, len(targets))
    done: dict[int, FileResult] = {}
    nxt = 0
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(factory,)) as pool:
        # at most 2 tasks per worker in flight, so results stream in order without a backlog
        pending = {}
        it = iter(enumerate(targets))
        try:
            for _ in range(2 * jobs):
                i, t = next(it, (None, None))
                if t is None:
                    break
                pending[pool.submit(_work, t, opts)] = i
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = pending.pop(fut)
                    res = fut.result()
                    if res.fatal:
                        raise ModelLoadFailed(res.error or "model failed to load")
                    done[i] = res
                    i2, t2 = next(it, (None, None))
                    if t2 is not None:
                        pending[pool.submit(_work, t2, opts)] = i2
                while nxt in done:
                    yield done.pop(nxt)
                    nxt += 1
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def show_progress(stream=None) -> bool:
    """A progress bar only for a person: stderr is a terminal and not in CI."""
    stream = stream or sys.stderr
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return bool(getattr(stream, "isatty", lambda: False)()) and not ci


@dataclass
class RunResult:
    results: list[FileResult] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    interrupted: bool = False  # Ctrl-C: the results are the files finished before it


def _count_blocks(targets: list[Target], opts: RunOptions) -> dict[str, int]:
    """Blocks per file for the progress bar (tree-sitter only, no model)."""
    from lsp_server.blocks import language_of
    from lsp_server.check.analyze import Skipped, count_blocks, read_source

    out = {}
    for t in targets:
        lang = language_of(t.path)
        try:
            out[t.path] = count_blocks(read_source(t.path, opts.max_file_size, lang).text, lang)
        except (Skipped, Exception):  # the check itself reports the file
            out[t.path] = 0
    return out


def run_files(
    targets: list[Target], factory: RepairerFactory, opts: RunOptions, *, progress: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
) -> RunResult:
    """Check every target. The progress bar counts blocks (with an ETA). Ctrl-C stops the
    run: the results so far come back with `interrupted` set, for a partial report."""
    t0 = time.perf_counter()
    out = RunResult()
    bar = None
    per_file: dict[str, int] = {}
    if progress and targets:
        from tqdm import tqdm

        per_file = _count_blocks(targets, opts)
        bar = tqdm(total=sum(per_file.values()), unit="block", file=sys.stderr,
                   dynamic_ncols=True, leave=False)
    in_process = opts.jobs <= 1
    on_block = bar.update if bar is not None and in_process else None
    try:
        for r in iter_results(targets, factory, opts, on_block=on_block):
            out.results.append(r)
            out.summary.add(r)
            if on_result is not None:
                on_result(r)
            if bar is not None:
                if not in_process:
                    bar.update(per_file.get(r.path, 0))
                bar.set_postfix(files=len(out.results), findings=out.summary.findings,
                                refresh=False)
    except KeyboardInterrupt:
        out.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    out.summary.seconds = time.perf_counter() - t0
    return out
