"""Explicit completion requests rerank the single line (issue 19), through the real server
subprocess with a tiny joint model: Ctrl-Space and an invoked inline suggestion offer the
ranked lines after the line and the block; typing (automatic triggers) stays greedy."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient

from diffusion_core.testing import make_tiny_model_dir
from tests.lsp.conftest import SERVER_COMMAND, SERVER_ENV, capabilities
from tests.lsp.test_server import configure, open_doc, status, wait_status

pytestmark = pytest.mark.asyncio(loop_scope="module")

URI = "file:///work/ranked.py"
TEXT = "def add(a, b):\n    total = a + \n    return total\n"
HERE = t.Position(line=1, character=16)  # mid-statement: single-line mode


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV),
                    scope="module")
async def client(lsp_client: LanguageClient, tmp_path_factory):
    joint = make_tiny_model_dir(tmp_path_factory.mktemp("joint") / "joint", kind="joint")
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(),
        # no token healing: the random model's likely first tokens rarely spell the healed piece
        initialization_options={"modelPath": str(joint), "maxTokens": 8, "minProbability": 0.0,
                                "tokenHealing": False, "completionCandidates": 4},
    ))
    await wait_status(lsp_client, lambda s: s.get("model") is not None)
    open_doc(lsp_client, URI, TEXT)
    yield
    await lsp_client.shutdown_session()


async def jobs(client: LanguageClient) -> list[dict]:
    """The server's typed timings of its recent completion jobs, oldest first."""
    recent = await client.workspace_execute_command_async(t.ExecuteCommandParams(
        command="diffusion-lsp.status", arguments=[{"recentCompletions": True}]))
    return recent["recent_completions"]


async def menu(client: LanguageClient, kind: t.CompletionTriggerKind) -> list[t.CompletionItem]:
    result = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=URI), position=HERE,
        context=t.CompletionContext(trigger_kind=kind)))
    return [] if result is None else result.items


async def test_ctrl_space_offers_the_ranked_lines_in_order(client: LanguageClient):
    items = await menu(client, t.CompletionTriggerKind.Invoked)
    ranked = [j for j in await jobs(client) if j["mode"] == "single"][-1]  # the multi-line one is not
    assert ranked["candidates"] >= 2 and ranked["rerank_ms"] > 0, ranked
    texts = [i.text_edit.new_text for i in items]
    assert len(items) >= 2 and len(set(texts)) == len(texts)
    assert [i.sort_text for i in items] == [str(r) for r in range(len(items))]
    # the ranked lines are single lines; only the block may span lines
    assert sum("\n" in x for x in texts) <= 1


async def test_typing_is_not_reranked(client: LanguageClient):
    await menu(client, t.CompletionTriggerKind.TriggerCharacter)
    job = (await jobs(client))[-1]
    assert job["candidates"] == 0 and job["rerank_ms"] == 0
    ghost = await client.text_document_inline_completion_async(t.InlineCompletionParams(
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic),
        text_document=t.TextDocumentIdentifier(uri=URI), position=HERE))
    assert len(ghost.items) <= 1 and (await jobs(client))[-1]["candidates"] == 0


async def test_invoked_ghost_text_cycles_through_the_ranked_lines(client: LanguageClient):
    ghost = await client.text_document_inline_completion_async(t.InlineCompletionParams(
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
        text_document=t.TextDocumentIdentifier(uri=URI), position=HERE))
    texts = [i.insert_text for i in ghost.items]
    assert len(texts) >= 2 and len(set(texts)) == len(texts)
    await configure(client, completionCandidates=0)  # off: the line and the block only
    ghost = await client.text_document_inline_completion_async(t.InlineCompletionParams(
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
        text_document=t.TextDocumentIdentifier(uri=URI), position=HERE))
    assert len(ghost.items) <= 2
    assert all(j["candidates"] == 0 for j in (await jobs(client))[-2:])
    s = await status(client)
    assert s["settings"]["completionCandidates"] == 0

