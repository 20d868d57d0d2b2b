"""Syntax diagnostics in the real Neovim (issue 20): the server's DL001 finding appears at
the parser's location when a broken file is opened, goes away when the line is fixed, and
"Repair this block" is offered for it as a quick fix."""

from __future__ import annotations

import pytest

from tests.e2e.test_nvim import PLUGIN_DIR, SERVER_CMD, WAIT_MS, model_dir, nvim  # noqa: F401

pytestmark = pytest.mark.e2e

BROKEN = "def total(values):\n    s = 0\n    for v in values\n        s += v\n    return s\n"

DIAGNOSTICS = """
local timeout, want = ...
local ok = vim.wait(timeout, function()
  return (#vim.diagnostic.get(0) > 0) == want
end, 10)
return { ok = ok, diagnostics = vim.tbl_map(function(d)
  return { lnum = d.lnum, col = d.col, source = d.source, code = d.code, message = d.message,
           severity = d.severity }
end, vim.diagnostic.get(0)) }
"""


def test_a_syntax_error_is_a_diagnostic_until_it_is_fixed(nvim, model_dir, tmp_path):  # noqa: F811
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    setup = nvim.lua("return E2E.setup(...)", str(PLUGIN_DIR), SERVER_CMD, {"modelPath": str(model_dir)})
    assert setup["enabled"]
    opened = nvim.lua("return E2E.open(...)", str(path), WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert opened["attached"], nvim.stderr_tail()

    shown = nvim.lua(DIAGNOSTICS, WAIT_MS, True, timeout=WAIT_MS / 1000 + 10)
    assert shown["ok"], shown
    (d,) = shown["diagnostics"]
    assert d["source"] == "diffusion-lsp" and d["code"] == "DL001", d
    assert d["lnum"] == 2 and d["severity"] == 1, d  # the `for` line, an error
    assert "syntax" in d["message"].lower()

    # the quick fix for it is "Repair this block" (listed cheaply; the model runs on resolve)
    actions = nvim.lua("""
        local timeout = ...
        local client = require('diffusion_lsp').get_client(0)
        vim.api.nvim_win_set_cursor(0, { 3, 4 })
        local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
        params.context = { diagnostics = vim.lsp.diagnostic.from(vim.diagnostic.get(0)), triggerKind = 1 }
        local res = client:request_sync('textDocument/codeAction', params, timeout, 0)
        return vim.tbl_map(function(a) return a.title end, res and res.result or {})""", WAIT_MS,
        timeout=WAIT_MS / 1000 + 10)
    assert "Repair this block" in actions, actions

    # typing the colon clears it
    nvim.request("nvim_win_set_cursor", 0, [3, 0])
    nvim.input("A:<Esc>")
    cleared = nvim.lua(DIAGNOSTICS, WAIT_MS, False, timeout=WAIT_MS / 1000 + 10)
    assert cleared["ok"] and cleared["diagnostics"] == [], cleared
