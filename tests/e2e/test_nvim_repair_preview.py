"""The repair preview in the real Neovim (issue 22): the edit is shown as a diff in a float
first; `a` applies it, `q` (or closing the window) discards it and the buffer stays."""

from __future__ import annotations

import pytest

from tests.e2e.test_nvim import WAIT_MS, model_dir, nvim, start_editing  # noqa: F401

pytestmark = pytest.mark.e2e

EDIT_AND_PREVIEW = """
local dl = require('diffusion_lsp')
local bufnr = vim.api.nvim_get_current_buf()
local edit = { changes = { [vim.uri_from_bufnr(bufnr)] = {
  { range = { start = { line = 1, character = 0 }, ['end'] = { line = 1, character = 0 } },
    newText = '    # checked\\n' } } } }
local diff = dl.edit_diff(bufnr, dl.buffer_text_edits(edit, bufnr), 'utf-16')
E2E.choice = nil
dl.preview_diff(diff, function(apply) E2E.choice = apply end)
local p = dl._preview
return { diff = diff, win = p and p.win, shown = p and vim.api.nvim_buf_get_lines(p.buf, 0, -1, false),
         ft = p and vim.bo[p.buf].filetype, current = vim.api.nvim_get_current_win() }
"""

CHOICE = "return { ok = vim.wait(..., function() return E2E.choice ~= nil end, 10), choice = E2E.choice, " \
         "open = require('diffusion_lsp')._preview ~= nil }"


def test_a_repair_is_previewed_as_a_diff_then_applied_or_discarded(nvim, model_dir, tmp_path):  # noqa: F811
    start_editing(nvim, model_dir, tmp_path / "demo.py")
    before = nvim.lua("return E2E.state()")

    shown = nvim.lua(EDIT_AND_PREVIEW)
    assert "+    # checked" in shown["diff"] and shown["diff"].startswith("@@"), shown
    assert shown["win"] == shown["current"] and shown["ft"] == "diff"
    assert shown["shown"] == shown["diff"].rstrip("\n").split("\n")
    nvim.input("a")
    assert nvim.lua(CHOICE, 5000) == {"ok": True, "choice": True, "open": False}
    assert nvim.lua("return E2E.state()")["lines"] == before["lines"]  # the caller applies

    for close in ("q", "<Esc>", ":close<CR>"):
        nvim.lua(EDIT_AND_PREVIEW)
        nvim.input(close)
        assert nvim.lua(CHOICE, 5000) == {"ok": True, "choice": False, "open": False}, close

    # through the server: with preview on, nothing changes until the user decides
    assert nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)["ok"]
    run = """
        E2E.outcome = nil
        require('diffusion_lsp').repair({ range = { start = { 1, 0 }, ['end'] = { 2, 16 } }, quiet = true,
          preview = true, on_done = function(r) E2E.outcome = r end })
        local ok = vim.wait(..., function()
          return E2E.outcome ~= nil or require('diffusion_lsp')._preview ~= nil end, 10)
        return { ok = ok, outcome = E2E.outcome, preview = require('diffusion_lsp')._preview ~= nil }"""
    first = nvim.lua(run, WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert first["ok"], first
    if first["preview"]:  # the model proposed an edit: it waits in the preview
        assert nvim.lua("return E2E.state()")["lines"] == before["lines"]
        nvim.input("q")
        done = nvim.lua("return { ok = vim.wait(5000, function() return E2E.outcome ~= nil end, 10),"
                        " status = E2E.outcome and E2E.outcome.status }")
        assert done == {"ok": True, "status": "discarded"}, done
        assert nvim.lua("return E2E.state()")["lines"] == before["lines"]
    else:
        assert first["outcome"]["status"] == "no-change", first
