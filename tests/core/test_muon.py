"""--optimizer muon: Muon for the blocks' matrices, AdamW for the rest; it trains, and a
resumed run continues bit for bit (momentum buffers in the checkpoint)."""

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from diffusion_core.model import CodeTransformer
from diffusion_core.testing import tiny_config
from diffusion_core.train import (
    CheckpointMismatch,
    Muon,
    _optimizer,
    checkpoint_optimizer,
    train,
)
from tests.core.test_training import _cfg  # the tiny training run of the AdamW tests


def _quiet(m):
    return None


def test_optimizer_is_validated(tmp_path):
    assert _cfg(tmp_path, tmp_path, 1).optimizer == "adamw"
    with pytest.raises(ValueError, match="optimizer"):
        _cfg(tmp_path, tmp_path, 1, optimizer="sgd")


@pytest.mark.parametrize("tied", [True, False])
def test_muon_takes_the_block_matrices_and_adamw_the_rest(tok, tmp_path, tied):
    model = CodeTransformer(tiny_config(tok, "joint", qkv_bias=True, o_bias=True, qk_norm=True,
                                        tie_embeddings=tied))
    opt = _optimizer(model, _cfg(tmp_path, tmp_path, 1, optimizer="muon"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    owners = {}
    for o in opt.optimizers:
        for g in o.param_groups:
            for p in g["params"]:
                assert id(p) not in owners  # in exactly one optimizer
                owners[id(p)] = o
    names = dict(model.named_parameters())
    assert set(owners) == {id(p) for p in names.values()}  # every parameter
    for n, p in names.items():
        block_matrix = n.startswith("layers.") and n.endswith("_proj.weight")
        assert (owners[id(p)] is muon) == block_matrix, n
    assert "embed_tokens.weight" in names and ("lm_head.weight" in names) != tied
    assert sum(1 for n in names if n.endswith("_proj.weight")) == 7 * model.cfg.n_layers
    assert {g["adjust_lr_fn"] for g in muon.param_groups} == {"match_rms_adamw"}
    assert len(opt.param_groups) == 3  # the lr schedule sets every group of both
    only = _optimizer(model, _cfg(tmp_path, tmp_path, 1))
    assert [type(o) for o in only.optimizers] == [torch.optim.AdamW]


@pytest.mark.parametrize("nesterov,adjust", [(True, "match_rms_adamw"), (False, None)])
def test_muon_is_torchs_update(nesterov, adjust):
    """In bfloat16 the float32-on-CPU Muon is torch.optim.Muon bit for bit; in float32 it is
    the same update up to bfloat16 rounding (and leaves the momentum buffer alone)."""
    torch.manual_seed(0)
    init = [torch.randn(24, 40), torch.randn(40, 16)]
    grads = [[torch.randn_like(w) for w in init] for _ in range(3)]

    def run(cls, dtype=None):
        ws = [torch.nn.Parameter(w.clone()) for w in init]
        opt = cls(ws, lr=0.01, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn=adjust)
        if dtype is not None:
            opt.ns_dtype = dtype
        for step in grads:
            for w, g in zip(ws, step, strict=True):
                w.grad = g.clone()
            opt.step()
        return ws, [opt.state[w]["momentum_buffer"] for w in ws]

    ref, ref_bufs = run(torch.optim.Muon)
    ws, bufs = run(Muon, torch.bfloat16)
    for a, b in zip(ref + ref_bufs, ws + bufs, strict=True):
        assert torch.equal(a, b)
    ws, bufs = run(Muon)  # float32 on CPU
    for a, b in zip(ref_bufs, bufs, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ref, ws, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


def test_muon_training_lowers_the_loss(data_dir, tmp_path):
    state = train(_cfg(data_dir, tmp_path / "run", 20, stage2_fraction=0.0, optimizer="muon"),
                  progress=False, log=_quiet)
    losses = [x[2] for x in state["losses"]]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.2
    rec = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert rec["train_config"]["optimizer"] == "muon"
    assert checkpoint_optimizer(tmp_path / "run" / "checkpoint") == "muon"
    tensors = load_file(str(tmp_path / "run" / "checkpoint" / "state.safetensors"))
    assert "opt.layers.0.mlp.up_proj.weight.momentum_buffer" in tensors
    assert "opt.layers.0.mlp.up_proj.weight.exp_avg" not in tensors
    assert "opt.embed_tokens.weight.exp_avg_sq" in tensors and "opt.norm.weight.step" in tensors


def test_muon_resume_is_bit_for_bit(data_dir, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    cfg = partial(_cfg, data_dir, steps=10, kind="joint", optimizer="muon")  # stage 2 from step 8
    train(cfg(full), progress=False, log=_quiet)
    train(cfg(split), max_seconds=0.0, progress=False, log=_quiet)  # 1 step, then a checkpoint
    (split / "model").rename(split / "model-partial")
    train(cfg(split), progress=False, log=_quiet)
    a = json.loads((full / "checkpoint" / "state.json").read_text())
    b = json.loads((split / "checkpoint" / "state.json").read_text())
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert a["step"] == b["step"] == 10 and a == b  # losses, smoothed losses, token counts
    ta = load_file(str(full / "checkpoint" / "state.safetensors"))
    tb = load_file(str(split / "checkpoint" / "state.safetensors"))
    assert ta.keys() == tb.keys() and any(k.endswith(".momentum_buffer") for k in ta)
    for k in ta:  # weights, both optimizers' state and the RNG
        assert torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("first,then", [("adamw", "muon"), ("muon", "adamw")])
def test_resuming_with_the_other_optimizer_is_refused(data_dir, tmp_path, first, then):
    run = tmp_path / "run"
    train(_cfg(data_dir, run, 5, optimizer=first), max_seconds=0.0, progress=False, log=_quiet)
    saved = (run / "train_config.json").read_text()
    with pytest.raises(CheckpointMismatch, match=f"--optimizer {first}"):
        train(_cfg(data_dir, run, 5, optimizer=then), progress=False, log=_quiet)
    assert (run / "train_config.json").read_text() == saved  # the run's record untouched
    # its weights alone still start a new run with the other optimizer
    state = train(_cfg(data_dir, tmp_path / "new", 2, optimizer=then, init_from=str(run / "checkpoint")),
                  progress=False, log=_quiet)
    assert state["step"] == 2
