"""A block-causal family checkpoint (issue 21) served by the real server subprocess: it
loads from a local directory with its own conventions and answers completion, ghost text
and the status command (SDAR's shape: Qwen3 layers, `<|MASK|>`, trained block 4)."""

import time

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.core.test_hf_families import family_dirs, hf_tokenizer  # noqa: F401
from tests.lsp.conftest import SERVER_COMMAND, SERVER_ENV, capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=SERVER_ENV),
                    scope="module")
async def client(lsp_client: LanguageClient, family_dirs):  # noqa: F811
    lsp_client.model_dir = str(family_dirs["sdar"][1])
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities(),
        initialization_options={"modelPath": lsp_client.model_dir, "maxTokens": 6},
    ))
    yield
    await lsp_client.shutdown_session()


async def test_a_block_family_checkpoint_is_served(client: LanguageClient):
    status = {}
    deadline = time.monotonic() + 180  # the load runs in the worker; a loaded CI machine is slow
    while time.monotonic() < deadline:  # each round trip is a real request (no sleeping)
        status = await client.workspace_execute_command_async(
            t.ExecuteCommandParams(command="diffusion-lsp.status"))
        # done when a model or an error is there (not merely "not loading": the load may
        # not have started yet when the first status comes back)
        if status.get("model") is not None or status.get("model_error") is not None:
            break
    assert status.get("model_error") is None, status
    assert status["model"] is not None and client.model_dir in str(status["model"]), status
    uri = "file:///work/family.py"
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=uri, language_id="python", version=1, text="def add(a, b):\n    return a\n")))
    here = t.Position(line=1, character=12)
    inline = await client.text_document_inline_completion_async(t.InlineCompletionParams(
        context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Invoked),
        text_document=t.TextDocumentIdentifier(uri=uri), position=here))
    assert all(i.range == t.Range(start=here, end=here) for i in inline.items)
    menu = await client.text_document_completion_async(t.CompletionParams(
        text_document=t.TextDocumentIdentifier(uri=uri), position=here))
    assert menu is not None
    errors = [m for m in client.messages if m.type == t.MessageType.Error]
    assert not errors, errors
