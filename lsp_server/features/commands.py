"""The commands: `diffusion-lsp.status` and `diffusion-lsp.documentState`."""

from __future__ import annotations

import hashlib
from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.features import DOCUMENT_STATE_COMMAND, STATUS_COMMAND


def register(server) -> None:
    @server.command(STATUS_COMMAND)
    async def status(ls, *args: Any) -> dict:
        """The server's state; `{"recentCompletions": true}` adds the typed timings of the
        last completions by request id (what the latency benchmark reads)."""
        opts = args[0] if args and isinstance(args[0], dict) else {}
        return ls.status(recent=opts.get("recentCompletions") is True)

    @server.command(DOCUMENT_STATE_COMMAND)
    async def document_state(ls, *args: Any) -> dict:
        """The server's copy of a document as version, length and sha256 (UTF-8) of its
        text, so a client or a test can check that both copies agree. Read-only, and it
        returns no text."""
        uri = args[0] if args and isinstance(args[0], str) else None
        if uri is None:
            raise JsonRpcInvalidParams(message=f"{DOCUMENT_STATE_COMMAND} takes a document URI")
        snap = ls.docs.get(uri)
        if snap is None:
            return {"uri": uri, "open": False}
        data = snap.text.encode("utf-8", "surrogatepass")
        return {"uri": uri, "open": True, "version": snap.version, "length": len(snap.text),
                "lines": snap.index.line_count, "sha256": hashlib.sha256(data).hexdigest()}
