"""`diffusion-lsp train`: two-stage training from source directories (see diffusion_core.train)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusion_core.data import DataConfig
from diffusion_core.train import PRESETS, TrainConfig, train

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dirs", nargs="+", help="directories of Python source to train on")
    p.add_argument("--out", required=True, help="run directory: checkpoint/, model/, logs")
    p.add_argument("--kind", choices=["diffusion", "ar"], default="diffusion",
                   help="diffusion model, or the same-size autoregressive baseline")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model size")
    p.add_argument("--steps", type=int, default=800, help="optimizer steps (cosine schedule length)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage2-fraction", type=float, default=0.2,
                   help="share of the last steps trained with edit corruption (Seed Diffusion stage 2)")
    p.add_argument("--tokenizer", help="reuse this tokenizer.json (the AR baseline shares the diffusion one)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, help="stop (after a checkpoint) after this many minutes; rerun to resume")
    p.add_argument("--exclude", action="append", default=[],
                   help="never read training data under this directory (../shared/eval always excluded)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    forbidden = tuple(args.exclude) + ((str(EVAL_DIR),) if EVAL_DIR.exists() else ())
    cfg = TrainConfig(
        data_dirs=tuple(args.data_dirs), out_dir=args.out, kind=args.kind, preset=args.preset,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, seed=args.seed,
        stage2_fraction=args.stage2_fraction, tokenizer=args.tokenizer, forbidden=forbidden,
        checkpoint_seconds=args.checkpoint_minutes * 60, data=DataConfig(),
    )
    max_s = args.max_minutes * 60 if args.max_minutes else None
    state = train(cfg, device=args.device, max_seconds=max_s, progress=not args.no_progress)
    print(f"step {state['step']}/{cfg.steps}; model written to {Path(args.out) / 'model'}")
    return 0
