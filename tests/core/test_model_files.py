"""Model directories that lie (issue 23, cases 3 and 7): non-regular files are refused
before anything is read, and a config.json claiming a bigger model than its weights is
refused before that model is allocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_core.checkpoint import MAX_SMALL_FILE_BYTES, ModelLoadError, load_model_dir
from diffusion_core.hf_loader import load_any_model_dir
from diffusion_core.testing import make_tiny_model_dir

ROOT = Path(__file__).resolve().parents[2]

_PEAK = """
import sys
from diffusion_core.checkpoint import ModelLoadError, load_model_dir
import torch  # noqa: F401  (imported before the baseline)

def hwm():  # VmHWM: this process's peak RSS (ru_maxrss keeps the parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

base = hwm()
try:
    load_model_dir(sys.argv[1])
except ModelLoadError as e:
    print("refused:", e, file=sys.stderr)
print(hwm() - base)  # MB
"""


def test_a_config_claiming_a_bigger_model_is_refused_before_allocating(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    # about 900 MB of fp32 parameters; the weights file holds the tiny model's 40 KB
    cfg.update(d_model=1024, n_layers=16, n_heads=8, n_kv_heads=8, d_ff=4096)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        load_model_dir(d)
    out = subprocess.run([sys.executable, "-c", _PEAK, str(d)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "does not match config.json" in out.stderr, out.stderr
    assert int(out.stdout) < 150, f"{out.stdout} MB allocated before the refusal"


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "training.json",
                                  "model.safetensors"])
@pytest.mark.parametrize("plant", ["fifo", "dev-zero"])
def test_non_regular_files_in_a_model_directory_are_refused_unread(tmp_path, name, plant):
    d = make_tiny_model_dir(tmp_path / "m")
    (d / name).unlink()
    if plant == "fifo":
        os.mkfifo(d / name)
    else:
        (d / name).symlink_to("/dev/zero")
    for load in (load_model_dir, load_any_model_dir):
        with pytest.raises(ModelLoadError, match="not a regular file"):
            load(d)


def test_oversized_json_and_symlinked_regular_files(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")
    real = tmp_path / "blobs"
    real.mkdir()
    (d / "tokenizer.json").rename(real / "tok")
    (d / "tokenizer.json").symlink_to(real / "tok")  # the Hugging Face cache layout: fine
    assert load_model_dir(d).tokenizer.vocab_size > 0
    with open(d / "training.json", "wb") as f:
        f.truncate(65 * 2**20)  # sparse: 65 MB that cost nothing to write
    with pytest.raises(ModelLoadError, match="read up to"):
        load_model_dir(d)


def test_training_json_and_hf_json_are_read_only_as_bounded_regular_files(tmp_path):
    """The engine's window lookup and the Hugging Face JSON reader go through read_regular:
    a FIFO is not opened (the call returns instead of blocking), a huge file is not read."""
    from diffusion_core.engine import trained_window
    from diffusion_core.hf_prompts import read_json

    os.mkfifo(tmp_path / "training.json")
    assert trained_window(tmp_path) is None
    with pytest.raises(ModelLoadError, match="cannot be read"):
        read_json(tmp_path / "training.json", "model config")
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "training.json", "wb") as f:
        f.truncate(MAX_SMALL_FILE_BYTES + 1)  # sparse: nothing is written
    assert trained_window(big) is None
    with pytest.raises(ModelLoadError, match="cannot be read"):
        read_json(big / "training.json", "model config")
