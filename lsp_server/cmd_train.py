"""`diffusion-lsp train`: two-stage training from source directories (see diffusion_core.train),
and the Seed Diffusion post-training stages on top of a trained model (see
diffusion_core.posttrain and docs/posttraining.md):

    diffusion-lsp train DATA... --out RUN                                  # pre-training
    diffusion-lsp train --stage order --init-from MODEL DATA... --out RUN2   # best own orders
    diffusion-lsp train --stage onpolicy --init-from RUN2/model DATA... --out RUN3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from diffusion_core.data import DataConfig, is_under
from diffusion_core.posttrain.config import VERIFIERS
from diffusion_core.posttrain.examples import Weighting
from diffusion_core.train import PRESETS, CheckpointMismatch, OptimizerName, TrainConfig, train

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"

# Defaults that differ between pre-training and post-training (None on the command line).
PRETRAIN_DEFAULTS = {"steps": 800, "batch_size": 16, "lr": 2e-3, "warmup": 60}
POSTTRAIN_DEFAULTS = {"steps": 200, "batch_size": 8, "lr": 1e-4, "warmup": 10}
OPTIMIZER_HELP = (
    "pretrain: adamw for every parameter (default), or muon for the 2-D attention and MLP "
    "matrices of the blocks (learning rate scaled to match AdamW's update RMS, so the same --lr "
    "applies) with adamw for embeddings, head, norms and biases. A run resumes only with the "
    "optimizer it began with"
)


def _schedule(text: str) -> tuple[float, int]:
    try:
        thr, cap = text.split(":") if ":" in text else (text, "0")
        return float(thr), int(cap)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected THRESHOLD[:MAX_STEPS_PER_BLOCK], got {text!r}") from e


def _mix(text: str) -> tuple[str, float]:
    d, sep, share = text.rpartition("=")
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not sep or not d or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected DIR=SHARE with 0 < SHARE < 1, got {text!r}")
    return d, value


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"block sizes must be positive, got {text!r}")
    return values


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """What an example looks like and where it comes from (the DataConfig fields)."""
    d = DataConfig()
    p.add_argument("--max-prefix", type=int, default=d.max_prefix, metavar="TOKENS",
                   help=f"longest prefix context of an example (default {d.max_prefix})")
    p.add_argument("--max-suffix", type=int, default=d.max_suffix, metavar="TOKENS",
                   help=f"longest suffix context of an example (default {d.max_suffix})")
    p.add_argument("--block-sizes", type=_ints, default=d.block_sizes, metavar="N,N,...",
                   help="block sizes drawn per example (default "
                        f"{','.join(map(str, d.block_sizes))})")
    p.add_argument("--package-cap", type=float, default=d.package_cap, metavar="SHARE",
                   help=f"most any one top-level package may be of the sampled data (default {d.package_cap})")
    p.add_argument("--mix", action="append", type=_mix, default=[], metavar="DIR=SHARE",
                   help="files under DIR get SHARE of the sampled data, the rest of the corpus what "
                        "is left (repeatable; DIR is read as a data directory too)")
    p.add_argument("--syntax-edits", type=float, default=d.p_syntax_edit, metavar="SHARE",
                   help="share of stage-2 edit examples corrupted by one realistic syntax edit "
                        "(missing colon, extra paren, misspelt keyword...) instead of random "
                        f"token edits (default {d.p_syntax_edit})")
    p.add_argument("--ar-weight", type=float, default=d.ar_weight,
                   help=f"joint: weight of the next-token loss (default {d.ar_weight})")
    p.add_argument("--middle-weight", type=float, default=d.middle_weight, metavar="X",
                   help="joint: a next-token row of the infill middle weighs X context rows, "
                        f"the next-token loss keeping its total (default {d.middle_weight})")
    p.add_argument("--diffusion-weight", type=float, default=d.diffusion_weight,
                   help=f"joint: weight of the block-diffusion loss (default {d.diffusion_weight})")
    p.add_argument("--noisy-context-tokens", type=int, default=d.noisy_context_tokens, metavar="N",
                   help="joint: context tokens (whole blocks) also noised besides the middle "
                        f"(default {d.noisy_context_tokens}; -1 all)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dirs", nargs="+", help="directories of Python source to train on")
    p.add_argument("--out", required=True, help="run directory: checkpoint/, model/, logs")
    p.add_argument("--stage", choices=["pretrain", "order", "onpolicy", "draft"], default="pretrain",
                   help="pretrain (two-stage training from scratch), or a post-training stage on top of "
                        "--init-from: order (constrained-order distillation), onpolicy (step "
                        "reduction), or draft (joint models: the mask rows learn to draft what the "
                        "causal path accepts)")
    p.add_argument("--init-from", metavar="MODEL_DIR",
                   help="order/onpolicy: the model directory to post-train (default: the shipped model); "
                        "pretrain: start from these weights (a model dir or a run's checkpoint dir)")
    p.add_argument("--kind", choices=["diffusion", "ar", "joint"], default="diffusion",
                   help="diffusion model, the same-size autoregressive baseline, or one network "
                        "trained as both (next-token loss on a causal stream, block diffusion on "
                        "a noisy one; decoded by draft and verify)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model size")
    p.add_argument("--steps", type=int, help="optimizer steps (cosine schedule length; "
                   f"default {PRETRAIN_DEFAULTS['steps']}, post-training {POSTTRAIN_DEFAULTS['steps']})")
    p.add_argument("--batch-size", type=int, help="examples per step (default 16; post-training: "
                   "source examples rolled out per step, default 8)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3, post-training 1e-4)")
    p.add_argument("--optimizer", choices=get_args(OptimizerName), default="adamw", help=OPTIMIZER_HELP)
    p.add_argument("--warmup", type=int, help="warmup steps (default 60, post-training 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage2-fraction", type=float, default=0.2,
                   help="share of the last steps trained with edit corruption (Seed Diffusion stage 2)")
    p.add_argument("--tokenizer", help="reuse this tokenizer.json (the AR baseline shares the diffusion one)")
    p.add_argument("--micro-batch", type=int, default=0, metavar="N",
                   help="examples per forward pass, gradients accumulated over the step "
                        "(default 0: one on CPU, which pads nothing, the whole batch on GPU)")
    _add_data_arguments(p)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="every N steps also write the weights as a model directory RUN/snapshots/stepN "
                        "(to evaluate a run's checkpoints and ship the best on a dev split; default 0: "
                        "only RUN/model at the end)")
    p.add_argument("--max-minutes", type=float, help="stop (after a checkpoint) after this many minutes; rerun to resume")
    p.add_argument("--exclude", action="append", default=[],
                   help="never read training data under this directory (../shared/eval always excluded)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("post-training (--stage order|onpolicy)")
    g.add_argument("--heldout-fraction", type=float, default=0.02,
                   help="share of files held out (must match pre-training; the before/after set comes from them)")
    g.add_argument("--rollouts", type=int, default=4, help="order: trajectories sampled per example (best kept)")
    g.add_argument("--order-temperature", type=float, default=1.0,
                   help="order: Gumbel noise on the log-confidences that choose the committed positions")
    g.add_argument("--order-weighting", choices=get_args(Weighting), default="elbo",
                   help="order: loss weight of a kept state, MDLM 1/t (elbo) or 1 per masked position "
                        "(uniform; see docs/posttraining.md for why elbo can collapse a weak model)")
    g.add_argument("--onpolicy-schedule", action="append", type=_schedule, metavar="THR[:STEPS]",
                   help="onpolicy: a rollout schedule, confidence threshold and max steps per block "
                        "(0 = block size); repeat for several (default 0.5:8 and 0.7:16)")
    g.add_argument("--onpolicy-verifier", choices=VERIFIERS, default="exact",
                   help="onpolicy: keep rollouts whose whole output equals the reference (exact), "
                        "the longest prefix of each rollout that does (prefix: for models that rarely "
                        "write a whole middle right), or take the model's own answer with the server's "
                        "sampler as the reference (self: step distillation, speed at unchanged quality)")
    g.add_argument("--states-per-trajectory", type=int, default=2,
                   help="fine-tuning examples drawn from each kept trajectory")
    g.add_argument("--eval-examples", type=int, default=32,
                   help="size of the fixed held-out set for tokens-per-step before/after")


def _with_mix_dirs(data_dirs: list[str], mix: list[tuple[str, float]]) -> tuple[str, ...]:
    """The data directories plus each mix directory not already under one of them."""
    extra = [d for d, _ in mix if not any(is_under(d, r) for r in data_dirs)]
    return tuple(data_dirs) + tuple(dict.fromkeys(extra))


def _resolved(args: argparse.Namespace, defaults: dict) -> dict:
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}


def run(args: argparse.Namespace) -> int:
    forbidden = tuple(args.exclude) + ((str(EVAL_DIR),) if EVAL_DIR.exists() else ())
    max_s = args.max_minutes * 60 if args.max_minutes else None
    if args.stage != "pretrain":
        return _run_posttrain(args, forbidden, max_s)
    v = _resolved(args, PRETRAIN_DEFAULTS)
    cfg = TrainConfig(
        data_dirs=_with_mix_dirs(args.data_dirs, args.mix), out_dir=args.out, kind=args.kind, preset=args.preset,
        steps=v["steps"], batch_size=v["batch_size"], lr=v["lr"], warmup=v["warmup"], seed=args.seed,
        stage2_fraction=args.stage2_fraction, tokenizer=args.tokenizer, forbidden=forbidden,
        checkpoint_seconds=args.checkpoint_minutes * 60, init_from=args.init_from,
        snapshot_every=args.snapshot_every,
        data=DataConfig(
            max_prefix=args.max_prefix, max_suffix=args.max_suffix, block_sizes=args.block_sizes,
            package_cap=args.package_cap, ar_weight=args.ar_weight, p_syntax_edit=args.syntax_edits,
            diffusion_weight=args.diffusion_weight, noisy_context_tokens=args.noisy_context_tokens,
            middle_weight=args.middle_weight,
            mix=tuple((str(Path(d).resolve()), share) for d, share in args.mix),
        ),
        micro_batch=args.micro_batch, optimizer=args.optimizer,
    )
    try:
        state = train(cfg, device=args.device, max_seconds=max_s, progress=not args.no_progress)
    except CheckpointMismatch as e:  # resumed with the other optimizer: say so, no traceback
        raise SystemExit(f"diffusion-lsp train: {e}") from None
    print(f"step {state['step']}/{cfg.steps}; model written to {Path(args.out) / 'model'}")
    return 0


def _run_posttrain(args: argparse.Namespace, forbidden: tuple[str, ...], max_s: float | None) -> int:
    from diffusion_core.posttrain import PostTrainConfig, posttrain

    if args.kind == "ar":
        raise SystemExit("diffusion-lsp train: post-training stages need a diffusion or joint model")
    if args.optimizer != "adamw":
        raise SystemExit("diffusion-lsp train: post-training stages train with AdamW (--optimizer is for pretrain)")
    v = _resolved(args, POSTTRAIN_DEFAULTS)
    extra = {"onpolicy_schedules": tuple(args.onpolicy_schedule)} if args.onpolicy_schedule else {}
    cfg = PostTrainConfig(
        stage=args.stage, data_dirs=tuple(args.data_dirs), out_dir=args.out, init_from=args.init_from,
        steps=v["steps"], batch_size=v["batch_size"], lr=v["lr"], warmup=v["warmup"], seed=args.seed,
        heldout_fraction=args.heldout_fraction, checkpoint_seconds=args.checkpoint_minutes * 60,
        forbidden=forbidden, rollouts=args.rollouts, order_temperature=args.order_temperature,
        order_weighting=args.order_weighting, states_per_trajectory=args.states_per_trajectory,
        eval_examples=args.eval_examples, micro_batch=args.micro_batch,
        onpolicy_verifier=args.onpolicy_verifier, **extra,
    )
    try:
        state = posttrain(cfg, device=args.device, max_seconds=max_s, progress=not args.no_progress)
    except ValueError as e:  # a model the stage cannot train: say so, no traceback
        raise SystemExit(f"diffusion-lsp train --stage {cfg.stage}: {e}") from None
    print(f"{cfg.stage} step {state['step']}/{cfg.steps}; model written to {Path(args.out) / 'model'}")
    return 0
