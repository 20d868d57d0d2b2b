"""torchrun / DDP: two CPU processes (gloo) train together, one gradient for both ranks."""

import json
import os
import subprocess
import sys

import torch

from diffusion_core.config import ModelConfig
from diffusion_core.data import DataConfig, ExampleBuilder, load_corpus
from diffusion_core.model import CodeTransformer
from diffusion_core.tokenizer import CodeTokenizer
from diffusion_core.train import (
    TrainConfig,
    _optimizer,
    accumulate_gradients,
    load_checkpoint,
    lr_at,
)


def _cfg(data_dir, out) -> TrainConfig:
    return TrainConfig(
        data_dirs=(str(data_dir),), out_dir=str(out), preset="tiny", steps=1, batch_size=3,
        vocab_size=512, warmup=1, lr=3e-3, heldout_fraction=0.0, micro_batch=1, seed=7,
        data=DataConfig(max_prefix=48, max_suffix=16, max_middle=16, plain_middle=24),
    )


def test_two_ranks_take_one_averaged_step(data_dir, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "from diffusion_core.data import DataConfig\n"
        "from diffusion_core.train import TrainConfig, train\n"
        f"train({_cfg(data_dir, out)!r}, progress=False)\n"  # the frozen config's repr is code
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = _cfg(data_dir, out)
    tok = CodeTokenizer.load(out / "tokenizer.json")
    mcfg = ModelConfig.load(out / "config.json")
    builder = ExampleBuilder(load_corpus(sorted(data_dir.glob("*.py")), 0.0, "train"), tok, cfg.data,
                             "diffusion", cfg.seed)
    per_rank = [builder.examples(0, rank, cfg.batch_size, stage=1) for rank in (0, 1)]
    record = json.loads((out / "model" / "training.json").read_text())
    assert record["tokens"] == sum(e.ids.numel() for exs in per_rank for e in exs)

    # The same step in one process: DDP averages the two ranks' gradients.
    torch.manual_seed(cfg.seed)
    ref = CodeTransformer(mcfg)
    opt = _optimizer(ref, cfg)
    grads = []
    for exs in per_rank:
        ref.zero_grad(set_to_none=True)
        accumulate_gradients(ref, exs, tok.special.pad, 1, torch.device("cpu"))
        grads.append([p.grad.clone() for p in ref.parameters()])
    for p, g0, g1 in zip(ref.parameters(), *grads, strict=True):
        p.grad = (g0 + g1) / 2
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, 0)
    torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.grad_clip)
    opt.step()

    trained = CodeTransformer(mcfg)
    load_checkpoint(out / "checkpoint", trained, _optimizer(trained, cfg))
    for (name, a), b in zip(trained.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
