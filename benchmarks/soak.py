"""A bounded soak of the language server: a seeded random editing session, checked at every step.

    python -m dlsp_benchmarks.soak --spill --cache-budget-mb 0.05   # 20,000 steps, ~3 min, then stops

The server runs as a real subprocess (`python -m lsp_server`) driven by `RawClient`, a small
JSON-RPC client over the raw stdio pipes (Content-Length framing, a reader thread, every
wait bounded by a timeout). A session opens, edits, closes and reopens many documents,
asks for completions, inline completions, code actions (and their resolve) and cancels
some of them, with edits that are valid, out of range, reversed, inside a surrogate pair,
and full-text replacements. After every step it checks that

- the server's copy of each touched document equals the client's (command
  `diffusion-lsp.documentState`: version, length and sha256 of the text),
- every request sent in the step was answered (a result or a JSON-RPC error),
- the server's resident memory (VmRSS from /proc) stays under its size after the model
  load plus the configured cache budget plus a fixed margin.

It reports requests per second and the largest memory seen (VmHWM). The CI suite runs a
short session (tests/stress/test_soak.py); this script's defaults run a longer one.
The client's copy of a document is kept with `ref_apply_change`, written from the LSP
specification independently of `lsp_server.positions`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 2**20
SERVER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FAST = {"maxTokens": 8, "blockSize": 8, "threshold": 0.9}


# -- raw JSON-RPC client over stdio ---------------------------------------------------------
class RpcTimeout(AssertionError):
    """The server did not send what was waited for in time."""


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawClient:
    """The server as a subprocess with pipes; messages are read by a thread into a queue.

    `send_bytes` writes anything (for protocol abuse); `request`/`notify` frame JSON;
    `wait_response(id)` returns the response to `id` or raises `RpcTimeout`. Requests the
    server sends (progress tokens, configuration) are answered automatically. Messages are
    never waited for with sleeps: every wait is a blocking queue read with a deadline.
    """

    def __init__(self, command: list[str], *, env: dict | None = None, cwd: str | None = None,
                 stderr_path: str | Path | None = None) -> None:
        self.stderr_path = Path(stderr_path or tempfile.mkstemp(prefix="lsp-stderr-")[1])
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env or SERVER_ENV, cwd=cwd)
        self._inbox: queue.Queue = queue.Queue()
        self.responses: dict[Any, dict] = {}
        self.notifications: list[dict] = []
        self.server_requests: list[dict] = []
        self.frames_received = 0
        self._next_id = 0
        self.configuration: dict = {}  # answer to workspace/configuration
        self._reader = threading.Thread(target=self._read, daemon=True, name="rpc-reader")
        self._reader.start()

    # reading ---------------------------------------------------------------------------
    def _read(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        self._inbox.put(None)
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    self._inbox.put(("bad-frame", "no Content-Length"))
                    continue
                body = out.read(length)
                if len(body) < length:
                    self._inbox.put(None)
                    return
                self._inbox.put(json.loads(body))
        except Exception as e:  # a broken frame from the server fails the waiting test
            self._inbox.put(("bad-frame", repr(e)))

    def _pump(self, deadline: float) -> bool:
        """Take one message off the queue (False on EOF); raises RpcTimeout at the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise RpcTimeout("timed out waiting for the server")
        try:
            msg = self._inbox.get(timeout=left)
        except queue.Empty:
            raise RpcTimeout("timed out waiting for the server") from None
        if msg is None:
            self._inbox.put(None)  # keep EOF visible to later waits
            return False
        if isinstance(msg, tuple):
            raise AssertionError(f"server sent a broken frame: {msg[1]}")
        self.frames_received += 1
        if "method" in msg and "id" in msg:
            self.server_requests.append(msg)
            self._answer_server_request(msg)
        elif "method" in msg:
            self.notifications.append(msg)
        else:
            self.responses[msg.get("id")] = msg
        return True

    def _answer_server_request(self, msg: dict) -> None:
        method = msg["method"]
        result: Any = None
        if method == "workspace/configuration":
            items = (msg.get("params") or {}).get("items") or []
            result = [self.configuration for _ in items]
        self.send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def wait_response(self, msg_id: Any, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while msg_id not in self.responses:
            if not self._pump(deadline):
                raise AssertionError(f"server closed its output before answering {msg_id!r}"
                                     f"\n{self.stderr_tail()}")
        return self.responses.pop(msg_id)

    def wait_notification(self, pred: Callable[[dict], bool], timeout: float = 60.0,
                          start: int = 0) -> dict:
        """The first notification from index `start` on that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.notifications):
                if pred(self.notifications[i]):
                    return self.notifications[i]
                i += 1
            if not self._pump(deadline):
                raise AssertionError(f"server closed its output\n{self.stderr_tail()}")

    def drain(self) -> None:
        """Process whatever has already arrived, without waiting."""
        while not self._inbox.empty():
            if not self._pump(time.monotonic() + 1):
                return

    # writing ---------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg: Any) -> None:
        self.send_bytes(frame(json.dumps(msg).encode()))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        msg_id = self.new_id() if msg_id is None else msg_id
        msg = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def call(self, method: str, params: Any = None, timeout: float = 60.0) -> Any:
        """A request whose answer must be a result; returns it."""
        resp = self.wait_response(self.request(method, params), timeout)
        assert "error" not in resp, f"{method} failed: {resp['error']}"
        return resp.get("result")

    # LSP helpers -------------------------------------------------------------------------
    def initialize(self, options: dict, capabilities: dict | None = None,
                   timeout: float = 120.0) -> dict:
        caps = capabilities if capabilities is not None else CLIENT_CAPABILITIES
        result = self.call("initialize", {"processId": os.getpid(), "rootUri": None,
                                          "capabilities": caps,
                                          "initializationOptions": options}, timeout)
        self.notify("initialized", {})
        return result

    def status(self, timeout: float = 60.0) -> dict:
        return self.call("workspace/executeCommand", {"command": "diffusion-lsp.status"}, timeout)

    def wait_model(self, timeout: float = 180.0) -> dict:
        """Wait for the model load to end (ready or failed); returns the status."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s["model"] is not None or s["model_error"] is not None:
                return s
            if time.monotonic() > deadline:
                raise RpcTimeout(f"the model never loaded: {s}")
            # the load ends with a log or show message: wait for the next notification
            n = len(self.notifications)
            self.wait_notification(lambda _m: True, max(0.1, deadline - time.monotonic()), n)

    def document_state(self, uri: str) -> dict:
        return self.call("workspace/executeCommand",
                         {"command": "diffusion-lsp.documentState", "arguments": [uri]})

    def shutdown_and_exit(self, timeout: float = 60.0) -> int:
        self.call("shutdown", None, timeout)
        self.notify("exit")
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RpcTimeout(f"server did not exit within {timeout} s") from None

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server process in bytes."""
        return proc_memory(self.proc.pid)

    def stderr_text(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stderr_tail(self, n: int = 3000) -> str:
        return self.stderr_text()[-n:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()
        self._stderr.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def proc_memory(pid: int) -> tuple[int, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


CLIENT_CAPABILITIES: dict = {
    "general": {"positionEncodings": ["utf-16"]},
    "window": {"workDoneProgress": True},
    "workspace": {"configuration": True, "workspaceEdit": {"documentChanges": True}},
    "textDocument": {
        "synchronization": {},
        "completion": {},
        "inlineCompletion": {},
        "codeAction": {
            "codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["quickfix",
                                                                         "refactor.rewrite"]}},
            "dataSupport": True,
            "disabledSupport": True,
            "resolveSupport": {"properties": ["edit"]},
        },
    },
}


def server_command(log_level: str = "info") -> list[str]:
    return [sys.executable, "-m", "lsp_server", "--log-level", log_level]


# -- the client's copy of a document (independent of lsp_server.positions) -------------------
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def ref_lines(text: str) -> list[tuple[int, str]]:
    """(start offset, content without terminator) of every line; a final empty line too."""
    out, pos = [], 0
    for m in _LINES.finditer(text):
        out.append((pos, m.group(0).rstrip("\r\n")))
        pos = m.end()
    if not out or text.endswith(("\n", "\r")):
        out.append((len(text), ""))
    return out


def ref_offset(text: str, line: int, character: int) -> int:
    """String offset of a UTF-16 (line, character): clamped, rounded down inside a pair."""
    lines = ref_lines(text)
    if line >= len(lines):
        return len(text)
    start, content = lines[line]
    units = 0
    for i, ch in enumerate(content):
        width = len(ch.encode("utf-16-le", "surrogatepass")) // 2
        if units + width > character:
            return start + i
        units += width
    return start + len(content)


def ref_position(text: str, offset: int) -> tuple[int, int]:
    lines = ref_lines(text)
    for n in range(len(lines) - 1, -1, -1):
        start, content = lines[n]
        if start <= offset:
            piece = content[: offset - start]
            return n, len(piece.encode("utf-16-le", "surrogatepass")) // 2
    return 0, 0


def ref_apply_change(text: str, start: tuple[int, int], end: tuple[int, int], new: str) -> str:
    a, b = ref_offset(text, *start), ref_offset(text, *end)
    a, b = min(a, b), max(a, b)
    return text[:a] + new + text[b:]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- the soak session ----------------------------------------------------------------------
EMOJI = "\U0001f600"
PIECES = ["x", "def f(a):\n", "    return a + 1\n", " ", "\n", "\r\n", "\r", "é", "中", EMOJI,
          "\U0001f9d1\u200d\U0001f4bb", "e\u0301", "\t", "(", ")", ":", "import os\n",
          "print(", "'", '"', "#", "\x00", "\ufeff"]
SEED_TEXTS = [
    "import os\n\ndef area(r):\n    return 3.14 * r * r\n",
    f"s = '{EMOJI} hi'\r\nt = s.upper()\r\n",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "",
    "x = (1,\n     2\n",
]


@dataclass
class SoakReport:
    steps: int = 0
    requests: int = 0
    answered: int = 0
    errors: dict = field(default_factory=dict)  # JSON-RPC error code -> count
    edits: int = 0
    completions: int = 0
    code_actions: int = 0
    resolves: int = 0
    cancellations: int = 0
    state_checks: int = 0
    seconds: float = 0.0
    rss_after_load_mb: float = 0.0
    max_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0  # VmHWM at the end
    limit_mb: float = 0.0
    rss_quarter_mb: float = 0.0  # RSS after a quarter of the steps (allocator warmed up)
    rss_end_mb: float = 0.0
    cache: dict = field(default_factory=dict)

    @property
    def growth_mb_per_1000_steps(self) -> float:
        """RSS growth over the last three quarters of the session: ~0 unless something leaks."""
        n = self.steps - self.steps // 4
        return (self.rss_end_mb - self.rss_quarter_mb) * 1000 / n if n > 0 else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["requests_per_second"] = round(self.requests_per_second, 1)
        d["growth_mb_per_1000_steps"] = round(self.growth_mb_per_1000_steps, 2)
        return d


class Session:
    """A seeded random editing session against one server, checked after every step."""

    def __init__(self, client: RawClient, rng: random.Random, n_docs: int,
                 root: str = "file:///soak") -> None:
        self.c = client
        self.rng = rng
        self.uris = [f"{root}/doc{i}.py" if i % 4 else f"{root}/doc{i}.txt" for i in range(n_docs)]
        self.texts: dict[str, str] = {}  # open documents: the client's copy
        self.versions: dict[str, int] = {}
        self.report = SoakReport()
        self.pending: list[Any] = []  # request ids sent in the current step

    # messages --------------------------------------------------------------------------
    def _request(self, method: str, params: Any) -> Any:
        self.report.requests += 1
        rid = self.c.request(method, params)
        self.pending.append(rid)
        return rid

    def _collect(self, timeout: float) -> list[dict]:
        out = []
        for rid in self.pending:
            resp = self.c.wait_response(rid, timeout)
            self.report.answered += 1
            if "error" in resp:
                code = resp["error"]["code"]
                self.report.errors[code] = self.report.errors.get(code, 0) + 1
                # only these errors are expected from a valid (if hurried) client
                assert code in (-32800, -32803), f"unexpected error {resp['error']}"
            out.append(resp)
        self.pending = []
        return out

    # actions ----------------------------------------------------------------------------
    def open(self, uri: str) -> None:
        text = self.rng.choice(SEED_TEXTS)
        v = self.versions.get(uri, 0) + 1
        self.c.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python" if uri.endswith(".py") else "plaintext",
            "version": v, "text": text}})
        self.texts[uri], self.versions[uri] = text, v

    def close(self, uri: str) -> None:
        self.c.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        del self.texts[uri]

    def _random_position(self, text: str) -> tuple[int, int]:
        lines = ref_lines(text)
        r = self.rng.random()
        if r < 0.05:  # past the last line
            return len(lines) + self.rng.randrange(3), self.rng.randrange(5)
        line = self.rng.randrange(len(lines))
        width = len(lines[line][1].encode("utf-16-le", "surrogatepass")) // 2
        if r < 0.1:  # past the end of the line
            return line, width + 1 + self.rng.randrange(5)
        return line, self.rng.randint(0, width)  # may fall inside a surrogate pair

    def _random_text(self) -> str:
        return "".join(self.rng.choice(PIECES) for _ in range(self.rng.choice([0, 1, 1, 2, 4, 9])))

    def edit(self, uri: str) -> None:
        text = self.texts[uri]
        changes = []
        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
            if self.rng.random() < 0.03:
                new = self._random_text() * self.rng.randint(1, 4)
                changes.append({"text": new})
                text = new
                continue
            a, b = self._random_position(text), self._random_position(text)
            if self.rng.random() < 0.7:  # mostly well-ordered, sometimes reversed
                a, b = sorted((a, b))
            new = self._random_text()
            changes.append({"range": {"start": {"line": a[0], "character": a[1]},
                                      "end": {"line": b[0], "character": b[1]}}, "text": new})
            text = ref_apply_change(text, a, b, new)
        self.versions[uri] += 1
        self.c.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": self.versions[uri]},
            "contentChanges": changes})
        self.texts[uri] = text
        self.report.edits += 1

    def complete(self, uri: str, inline: bool) -> Any:
        line, ch = self._random_position(self.texts[uri])
        params: dict = {"textDocument": {"uri": uri}, "position": {"line": line, "character": ch}}
        self.report.completions += 1
        if inline:
            params["context"] = {"triggerKind": 1}
            return self._request("textDocument/inlineCompletion", params)
        return self._request("textDocument/completion", params)

    def code_action(self, uri: str, resolve: bool) -> None:
        text = self.texts[uri]
        a, b = sorted((self._random_position(text), self._random_position(text)))
        if self.rng.random() < 0.5:
            b = a
        params = {"textDocument": {"uri": uri},
                  "range": {"start": {"line": a[0], "character": a[1]},
                            "end": {"line": b[0], "character": b[1]}},
                  "context": {"diagnostics": []}}
        self.report.code_actions += 1
        rid = self._request("textDocument/codeAction", params)
        if not resolve:
            return
        resp = self.c.wait_response(rid, 60)
        self.pending.remove(rid)
        self.report.answered += 1
        actions = resp.get("result") or []
        usable = [x for x in actions if not x.get("disabled")]
        if usable:
            self.report.resolves += 1
            self._request("codeAction/resolve", usable[0])

    def cancel(self, rid: Any) -> None:
        self.report.cancellations += 1
        self.c.notify("$/cancelRequest", {"id": rid})

    # one step ------------------------------------------------------------------------------
    def step(self) -> None:
        rng = self.rng
        uri = rng.choice(self.uris)
        touched = {uri}
        if uri not in self.texts:
            self.open(uri)
        r = rng.random()
        if r < 0.04:
            self.close(uri)
        elif r < 0.55:
            for _ in range(rng.choice([1, 1, 2, 5])):
                self.edit(uri)
        elif r < 0.80:
            rid = self.complete(uri, inline=rng.random() < 0.4)
            x = rng.random()
            if x < 0.2:
                self.cancel(rid)
            elif x < 0.4:  # type while the completion runs: the edit cancels it
                self.edit(uri)
            if rng.random() < 0.2:  # a second document at the same time
                other = rng.choice(self.uris)
                if other in self.texts:
                    self.complete(other, inline=False)
                    touched.add(other)
        elif r < 0.95:
            self.code_action(uri, resolve=rng.random() < 0.3)
            if rng.random() < 0.2:
                self.edit(uri)
        else:
            self._request("workspace/executeCommand", {"command": "diffusion-lsp.status"})
        self._collect(timeout=120)
        for u in touched:
            self.check_document(u)
        self.report.steps += 1

    def check_document(self, uri: str) -> None:
        self.report.requests += 1
        state = self.c.document_state(uri)
        self.report.answered += 1
        self.report.state_checks += 1
        if uri not in self.texts:
            assert state is None or state.get("open") is False, (uri, state)
            return
        text = self.texts[uri]
        want = {"open": True, "version": self.versions[uri], "length": len(text),
                "sha256": text_sha256(text)}
        got = {k: state.get(k) for k in want}
        assert got == want, f"server copy of {uri} differs: {got} != {want}\ntext={text!r}"


def run_soak(model: str, *, steps: int, docs: int, seed: int, cache_budget_mb: float = 8.0,
             margin_mb: float = 200.0, max_seconds: float = 600.0, cache_dir: str | None = None,
             log: Callable[[str], None] = lambda s: None) -> SoakReport:
    """Run one session; raises AssertionError on the first inconsistency."""
    options = {"modelPath": model, **FAST, "cacheBudgetMb": cache_budget_mb}
    if cache_dir:
        options["cacheDir"] = cache_dir
    with RawClient(server_command()) as c:
        c.initialize(options)
        s = c.wait_model()
        assert s["model"] is not None, s["model_error"]
        rss0, _ = c.rss()
        session = Session(c, random.Random(seed), docs)
        rep = session.report
        rep.rss_after_load_mb = rss0 / MB
        rep.limit_mb = (rss0 + (cache_budget_mb + margin_mb) * MB) / MB
        t0 = time.perf_counter()
        deadline = time.monotonic() + max_seconds
        for i in range(steps):
            session.step()
            rss, _ = c.rss()
            rep.max_rss_mb = max(rep.max_rss_mb, rss / MB)
            if i + 1 == steps // 4:
                rep.rss_quarter_mb = rss / MB
            rep.rss_end_mb = rss / MB
            assert rss / MB <= rep.limit_mb, (
                f"step {i}: server RSS {rss / MB:.0f} MB over {rep.limit_mb:.0f} MB")
            if (i + 1) % 500 == 0:
                log(f"  step {i + 1}: {rep.requests} requests, RSS {rss / MB:.0f} MB")
            if time.monotonic() > deadline:
                log(f"  stopped at step {i + 1}: --max-seconds reached")
                break
        rep.seconds = time.perf_counter() - t0
        for u in list(session.texts):
            session.check_document(u)
        rep.cache = {k: v for k, v in (c.status().get("cache") or {}).items()
                     if k in ("hits", "misses", "evictions", "spills", "restores",
                              "bytes_in_memory", "budget_bytes", "rejected_spill_files")}
        rep.peak_rss_mb = c.rss()[1] / MB
        assert rep.requests == rep.answered, (rep.requests, rep.answered)
        assert c.shutdown_and_exit() == 0
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dlsp_benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model directory (default: a tiny random model built now)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--docs", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache-budget-mb", type=float, default=8.0)
    p.add_argument("--margin-mb", type=float, default=200.0,
                   help="allowed RSS growth over (RSS after the model load + cache budget)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    p.add_argument("--spill", action="store_true", help="give the server a cache directory")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        model = args.model
        if model is None:
            from diffusion_core.testing import make_tiny_model_dir

            model = str(make_tiny_model_dir(Path(tmp) / "tiny"))
        rep = run_soak(model, steps=args.steps, docs=args.docs, seed=args.seed,
                       cache_budget_mb=args.cache_budget_mb, margin_mb=args.margin_mb,
                       max_seconds=args.max_seconds,
                       cache_dir=str(Path(tmp) / "cache") if args.spill else None,
                       log=lambda s: print(s, flush=True))
    out = rep.to_json()
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
