"""`diffusion-lsp complete` and `repair` as a user runs them: real subprocess, file untouched."""

import json
import os
import subprocess
import sys

import pytest

from diffusion_core.testing import make_tiny_model_dir

SOURCE = "import os\n\n\ndef add(a, b):\n    return a +\n\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("model"))


def cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "lsp_server.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def test_complete_and_repair_print_results_and_never_touch_the_file(tmp_path, model):
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    mtime = f.stat().st_mtime_ns
    r = cli("complete", str(f), "--line", "5", "--character", "14", "--json", "--model", str(model))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["line"] == 5 and out["character"] == 14
    assert isinstance(out["text"], str) and out["timings"]["steps"] >= 1
    r = cli("repair", str(f), "--start-line", "4", "--end-line", "5", "--json", "--model", str(model))
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)
    assert f.read_text() == SOURCE and f.stat().st_mtime_ns == mtime


def test_positions_outside_the_file_are_a_clear_usage_error(tmp_path, model):
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    r = cli("complete", str(f), "--line", "99", "--character", "0", "--model", str(model))
    assert r.returncode == 2
    assert "--line 99 is outside" in r.stderr
    r = cli("complete", str(tmp_path / "missing.py"), "--line", "1", "--character", "0",
            "--model", str(model))
    assert r.returncode != 0 and "cannot read" in r.stderr and "Traceback" not in r.stderr
