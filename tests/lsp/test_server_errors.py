"""A server whose model cannot load, on a client that prefers UTF-8 positions."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.lsp.conftest import SERVER_COMMAND, SERVER_ENV, capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")
EMOJI = "\U0001f600"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV),
                    scope="module")
async def client(lsp_client: LanguageClient, tmp_path_factory):
    missing = tmp_path_factory.mktemp("nomodel") / "missing"
    lsp_client.init_result = await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(encodings=["utf-8", "utf-16"]),
        initialization_options={"modelPath": str(missing), "blockSize": 513},
    ))
    yield
    await lsp_client.shutdown_session()


async def test_model_failure_is_one_clear_message_and_empty_answers(client: LanguageClient):
    assert client.init_result.capabilities.position_encoding == t.PositionEncodingKind.Utf8
    while not any("cannot load the model" in m.message for m in client.messages):
        await asyncio.wait_for(client.wait_for_notification(t.WINDOW_SHOW_MESSAGE), 120)
    # the invalid blockSize was reported too, and the default kept
    assert any("blockSize" in m.message for m in client.messages)
    uri = "file:///work/a.py"
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=f"s = '{EMOJI}'\nx = \n")))
    for _ in range(2):
        result = await client.text_document_completion_async(t.CompletionParams(
            text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(line=1, character=4)))
        assert not result.items
        actions = await client.text_document_code_action_async(t.CodeActionParams(
            text_document=t.TextDocumentIdentifier(uri=uri),
            range=t.Range(start=t.Position(line=1, character=0), end=t.Position(line=1, character=0)),
            context=t.CodeActionContext(diagnostics=[])))
        assert not actions
    errors = [m for m in client.messages if m.type == t.MessageType.Error]
    assert len(errors) == 1, errors
    status = await client.workspace_execute_command_async(
        t.ExecuteCommandParams(command="diffusion-lsp.status"))
    assert status["model"] is None and "does not exist" in status["model_error"]
    assert status["position_encoding"] == "utf-8"
    assert status["settings"]["blockSize"] == 0  # the default: the model's trained block size
