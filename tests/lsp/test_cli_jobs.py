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


def test_a_latin1_module_with_a_coding_cookie_completes_like_check_reads_it(tmp_path, model):
    f = tmp_path / "old.py"
    f.write_bytes('# -*- coding: latin-1 -*-\ns = "café"\n\ndef f(x):\n    return x\n'.encode("latin-1"))
    r = cli("complete", str(f), "--line", "5", "--character", "4", "--json", "--model", str(model))
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout)["text"], str)
    bad = tmp_path / "bad.py"
    bad.write_bytes(b"s = '\xff\xfe'\n")  # not UTF-8, no cookie: a clear message, no traceback
    r = cli("complete", str(bad), "--line", "1", "--model", str(model))
    assert r.returncode != 0 and "cannot read" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_a_bad_device_is_a_clear_error(tmp_path, model, device):
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    r = cli("complete", str(f), "--line", "5", "--model", str(model), "--device", device)
    assert r.returncode != 0 and "--device" in r.stderr and "Traceback" not in r.stderr


def test_cuda_without_cuda_is_a_clear_error(tmp_path, model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    r = cli("repair", str(f), "--start-line", "4", "--end-line", "5", "--model", str(model), "--device", "cuda")
    assert r.returncode != 0 and "use --device cpu" in r.stderr and "Traceback" not in r.stderr


def test_serve_accepts_the_devices_the_editor_setting_accepts():
    from lsp_server.cli import build_parser

    p = build_parser("serve")
    assert p.parse_args(["serve", "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "--device", "gpu"])


def test_decoder_the_model_cannot_run_is_a_clear_error(tmp_path, model):
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    r = cli("complete", str(f), "--line", "5", "--model", str(model), "--decoder", "greedy")
    assert r.returncode != 0 and "causal path" in r.stderr and "Traceback" not in r.stderr


def test_quantize_int8_runs_on_the_cpu_and_is_refused_clearly_elsewhere(tmp_path, model):
    from diffusion_core.engine import Engine
    from diffusion_core.quantize import is_quantized
    from lsp_server.settings import Settings, parse_settings

    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    r = cli("complete", str(f), "--line", "5", "--character", "14", "--json", "--model", str(model),
            "--quantize", "int8")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout)["text"], str)
    assert is_quantized(Engine.from_path(model, quantize="int8").model)
    assert not is_quantized(Engine.from_path(model, quantize="none").model)
    r = cli("complete", str(f), "--line", "5", "--model", str(model), "--quantize", "int4")
    assert r.returncode == 2 and "--quantize" in r.stderr
    # the editor setting: checked, "none" by default
    assert Settings().quantize == "none"
    s, problems = parse_settings({"quantize": "int8"})
    assert s.quantize == "int8" and problems == []
    s, problems = parse_settings({"quantize": "fp4"})
    assert s.quantize == "none" and any("quantize" in p for p in problems)


def test_complete_with_candidates_ranks_the_line_and_lists_the_others(tmp_path):
    joint = make_tiny_model_dir(tmp_path / "joint", kind="joint")
    f = tmp_path / "a.py"
    f.write_text(SOURCE)
    args = ("complete", str(f), "--line", "5", "--character", "14", "--mode", "single",
            "--model", str(joint), "--min-probability", "0", "--no-token-healing")
    r = cli(*args, "--candidates", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["timings"]["candidates"] >= 2 and isinstance(out["alternatives"], list)
    assert out["text"] not in out["alternatives"]
    text = cli(*args, "--candidates", "3")
    assert text.returncode == 0 and text.stdout.rstrip("\n") == out["text"]
    assert text.stderr.count("diffusion-lsp: also: ") == len(out["alternatives"])
    # by default as the server answers an explicit request; 0: the greedy line alone
    assert json.loads(cli(*args, "--json").stdout)["timings"]["candidates"] >= 2
    greedy = json.loads(cli(*args, "--candidates", "0", "--json").stdout)
    assert greedy["timings"]["candidates"] == 0 and greedy["alternatives"] == []
    bad = cli(*args, "--candidates", "-1")
    assert bad.returncode == 2 and "--candidates" in bad.stderr
