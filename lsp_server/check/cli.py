"""`diffusion-lsp check`: lint files with the repair model, for CI and pre-commit.

Exit codes: 0 no findings, 1 findings (with --fix: findings left unfixed; with --diff: a
non-empty diff), 2 usage error, model load failure or an internal error on some file,
130 interrupted by Ctrl-C (the report of the files done so far is still written).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import TextIO

from lsp_server.check.analyze import DEFAULT_MAX_FILE_SIZE
from lsp_server.check.findings import FileResult
from lsp_server.check.fix import apply_fix, remove_stale_temp_files, result_diff
from lsp_server.check.formats import FORMATS, render
from lsp_server.check.names import NAME_THRESHOLD
from lsp_server.check.repairer import EngineRepairerFactory, RepairerFactory
from lsp_server.check.report import build_report
from lsp_server.check.runner import ModelLoadFailed, RunOptions, run_files, show_progress
from lsp_server.check.walk import DEFAULT_INCLUDE, WalkOptions, parse_shard, walk
from lsp_server.suspect import SCAN_LEVEL

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: the partial report was still written

EPILOG = """\
exit codes: 0 no findings, 1 findings (a file that does not parse is always one),
2 usage or internal error, 130 interrupted (the partial report is still written).
examples:
  diffusion-lsp check src/                            # text report with diffs
  diffusion-lsp check . --format sarif -o check.sarif # for GitHub code scanning
  diffusion-lsp check . --format github               # annotations in a workflow log
  diffusion-lsp check . --jobs 4 --shard 2/8          # 4 processes, 2nd of 8 CI machines
  diffusion-lsp check src/ --fix                      # apply the proposals in place
  diffusion-lsp check . --changed-since origin/main    # only what a pull request changed
