"""The pygls language server: editor requests -> jobs on the in-process diffusion engine.

Features: incremental document sync (UTF-16 by default, UTF-8/UTF-32 when the client
offers them), `textDocument/completion`, `textDocument/inlineCompletion` (ghost text),
`textDocument/codeAction` "Repair this block" (refactor.rewrite, or quickfix where the
block has a syntax error) with `codeAction/resolve`, syntax-error diagnostics
(`textDocument/publishDiagnostics`, debounced after didOpen/didChange, computed off the
model worker; see `diagnostics.py`), and the commands
`diffusion-lsp.status` and `diffusion-lsp.documentState` (version and hash of the
server's copy of a document).

Concurrency: all model work runs in one worker thread (`worker.Worker`); the asyncio loop
only parses, converts positions and answers. A newer completion for a document
supersedes the older one, `$/cancelRequest` cancels the running job between two
denoising steps, and an edit of the document cancels its jobs. Every request gets an
answer: a result, an empty result (superseded, stale version, model unavailable), or a
JSON-RPC error (RequestCancelled; InvalidParams for a document that is not open;
RequestFailed when the job itself fails). Malformed messages, requests before
`initialize` and after `shutdown` are answered by `rpc.RobustProtocol`.

"Repair this block" is offered on a selection, as the quick fix of a diagnostic (or of a
syntax error at the cursor), or when the user invokes code actions explicitly
(triggerKind Invoked), not for the automatic lightbulb on every line. For a Python
block with a syntax error the edit is parser-verified (`syntax_repair`): no edit rather
than one that does not parse.

Repair runs lazily when the client supports `codeAction/resolve` of `edit`: listing the
action is cheap (tree-sitter + tokenizer only), the model runs in resolve, when the user
picks the action. Other clients get the edit computed in `codeAction` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from diffusion_core.checkpoint import ModelLoadError
from diffusion_core.config import SamplerConfig
from diffusion_core.engine import MAX_REPAIR_TOKENS, Engine
from diffusion_core.sampler import Cancelled
from lsp_server import diagnostics, jobs, rpc
from lsp_server.blocks import language_of
from lsp_server.documents import DocumentNotOpen, DocumentStore, Snapshot
from lsp_server.edits import Edit
from lsp_server.positions import UTF16
from lsp_server.settings import SECTION, Settings, parse_settings
from lsp_server.worker import Worker

log = logging.getLogger("lsp_server")

STATUS_COMMAND = "diffusion-lsp.status"
DOCUMENT_STATE_COMMAND = "diffusion-lsp.documentState"
REPAIR_TITLE = "Repair this block"
REQUEST_FAILED = -32803  # LSP RequestFailed
_LEVELS = {"error": t.MessageType.Error, "warning": t.MessageType.Warning,
           "info": t.MessageType.Info, "debug": t.MessageType.Log}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-lsp")
    except Exception:
        return "0+unknown"


@dataclass
class Metrics:
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    served: int = 0
    cancelled: int = 0
    superseded: int = 0
    stale: int = 0
    errors: int = 0
    repairs: int = 0

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        xs = sorted(self.latencies_ms)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_served": self.served, "requests_cancelled": self.cancelled,
            "requests_superseded": self.superseded, "stale_results_dropped": self.stale,
            "errors": self.errors, "repairs": self.repairs,
            "completion_latency_ms": {"p50": self.percentile(0.5), "p95": self.percentile(0.95),
                                      "n": len(self.latencies_ms)},
        }


class _QuietExpectedErrors(logging.Filter):
    """pygls logs every JSON-RPC error a handler raises with a traceback; ours are
    expected answers (document not open, block too long): keep them out of stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, JsonRpcException) and exc.code != -32603:
            record.exc_info = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("pygls").isEnabledFor(logging.DEBUG)
        return True


