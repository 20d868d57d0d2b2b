"""initialize, initialized, settings changes and shutdown."""

from __future__ import annotations

import contextlib
from typing import Any

from lsprotocol import types as t

from lsp_server.features import sync
from lsp_server.session import Session
from lsp_server.settings import SECTION


def register(server) -> None:
    @server.feature(t.INITIALIZE)
    def initialize(ls, params: t.InitializeParams) -> None:
        # pygls has negotiated the position encoding by now (`workspace.position_encoding`)
        ls.session = Session.from_client(params.capabilities, ls.workspace.position_encoding)
        _, problems = ls.apply_settings(params.initialization_options)
        ls._pending_messages.extend((t.MessageType.Warning, p) for p in problems)
        ls._load_pending = True  # the load starts at `initialized` (it may send requests)

    @server.feature(t.INITIALIZED)
    async def initialized(ls, params: t.InitializedParams) -> None:
        ls._initialized = True
        ls.flush_messages()
        ls.log_line("info", f"diffusion-lsp {ls.version}: position encoding {ls.encoding}")
        # Queued in the worker before any await: every later job runs after the load.
        await ls.report_load(ls.start_load())

    @server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls, params: t.DidChangeConfigurationParams) -> None:
        data = params.settings
        if not isinstance(data, dict) or not data:
            if not ls.session.configuration:
                return
            got = await ls.workspace_configuration_async(
                t.ConfigurationParams(items=[t.ConfigurationItem(section=SECTION)]))
            data = got[0] if got else None
        names_before = ls.settings.name_diagnostics
        reload, problems = ls.apply_settings(data)
        ls._pending_messages.extend((t.MessageType.Warning, p) for p in problems)
        ls.flush_messages()
        ls.log_line("info", f"settings: {ls.settings.to_json()}")
        if reload or ls.settings.name_diagnostics != names_before:
            # DL003 follows the setting, and another model decides afresh (queued after the load)
            sync.refresh_all(ls, forget_decisions=reload)
        if reload:
            await ls.report_load(ls.start_load())

    @server.feature(t.SHUTDOWN)
    def shutdown(ls, *args: Any) -> None:
        ls.worker.shutdown()
        if ls.store is not None:
            with contextlib.suppress(Exception):
                ls.store.flush()
