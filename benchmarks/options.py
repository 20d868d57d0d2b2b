"""Options every benchmark shares: the common arguments, --smoke sizes, the sampler they
name, and running one benchmark module alone (`python -m dlsp_benchmarks.X`).

The benchmark modules and `dlsp_benchmarks.cli` import this module; it imports none of them.
"""

from __future__ import annotations

import argparse
from typing import get_args

import torch

from diffusion_core.config import Decoder, DraftSource
from diffusion_core.policy import Fallback
from dlsp_benchmarks.report import DEFAULT_OUT_DIR

# Sizes for --smoke: everything runs end to end, nothing is measured seriously.
SMOKE = {
    "lines": 120, "keystrokes": 4, "targets": 2, "keys_per_target": 2, "cold_runs": 1,
    "gap_ms": (5.0, 10.0), "humaneval": 1, "heldout": 1, "sweep_thresholds": [0.9], "sweep_block_sizes": [8],
    "sweep_tasks": 1, "gen_tokens": 8, "doc_lines": [50, 150], "scaling_block_sizes": [8],
    "repeats": 1, "max_tokens": 8, "draft_grid": [(2, 1, "diffusion"), (0, 2, "ngram")],
}


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common")
    g.add_argument("--model", metavar="DIR", help="diffusion model directory (default: the embedded model)")
    g.add_argument("--ar-model", metavar="DIR",
                   help="same-size autoregressive baseline (speed; without it: diffusion side only)")
    g.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR),
                   help=f"where JSON and PNG files go (default {DEFAULT_OUT_DIR})")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads here and OMP_NUM_THREADS of the server (default: torch's)")
    g.add_argument("--block-size", type=int, default=None, help="block size (default: the sampler's)")
    g.add_argument("--threshold", type=float, default=None,
                   help="confidence threshold (default: the sampler's)")
    g.add_argument("--fallback", choices=get_args(Fallback), default=None,
                   help="position a step commits when none passes the threshold (default: the "
                        "sampler's); speed and scaling only, the latency server uses its own")
    add_decoder_arguments(g)
    g.add_argument("--max-tokens", type=int, default=32,
                   help="tokens per completion in latency and scaling (32)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--smoke", action="store_true",
                   help="tiny sizes everywhere: proves the benchmark runs, measures nothing")


def prepare(args: argparse.Namespace) -> argparse.Namespace:
    """Apply --smoke and --threads; returns args."""
    if getattr(args, "smoke", False):
        for key, value in SMOKE.items():
            if hasattr(args, key):
                setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def standalone(prog: str, doc: str | None, add_arguments, run, argv: list[str] | None = None) -> int:
    """`python -m dlsp_benchmarks.X`: the common options plus X's own, then X's run."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    add_arguments(p)
    return run(p.parse_args(argv))


def add_decoder_arguments(g) -> None:
    """--decoder and the draft options (eval, bench), applied by `sampler_from_args`."""
    g.add_argument("--decoder", choices=get_args(Decoder), default=None,
                   help="auto (default: draft and verify for joint models, greedy for AR, the "
                        "threshold sampler for diffusion), threshold, greedy or draft")
    g.add_argument("--draft-source", choices=get_args(DraftSource), default=None,
                   help="draft and verify: drafts from the mask rows (diffusion, default), "
                        "document n-grams (ngram), n-grams first then mask rows (both), or none")
    g.add_argument("--draft-masks", type=int, default=None, metavar="K",
                   help="draft and verify: mask rows per forward pass (default: the sampler's)")
    g.add_argument("--draft-max", type=int, default=None, metavar="M",
                   help="draft and verify: most draft tokens verified per forward (default: the sampler's)")


def sampler_from_args(args: argparse.Namespace):
    """The default SamplerConfig with --threshold / --block-size / --fallback /
    --no-token-healing applied where given."""
    from diffusion_core.config import SamplerConfig

    sampler = SamplerConfig()
    if getattr(args, "threshold", None) is not None:
        sampler = sampler.replace(threshold=args.threshold)
    if getattr(args, "block_size", None):
        sampler = sampler.replace(block_size=args.block_size)
    if getattr(args, "fallback", None):
        sampler = sampler.replace(fallback=args.fallback)
    if getattr(args, "heal", True) is False:
        sampler = sampler.replace(heal=False)
    for name in ("decoder", "draft_source", "draft_masks", "draft_max"):
        if getattr(args, name, None) is not None:
            sampler = sampler.replace(**{name: getattr(args, name)})
    return sampler
