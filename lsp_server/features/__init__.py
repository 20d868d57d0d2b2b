"""The request handlers, one module per request kind; each has `register(server)`.

lifecycle (initialize, settings, shutdown), sync (document sync, diagnostics),
completion (completion, inline completion), code_action (Repair this block, resolve),
commands (status, documentState).
"""

STATUS_COMMAND = "diffusion-lsp.status"
DOCUMENT_STATE_COMMAND = "diffusion-lsp.documentState"
REPAIR_TITLE = "Repair this block"
REQUEST_FAILED = -32803  # LSP RequestFailed