class DiffusionLanguageServer(LanguageServer):
    def __init__(self, base_settings: Settings | None = None) -> None:
        super().__init__("diffusion-lsp", _version(), protocol_cls=rpc.RobustProtocol)
        self.settings = base_settings or Settings()
        self.docs = DocumentStore()
        self.worker = Worker()
        self.metrics = Metrics()
        self.engine: Engine | None = None
        self.store = None  # cache.DocumentCacheStore once the model is loaded
        self.load_error: str | None = None
        self.encoding = UTF16
        self._pending_messages: list[tuple[t.MessageType, str]] = []
        self._loading: asyncio.Future | None = None
        self._load_done: asyncio.Future | None = None
        self._initialized = False
        self._load_pending = False
        self._progress_n = 0
        self._load_gen = 0  # the latest model load; older ones may not set the engine
        self.client_gone = False  # the session's read loop has ended (see `_serve`)
        self._model_lock = threading.Lock()
        self.debouncer = diagnostics.Debouncer()
        logging.getLogger("pygls.protocol.json_rpc").addFilter(_QuietExpectedErrors())

    def start_io(self, stdin=None, stdout=None) -> None:
        """Serve stdio with `rpc.serve` (framing that recovers, an answer for every
        request). When the client goes away, running jobs are cancelled so the process
        exits at once; `exit` without `shutdown` exits with code 1."""
        from pygls.io_ import StdoutWriter

        self._stop_event = threading.Event()
        reader = rpc.StdinReader(stdin or sys.stdin.buffer, self.thread_pool)
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        code = 0
        try:
            asyncio.run(self._serve(reader))
            log.info("the client closed the connection")
        except BrokenPipeError:
            log.error("connection to the client is lost; shutting down")
        except KeyboardInterrupt:
            pass
        except SystemExit as e:  # the exit notification
            code = e.code
        finally:
            self._end_session()
        if code:
            raise SystemExit(code)

    async def _serve(self, reader) -> None:
        try:
            await rpc.serve(self._stop_event, reader, self.protocol)
        finally:
            # From here on (jobs cancelled as the loop ends, the session's teardown) a log
            # line cannot reach the client: it must go to stderr (`log_line`).
            self.client_gone = True

    def _end_session(self) -> None:
        """After the client is gone (stdio or TCP): stop the model worker, then pygls."""
        self.worker.shutdown()
        self.shutdown()

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client over TCP with the same read loop as stdio (`rpc.serve`); the
        process ends with that client's session, as it does when stdin closes."""
        self._stop_event = threading.Event()
        code: int | None = 0

        async def main() -> None:
            nonlocal code
            done = asyncio.Event()
            busy = False

            async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal busy, code
                if busy:  # one editor per server process, as over stdio
                    writer.close()
                    return
                busy = True
                self.protocol.set_writer(writer)
                try:
                    await self._serve(rpc.StreamReaderAdapter(reader))
                    log.info("the client closed the connection")
                except (ConnectionError, BrokenPipeError):
                    log.error("connection to the client is lost; shutting down")
                except SystemExit as e:  # the exit notification
                    code = e.code
                finally:
                    done.set()

            server = await asyncio.start_server(connection, host, port)
            bound = server.sockets[0].getsockname()  # the real port when asked for port 0
            print(f"diffusion-lsp: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
            async with server:
                await done.wait()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        finally:
            self._end_session()
        if code:
            raise SystemExit(code)

    # -- messages -------------------------------------------------------------------
    def log_line(self, level: str, message: str) -> None:
        """window/logMessage, filtered by the logLevel setting (and the Python log; the
        record says it reached the client: `serve` over stdio keeps those off stderr, which
        the editor logs again, as errors)."""
        order = list(_LEVELS)
        sent = not self.client_gone and order.index(level) <= order.index(self.settings.log_level)
        log.log(logging.getLevelName(level.upper()), message, extra={"sent_to_client": sent})
        if sent:
            self.window_log_message(t.LogMessageParams(type=_LEVELS[level], message=message))

    def show(self, level: str, message: str) -> None:
        log.info("showMessage: %s", message)
        self.window_show_message(t.ShowMessageParams(type=_LEVELS[level], message=message))

    # -- settings and model ---------------------------------------------------------
    def apply_settings(self, data: Any) -> tuple[bool, list[str]]:
        """Merge new settings; returns (model must be reloaded, problems)."""
        new, problems = parse_settings(data, self.settings)
        old, self.settings = self.settings, new
        reload = (new.model_path, new.device) != (old.model_path, old.device)
        # (sampler settings reach the engine in `current_engine`, even during a load)
        cache = ("cache_budget_mb", "cache_dir", "cache_dir_max_mb", "cache_dir_max_age_days")
        cache_changed = any(getattr(new, k) != getattr(old, k) for k in cache)
        if not reload and self.engine is not None and cache_changed:
            self.store = self._make_store(self.engine)
        logging.getLogger("lsp_server").setLevel(new.log_level.upper())
        return reload, problems

    def current_engine(self) -> Engine | None:
        """The engine with the sampler of the current settings (called by jobs)."""
        engine = self.engine
        if engine is not None and engine.sampler != self._sampler():
            engine = self.engine = Engine(engine.loaded, self._sampler())
        return engine

    def _sampler(self) -> SamplerConfig:
        s = self.settings
        return SamplerConfig(block_size=s.block_size, threshold=s.threshold, max_tokens=s.max_tokens,
                             budget_ms=s.latency_budget_ms, heal=s.token_healing)

    def _make_store(self, engine: Engine):
        """A fresh cache store; may run in the worker, so problems are queued, not shown."""
        from cache import DocumentCacheStore

        s = self.settings
        budget = int(s.cache_budget_mb * 2**20)
        # a spill file of another precision is rejected, not fed to the model
        param = next(engine.model.parameters())
        dtype, device = param.dtype, param.device  # restored spills go where the model is
        try:
            store = DocumentCacheStore(
                model_hash=engine.model_hash, budget_bytes=budget, spill_dir=s.cache_dir,
                dtype=dtype, device=device, spill_max_bytes=int(s.cache_dir_max_mb * 2**20),
                spill_max_age_s=s.cache_dir_max_age_days * 86400)
            self._pending_messages.extend((t.MessageType.Warning, w) for w in store.warnings)
            return store
        except (OSError, ValueError) as e:
            self._pending_messages.append((t.MessageType.Warning, (
                f"cache directory {s.cache_dir!r} is unusable ({e}); caching in memory only")))
            return DocumentCacheStore(model_hash=engine.model_hash, budget_bytes=budget,
                                      dtype=dtype, device=device)

    def flush_messages(self) -> None:
        for kind, msg in self._pending_messages:
            self.window_show_message(t.ShowMessageParams(type=kind, message=f"diffusion-lsp: {msg}"))
        self._pending_messages.clear()

    def _load_job(self, gen: int, path: str | None, device: str) -> tuple[str | None, float] | None:
        """Runs in the worker, so jobs queued behind it already see the new engine.

        Only the latest load (`gen`) may set the engine or `load_error`: switching to a
        good model and then to a broken one left the good one serving under the broken
        one's name (and its error); the other order left a stale error. A superseded
        load returns None (and is skipped if it has not started)."""
        import torch

        if gen != self._load_gen:
            return None
        note = None
        if device.startswith("cuda") and not torch.cuda.is_available():
            note = f"device {device!r} is not available here; using cpu"
            device = "cpu"
        t0 = time.perf_counter()
        try:
            engine = Engine.from_path(path, device=device, sampler=self._sampler())
        except Exception as e:
            with self._model_lock:
                if gen != self._load_gen:
                    return None
                self.load_error = str(e) if isinstance(e, ModelLoadError) else f"{type(e).__name__}: {e}"
            raise
        store = self._make_store(engine)
        with self._model_lock:
            if gen != self._load_gen:
                return None
            self.store, self.engine, self.load_error = store, engine, None
        return note, (time.perf_counter() - t0) * 1000

    def start_load(self) -> asyncio.Future:
        """Queue the model load in the worker (first in line) and report its outcome."""
        s = self.settings
        with self._model_lock:
            self._load_gen += 1
            gen = self._load_gen
            self.engine, self.store, self.load_error = None, None, None
        self._load_pending = False
        fut, _ = self.worker.submit(lambda _tok: self._load_job(gen, s.model_path, s.device),
                                    label="load model")
        self._loading = asyncio.wrap_future(fut)
        self._load_done = asyncio.ensure_future(self._finish_load(self._loading, s))
        return self._load_done

    async def _finish_load(self, loading: asyncio.Future, s: Settings) -> str:
        try:
            outcome = await loading
            if outcome is None:  # a newer load replaced this one
                return "model replaced"
            note, ms = outcome
        except ModelLoadError as e:
            self.show("error", f"diffusion-lsp: cannot load the model: {e}. Completion and repair "
                      f"are off until {SECTION}.modelPath points to a valid model directory.")
            return "model failed to load"
        except Exception:  # e.g. CUDA errors: one clear message, not a traceback per request
            log.exception("model load failed")
            self.show("error", f"diffusion-lsp: cannot load the model: {self.load_error}")
            return "model failed to load"
        finally:
            if self._loading is loading:
                self._loading = None
        if note:
            self.show("warning", f"diffusion-lsp: {note}")
        if self._initialized:
            self.flush_messages()
        e = self.engine
        if e is None:
            return "model replaced"
        p = sum(x.numel() for x in e.model.parameters())
        self.log_line("info", f"loaded {e.loaded.path} (hash {e.model_hash}, {p} parameters, "
                      f"device {s.device}) in {ms:.0f} ms")
        return f"model ready ({p / 1e6:.2f}M parameters, {ms:.0f} ms)"

    async def report_load(self, done: asyncio.Future) -> None:
        """Work-done progress around a running load, if the client offers it."""
        token = None
        if _get(self.client_capabilities, "window", "work_done_progress"):
            self._progress_n += 1
            token = f"diffusion-lsp/load-model/{self._progress_n}"
            where = self.settings.model_path or "the embedded default model"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, t.WorkDoneProgressBegin(
                    title="diffusion-lsp", message=f"loading {where}", cancellable=False))
            except Exception as e:  # the client refused a progress token: go on without
                log.debug("no work-done progress: %s", e)
                token = None
        message = await asyncio.shield(done)
        if token is not None:
            self.work_done_progress.end(token, t.WorkDoneProgressEnd(message=message))

    # -- document helpers ------------------------------------------------------------
    def snapshot(self, uri: str) -> Snapshot:
        try:
            return self.docs.require(uri)
        except DocumentNotOpen as e:
            raise JsonRpcInvalidParams(message=str(e)) from None

    def model_unavailable(self) -> bool:
        """No model, and none on the way (a request queued behind a load just waits)."""
        if self.engine is not None:
            return False
        return self.load_error is not None or (self._loading is None and not self._load_pending)

    def lsp_range(self, snap: Snapshot, start: int, end: int) -> t.Range:
        a = snap.position(start, self.encoding)
        b = snap.position(end, self.encoding)
        return t.Range(t.Position(*a), t.Position(*b))

    # -- jobs ------------------------------------------------------------------------
    async def complete(self, uri: str, pos: t.Position, what: str):
        """Run a completion job; (snapshot, offset, result) or None for "no result"."""
        snap = self.snapshot(uri)
        if self.model_unavailable():
            return None
        offset = snap.offset(pos.line, pos.character, self.encoding)
        rid = self.protocol.msg_id
        t0 = time.perf_counter()

        def job(token):
            engine = self.current_engine()
            if engine is None:
                return None
            return jobs.run_completion(engine, snap.text, offset, store=self.store, uri=uri,
                                       cancel=token)

        try:
            # One key per kind: automatic ghost text never supersedes a completion the user
            # asked for (or the other way round); a newer request of the same kind does.
            kind = "complete" if what == "completion" else "inline"
            res = await self.worker.run(job, key=(kind, uri), label=f"{what} [{rid}] {uri}")
        except asyncio.CancelledError:
            self.metrics.cancelled += 1
            self.log_line("info", f"[{rid}] {what} cancelled by the client after "
                          f"{(time.perf_counter() - t0) * 1000:.0f} ms")
            raise
        except Cancelled:
            self.metrics.superseded += 1
            self.log_line("debug", f"[{rid}] {what} superseded or document changed")
            return None
        except Exception as e:
            self.metrics.errors += 1
            log.exception("completion job failed")
            self.log_line("error", f"[{rid}] {what} failed: {type(e).__name__}: {e}")
            if self.store is not None:  # a bad cache entry must not fail every later request
                self.store.forget(uri)
            raise JsonRpcException(code=REQUEST_FAILED,
                                   message=f"{what} failed: {type(e).__name__}: {e}") from None
        if res is None:
            return None
        now = self.docs.get(uri)
        if now is None or now.version != snap.version:
            self.metrics.stale += 1
            self.log_line("debug", f"[{rid}] {what} dropped: document moved on to a new version")
            return None
        ms = (time.perf_counter() - t0) * 1000
        self.metrics.served += 1
        self.metrics.latencies_ms.append(ms)
        tm = res.timings
        self.log_line("info", f"[{rid}] {what} {res.mode}-line at {pos.line}:{pos.character} -> "
                      f"{len(res.text)} chars in {ms:.0f} ms (engine {tm['engine_ms']:.0f} ms, "
                      f"{tm['steps']} steps, reused {tm['reused_tokens']} / encoded "
                      f"{tm['encoded_tokens']} context tokens"
                      f"{', out of time' if tm['out_of_time'] else ''})")
        return snap, offset, res

    async def repair_edit(self, uri: str, version: int | None, start_line: int,
                          end_line: int) -> t.WorkspaceEdit:
        """Run the repair job on whole lines; an empty edit if nothing changes or it is stale."""
        snap = self.snapshot(uri)
        empty = t.WorkspaceEdit(changes={})
        if version is not None and snap.version != version:
            self.metrics.stale += 1
            return empty
        if self.model_unavailable():
            raise JsonRpcException(code=REQUEST_FAILED,
                                   message=f"no model loaded: {self.load_error}")
        rid = self.protocol.msg_id

        def job(token):
            engine = self.current_engine()
            if engine is None:
                raise ModelLoadError(self.load_error or "no model loaded")
            return jobs.run_repair(engine, snap.text, start_line, end_line, cancel=token,
                                   language=snap.language)

        try:
            res = await self.worker.run(job, key=("repair", uri), label=f"repair {uri}")
        except asyncio.CancelledError:
            self.metrics.cancelled += 1
            raise
        except Cancelled:
            self.metrics.superseded += 1
            return empty
        except (ValueError, ModelLoadError) as e:
            raise JsonRpcException(code=REQUEST_FAILED, message=f"{REPAIR_TITLE}: {e}") from None
        now = self.docs.get(uri)
        if now is None or now.version != snap.version:
            self.metrics.stale += 1
            return empty
        self.metrics.repairs += 1
        self.log_line("info", f"[{rid}] repair lines {res.start_line + 1}-{res.end_line + 1}: "
                      f"{len(res.edits)} edits, confidence {res.confidence:.2f}, "
                      f"{res.timings['total_ms']:.0f} ms")
        if not res.edits:
            self.show("info", f"diffusion-lsp: no change proposed for lines "
                      f"{res.start_line + 1}-{res.end_line + 1}")
            return empty
        return self.workspace_edit(snap, res.edits)

    def schedule_diagnostics(self, uri: str) -> None:
        """Publish the document's syntax errors once typing pauses (debounced)."""
        self.debouncer.schedule(uri, lambda: self.publish_diagnostics(uri))

    def lsp_diagnostic(self, snap: Snapshot, d: diagnostics.SyntaxDiagnostic) -> t.Diagnostic:
        return t.Diagnostic(
            range=self.lsp_range(snap, d.start, d.end), message=d.message,
            severity=t.DiagnosticSeverity.Error, source=diagnostics.SOURCE, code=d.code,
            data={"startLine": d.block_start_line, "endLine": d.block_end_line},
        )

    async def publish_diagnostics(self, uri: str) -> None:
        """Syntax errors of the current text, computed off the event loop and off the model
        worker (completion never waits for them); dropped if the document moved on."""
        snap = self.docs.get(uri)
        if snap is None:
            return
        text = jobs.clean(snap.text)
        found = await diagnostics.in_daemon_thread(diagnostics.syntax_diagnostics, text,
                                                   snap.language)
        now = self.docs.get(uri)
        if now is None or now.version != snap.version:
            return
        self.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
            uri=uri, version=snap.version, diagnostics=[self.lsp_diagnostic(snap, d) for d in found]))

    def workspace_edit(self, snap: Snapshot, edits: list[Edit]) -> t.WorkspaceEdit:
        text_edits = [t.TextEdit(range=self.lsp_range(snap, e.start, e.end), new_text=e.new_text)
                      for e in edits]
        if _get(self.client_capabilities, "workspace", "workspace_edit", "document_changes"):
            ident = t.OptionalVersionedTextDocumentIdentifier(uri=snap.uri, version=snap.version)
            return t.WorkspaceEdit(document_changes=[
                t.TextDocumentEdit(text_document=ident, edits=text_edits)])
        return t.WorkspaceEdit(changes={snap.uri: text_edits})

    def status(self) -> dict[str, Any]:
        e = self.engine
        out: dict[str, Any] = {
            "server": {"name": self.name, "version": self.version},
            "model": None if e is None else {
                "path": str(e.loaded.path), "hash": e.model_hash, "kind": e.model.cfg.kind,
                "parameters": sum(x.numel() for x in e.model.parameters()),
                "device": str(next(e.model.parameters()).device),
            },
            "torch_threads": torch.get_num_threads(),
            "model_error": self.load_error,
            "loading": self._loading is not None,
            "settings": self.settings.to_json(),
            "position_encoding": self.encoding,
            "open_documents": len(self.docs),
            "worker": {"running": self.worker.running, "queued": self.worker.queued},
            "cache": self.store.stats() if self.store is not None else None,
        }
        out.update(self.metrics.to_json())
        return out


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _documentation(ls: DiffusionLanguageServer, language: str, code: str):
    """The proposed code as the item's documentation, in a format the client declared."""
    formats = _get(ls.client_capabilities, "text_document", "completion", "completion_item",
                   "documentation_format") or []
    if t.MarkupKind.Markdown in formats:
        return t.MarkupContent(kind=t.MarkupKind.Markdown, value=f"```{language}\n{code}\n```")
    if t.MarkupKind.PlainText in formats:
        return t.MarkupContent(kind=t.MarkupKind.PlainText, value=code)
    return None


