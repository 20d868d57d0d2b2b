"""The editor clients and the server agree on the settings (no editor, no model needed).

The VS Code extension sends its setting defaults to the server, so every default must be
a value the server accepts; both clients must know every server key and no other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lsp_server.settings import KEYS, SECTION, Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_JSON = ROOT / "clients" / "vscode" / "package.json"
VSCODE_SETTINGS_TS = ROOT / "clients" / "vscode" / "src" / "settings.ts"
NVIM_INIT = ROOT / "clients" / "nvim" / "lua" / "diffusion_lsp" / "init.lua"

CLIENT_ONLY = {"server.command", "server.pythonPath", "server.env", "languages",
               "statusRefreshMs", "trace.server"}


def vscode_properties() -> dict[str, dict]:
    props = json.loads(PACKAGE_JSON.read_text())["contributes"]["configuration"]["properties"]
    prefix = f"{SECTION}."
    assert all(name.startswith(prefix) for name in props)
    return {name[len(prefix):]: spec for name, spec in props.items()}


def test_vscode_contributes_exactly_the_server_keys_plus_client_settings():
    props = vscode_properties()
    assert set(props) - CLIENT_ONLY == set(KEYS)
    for key, spec in props.items():
        assert len(spec.get("markdownDescription") or spec.get("description") or "") > 15, key


def test_vscode_defaults_are_accepted_by_the_server_and_equal_its_defaults():
    props = vscode_properties()
    # what the extension sends: every server key, null/"" left out (settings.ts)
    sent = {k: props[k]["default"] for k in KEYS if props[k]["default"] not in (None, "")}
    settings, problems = parse_settings(sent)
    assert problems == []
    assert settings == Settings()


def test_vscode_server_key_list_matches_the_server():
    text = VSCODE_SETTINGS_TS.read_text()
    block = re.search(r"SERVER_SETTING_KEYS = \[(.*?)\]", text, re.S)
    assert block is not None
    assert re.findall(r'"(\w+)"', block.group(1)) == list(KEYS)


def test_nvim_server_key_list_matches_the_server():
    text = NVIM_INIT.read_text()
    block = re.search(r"M\.SERVER_SETTING_KEYS = \{(.*?)\}", text, re.S)
    assert block is not None
    assert re.findall(r"'(\w+)'", block.group(1)) == list(KEYS)


def test_vscode_types_ranges_and_choices_follow_the_declaration():
    """package.json states each server setting's type, minimum and choices as
    `lsp_server.settings.Settings` declares them (a maximum, where it states one, too)."""
    from lsp_server.settings import schema

    props = vscode_properties()
    for key, want in schema().items():
        got = props[key]
        assert got["type"] == want["type"], key
        for bound in ("minimum", "maximum"):
            if bound in got or bound == "minimum" and bound in want:
                assert got.get(bound) == want.get(bound), (key, bound)
        assert got.get("enum") == want.get("enum"), key
        assert got["default"] == want["default"], key


def test_the_declaration_is_the_only_table():
    """KEYS and CHECKS are read off the dataclass: a new field is a new setting."""
    import dataclasses

    from lsp_server.settings import CHECKS

    names = [f.name for f in dataclasses.fields(Settings)]
    assert list(KEYS.values()) == names and list(CHECKS) == names
