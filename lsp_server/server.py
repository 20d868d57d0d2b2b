"""The pygls language server: editor requests -> jobs of `lsp_server.service.Service`.

Features (one module per request kind in `lsp_server.features`): incremental document
sync (UTF-16 by default, UTF-8/UTF-32 when the client offers them), `textDocument/completion`,
`textDocument/inlineCompletion` (ghost text), `textDocument/codeAction` "Repair this block"
(refactor.rewrite, or quickfix where the block has a syntax error) with
`codeAction/resolve`, diagnostics (`textDocument/publishDiagnostics`: syntax errors,
debounced after didOpen/didChange, computed off the model worker, and probably misspelt
names, decided by the model at a pause; see `diagnostics.py` and `features.sync`),
and the commands `diffusion-lsp.status` and `diffusion-lsp.documentState` (version and
hash of the server's copy of a document).

What the client offers is resolved once at `initialize` (`session.Session`); settings and
the model live in `loading.ModelHost`; this module holds the server class (I/O, messages,
positions, edits) and `build_server`.

Concurrency: all model work runs in one worker thread (`worker.Worker`); tree-sitter and
tokenizer work for code actions and diagnostics runs in a thread (`off_loop`); the asyncio
loop only parses, converts positions and answers. A newer completion for a document
supersedes the older one, `$/cancelRequest` cancels the running job between two
denoising steps, and an edit of the document cancels its jobs. Every request gets an
answer: a result, an empty result (superseded, stale version, model unavailable), or a
JSON-RPC error (RequestCancelled; InvalidParams for a document that is not open;
RequestFailed when the job itself fails). Malformed messages, requests before
`initialize` and after `shutdown` are answered by `rpc.RobustProtocol`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

from lsprotocol import types as t
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from lsp_server import diagnostics, rpc
from lsp_server.analysis_process import AnalysisProcess
from lsp_server.documents import DocumentNotOpen, DocumentStore, Snapshot
from lsp_server.edits import Edit
from lsp_server.features import DOCUMENT_STATE_COMMAND, REPAIR_TITLE, REQUEST_FAILED, STATUS_COMMAND
from lsp_server.loading import ModelHost
from lsp_server.session import Session
from lsp_server.settings import Settings
from lsp_server.status import Metrics
from lsp_server.worker import Worker

log = logging.getLogger("lsp_server")

_LEVELS = {"error": t.MessageType.Error, "warning": t.MessageType.Warning,
           "info": t.MessageType.Info, "debug": t.MessageType.Log}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-lsp")
    except Exception:
        return "0+unknown"


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


class DiffusionLanguageServer(ModelHost, LanguageServer):
    """The pygls server: I/O, messages, document helpers; the model side is `ModelHost`,
    the handlers live in `lsp_server.features` (one module per request kind)."""

    def __init__(self, base_settings: Settings | None = None) -> None:
        super().__init__("diffusion-lsp", _version(), protocol_cls=rpc.RobustProtocol)
        self._init_model_host(base_settings)
        self.docs = DocumentStore()
        self.worker = Worker()
        self.metrics = Metrics()
        self.session = Session()  # resolved at `initialize`
        self.client_gone = False  # the session's read loop has ended (see `_serve`)
        self.debouncer = diagnostics.Debouncer()
        self.name_debouncer = diagnostics.Debouncer(diagnostics.NAMES_DEBOUNCE_S)
        self.diag_state: dict[str, diagnostics.DocumentDiagnostics] = {}  # by open URI
        self.analysis = AnalysisProcess()  # the model-free diagnostics pass, off the GIL
        logging.getLogger("pygls.protocol.json_rpc").addFilter(_QuietExpectedErrors())

    @property
    def encoding(self) -> str:
        return self.session.encoding

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
        self.analysis.close()
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

    # -- document helpers ------------------------------------------------------------
    def snapshot(self, uri: str) -> Snapshot:
        try:
            return self.docs.require(uri)
        except DocumentNotOpen as e:
            raise JsonRpcInvalidParams(message=str(e)) from None

    def lsp_range(self, snap: Snapshot, start: int, end: int) -> t.Range:
        a = snap.position(start, self.encoding)
        b = snap.position(end, self.encoding)
        return t.Range(t.Position(*a), t.Position(*b))

    def workspace_edit(self, snap: Snapshot, edits: list[Edit]) -> t.WorkspaceEdit:
        text_edits = [t.TextEdit(range=self.lsp_range(snap, e.start, e.end), new_text=e.new_text)
                      for e in edits]
        if self.session.document_changes:
            ident = t.OptionalVersionedTextDocumentIdentifier(uri=snap.uri, version=snap.version)
            return t.WorkspaceEdit(document_changes=[
                t.TextDocumentEdit(text_document=ident, edits=text_edits)])
        return t.WorkspaceEdit(changes={snap.uri: text_edits})

    def status(self, recent: bool = False) -> dict[str, Any]:
        from lsp_server.status import status

        return status(self, recent)

    async def off_loop(self, fn, *args):
        """`fn(*args)` (tree-sitter, the tokenizer) in a thread, so the loop only answers."""
        return await diagnostics.in_daemon_thread(fn, *args)


__all__ = ["DOCUMENT_STATE_COMMAND", "REPAIR_TITLE", "REQUEST_FAILED", "STATUS_COMMAND",
           "DiffusionLanguageServer", "build_server"]


def build_server(base_settings: Settings | None = None) -> DiffusionLanguageServer:
    from lsp_server.features import code_action, commands, completion, lifecycle, sync

    server = DiffusionLanguageServer(base_settings)
    for feature in (lifecycle, sync, completion, code_action, commands):
        feature.register(server)
    return server
