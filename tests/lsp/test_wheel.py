"""The built wheel carries the embedded model and runs outside the source tree (issue 22).

`pip wheel .` on a copy of the tracked files, installed without dependencies into a fresh
virtual environment. The dependencies (torch, tokenizers, ...) come from this test
environment's site-packages through a directory of links that leaves out this project's
own packages and its editable-install hooks, so that only the wheel can provide them.
The command runs from an empty directory, so nothing is imported from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("lsp_server", "diffusion_core", "dlsp_cache", "dlsp_benchmarks", "diffusion_lsp", "__editable__")

pytestmark = pytest.mark.slow


def _tracked_copy(dest: Path) -> None:
    """The files git tracks (plus untracked, unignored ones), as a clean checkout has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _dependency_links(dest: Path) -> Path:
    """A directory that links every distribution of this environment but ours."""
    dest.mkdir()
    for d in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(d).iterdir():
            if entry.name.startswith(OURS) or entry.suffix == ".pth" or (dest / entry.name).exists():
                continue
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    _tracked_copy(src)
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(dist)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = dist.glob("diffusion_lsp-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(_dependency_links(tmp / "deps")), "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    return env_dir, env


def test_the_wheel_holds_the_embedded_model(installed):
    env_dir, env = installed
    run = env_dir.parent / "elsewhere"
    run.mkdir(exist_ok=True)
    probe = (
        "import json, diffusion_core, lsp_server, dlsp_cache, dlsp_benchmarks;"
        "from importlib.metadata import entry_points; from importlib.util import find_spec;"
        "from diffusion_core.checkpoint import DEFAULT_MODEL_DIR as d;"
        "print(json.dumps([[diffusion_core.__file__, lsp_server.__file__, dlsp_cache.__file__,"
        " dlsp_benchmarks.__file__, str(d)], sorted(p.name for p in d.iterdir()),"
        " [find_spec(n) is None for n in ('cache', 'benchmarks')],"
        " sorted(e.value for e in entry_points(group='diffusion_lsp.commands'))]))"
    )
    out = subprocess.run([str(env_dir / "bin" / "python"), "-c", probe], cwd=run, env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    paths, files, folder_names_absent, commands = json.loads(out.stdout)
    for path in paths:
        assert Path(path).resolve().is_relative_to(env_dir.resolve()), path  # from the wheel
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= set(files)
    # the folders cache/ and benchmarks/ install under their import names only (issue 24)
    assert folder_names_absent == [True, True]
    assert commands == ["dlsp_benchmarks.cli", "dlsp_benchmarks.quality"]  # bench, eval


def test_the_installed_command_completes_a_file(installed):
    env_dir, env = installed
    work = env_dir.parent / "project"
    work.mkdir(exist_ok=True)
    (work / "demo.py").write_text("def add(a, b):\n    return a\n", encoding="utf-8")
    out = subprocess.run(
        [str(env_dir / "bin" / "diffusion-lsp"), "complete", "demo.py", "--line", "2", "--character", "12",
         "--max-tokens", "8", "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert isinstance(json.loads(out.stdout)["text"], str)
