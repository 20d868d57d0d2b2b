"""What the client said at `initialize`, resolved once: the session's capabilities.

The handlers read these flags instead of probing `ClientCapabilities` per request;
`pygls.capabilities.get_capability` walks the nested (optional) fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types as t
from pygls.capabilities import get_capability

from lsp_server.positions import UTF16


@dataclass(frozen=True)
class Session:
    encoding: str = UTF16  # the negotiated position encoding
    documentation_formats: tuple[str, ...] = ()  # completion item documentation formats
    document_changes: bool = False  # versioned `WorkspaceEdit.documentChanges`
    configuration: bool = False  # `workspace/configuration` (pull settings)
    work_done_progress: bool = False  # `window/workDoneProgress/create`
    resolve_edit: bool = False  # `codeAction/resolve` can fill in `edit`
    disabled_actions: bool = False  # `CodeAction.disabled` is shown

    @classmethod
    def from_client(cls, caps: t.ClientCapabilities | None, encoding=None) -> Session:
        caps = caps or t.ClientCapabilities()

        def get(path: str, default=None):
            return get_capability(caps, path, default)

        enc = encoding or UTF16
        return cls(
            encoding=getattr(enc, "value", enc),
            documentation_formats=tuple(
                getattr(f, "value", f)
                for f in get("text_document.completion.completion_item.documentation_format", [])
            ),
            document_changes=bool(get("workspace.workspace_edit.document_changes", False)),
            configuration=bool(get("workspace.configuration", False)),
            work_done_progress=bool(get("window.work_done_progress", False)),
            resolve_edit="edit" in (get("text_document.code_action.resolve_support.properties", [])
                                    or []),
            disabled_actions=bool(get("text_document.code_action.disabled_support", False)),
        )