"""


class UsageError(Exception):
    pass


def _size(text: str) -> int:
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    t = text.strip().lower().removesuffix("b")
    try:
        n = int(float(t[:-1]) * mult[t[-1]]) if t and t[-1] in mult else int(t)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 500000, 500k, 2M)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError("the size limit must be positive")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH",
                   help="files and directories to check (default: .)")
    p.add_argument("--model", metavar="DIR", help="model directory (default: the shipped model)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    p.add_argument("--max-change", type=float, default=0.5, metavar="SHARE",
                   help="ignore proposals that rewrite more than this share of a block's tokens "
                        "(a rewrite is not a repair; default 0.5)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="report a model change (DL002) at or above this confidence (default: 0.9)")
    p.add_argument("--name-threshold", type=float, default=NAME_THRESHOLD, metavar="P",
                   help="report a misspelt name (DL003) when the model gives the near name in "
                        f"scope at least this share of the probability (default: {NAME_THRESHOLD})")
    p.add_argument("--scan-level", type=float, default=SCAN_LEVEL, metavar="P",
                   help="cheap pass before the repair: a block goes to the model's full repair "
                        "only when the model is at least P sure that one of its tokens should "
                        f"be another (models with a causal path; 0: every block; default {SCAN_LEVEL})")
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fix", action="store_true",
                      help="apply the proposals in place (atomic; skips files changed meanwhile)")
    mode.add_argument("--diff", action="store_true",
                      help="print the proposals as a unified diff instead of a report")
    p.add_argument("-j", "--jobs", type=int, default=1,
                   help="worker processes, each loading the model once (0: one per CPU)")
    p.add_argument("--shard", metavar="K/N",
                   help="check only the K-th of N deterministic slices of the files (1 <= K <= N)")
    p.add_argument("--include", action="append", metavar="GLOB",
                   help=f"gitignore-style glob of files to check in directories "
                        f"(repeatable; default: {' '.join(DEFAULT_INCLUDE)})")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="gitignore-style glob of files or directories to leave out (repeatable)")
    p.add_argument("--no-gitignore", action="store_true", help="do not read .gitignore files")
    p.add_argument("--follow-symlinks", action="store_true", help="walk into symlinked directories")
    p.add_argument("--max-file-size", type=_size, default=DEFAULT_MAX_FILE_SIZE, metavar="BYTES",
                   help=f"skip larger files (default: {DEFAULT_MAX_FILE_SIZE})")
    p.add_argument("--root", help="directory that reported paths are relative to (default: cwd)")
    p.add_argument("--changed-since", metavar="REF",
                   help="check only files changed since the git ref REF (working tree against "
                        "REF, untracked files included); the model looks only at the changed "
                        "blocks, syntax errors are reported anywhere in those files")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per file on stderr as it is done")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary and no skip warnings on stderr")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-lsp")
    except Exception:
        return "0+unknown"


def _validate(args) -> tuple[tuple[int, int] | None, int]:
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
    if not 0.0 <= args.name_threshold <= 1.0:
        raise UsageError(f"--name-threshold must be in [0, 1], got {args.name_threshold}")
    if not 0.0 <= args.scan_level <= 1.0:
        raise UsageError(f"--scan-level must be in [0, 1], got {args.scan_level}")
    if args.jobs < 0:
        raise UsageError(f"--jobs must be >= 0, got {args.jobs}")
    shard = None
    if args.shard:
        try:
            shard = parse_shard(args.shard)
        except ValueError as e:
            raise UsageError(str(e)) from None
    jobs = args.jobs or os.cpu_count() or 1
    if args.root and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root} is not a directory")
    return shard, jobs


def _write_output(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".check-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _targets(args: argparse.Namespace, root: str, shard) -> tuple:
    """The files to check and, with --changed-since, their changed lines; raises
    UsageError for a missing path or a bad git ref."""
    wopts = WalkOptions(
        root=root, include=tuple(args.include) if args.include else DEFAULT_INCLUDE,
        exclude=tuple(args.exclude), gitignore=not args.no_gitignore,
        follow_symlinks=args.follow_symlinks,
    )
    found = walk(list(args.paths), wopts, shard)
    if found.missing:
        raise UsageError(f"no such file or directory: {', '.join(found.missing)}")
    if not args.changed_since:
        return found, None
    from lsp_server.check.changed import ChangedError, changed_since

    try:
        changes = changed_since(args.changed_since, root)
    except ChangedError as e:
        raise UsageError(f"--changed-since {args.changed_since}: {e}") from None
    kept = []
    changed_lines = {}
    for tgt in found.files:
        got = changes.of(tgt.path)
        if got is not False:
            kept.append(tgt)
            changed_lines[tgt.path] = got
    found.files = kept
    return found, changed_lines


def _tell(report, say, stderr: TextIO) -> None:
    """Skipped files, errors, files left unfixed and the summary line, on stderr."""
    for path, reason in report.skipped:
        say(f"warning: {path}: skipped: {reason}")
    for path, msg in report.errors:
        say(f"error: {path}: {msg}")
    for path, status in report.fix_status.items():
        if status != "fixed":
            say(f"warning: {path}: {status}")
    print(report.summary.line(), file=stderr)


def execute(
    args: argparse.Namespace, factory: RepairerFactory | None = None,
    stdout: TextIO | None = None, stderr: TextIO | None = None,
) -> int:
    """The whole command with a given repairer factory (the CLI passes the engine one)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr

    def say(msg: str) -> None:
        print(f"diffusion-lsp check: {msg}", file=stderr)

    try:
        shard, jobs = _validate(args)
    except UsageError as e:
        say(f"error: {e}")
        return EXIT_ERROR
    root = os.path.abspath(args.root or os.getcwd())
    try:
        found, changed_lines = _targets(args, root, shard)
    except UsageError as e:
        say(f"error: {e}")
        return EXIT_ERROR
    if factory is None:
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
        factory = EngineRepairerFactory(args.model, args.device, threads, args.max_change)
    ropts = RunOptions(threshold=args.threshold, scan_level=args.scan_level, jobs=jobs,
                       name_threshold=args.name_threshold, max_file_size=args.max_file_size, lines=changed_lines)
    progress = not args.no_progress and not args.quiet and show_progress(stderr)
    fix_status: dict[str, str] = {}
    if args.fix:  # what an earlier --fix killed mid-write left beside the files
        dirs = (os.path.dirname(os.path.realpath(f.path)) for f in found.files)
        for leftover in remove_stale_temp_files(dirs):
            say(f"removed {leftover}, left by an interrupted --fix")

    def on_result(r: FileResult) -> None:
        # --fix writes each file as soon as its result is in: a killed run leaves every
        # file either as it was or completely fixed (atomic replace), never half written.
        if args.fix and any(f.has_fix for f in r.findings):
            outcome = apply_fix(r, roots=args.paths, follow_symlinks=args.follow_symlinks)
            fix_status[r.display] = "fixed" if outcome.fixed else f"not fixed: {outcome.reason}"
        if args.verbose:
            status = r.skipped and f"skipped: {r.skipped}" or r.error or fix_status.get(r.display)
            n = len(r.findings)
            say(f"{r.display}: {n} finding{'s' * (n != 1)}" + (f" ({status})" if status else ""))

    try:
        run = run_files(found.files, factory, ropts, progress=progress, on_result=on_result)
    except ModelLoadFailed as e:
        say(f"error: cannot load the model: {e}")
        return EXIT_ERROR
    report = build_report(
        run.results, run.summary, found.skipped, root=root, threshold=args.threshold,
        shard=shard, tool_version=_version(),
    )
    report.fix_status = fix_status
    report.summary.fixed = sum(
        sum(f.has_fix for f in r.findings) for r in run.results
        if fix_status.get(r.display) == "fixed"
    )
    text = "".join(result_diff(r) for r in run.results) if args.diff else render(args.format, report)
    try:
        if args.output:
            _write_output(args.output, text)
        else:
            stdout.write(text)
            stdout.flush()
    except OSError as e:
        say(f"error: cannot write the report: {e}")
        return EXIT_ERROR
    if not args.quiet:
        _tell(report, say, stderr)
    if run.interrupted:
        say(f"interrupted: the report covers {len(run.results)} of {len(found.files)} files")
        return EXIT_INTERRUPTED
    if report.errors:
        return EXIT_ERROR
    if args.diff:
        return EXIT_FINDINGS if text else EXIT_OK
    remaining = report.summary.findings - (report.summary.fixed if args.fix else 0)
    return EXIT_FINDINGS if remaining else EXIT_OK


def run(args: argparse.Namespace) -> int:
    return execute(args)
