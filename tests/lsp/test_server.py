"""End to end: the real server as a subprocess over stdio, driven by pytest-lsp.

One server for the module (starting Python + torch is the slow part); each test opens
its own documents. The tiny random model writes gibberish, so tests check the protocol
(ranges, kinds, versions, errors, timing of cancellation), not the code it proposes.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_lsp
from lsprotocol import types as t
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.edits import Edit, apply_edits
from lsp_server.positions import LineIndex
from lsp_server.settings import Settings
from tests.lsp.conftest import SERVER_COMMAND, SERVER_ENV, capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = {"maxTokens": 8, "blockSize": 8, "threshold": 0.9, "minProbability": 0.1}
# One token per denoising step, thousands of steps, and no stop where the suggestion's
# probability falls under minProbability (where that happens depends on the CPU's float
# rounding in the tiny random model: on one machine it never did, on another at step 8).
SLOW = {"maxTokens": 4000, "threshold": 1.0, "minProbability": 0.0}
EMOJI = "\U0001f600"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV),
                    scope="module")
async def client(lsp_client: LanguageClient, tiny_model: str):
    lsp_client.init_result = await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(),
        initialization_options={"modelPath": tiny_model, **FAST},
    ))
    yield
    await lsp_client.shutdown_session()


async def status(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(
        t.ExecuteCommandParams(command="diffusion-lsp.status"))


async def wait_status(client: LanguageClient, pred, timeout: float = 120.0) -> dict:
    """Ask for the status until `pred(status)` holds (each round trip is a real request)."""
    deadline = time.monotonic() + timeout
    while True:
        s = await status(client)
        if pred(s):
            return s
        assert time.monotonic() < deadline, f"status never matched: {s}"


async def configure(client: LanguageClient, **values) -> None:
    client.workspace_did_change_configuration(
        t.DidChangeConfigurationParams(settings={"diffusionLsp": values}))
    await wait_status(client, lambda s: all(s["settings"][k] == v for k, v in values.items()))


def open_doc(client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        text_document=t.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


def completion_params(uri: str, line: int, character: int) -> t.CompletionParams:
    return t.CompletionParams(text_document=t.TextDocumentIdentifier(uri=uri),
                              position=t.Position(line=line, character=character))


async def test_initialize_advertises_capabilities(client: LanguageClient):
    caps = client.init_result.capabilities
    assert client.init_result.server_info.name == "diffusion-lsp"
    assert caps.position_encoding == t.PositionEncodingKind.Utf16
    sync = caps.text_document_sync
    assert getattr(sync, "change", sync) == t.TextDocumentSyncKind.Incremental
    assert caps.completion_provider is not None
    assert caps.inline_completion_provider is not None
    assert caps.code_action_provider.resolve_provider is True
    assert t.CodeActionKind.QuickFix in caps.code_action_provider.code_action_kinds
    assert "diffusion-lsp.status" in caps.execute_command_provider.commands


async def test_model_load_progress_and_status(client: LanguageClient, tiny_model: str):
    s = await wait_status(client, lambda s: s["model"] is not None)
    assert s["model"]["path"] == tiny_model and len(s["model"]["hash"]) == 16
    assert s["model"]["parameters"] > 0 and s["model"]["device"] == "cpu"
    assert s["settings"]["maxTokens"] == 8 and s["model_error"] is None
    assert s["torch_threads"] == 1  # OMP_NUM_THREADS=1 in SERVER_ENV is respected
    assert "hits" in s["cache"]
    while not any(any(isinstance(v, t.WorkDoneProgressEnd) for v in reports)
                  for reports in client.progress_reports.values()):
        await asyncio.wait_for(client.wait_for_notification(t.PROGRESS), 60)
    (reports,) = [r for r in client.progress_reports.values() if r]
    assert isinstance(reports[0], t.WorkDoneProgressBegin)
    assert "model ready" in reports[-1].message


async def test_completion_item_has_text_edit(client: LanguageClient):
    uri = "file:///work/complete.py"
    text = "import os\n\ndef area(radius):\n    return 3.14 * rad"
    open_doc(client, uri, text)
    result = await client.text_document_completion_async(completion_params(uri, 3, 21))
    assert isinstance(result, t.CompletionList) and result.is_incomplete
    (item,) = result.items
    edit = item.text_edit
    # the edit replaces the word before the cursor ("rad") and ends at the cursor
    assert edit.range.start == t.Position(line=3, character=18)
    assert edit.range.end == t.Position(line=3, character=21)
    assert edit.new_text.startswith("rad") and len(edit.new_text) > 3
    s = await status(client)
    assert s["requests_served"] >= 1 and s["completion_latency_ms"]["p50"] > 0
    assert s["cache"]["updates"] >= 1
    assert "recent_completions" not in s  # only when asked for
    recent = (await client.workspace_execute_command_async(t.ExecuteCommandParams(
        command="diffusion-lsp.status", arguments=[{"recentCompletions": True}])))
    last = recent["recent_completions"][-1]  # the typed timings, not a log line
    assert last["mode"] == "single" and last["chars"] == len(edit.new_text) - len("rad")
    assert last["steps"] >= 1 and last["engine_ms"] > 0 and last["server_ms"] >= last["engine_ms"]
    assert {"reused_tokens", "encoded_tokens", "out_of_time", "id"} <= set(last)


async def test_min_probability_cuts_what_is_shown(client: LanguageClient):
    uri = "file:///work/unsure.py"
    open_doc(client, uri, "def add(a, b):\n    total = a + \n")

    async def ghost() -> list[str]:
        result = await client.text_document_inline_completion_async(t.InlineCompletionParams(
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
            text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=1, character=16)))
        return [i.insert_text for i in result.items]

    await configure(client, minProbability=0.0)
    assert any(x.strip() for x in await ghost())
    await configure(client, minProbability=1.0)  # no token is that sure: nothing to show
    assert await ghost() == []
    result = await client.text_document_completion_async(completion_params(uri, 1, 16))
    assert result is None or not result.items
    await configure(client, minProbability=Settings().min_probability)


async def test_inline_completion_single_and_multi_line(client: LanguageClient):
    uri = "file:///work/inline.py"
    text = "def add(a, b):\n    total = a + \n"
    open_doc(client, uri, text)
    for line, character in ((1, 16), (0, 14)):  # mid-statement (single line); after ":" (multi)
        result = await client.text_document_inline_completion_async(t.InlineCompletionParams(
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
            text_document=t.TextDocumentIdentifier(uri=uri),
            position=t.Position(line=line, character=character)))
        # asked for (Invoked): the answer for the position, then the other length to cycle to
        assert 1 <= len(result.items) <= 2
        texts = [i.insert_text for i in result.items]
        assert len(set(texts)) == len(texts) and all(x.strip() for x in texts)
        here = t.Position(line=line, character=character)
        assert all(i.range == t.Range(start=here, end=here) for i in result.items)
        if line == 1:
            assert "\n" not in texts[0]
        # while typing (Automatic): one answer only
        auto = await client.text_document_inline_completion_async(t.InlineCompletionParams(
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic),
            text_document=t.TextDocumentIdentifier(uri=uri),
            position=t.Position(line=line, character=character)))
        assert len(auto.items) <= 1
        if auto.items:
            assert auto.items[0].insert_text == texts[0]  # the same first answer


async def test_incremental_edits_with_emoji_then_completion(client: LanguageClient):
    uri = "file:///work/edits.py"
    text = f'greeting = "{EMOJI} hi"\n\n'
    open_doc(client, uri, text)
    # Type on line 1, then insert a second emoji line before it, then fix a typo, all as
    # incremental UTF-16 ranges: after the emoji, columns run one ahead of code points.
    changes = [
        (t.Range(start=t.Position(line=1, character=0), end=t.Position(line=1, character=0)),
         f"shout = greeting.upp + {EMOJI!r}"),
        (t.Range(start=t.Position(line=0, character=0), end=t.Position(line=0, character=0)),
         f"# {EMOJI}{EMOJI}\n"),
        # line 2 is now `shout = greeting.upp + '😀'`: replace "upp" (columns 17..20)
        (t.Range(start=t.Position(line=2, character=17), end=t.Position(line=2, character=20)),
         "upper()"),
        # line 1: `greeting = "😀 hi"`: the space after the emoji is at UTF-16 column 14
        (t.Range(start=t.Position(line=1, character=14), end=t.Position(line=1, character=15)),
         "_"),
    ]
    expected = text
    for version, (rng, new) in enumerate(changes, start=2):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[t.TextDocumentContentChangePartial(range=rng, text=new)]))
        idx = LineIndex(expected)
        a = idx.offset(rng.start.line, rng.start.character)
        b = idx.offset(rng.end.line, rng.end.character)
        expected = apply_edits(expected, [Edit(a, b, new)])
    assert expected == f"# {EMOJI}{EMOJI}\ngreeting = \"{EMOJI}_hi\"\nshout = greeting.upper() + '{EMOJI}'\n"
    # cursor right after "greeting.up" on line 2: the word before the cursor is "up"
    result = await client.text_document_completion_async(completion_params(uri, 2, 19))
    (item,) = result.items
    assert item.text_edit.range.start == t.Position(line=2, character=17)
    assert item.text_edit.new_text.startswith("up")
    # and on the emoji line: cursor after `_hi` (UTF-16 column 17), word "_hi"
    result = await client.text_document_completion_async(completion_params(uri, 1, 17))
    (item,) = result.items
    assert item.text_edit.new_text.startswith("_hi")
    assert item.text_edit.range.start == t.Position(line=1, character=14)


async def test_repair_code_action_resolves_to_versioned_edit(client: LanguageClient):
    uri = "file:///work/broken.py"
    text = "import os\n\ndef area(r):\n    return 3.14 * (r *\n\nprint(area(2))\n"
    open_doc(client, uri, text, version=7)
    ctx = t.CodeActionContext(diagnostics=[])
    here = t.Range(start=t.Position(line=3, character=4), end=t.Position(line=3, character=4))
    actions = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=here, context=ctx))
    (action,) = actions
    assert action.title == "Repair this block"
    assert action.kind == t.CodeActionKind.QuickFix  # the block has a syntax error
    assert action.edit is None  # computed lazily, in codeAction/resolve
    assert (action.data["startLine"], action.data["endLine"]) == (2, 3)
    only_refactor = t.CodeActionContext(diagnostics=[], only=[t.CodeActionKind.Refactor])
    assert not await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=here, context=only_refactor))

    resolved = await client.code_action_resolve_async(action)
    edit = resolved.edit
    assert edit is not None
    for doc_edit in edit.document_changes or []:
        assert doc_edit.text_document.uri == uri and doc_edit.text_document.version == 7
        for e in doc_edit.edits:  # minimal edits stay inside the repaired block
            assert 2 <= e.range.start.line <= e.range.end.line <= 4

    # a valid selection is offered as a refactoring; selection ends at col 0 -> lines 0..0
    sel = t.Range(start=t.Position(line=0, character=0), end=t.Position(line=1, character=0))
    (action,) = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), range=sel, context=ctx))
    assert action.kind == t.CodeActionKind.RefactorRewrite
    assert (action.data["startLine"], action.data["endLine"]) == (0, 0)

    # resolving after the document moved on gives an empty edit, not a stale one
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=uri, version=8),
        content_changes=[t.TextDocumentContentChangePartial(
            range=t.Range(start=t.Position(line=0, character=0),
                          end=t.Position(line=0, character=0)), text="# moved\n")]))
    resolved = await client.code_action_resolve_async(action)
    assert not resolved.edit.changes and not resolved.edit.document_changes


async def test_unknown_or_closed_document_is_a_clear_error(client: LanguageClient):
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        await client.text_document_completion_async(completion_params("file:///nope.py", 0, 0))
    uri = "file:///work/closed.py"
    open_doc(client, uri, "x = 1\n")
    client.text_document_did_close(t.DidCloseTextDocumentParams(
        text_document=t.TextDocumentIdentifier(uri=uri)))
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        await client.text_document_inline_completion_async(t.InlineCompletionParams(
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic),
            text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=0, character=5)))
    # the server keeps serving
    open_doc(client, uri, "y = 2\n", version=2)
    result = await client.text_document_completion_async(completion_params(uri, 0, 5))
    assert isinstance(result, t.CompletionList)


async def test_invalid_setting_shows_a_message_and_keeps_default(client: LanguageClient):
    client.messages.clear()
    client.workspace_did_change_configuration(t.DidChangeConfigurationParams(
        settings={"diffusionLsp": {"maxTokens": "lots", "colour": "blue"}}))
    while len(client.messages) < 2:
        await asyncio.wait_for(client.wait_for_notification(t.WINDOW_SHOW_MESSAGE), 30)
    text = " ".join(m.message for m in client.messages)
    assert "maxTokens" in text and "colour" in text
    assert (await status(client))["settings"]["maxTokens"] == 8


async def test_newer_request_supersedes_and_cancel_request_stops_the_job(client: LanguageClient):
    uri = "file:///work/slow.py"
    open_doc(client, uri, "def slow():\n    return ")
    await configure(client, **SLOW)
    try:
        first = asyncio.ensure_future(client.protocol.send_request_async(
            t.TEXT_DOCUMENT_COMPLETION, completion_params(uri, 1, 11), msg_id="slow-1"))
        await wait_status(client, lambda s: "[slow-1]" in (s["worker"]["running"] or ""))
        second = asyncio.ensure_future(client.protocol.send_request_async(
            t.TEXT_DOCUMENT_COMPLETION, completion_params(uri, 1, 11), msg_id="slow-2"))
        superseded = await asyncio.wait_for(first, 30)  # answered, with nothing
        assert not superseded.items
        # slow-2 is now the running job (slow-1 stopped at its next denoising step)
        await wait_status(client, lambda s: s["requests_superseded"] >= 1
                          and "[slow-2]" in (s["worker"]["running"] or ""))
        t0 = time.monotonic()
        client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id="slow-2"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(second, 30)
        answered = time.monotonic() - t0
        # the job itself stops at the next denoising step: the worker goes idle
        s = await wait_status(client, lambda s: s["worker"]["running"] is None, timeout=30)
        stopped = time.monotonic() - t0
        assert s["requests_cancelled"] >= 1
        # a full job is 4000 steps (minutes); one step of the tiny model is milliseconds
        assert answered < 5 and stopped < 10, (answered, stopped)
    finally:
        await configure(client, **FAST)
    result = await client.text_document_completion_async(completion_params(uri, 1, 11))
    assert len(result.items) == 1
