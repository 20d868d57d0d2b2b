"""Shared pieces of the language-server tests: a tiny model and client capabilities."""

from __future__ import annotations

import os
import sys

import pytest
from lsprotocol import types as t

from diffusion_core.testing import make_tiny_model_dir

# The server runs as a real subprocess; one torch thread on the shared 2-core machine.
SERVER_COMMAND = [sys.executable, "-m", "lsp_server", "--log-level", "debug"]
SERVER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(make_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny"))


def capabilities(encodings: list[str] | None = None) -> t.ClientCapabilities:
    """A modern client: work-done progress, codeAction/resolve of `edit`, versioned edits,
    inline completion, pull configuration."""
    return t.ClientCapabilities(
        general=t.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        window=t.WindowClientCapabilities(work_done_progress=True),
        workspace=t.WorkspaceClientCapabilities(
            configuration=True,
            workspace_edit=t.WorkspaceEditClientCapabilities(document_changes=True),
        ),
        text_document=t.TextDocumentClientCapabilities(
            synchronization=t.TextDocumentSyncClientCapabilities(),
            completion=t.CompletionClientCapabilities(),
            inline_completion=t.InlineCompletionClientCapabilities(),
            code_action=t.CodeActionClientCapabilities(
                code_action_literal_support=t.ClientCodeActionLiteralOptions(
                    code_action_kind=t.ClientCodeActionKindOptions(
                        value_set=[t.CodeActionKind.QuickFix, t.CodeActionKind.RefactorRewrite])),
                data_support=True,
                disabled_support=True,
                resolve_support=t.ClientCodeActionResolveOptions(properties=["edit"]),
            ),
        ),
    )
