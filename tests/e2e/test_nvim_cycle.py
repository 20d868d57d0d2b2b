"""Cycling through suggestions in Neovim 0.11's plugin-drawn ghost text (issue 22): <M-]>
asks the server explicitly (trigger kind Invoked) when nothing is shown, then steps through
the answers; the shown text is what <Tab> would accept."""

from __future__ import annotations

import pytest

from tests.e2e.test_nvim import COMPLETE_AT, INLINE, WAIT_MS, model_dir, nvim, start_editing  # noqa: F401

pytestmark = pytest.mark.e2e

SHOWN = "return (function(s) return s and s.text end)(require('diffusion_lsp.ghost').get(0))"


def test_next_and_previous_suggestion(nvim, model_dir, tmp_path):  # noqa: F811
    if nvim.lua("return vim.lsp.inline_completion ~= nil"):
        pytest.skip("Neovim 0.12+: the built-in vim.lsp.inline_completion cycles itself")
    start_editing(nvim, model_dir, tmp_path / "demo.py")
    assert nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)["ok"]
    nvim.request("nvim_win_set_cursor", 0, list(COMPLETE_AT))
    nvim.lua("E2E.hold = true")  # no automatic answer gets drawn meanwhile
    nvim.input("A")
    assert nvim.lua("return E2E.wait_sent(...)", INLINE, 1, WAIT_MS)["ok"]
    nvim.lua("require('diffusion_lsp.ghost').cancel(0); E2E.release()")
    assert nvim.lua(SHOWN) is None

    # nothing shown: <M-]> sends an explicit request (triggerKind 1) and draws its answer
    n = len(nvim.lua("return E2E.sent[...]", INLINE))
    nvim.input("<M-]>")
    assert nvim.lua("return E2E.wait_sent(...)", INLINE, n + 1, WAIT_MS)["ok"]
    row, col = COMPLETE_AT[0] - 1, COMPLETE_AT[1]
    shown = nvim.lua("return E2E.wait_ghost(...)", row, col, WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert shown["ok"], shown
    answer = nvim.lua("return E2E.responses[...]", INLINE)[-1]["result"]["items"]
    texts = [i["insertText"] for i in answer]
    assert nvim.lua(SHOWN) == texts[0]

    # several suggestions: <M-]> / <M-[> step through them in order, wrapping around
    nvim.lua("""local g = require('diffusion_lsp.ghost')
        g.cancel(0)  -- a late answer of another request must not replace these
        local r, c = unpack(vim.api.nvim_win_get_cursor(0))
        g.show_items(0, r - 1, c, { 'first', 'second', 'third' })""")
    seen = []
    for key in ("<M-]>", "<M-]>", "<M-]>", "<M-[>"):
        nvim.input(key)
        seen.append(nvim.lua(SHOWN))
    assert seen == ["second", "third", "first", "third"]
    assert nvim.lua("return vim.api.nvim_get_mode().mode") == "i"
