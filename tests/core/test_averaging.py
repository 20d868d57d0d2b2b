"""Weight averaging of model directories (diffusion_core/averaging.py, `diffusion-lsp average`)."""

from __future__ import annotations

import json

import pytest
import torch

from diffusion_core.averaging import average_model_dirs
from diffusion_core.checkpoint import load_model_dir, save_model_dir
from diffusion_core.testing import make_tiny_model_dir, tiny_model, tiny_tokenizer
from lsp_server.cli import main


def _dir(path, seed, record=None, **over):
    tok = tiny_tokenizer()
    save_model_dir(tiny_model(tok, "joint", seed=seed, **over), tok, path)
    if record is not None:
        (path / "training.json").write_text(json.dumps(record))
    return path


def test_the_average_is_the_mean_of_the_weights_with_the_records_of_its_inputs(tmp_path):
    a = _dir(tmp_path / "a", 1, {"steps": 400, "tokens": 10, "note": "a"})
    b = _dir(tmp_path / "b", 2, {"steps": 800, "tokens": 20, "note": "b"})
    c = _dir(tmp_path / "c", 3, {"steps": 1200, "tokens": 30, "note": "c"})
    rec = average_model_dirs([a, b, c], tmp_path / "avg")
    got = load_model_dir(tmp_path / "avg").model.state_dict()
    ins = [load_model_dir(d).model.state_dict() for d in (a, b, c)]
    for k, v in got.items():
        want = (ins[0][k] + ins[1][k] + ins[2][k]) / 3  # the inputs as saved (fp16), in float32
        assert torch.allclose(v, want, atol=2e-3, rtol=1e-3), k  # saved again in fp16
    assert not torch.equal(got["embed_tokens.weight"], ins[2]["embed_tokens.weight"])
    assert rec["note"] == "c" and rec["steps"] == 1200  # the last input's record ...
    assert rec["averaged_from"] == [{"path": str(a), "steps": 400, "tokens": 10},
                                    {"path": str(b), "steps": 800, "tokens": 20},
                                    {"path": str(c), "steps": 1200, "tokens": 30}]
    assert json.loads((tmp_path / "avg" / "training.json").read_text()) == rec


def test_weights_of_another_network_or_place_are_refused(tmp_path):
    a, b = _dir(tmp_path / "a", 1), _dir(tmp_path / "b", 2)
    wide = _dir(tmp_path / "wide", 3, d_model=48)
    with pytest.raises(ValueError, match="another config"):
        average_model_dirs([a, wide], tmp_path / "o1")
    other_tok = make_tiny_model_dir(tmp_path / "tok", kind="joint")
    (other_tok / "tokenizer.json").write_text((other_tok / "tokenizer.json").read_text().replace("  ", " ", 1))
    with pytest.raises(ValueError, match="another tokenizer"):
        average_model_dirs([a, other_tok], tmp_path / "o2")
    with pytest.raises(ValueError, match="one of the inputs"):
        average_model_dirs([a, b], b)
    with pytest.raises(ValueError, match="at least two"):
        average_model_dirs([a], tmp_path / "o3")
    with pytest.raises(ValueError, match="twice"):
        average_model_dirs([a, a], tmp_path / "o4")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty directory"):
        average_model_dirs([a, b], tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"  # nothing lost
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_the_command_writes_a_loadable_model_or_says_why_not(tmp_path, capsys):
    a, b = _dir(tmp_path / "a", 1), _dir(tmp_path / "b", 2)
    assert main(["average", str(a), str(b), "--out", str(tmp_path / "avg")]) == 0
    assert "averaged 2 model directories" in capsys.readouterr().out
    assert load_model_dir(tmp_path / "avg").model.cfg == load_model_dir(a).model.cfg
    assert main(["average", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
