"""The model-free diagnostics pass (`diagnostics.analyze`) in a child process.

CPython's parser holds the GIL for a whole parse (35 ms for a 2,000-line file, several per
pass when a file is broken: 110-160 ms of a pass), so in a thread of the server it stalled
the event loop and the model worker that answer completions: with a pass in every pause
of typing, the latency benchmark's warm p50 was 191 ms against 99 ms without the passes
(session 11, engine p50 77 ms in both). A child process has its own GIL and runs at a
lower priority (`os.nice`), so a completion is never queued behind a parse.

Protocol: one JSON object per line on the child's stdin, `{"text", "language", "names"}`,
answered by one line on its stdout, `{"syntax": [...], "sites": [...]}` (or `{"error":
"..."}`). JSON both ways (ASCII: `json.dumps` escapes the rest), never pickle. The child
is started on first use, by `sys.executable -I` (isolated: neither the working
directory, which may be a workspace, nor PYTHON* variables reach its import path) with
this package's own directory put first on it; it exits when its stdin closes. A child that dies or answers garbage is replaced
on the next call; when one cannot be started, or fails `MAX_FAILURES` times in a row, the
pass runs in the calling thread as before (`analyze` never raises for the child's sake).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from lsp_server.check.names import NameUse
from lsp_server.diagnostics import NameSite, SyntaxDiagnostic, analyze

NICE = 10  # the child's niceness relative to the server
MAX_FAILURES = 3  # children lost in a row before the pass stays in the server process
TIMEOUT_S = 60.0  # a pass that takes longer: the child is killed (a failure)


def encode_result(syntax: list[SyntaxDiagnostic], sites: list[NameSite]) -> dict:
    return {
        "syntax": [[d.start, d.end, d.message, d.block_start_line, d.block_end_line, d.code]
                   for d in syntax],
        "sites": [[s.use.name, s.use.start, s.use.end, list(s.use.candidates), s.start, s.end]
                  for s in sites],
    }


def decode_result(obj: dict) -> tuple[list[SyntaxDiagnostic], list[NameSite]]:
    syntax = [SyntaxDiagnostic(int(a), int(b), str(m), int(f), int(la), str(c))
              for a, b, m, f, la, c in obj["syntax"]]
    sites = [NameSite(NameUse(str(n), int(a), int(b), tuple(map(str, cands))), int(s), int(e))
             for n, a, b, cands, s, e in obj["sites"]]
    return syntax, sites


class AnalysisProcess:
    """`analyze(text, language, names)` computed by a child process (module docstring).
    Thread-safe: one request at a time; callers block (the server calls it from a daemon
    thread, whose wait on the pipe releases the GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self.failures = 0
        self.served = 0  # passes the child computed (the tests read it)

    @property
    def usable(self) -> bool:
        return self.failures < MAX_FAILURES

    def analyze(self, text: str, language: str, names: bool
                ) -> tuple[list[SyntaxDiagnostic], list[NameSite]]:
        with self._lock:
            if self.usable:
                try:
                    got = self._ask(text, language, names)
                    self.failures = 0
                    self.served += 1
                    return got
                except (OSError, ValueError, KeyError, TypeError):
                    self.failures += 1
                    self._stop()
        return analyze(text, language, names)

    def _ask(self, text: str, language: str, names: bool):
        child = self._child
        if child is None or child.poll() is not None:
            child = self._child = _start()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps({"text": text, "language": language, "names": names}) + "\n")
        child.stdin.flush()
        watchdog = threading.Timer(TIMEOUT_S, child.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            line = child.stdout.readline()
        finally:
            watchdog.cancel()
        if not line:
            raise OSError("the analysis process exited")
        obj = json.loads(line)
        if "error" in obj:
            raise ValueError(obj["error"])
        return decode_result(obj)

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            try:
                child.kill()
                child.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def close(self) -> None:
        with self._lock:
            self._stop()


ROOT = str(Path(__file__).resolve().parents[1])  # the directory holding lsp_server/


def child_command() -> list[str]:
    """The one program the server starts (tests/stress/guard.py allows exactly this)."""
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); "
            "from lsp_server.analysis_process import main; main()")
    return [sys.executable, "-I", "-c", code]


def _start() -> subprocess.Popen:
    return subprocess.Popen(
        child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, encoding="utf-8", bufsize=1, cwd=ROOT)  # stderr: the server's


def main() -> None:
    """The child: at a lower priority than the server, `serve` on stdio."""
    if hasattr(os, "nice"):  # POSIX; elsewhere the child runs at the server's priority
        with contextlib.suppress(OSError):  # may not lower itself: run anyway
            os.nice(NICE)
    serve(sys.stdin, sys.stdout)


def serve(stdin, stdout) -> None:
    """The child's loop: a request line in, an answer line out, until stdin closes."""
    for line in stdin:
        try:
            req = json.loads(line)
            out = encode_result(*analyze(req["text"], req["language"], bool(req["names"])))
        except Exception as e:  # a bad request or a parser failure: say so, keep serving
            out = {"error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()
