"""The engine feeds a model of ours only as much context as it was trained on."""

import json

from diffusion_core.engine import Engine, trained_window
from diffusion_core.layout import Window
from diffusion_core.testing import make_tiny_model_dir


def _record(max_prefix: int, max_suffix: int) -> dict:
    return {"kind": "diffusion", "train_config": {"data": {"max_prefix": max_prefix, "max_suffix": max_suffix}}}


def test_window_from_training_record(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")
    (d / "training.json").write_text(json.dumps(_record(64, 16)))
    engine = Engine.from_path(d)
    assert engine.window == Window(max_prefix=64, max_suffix=16)
    prefix = "x = 1\n" * 200
    ctx = engine.infill_context(prefix, "y = 2\n" * 200)
    # <suf> + at most 16 suffix tokens + <pre> + at most 64 prefix tokens + <mid>
    assert len(ctx) <= 16 + 64 + 3


def test_post_trained_model_inherits_its_base_window(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")
    (d / "training.json").write_text(json.dumps({"stage": "onpolicy", "base_training": _record(96, 32)}))
    assert trained_window(d) == Window(max_prefix=96, max_suffix=32)


def test_unrecorded_or_broken_record_falls_back_to_default(tmp_path):
    d = make_tiny_model_dir(tmp_path / "m")  # its training.json has no train_config
    assert trained_window(d) is None
    assert Engine.from_path(d).window == Window()
    (d / "training.json").write_text("{not json")
    assert trained_window(d) is None
    (d / "training.json").write_text(json.dumps({"train_config": {"data": {"max_prefix": "many"}}}))
    assert trained_window(d) is None
    assert trained_window(tmp_path / "missing") is None