def _echo(d: t.Diagnostic) -> t.Diagnostic:
    """A client's diagnostic, fit to send back in `CodeAction.diagnostics` (the decoded one
    may carry its severity as a plain int, which does not serialise)."""
    sev = t.DiagnosticSeverity(int(d.severity)) if d.severity is not None else None
    return t.Diagnostic(range=d.range, message=d.message, severity=sev, code=d.code,
                        source=d.source, data=d.data)


def _lines_of_range(r: t.Range) -> tuple[int, int]:
    start, end = r.start.line, r.end.line
    if end > start and r.end.character == 0:
        end -= 1
    return start, end


def build_server(base_settings: Settings | None = None) -> DiffusionLanguageServer:
    server = DiffusionLanguageServer(base_settings)

    @server.feature(t.INITIALIZE)
    def initialize(ls: DiffusionLanguageServer, params: t.InitializeParams) -> None:
        enc = ls.workspace.position_encoding or UTF16
        ls.encoding = getattr(enc, "value", enc)
        _, problems = ls.apply_settings(params.initialization_options)
        ls._pending_messages.extend((t.MessageType.Warning, p) for p in problems)
        ls._load_pending = True  # the load starts at `initialized` (it may send requests)

    @server.feature(t.INITIALIZED)
    async def initialized(ls: DiffusionLanguageServer, params: t.InitializedParams) -> None:
        ls._initialized = True
        ls.flush_messages()
        ls.log_line("info", f"diffusion-lsp {ls.version}: position encoding {ls.encoding}")
        # Queued in the worker before any await: every later job runs after the load.
        await ls.report_load(ls.start_load())

    @server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: DiffusionLanguageServer,
                                       params: t.DidChangeConfigurationParams) -> None:
        data = params.settings
        if not isinstance(data, dict) or not data:
            if not _get(ls.client_capabilities, "workspace", "configuration"):
                return
            got = await ls.workspace_configuration_async(
                t.ConfigurationParams(items=[t.ConfigurationItem(section=SECTION)]))
            data = got[0] if got else None
        reload, problems = ls.apply_settings(data)
        ls._pending_messages.extend((t.MessageType.Warning, p) for p in problems)
        ls.flush_messages()
        ls.log_line("info", f"settings: {ls.settings.to_json()}")
        if reload:
            await ls.report_load(ls.start_load())

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DiffusionLanguageServer, params: t.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        ls.docs.open(d.uri, d.text, d.version, language_of(d.language_id or d.uri))
        ls.schedule_diagnostics(d.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DiffusionLanguageServer, params: t.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        changes: list = []
        for c in params.content_changes:
            if isinstance(c, t.TextDocumentContentChangePartial):
                r = c.range
                changes.append(((r.start.line, r.start.character),
                                (r.end.line, r.end.character), c.text))
            else:
                changes.append(c.text)
        try:
            ls.docs.change(uri, params.text_document.version, changes, ls.encoding)
        except DocumentNotOpen as e:
            ls.log_line("warning", f"didChange ignored: {e}")
            return
        # Results for the old text would be dropped anyway: stop computing them.
        ls.worker.cancel_matching(lambda k: k[1] == uri, "document changed")
        ls.schedule_diagnostics(uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DiffusionLanguageServer, params: t.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.docs.close(uri)
        ls.worker.cancel_matching(lambda k: k[1] == uri, "document closed")
        ls.debouncer.cancel(uri)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if ls.store is not None:
            ls.store.close(uri)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION,
                    t.CompletionOptions(trigger_characters=[".", "(", ","]))
    async def completion(ls: DiffusionLanguageServer, params: t.CompletionParams):
        empty = t.CompletionList(is_incomplete=True, items=[])
        if not ls.settings.enable_completion:
            ls.snapshot(params.text_document.uri)
            return empty
        got = await ls.complete(params.text_document.uri, params.position, "completion")
        if got is None or not got[2].text.strip():
            return empty
        snap, offset, res = got
        word = jobs.word_before(snap.text, offset)
        new_text = word + res.text
        first = new_text.strip().split("\n", 1)[0]
        label = first if len(first) <= 60 else first[:57] + "..."
        item = t.CompletionItem(
            label=label or new_text.strip()[:60],
            kind=t.CompletionItemKind.Snippet if res.mode == jobs.MULTI else t.CompletionItemKind.Text,
            detail="diffusion-lsp",
            documentation=_documentation(ls, snap.language, new_text),
            filter_text=new_text,
            sort_text="0",
            insert_text_format=t.InsertTextFormat.PlainText,
            text_edit=t.TextEdit(range=ls.lsp_range(snap, offset - len(word), offset),
                                 new_text=new_text),
        )
        return t.CompletionList(is_incomplete=True, items=[item])

    @server.feature(t.TEXT_DOCUMENT_INLINE_COMPLETION, t.InlineCompletionOptions())
    async def inline_completion(ls: DiffusionLanguageServer, params: t.InlineCompletionParams):
        empty = t.InlineCompletionList(items=[])
        if not ls.settings.enable_inline_completion:
            ls.snapshot(params.text_document.uri)
            return empty
        got = await ls.complete(params.text_document.uri, params.position, "inline completion")
        if got is None or not got[2].text.strip():
            return empty
        snap, offset, res = got
        return t.InlineCompletionList(items=[t.InlineCompletionItem(
            insert_text=res.text, range=ls.lsp_range(snap, offset, offset))])

    @server.feature(t.TEXT_DOCUMENT_CODE_ACTION, t.CodeActionOptions(
        code_action_kinds=[t.CodeActionKind.QuickFix, t.CodeActionKind.RefactorRewrite],
        resolve_provider=True))
    async def code_action(ls: DiffusionLanguageServer, params: t.CodeActionParams):
        snap = ls.snapshot(params.text_document.uri)
        if not ls.settings.enable_repair or ls.model_unavailable():
            return []
        r = params.range
        engine = ls.engine
        text = jobs.clean(snap.text)  # the same offsets, without lone surrogates
        # Offered on an explicit selection, as the quick fix of one of our diagnostics (or
        # of a syntax error at the cursor the client has not been told about yet), or when
        # the user asked (triggerKind Invoked); never on every line for the lightbulb.
        ours = [d for d in params.context.diagnostics or []
                if d.source == diagnostics.SOURCE and d.code == diagnostics.SYNTAX_CODE]
        line = ours[0].range.start.line if ours and r.start == r.end else r.start.line
        if r.start != r.end:
            start_line, end_line = _lines_of_range(r)
        elif engine is not None:
            b = jobs.choose_repair_block(engine, text, line, snap.language)
            start_line, end_line = b.start_line, b.end_line
        else:  # still loading: no tokenizer to measure blocks with
            from lsp_server.blocks import enclosing_block

            b = enclosing_block(text, line, snap.language)
            start_line, end_line = b.start_line, b.end_line
        from lsp_server.blocks import Block

        block = Block(start_line, end_line, "range")
        quick = jobs.block_has_error(text, block, snap.language)
        invoked = params.context.trigger_kind == t.CodeActionTriggerKind.Invoked
        if r.start == r.end and not ours and not quick and not invoked:
            return []
        kind = t.CodeActionKind.QuickFix if quick else t.CodeActionKind.RefactorRewrite
        only = params.context.only
        if only and not any(str(kind.value).startswith(str(getattr(o, "value", o))) for o in only):
            return []
        fixes = [_echo(d) for d in ours if start_line <= d.range.start.line <= end_line]
        action = t.CodeAction(
            title=REPAIR_TITLE, kind=kind, is_preferred=quick or None,
            diagnostics=fixes or None,
            data={"uri": snap.uri, "version": snap.version,
                  "startLine": start_line, "endLine": end_line},
        )
        if engine is not None:
            s, e = jobs.line_span(text, start_line, end_line)
            n = len(engine.tokenizer.encode(text[s:e]))
            if n > MAX_REPAIR_TOKENS:
                if not _get(ls.client_capabilities, "text_document", "code_action",
                            "disabled_support"):
                    return []
                action.disabled = t.CodeActionDisabled(
                    reason=f"the block has {n} tokens; the model repairs at most "
                           f"{MAX_REPAIR_TOKENS} (select fewer lines)")
                return [action]
        props = _get(ls.client_capabilities, "text_document", "code_action", "resolve_support",
                     "properties") or []
        if "edit" not in props:
            action.edit = await ls.repair_edit(snap.uri, snap.version, start_line, end_line)
        return [action]

    @server.feature(t.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: DiffusionLanguageServer, action: t.CodeAction):
        data = action.data if isinstance(action.data, dict) else {}
        try:
            uri, start, end = data["uri"], int(data["startLine"]), int(data["endLine"])
            version = data.get("version")
        except (KeyError, TypeError, ValueError):
            raise JsonRpcInvalidParams(message="codeAction/resolve: not a diffusion-lsp action "
                                       "(data must carry uri, startLine, endLine)") from None
        action.edit = await ls.repair_edit(uri, version, start, end)
        if action.diagnostics:
            action.diagnostics = [_echo(d) for d in action.diagnostics]
        return action

    @server.command(STATUS_COMMAND)
    async def status(ls: DiffusionLanguageServer, *args: Any) -> dict:
        return ls.status()

    @server.command(DOCUMENT_STATE_COMMAND)
    async def document_state(ls: DiffusionLanguageServer, *args: Any) -> dict:
        """The server's copy of a document as version, length and sha256 (UTF-8) of its
        text, so a client or a test can check that both copies agree. Read-only, and it
        returns no text."""
        uri = args[0] if args and isinstance(args[0], str) else None
        if uri is None:
            raise JsonRpcInvalidParams(message=f"{DOCUMENT_STATE_COMMAND} takes a document URI")
        snap = ls.docs.get(uri)
        if snap is None:
            return {"uri": uri, "open": False}
        data = snap.text.encode("utf-8", "surrogatepass")
        return {"uri": uri, "open": True, "version": snap.version, "length": len(snap.text),
                "lines": snap.index.line_count, "sha256": hashlib.sha256(data).hexdigest()}

    @server.feature(t.SHUTDOWN)
    def shutdown(ls: DiffusionLanguageServer, *args: Any) -> None:
        ls.worker.shutdown()
        if ls.store is not None:
            with contextlib.suppress(Exception):
                ls.store.flush()

    return server
