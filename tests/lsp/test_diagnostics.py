"""Syntax diagnostics published by the real server, and "Repair this block" offered only
with a diagnostic, a selection or an explicit request (issue 20, item 4)."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.diagnostics import Debouncer, syntax_diagnostics
from tests.lsp.conftest import SERVER_COMMAND, SERVER_ENV, capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROKEN = "import os\n\n\ndef f(x)\n    return x + 1\n\n\ndef g():\n    return os.sep\n"
CLEAN = "def g():\n    return 1\n"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV),
                    scope="module")
async def client(lsp_client: LanguageClient, tiny_model: str):
    lsp_client.init_result = await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(),
        initialization_options={"modelPath": tiny_model, "maxTokens": 8, "blockSize": 8},
    ))
    yield
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


async def _diagnostics(client: LanguageClient, uri: str, version: int, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = client.diagnostics.get(uri)
        ver = client.diagnostic_versions.get(uri) if hasattr(client, "diagnostic_versions") else None
        if got is not None and (ver is None or ver == version):
            return got
        assert time.monotonic() < deadline, "no diagnostics published"
        await asyncio.sleep(0.05)


def _pos(line: int, ch: int) -> t.Position:
    return t.Position(line=line, character=ch)


async def _actions(client, uri, a, b, diags=(), trigger=t.CodeActionTriggerKind.Automatic):
    return await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=t.Range(start=_pos(*a), end=_pos(*b)),
        context=t.CodeActionContext(diagnostics=list(diags), trigger_kind=trigger)))


async def test_syntax_error_is_published_and_its_quick_fix_is_offered(client: LanguageClient):
    uri = "file:///work/diag.py"
    _open(client, uri, BROKEN)
    (d,) = await _diagnostics(client, uri, 1)
    assert d.source == "diffusion-lsp" and d.code == "DL001"
    assert d.severity == t.DiagnosticSeverity.Error
    assert d.range.start == _pos(3, 8) and "expected ':'" in d.message
    # the lightbulb on a clean line offers nothing
    assert not await _actions(client, uri, (7, 4), (7, 4))
    # the quick fix of the diagnostic, wherever the cursor is on its line
    (action,) = await _actions(client, uri, (3, 0), (3, 0), diags=[d])
    assert action.kind == t.CodeActionKind.QuickFix and list(action.diagnostics) == [d]
    assert action.data["startLine"] <= 3 and action.data["endLine"] == 4  # the broken block
    resolved = await client.code_action_resolve_async(action)
    # the tiny random model may find nothing, but an edit it offers makes the file parse
    text = BROKEN
    for change in resolved.edit.document_changes or []:
        lines = text.splitlines(keepends=True)
        for e in sorted(change.edits, key=lambda e: (e.range.start.line, e.range.start.character),
                        reverse=True):
            s = sum(len(x) for x in lines[: e.range.start.line]) + e.range.start.character
            f = sum(len(x) for x in lines[: e.range.end.line]) + e.range.end.character
            text = text[:s] + e.new_text + text[f:]
    if text != BROKEN:
        compile(text, "diag.py", "exec")
    # an explicit selection, or an explicit request, still gets the action
    (sel,) = await _actions(client, uri, (7, 0), (8, 0))
    assert sel.kind == t.CodeActionKind.RefactorRewrite
    (inv,) = await _actions(client, uri, (7, 4), (7, 4), trigger=t.CodeActionTriggerKind.Invoked)
    assert (inv.data["startLine"], inv.data["endLine"]) == (7, 8)


async def test_fixing_the_text_clears_the_diagnostic(client: LanguageClient):
    uri = "file:///work/diag2.py"
    _open(client, uri, "def f(x)\n    return x\n")
    assert len(await _diagnostics(client, uri, 1)) == 1
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(start=_pos(0, 8), end=_pos(0, 8)), text=":")]))
    deadline = time.monotonic() + 60
    while client.diagnostics.get(uri):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    # completion is answered while diagnostics are pending (they never hold the worker)
    _open(client, "file:///work/clean.py", CLEAN)
    res = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri="file:///work/clean.py"), position=_pos(1, 4)))
    assert res is not None


async def test_syntax_diagnostics_one_per_broken_block():
    text = "def f(x)\n    return x\n\n\ndef g(y):\n    return (y\n\n\nz = 1\n"
    got = syntax_diagnostics(text, "python")
    assert [(d.message, d.block_start_line) for d in got] == [
        ("syntax error: expected ':'", 0), ("syntax error: '(' was never closed", 4)]
    assert syntax_diagnostics("x = (\n", "text") == []
    assert syntax_diagnostics(CLEAN, "python") == []


async def test_one_diagnostics_pass_reads_the_line_table_once_per_text(monkeypatch):
    """A pass over a document with many blocks builds its line table once, not once per
    block: on a 2,000-line file (~300 blocks) that was ~1 s of held GIL at every pause in
    typing, and completions queued behind it (issue 22)."""
    from lsp_server import diagnostics, positions

    calls = []
    real = positions.line_starts

    def counting(text):
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(positions, "line_starts", counting)
    text = "".join(f"def f{i}(x):\n    return x\n\n\n" for i in range(200)) + "def g(:\n    pass\n"
    got, _sites = diagnostics.analyze(text, "python", True)
    assert len(got) == 1
    assert sum(n == len(text) for n in calls) <= 2


async def test_debouncer_runs_only_the_last():
    runs = []

    async def job(n):
        runs.append(n)

    d = Debouncer(0.05)
    for n in range(5):
        d.schedule("u", lambda n=n: job(n))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert runs == [4]
    d.schedule("u", lambda: job(9))
    d.cancel("u")
    await asyncio.sleep(0.1)
    assert runs == [4]
