"""The in-progress indicator (issue 22): the statusline says "working" while a request of
ours is in flight for the buffer, and stops saying it when the answer is in."""

from __future__ import annotations

import pytest

from tests.e2e.test_nvim import COMPLETE_AT, INLINE, WAIT_MS, model_dir, nvim, start_editing  # noqa: F401

pytestmark = pytest.mark.e2e


def test_statusline_shows_working_while_a_request_is_in_flight(nvim, model_dir, tmp_path):  # noqa: F811
    if nvim.lua("return vim.lsp.inline_completion ~= nil"):
        pytest.skip("Neovim 0.12+: the built-in ghost text does not go through the plugin")
    start_editing(nvim, model_dir, tmp_path / "demo.py")
    assert nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)["ok"]
    busy = "return { busy = require('diffusion_lsp').busy(0), line = require('diffusion_lsp').statusline() }"
    idle = nvim.lua(busy)
    assert idle["busy"] is False and "working" not in idle["line"], idle

    # the ghost-text answer is held back by the test: the request counts as in flight
    nvim.lua("E2E.hold = true")
    nvim.request("nvim_win_set_cursor", 0, list(COMPLETE_AT))
    nvim.input("A")
    sent = nvim.lua("return E2E.wait_sent(...)", INLINE, 1, WAIT_MS)
    assert sent["ok"], sent
    working = nvim.lua(busy)
    assert working["busy"] is True and working["line"].startswith("diffusion: working"), working

    # a completion request of the buffer counts too, until its answer arrives
    nvim.lua("E2E.release()")
    assert nvim.lua("return E2E.wait_ghost(...)", COMPLETE_AT[0] - 1, COMPLETE_AT[1], WAIT_MS,
                    timeout=WAIT_MS / 1000 + 10)["ok"]
    nvim.input("<Esc>")
    assert nvim.lua("return E2E.wait_no_ghost(...)", WAIT_MS)["ok"]
    in_flight = nvim.lua("""
        local dl = require('diffusion_lsp')
        local client = dl.get_client(0)
        local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
        local done = false
        client:request('textDocument/completion', params, function() done = true end, 0)
        local during = dl.busy(0)
        local ok = vim.wait(...,  function() return done end, 10)
        return { during = during, ok = ok, after = dl.busy(0), line = dl.statusline() }""", WAIT_MS,
        timeout=WAIT_MS / 1000 + 10)
    assert in_flight["during"] is True and in_flight["ok"], in_flight
    assert in_flight["after"] is False and "working" not in in_flight["line"], in_flight
