"""DL003 in the editor: names that are probably misspelt, published by the real server with
the syntax errors, their quick fix, the `nameDiagnostics` setting, and completions that
never wait for the model's names job (issue 20, item 4).

The server runs with a planted ranker (`planted_rank_server.py`: it prefers the first near
name, or holds the worker until cancelled for a block mentioning `slow_`), so the
plumbing is tested deterministically; the pure pieces are tested in-process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as t
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from lsp_server import diagnostics as dg
from tests.lsp.conftest import SERVER_ENV, capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLANTED = [sys.executable, str(Path(__file__).with_name("planted_rank_server.py")),
           "--log-level", "debug"]
PUBLISH = t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS
TEXT = "import os\n\n\ndef f(items):\n    return lenn(items)\n\n\ndef g():\n    return os.sep\n"
SLOW = "def h(slow_total):\n    return slow_totl + 1\n"
TIMEOUT = 60.0


def recording_client() -> LanguageClient:
    """pytest-lsp's client, recording every publishDiagnostics (none is missed between
    two waits) and waking the tests that wait for one."""
    client = LanguageClient(converter_factory=default_converter)
    register_lsp_features(client, {m: f for m, f in DEFAULT_CLIENT_FEATURES.items() if m != PUBLISH})
    client.published, client.waiters = [], []

    @client.feature(PUBLISH)
    def on_publish(ls: LanguageClient, params: t.PublishDiagnosticsParams) -> None:
        ls.diagnostics[params.uri] = params.diagnostics
        ls.published.append(params)
        for pred, fut in list(ls.waiters):
            if not fut.done() and pred(params):
                fut.set_result(params)

    return client


@pytest_lsp.fixture(config=ClientServerConfig(server_command=PLANTED, server_env=SERVER_ENV,
                                              client_factory=recording_client), scope="module")
async def client(lsp_client: LanguageClient, tiny_model: str):
    lsp_client.init_result = await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(),
        initialization_options={"modelPath": tiny_model, "maxTokens": 8, "blockSize": 8},
    ))
    yield
    await lsp_client.shutdown_session()


async def published(client, uri: str, version: int, pred=lambda p: True, since: int = 0):
    """The first publishDiagnostics for `uri` at `version` (recorded from index `since`
    on) that satisfies `pred`: waits for the notification, never polls."""
    def want(p):
        return p.uri == uri and p.version == version and pred(p)

    for p in client.published[since:]:
        if want(p):
            return p
    fut = asyncio.get_running_loop().create_future()
    client.waiters.append((want, fut))
    try:
        return await asyncio.wait_for(fut, TIMEOUT)
    finally:
        client.waiters.remove((want, fut))


def dl003(p: t.PublishDiagnosticsParams) -> list[t.Diagnostic]:
    return [d for d in p.diagnostics if d.code == "DL003"]


async def status(client) -> dict:
    return await client.workspace_execute_command_async(
        t.ExecuteCommandParams(command="diffusion-lsp.status"))


async def wait_status(client, pred) -> dict:
    """Ask for the status until `pred` holds (each round trip is a real request)."""
    deadline = time.monotonic() + TIMEOUT
    while not pred(s := await status(client)):
        assert time.monotonic() < deadline, f"status never matched: {s}"
    return s


async def configure(client, **values) -> None:
    client.workspace_did_change_configuration(
        t.DidChangeConfigurationParams(settings={"diffusionLsp": values}))
    await wait_status(client, lambda s: all(s["settings"][k] == v for k, v in values.items()))


def open_doc(client, uri: str, text: str) -> int:
    mark = len(client.published)
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return mark


def change(client, uri: str, version: int, a: tuple[int, int], b: tuple[int, int], new: str) -> int:
    mark = len(client.published)
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(start=t.Position(*a), end=t.Position(*b)), text=new)]))
    return mark


async def test_misspelt_name_is_underlined_and_its_quick_fix_replaces_it(client):
    uri = "file:///work/names.py"
    mark = open_doc(client, uri, TEXT)
    p = await published(client, uri, 1, lambda p: dl003(p), since=mark)
    (d,) = p.diagnostics  # no syntax error, one DL003
    assert d.source == "diffusion-lsp" and d.severity == t.DiagnosticSeverity.Warning
    assert d.message == "'lenn' is not defined; did you mean 'len'? (confidence 1.00)"
    assert d.range == t.Range(start=t.Position(4, 11), end=t.Position(4, 15))
    actions = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=d.range,
        context=t.CodeActionContext(diagnostics=[d], trigger_kind=t.CodeActionTriggerKind.Automatic)))
    (fix,) = [a for a in actions if a.title == "Replace 'lenn' with 'len'"]
    assert fix.kind == t.CodeActionKind.QuickFix and list(fix.diagnostics) == [d]
    (doc_edit,) = fix.edit.document_changes
    assert doc_edit.text_document.version == 1
    assert [(e.range, e.new_text) for e in doc_edit.edits] == [(d.range, "len")]

    # an edit in another block keeps the underline from the first publish on, no model job
    jobs = (await status(client))["name_jobs"]
    mark = change(client, uri, 2, (8, 17), (8, 17), " + ''")
    p2 = await published(client, uri, 2, since=mark)
    assert [x.message for x in dl003(p2)] == [d.message]
    assert (await status(client))["name_jobs"] == jobs
    # fixing the name clears it
    mark = change(client, uri, 3, (4, 11), (4, 15), "len")
    p3 = await published(client, uri, 3, since=mark)
    assert list(p3.diagnostics) == []
    # a stale DL003 (the name is gone) gets no quick fix
    stale = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=d.range,
        context=t.CodeActionContext(diagnostics=[d], trigger_kind=t.CodeActionTriggerKind.Automatic)))
    assert not [a for a in stale or [] if a.title.startswith("Replace")]


async def test_setting_off_means_no_dl003_and_no_model_job(client):
    await configure(client, nameDiagnostics=False)
    jobs = (await status(client))["name_jobs"]
    uri = "file:///work/names_off.py"
    mark = open_doc(client, uri, TEXT)
    p = await published(client, uri, 1, since=mark)
    assert list(p.diagnostics) == []
    mark = len(client.published)
    client.text_document_did_save(t.DidSaveTextDocumentParams(
        text_document=t.TextDocumentIdentifier(uri=uri)))
    await published(client, uri, 1, since=mark)  # the save's pass: still nothing
    assert list(client.published[-1].diagnostics) == []
    assert (await status(client))["name_jobs"] == jobs
    # back on: open documents get their DL003 again
    mark = len(client.published)
    await configure(client, nameDiagnostics=True)
    await published(client, uri, 1, lambda p: dl003(p), since=mark)


async def test_a_completion_is_answered_while_the_names_job_runs(client):
    uri = "file:///work/names_slow.py"
    open_doc(client, uri, SLOW)
    # the planted ranker holds the worker on this block until its job is cancelled
    await wait_status(client, lambda s: (s["worker"]["running"] or "").startswith("names"))
    res = await asyncio.wait_for(client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(1, 10))), TIMEOUT)
    assert res is not None
    # the names job comes back at the next pause; closing the document stops it
    client.text_document_did_close(t.DidCloseTextDocumentParams(
        text_document=t.TextDocumentIdentifier(uri=uri)))
    await wait_status(client, lambda s: not (s["worker"]["running"] or "").startswith("names"))


# -- the pure pieces, in-process ----------------------------------------------------------
class Planted:
    """A `service.EngineModel` stand-in: prefers the first near name; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def fits(self, block: str) -> bool:
        return True

    def rank(self, prefix, block, suffix, variants):
        self.calls += 1
        return [0.0, 10.0] + [-10.0] * (len(variants) - 2)


