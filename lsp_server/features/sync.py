"""Document sync (didOpen, didChange, didSave, didClose) and the diagnostics it schedules.

One `publishDiagnostics` carries both lists of the document's version: the syntax errors
(DL001, no model, debounced) and the names that are probably misspelt (DL003). DL003's
candidates are found with the syntax errors (no model); the model's choice between them
runs on the model worker only when the user pauses (`NAMES_DEBOUNCE_S` after the last
change, and right after the syntax pass on open and save), is cancelled by an edit of the
document and by any completion request (and tried again at the next pause), and is
remembered per block, so an edit elsewhere keeps the underline without new model work.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lsprotocol import types as t

from diffusion_core.errors import Cancelled
from lsp_server import diagnostics, jobs
from lsp_server.blocks import language_of
from lsp_server.diagnostics import DocumentDiagnostics
from lsp_server.documents import DocumentNotOpen, Snapshot

log = logging.getLogger("lsp_server")

NAMES_JOB = "names"  # the worker key's kind of the DL003 job
YIELD_REASON = "a completion came first"


def lsp_diagnostic(ls, snap: Snapshot, d: diagnostics.SyntaxDiagnostic) -> t.Diagnostic:
    return t.Diagnostic(
        range=ls.lsp_range(snap, d.start, d.end), message=d.message,
        severity=t.DiagnosticSeverity.Error, source=diagnostics.SOURCE, code=d.code,
        data={"startLine": d.block_start_line, "endLine": d.block_end_line},
    )


def lsp_name_diagnostic(ls, snap: Snapshot, d: diagnostics.NameDiagnostic) -> t.Diagnostic:
    return t.Diagnostic(
        range=ls.lsp_range(snap, d.start, d.end), message=d.message,
        severity=t.DiagnosticSeverity.Warning, source=diagnostics.SOURCE, code=d.code,
        data={"name": d.name, "replacement": d.replacement, "version": snap.version},
    )


async def current(ls, uri: str) -> tuple[Snapshot, DocumentDiagnostics] | None:
    """The document and its diagnostics state for its current version, the model-free
    part computed (by `ls.analysis`, a child process) when the state is older (one
    computation per version);
    None when the document is closed or moves on meanwhile."""
    snap = ls.docs.get(uri)
    st = ls.diag_state.get(uri)
    if snap is None or st is None:
        return None
    if st.version != snap.version:
        if st.pending is None or st.pending[0] != snap.version:
            text = jobs.clean(snap.text)  # the same offsets, without lone surrogates
            fut = ls.off_loop(ls.analysis.analyze, text, snap.language, ls.settings.name_diagnostics)
            st.pending = (snap.version, text, asyncio.ensure_future(fut))
        _, text, fut = st.pending
        syntax, sites = await asyncio.shield(fut)
        now = ls.docs.get(uri)
        if now is None or now.version != snap.version or ls.diag_state.get(uri) is not st:
            return None
        if st.version != snap.version:
            st.update(snap.version, text, syntax, sites)
    return snap, st


def publish(ls, snap: Snapshot, st: DocumentDiagnostics) -> None:
    names = st.names() if ls.settings.name_diagnostics else []
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri=snap.uri, version=snap.version,
        diagnostics=[lsp_diagnostic(ls, snap, d) for d in st.syntax]
        + [lsp_name_diagnostic(ls, snap, d) for d in names]))


async def publish_diagnostics(ls, uri: str, names_now: bool = False) -> None:
    """Publish the syntax errors of the current text (and the DL003 decisions already
    known for it), computed off the event loop and off the model worker; with
    `names_now`, then ask the model about the other DL003 candidates."""
    got = await current(ls, uri)
    if got is None:
        return
    publish(ls, *got)
    if names_now:
        await names_job(ls, *got)


async def publish_names(ls, uri: str) -> None:
    """The user paused: the model decides the DL003 candidates of the current version."""
    got = await current(ls, uri)
    if got is not None:
        await names_job(ls, *got)


async def names_job(ls, snap: Snapshot, st: DocumentDiagnostics) -> None:
    """Run the model's DL003 choice for the undecided candidates on the worker (submitted
    before the first await), keep what it decided, publish if the version still holds."""
    todo = st.undecided()
    if not ls.settings.name_diagnostics or not todo or ls.model_unavailable():
        return
    text, known = st.text, dict(st.decisions)

    def job(token):
        service = ls.service
        if service is None:
            return None
        model = service.model(ls.sampler(service.engine), token)
        return diagnostics.name_decisions(model, text, todo, known)

    t0 = time.perf_counter()
    fut, token = ls.worker.submit(job, key=(NAMES_JOB, snap.uri), label=f"names {snap.uri}")
    ls.metrics.name_jobs += 1
    try:
        await asyncio.wrap_future(fut)
    except Cancelled:
        ls.log_line("debug", f"names {snap.uri} v{snap.version}: cancelled ({token.reason})")
        if token.reason == YIELD_REASON:
            schedule_names(ls, snap.uri)
    except Exception as e:
        log.exception("names job failed")
        ls.log_line("warning", f"names {snap.uri}: {type(e).__name__}: {e}")
        known.update((s.key(text), None) for s in todo)  # not tried again for these blocks
    keys = {s.key(st.text) for s in st.sites}  # what it decided that the state still holds
    st.decisions.update({k: v for k, v in known.items() if k in keys})
    now = ls.docs.get(snap.uri)
    if (token.cancelled or now is None or now.version != snap.version
            or st.version != snap.version or ls.diag_state.get(snap.uri) is not st):
        return  # stale (or reopened): a later pass publishes
    ls.log_line("info", f"names {snap.uri} v{snap.version}: {len(todo)} checked, "
                f"{len(st.names())} found, {(time.perf_counter() - t0) * 1000:.0f} ms")
    publish(ls, snap, st)


def schedule_diagnostics(ls, uri: str, names_now: bool = False) -> None:
    """Publish the document's diagnostics once typing pauses (debounced)."""
    ls.debouncer.schedule(uri, lambda: publish_diagnostics(ls, uri, names_now))


