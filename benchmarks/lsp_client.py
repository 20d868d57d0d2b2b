"""A real LSP client session with the diffusion-lsp server over stdio (pygls LanguageClient).

Starts `python -m lsp_server` as a subprocess, initializes it with `initializationOptions`,
waits for the model-loaded log line, and sends document edits and completion requests
with request ids of its own, so the server's typed timings of each completion (the status
command with `{"recentCompletions": true}`, by request id) can be matched to the client's
measurements.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

from lsprotocol import types as t
from pygls.lsp.client import LanguageClient

STATUS_COMMAND = "diffusion-lsp.status"

class ServerError(RuntimeError):
    """The server could not load its model, died, or did not answer in time."""


@dataclass
class Reply:
    rid: str
    sent: float  # perf_counter seconds
    latency_ms: float | None = None
    text: str | None = None  # first item's text (None: no answer or an error)
    error: str | None = None
    superseded: bool = False  # an edit was sent before the answer arrived
    server: dict = field(default_factory=dict)  # the server's timings of it, if any


class BenchClient:
    """One server process and its client; use `async with BenchClient(options) as c`."""

    def __init__(self, init_options: dict, *, threads: int | None = None,
                 timeout_s: float = 300.0) -> None:
        self.init_options = init_options
        self.threads = threads
        self.timeout_s = timeout_s
        self.client = LanguageClient("diffusion-lsp-bench", "1")
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._loaded = asyncio.Event()
        self._load_error: str | None = None
        self._n = 0
        self._tasks: list[asyncio.Task] = []
        self.start_ms: float | None = None

        @self.client.feature(t.WINDOW_LOG_MESSAGE)
        def _log(ls, params: t.LogMessageParams) -> None:
            msg = params.message
            if msg.startswith("loaded "):
                self._loaded.set()

        @self.client.feature(t.WINDOW_SHOW_MESSAGE)
        def _show(ls, params: t.ShowMessageParams) -> None:
            if params.type == t.MessageType.Error:
                self._load_error = params.message
                self._loaded.set()

        @self.client.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(ls, params: t.PublishDiagnosticsParams) -> None:
            """The server's syntax diagnostics: not what this client measures."""

    async def __aenter__(self) -> BenchClient:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> float:
        """Spawn, initialize and wait until the model is loaded; returns the ms it took."""
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        t0 = time.perf_counter()
        await self.client.start_io(sys.executable, "-m", "lsp_server", env=env)
        proc = self.client._server  # the subprocess pygls started for us
        if proc is not None and proc.stderr is not None:
            # pygls pipes stderr but never reads it: drain it, or the server blocks on a full pipe.
            self._tasks.append(asyncio.create_task(self._drain(proc.stderr)))
        try:
            await asyncio.wait_for(self.client.initialize_async(t.InitializeParams(
                capabilities=t.ClientCapabilities(), process_id=os.getpid(),
                initialization_options=self.init_options)), self.timeout_s)
            self.client.initialized(t.InitializedParams())
            await asyncio.wait_for(self._loaded.wait(), self.timeout_s)
        except (TimeoutError, RuntimeError) as e:
            raise ServerError(f"server did not become ready: {e!r}; stderr:\n"
                              + "".join(self.stderr_tail)) from e
        if self._load_error:
            raise ServerError(self._load_error)
        self.start_ms = (time.perf_counter() - t0) * 1000
        return self.start_ms

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_tail.append(line.decode("utf-8", "replace"))

    async def stop(self) -> None:
        if self.client.stopped:
            return
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 30)
            self.client.exit(None)
            await asyncio.wait_for(self.client.stop(), 30)
        except (TimeoutError, RuntimeError, ConnectionError):
            proc = self.client._server
            if proc is not None and proc.returncode is None:
                proc.kill()  # only the server this client started
                await proc.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- documents and requests --------------------------------------------------------
    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.client.text_document_did_open(t.DidOpenTextDocumentParams(
            text_document=t.TextDocumentItem(uri=uri, language_id="python", version=version,
                                             text=text)))

    def insert(self, uri: str, version: int, line: int, character: int, text: str) -> None:
        """One incremental didChange inserting `text` at (line, character) (UTF-16 units)."""
        pos = t.Position(line=line, character=character)
        self.client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangePartial(
                range=t.Range(start=pos, end=pos), text=text)]))

    def cancel(self, reply: Reply) -> None:
        """$/cancelRequest, as an editor sends it for a completion it no longer needs."""
        self.client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id=reply.rid))

    def request(self, uri: str, line: int, character: int, kind: str = "inline",
                invoked: bool = False) -> tuple[Reply, asyncio.Task]:
        """Send a completion request now; the task resolves the Reply when the answer arrives.
        `invoked`: the user asked (trigger kind Invoked: Ctrl-Space, "trigger inline
        suggestion"), which the server answers with both lengths and reranked lines."""
        self._n += 1
        rid = f"bench-{self._n}"
        doc = t.TextDocumentIdentifier(uri=uri)
        pos = t.Position(line=line, character=character)
        if kind == "inline":
            method = t.TEXT_DOCUMENT_INLINE_COMPLETION
            params = t.InlineCompletionParams(
                text_document=doc, position=pos,
                context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked
                                                  if invoked else t.InlineCompletionTriggerKind.Automatic))
        elif kind == "completion":
            method = t.TEXT_DOCUMENT_COMPLETION
            params = t.CompletionParams(text_document=doc, position=pos, context=t.CompletionContext(
                trigger_kind=t.CompletionTriggerKind.Invoked) if invoked else None)
        else:
            raise ValueError(f"request kind must be 'inline' or 'completion', got {kind!r}")
        reply = Reply(rid, time.perf_counter())
        fut = self.client.protocol.send_request_async(method, params, msg_id=rid)
        return reply, asyncio.create_task(self._await(reply, fut))

    async def _await(self, reply: Reply, fut) -> Reply:
        try:
            result = await asyncio.wait_for(fut, self.timeout_s)
        except TimeoutError:
            reply.error = f"no answer in {self.timeout_s:.0f} s"
            return reply
        except Exception as e:  # JSON-RPC errors (RequestCancelled) arrive as exceptions
            reply.latency_ms = (time.perf_counter() - reply.sent) * 1000
            reply.error = f"{type(e).__name__}: {e}"
            return reply
        reply.latency_ms = (time.perf_counter() - reply.sent) * 1000
        reply.text = _first_text(result)
        return reply

    async def status(self, recent: bool = False) -> dict:
        """The status command; `recent`: with the timings of the last completions."""
        args = [{"recentCompletions": True}] if recent else None
        return await asyncio.wait_for(self.client.workspace_execute_command_async(
            t.ExecuteCommandParams(command=STATUS_COMMAND, arguments=args)), self.timeout_s)

    async def job_timings(self) -> dict[str, dict]:
        """Request id -> the server's typed timings of that completion (mode, chars,
        server_ms, engine_ms, steps, reused_tokens, encoded_tokens, out_of_time, ...)."""
        status = await self.status(recent=True)
        return {r["id"]: r for r in status.get("recent_completions", [])}


def _first_text(result) -> str:
    """The text of the first item of an inline-completion or completion answer ("" if none)."""
    if result is None:
        return ""
    items = getattr(result, "items", result)
    if not items:
        return ""
    item = items[0]
    if isinstance(item, t.InlineCompletionItem):
        text = item.insert_text
        return text if isinstance(text, str) else text.value
    edit = getattr(item, "text_edit", None)
    if edit is not None:
        return edit.new_text
    return item.insert_text or item.label