async def test_name_sites_decisions_and_diagnostics():
    sites = dg.name_sites(TEXT, "python")
    (site,) = sites
    assert (site.use.name, site.use.candidates) == ("lenn", ("len",))
    assert TEXT[site.start : site.end] == "def f(items):\n    return lenn(items)\n"
    model = Planted()
    known = dg.name_decisions(model, TEXT, sites, {})
    (d,) = dg.name_diagnostics(TEXT, sites, known)
    assert (d.name, d.replacement, TEXT[d.start : d.end], d.code) == ("lenn", "len", "lenn", "DL003")
    assert dg.name_decisions(model, TEXT, sites, known) is known and model.calls == 1  # remembered
    assert dg.name_sites(TEXT, "text") == [] and dg.name_sites("def f(:\n", "python") == []
    # below the bar: no diagnostic, and the decision (None) is remembered too
    low = dg.name_decisions(model, TEXT, sites, {}, bar=1.0)
    assert list(low.values()) == [None] and dg.name_diagnostics(TEXT, sites, low) == []


async def test_document_state_forgets_decisions_of_blocks_that_are_gone():
    st = dg.DocumentDiagnostics()
    st.update(1, TEXT, [], dg.name_sites(TEXT, "python"))
    assert len(st.undecided()) == 1
    dg.name_decisions(Planted(), st.text, st.undecided(), st.decisions)
    assert st.undecided() == [] and len(st.names()) == 1
    moved = "x = 1\n\n\n" + TEXT  # the block moved: same decision
    st.update(2, moved, [], dg.name_sites(moved, "python"))
    assert st.undecided() == [] and moved[st.names()[0].start : st.names()[0].end] == "lenn"
    edited = TEXT.replace("lenn(items)", "lenn(items) + 1")  # the block changed: asked again
    st.update(3, edited, [], dg.name_sites(edited, "python"))
    assert st.decisions == {} and len(st.undecided()) == 1
