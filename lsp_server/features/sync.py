"""Document sync (didOpen, didChange, didClose) and the syntax diagnostics it schedules."""

from __future__ import annotations

from lsprotocol import types as t

from lsp_server import diagnostics, jobs
from lsp_server.blocks import language_of
from lsp_server.documents import DocumentNotOpen, Snapshot


def lsp_diagnostic(ls, snap: Snapshot, d: diagnostics.SyntaxDiagnostic) -> t.Diagnostic:
    return t.Diagnostic(
        range=ls.lsp_range(snap, d.start, d.end), message=d.message,
        severity=t.DiagnosticSeverity.Error, source=diagnostics.SOURCE, code=d.code,
        data={"startLine": d.block_start_line, "endLine": d.block_end_line},
    )


async def publish_diagnostics(ls, uri: str) -> None:
    """Syntax errors of the current text, computed off the event loop and off the model
    worker (completion never waits for them); dropped if the document moved on."""
    snap = ls.docs.get(uri)
    if snap is None:
        return
    text = jobs.clean(snap.text)
    found = await ls.off_loop(diagnostics.syntax_diagnostics, text, snap.language)
    now = ls.docs.get(uri)
    if now is None or now.version != snap.version:
        return
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri=uri, version=snap.version, diagnostics=[lsp_diagnostic(ls, snap, d) for d in found]))


def schedule_diagnostics(ls, uri: str) -> None:
    """Publish the document's syntax errors once typing pauses (debounced)."""
    ls.debouncer.schedule(uri, lambda: publish_diagnostics(ls, uri))


def register(server) -> None:
    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: t.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        ls.docs.open(d.uri, d.text, d.version, language_of(d.language_id or d.uri))
        schedule_diagnostics(ls, d.uri)

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

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: t.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.docs.close(uri)
        ls.worker.cancel_matching(lambda k: k[1] == uri, "document closed")
        ls.debouncer.cancel(uri)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if ls.service is not None:
            ls.service.close(uri)