def schedule_names(ls, uri: str) -> None:
    """The model's DL003 pass after the longer pause (nothing when the setting is off)."""
    if ls.settings.name_diagnostics:
        ls.name_debouncer.schedule(uri, lambda: publish_names(ls, uri))


def yield_to_completion(ls) -> None:
    """A completion is wanted: the DL003 jobs give way (they come back at the next pause)."""
    ls.worker.cancel_matching(lambda k: k[0] == NAMES_JOB, YIELD_REASON)


def refresh_all(ls, forget_decisions: bool = False) -> None:
    """Recompute every open document's diagnostics (a setting or the model changed)."""
    if not ls.settings.name_diagnostics:
        ls.worker.cancel_matching(lambda k: k[0] == NAMES_JOB, "nameDiagnostics is off")
    for uri, st in list(ls.diag_state.items()):
        st.version, st.pending = None, None
        if forget_decisions:
            st.decisions.clear()
        ls.name_debouncer.cancel(uri)
        schedule_diagnostics(ls, uri, names_now=True)


def register(server) -> None:
    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: t.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        ls.docs.open(d.uri, d.text, d.version, language_of(d.language_id or d.uri))
        ls.diag_state[d.uri] = DocumentDiagnostics()
        schedule_diagnostics(ls, d.uri, names_now=True)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: t.DidChangeTextDocumentParams) -> None:
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
        schedule_diagnostics(ls, uri)
        schedule_names(ls, uri)

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls, params: t.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        if ls.docs.get(uri) is not None:
            ls.name_debouncer.cancel(uri)
            schedule_diagnostics(ls, uri, names_now=True)

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: t.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.docs.close(uri)
        ls.diag_state.pop(uri, None)
        ls.worker.cancel_matching(lambda k: k[1] == uri, "document closed")
        ls.debouncer.cancel(uri)
        ls.name_debouncer.cancel(uri)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if ls.service is not None:
            ls.service.close(uri)
