"""The post-training loop shared by both stages: rollouts, fine-tuning, checkpoints, record.

Each optimizer step draws `batch_size` infill problems from the training split (a pure
function of (seed, step), like pre-training batches), rolls the *current* model out on
them with the stage's policy (`order.order_batch` or `onpolicy.onpolicy_batch`), and takes
one AdamW step on the examples built from the kept trajectories. A step that keeps
nothing makes no update but still counts. Rollouts use a generator seeded from
(seed, step) and never the global RNG, and the checkpoint (the pre-training one:
weights, AdamW state, RNG, JSON state) is restored exactly, so a resumed run continues
bit for bit. Single process (CPU or one GPU).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffusion_core.checkpoint import load_model_dir, save_model_dir
from diffusion_core.data import ExampleBuilder, list_source_files, load_corpus
from diffusion_core.model import CodeTransformer
from diffusion_core.posttrain.config import PostTrainConfig
from diffusion_core.posttrain.draft import draft_batch
from diffusion_core.posttrain.onpolicy import onpolicy_batch
from diffusion_core.posttrain.order import order_batch
from diffusion_core.posttrain.speed import fixed_sources, measure, measure_draft
from diffusion_core.posttrain.stage import StageBatch
from diffusion_core.posttrain.trajectories import Source
from diffusion_core.speculative import DraftConfig
from diffusion_core.tokenizer import CodeTokenizer
from diffusion_core.train import (
    _optimizer,
    accumulate_gradients,
    load_checkpoint,
    lr_at,
    resolved_micro_batch,
    save_checkpoint,
)

STAGE_FNS: dict[str, Callable[..., StageBatch]] = {
    "order": order_batch, "onpolicy": onpolicy_batch, "draft": draft_batch}


def step_sources(builder: ExampleBuilder, seed: int, step: int, n: int) -> tuple[list[Source], torch.Generator]:
    """The step's infill problems and the generator its rollouts draw from."""
    rng = random.Random(f"{seed}/{step}/0")
    g = torch.Generator().manual_seed(rng.getrandbits(63))
    sources = []
    for _ in range(n):
        prefix, suffix, middle, block = builder.infill_source(rng)
        sources.append(Source.build(prefix, suffix, middle, block, builder.sp))
    return sources, g


def _check_model(model: CodeTransformer, stage: str) -> None:
    if stage == "draft":
        if model.cfg.kind != "joint":
            raise ValueError(f"the draft stage needs a joint model; this one is {model.cfg.kind!r}")
        return
    if model.cfg.kind != "diffusion":
        raise ValueError(f"post-training stage {stage!r} needs a diffusion model; this one is "
                         f"{model.cfg.kind!r}")
    if model.cfg.shifted_logits:
        raise ValueError("post-training uses the two-stream layout, which shifted-logit models do not support")


def _eval_set(cfg: PostTrainConfig, files, tok: CodeTokenizer) -> tuple[list[Source], str]:
    split = "heldout"
    corpus = load_corpus(files, cfg.heldout_fraction, "heldout")
    if not corpus.texts:  # tiny corpora can have no held-out file: say so in the record
        split, corpus = "train", load_corpus(files, cfg.heldout_fraction, "train")
    builder = ExampleBuilder(corpus, tok, cfg.data, "diffusion", cfg.seed)
    return fixed_sources(builder, cfg.eval_examples, cfg.eval_block_size), split


def posttrain(
    cfg: PostTrainConfig,
    *,
    device: str | None = None,
    max_seconds: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    log=print,
) -> dict:
    """Post-train (or resume) into cfg.out_dir; returns the state record.

    max_seconds / max_steps stop this call early (after a checkpoint); rerun to resume.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    base = load_model_dir(cfg.init_from, device=dev)
    model, tok = base.model, base.tokenizer
    _check_model(model, cfg.stage)
    extra: dict = {}
    if cfg.stage == "onpolicy" and cfg.onpolicy_verifier == "self":  # the base model, frozen
        extra["teacher_model"] = copy.deepcopy(model).eval().requires_grad_(False)
    files = list_source_files(cfg.data_dirs, forbidden=cfg.forbidden)
    corpus = load_corpus(files, cfg.heldout_fraction, "train")
    log(f"post-training ({cfg.stage}) from {base.path}: {len(corpus.texts)} training files")
    builder = ExampleBuilder(corpus, tok, cfg.data, "diffusion", cfg.seed)
    eval_sources, eval_split = _eval_set(cfg, files, tok)
    opt = _optimizer(model, cfg)
    ckpt = out / "checkpoint"
    state = {"step": 0, "kept": 0, "rejected": 0, "examples": 0, "rollout_steps": 0,
             "rollout_tokens": 0, "wall_seconds": 0.0, "losses": [], "eval_before": None}
    if (ckpt / "state.json").exists():
        state = load_checkpoint(ckpt, model, opt)
        log(f"resumed from step {state['step']}")
    (out / "posttrain_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    tok.save(out / "tokenizer.json")
    def evaluate() -> dict:
        if cfg.stage == "draft":
            # the mask rows are what this stage trains: measure their drafts alone
            dc = DraftConfig(masks=cfg.draft_masks, max_draft=cfg.draft_max, source="diffusion")
            return measure_draft(model, eval_sources, dc, tok.special).to_dict()
        return measure(model, eval_sources, cfg.eval_threshold, tok.special).to_dict()

    if state["eval_before"] is None:
        state["eval_before"] = evaluate()
        log(f"before: {state['eval_before']}")
    stage_fn = STAGE_FNS[cfg.stage]
    micro = resolved_micro_batch(cfg.micro_batch, dev)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=state["step"], dynamic_ncols=True, file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=f"posttrain[{cfg.stage}]")
    t_start, t_ckpt = time.time(), time.time()
    wall0, done_here = state["wall_seconds"], 0
    while state["step"] < cfg.steps:
        step = state["step"]
        sources, g = step_sources(builder, cfg.seed, step, cfg.batch_size)
        model.eval()
        sb = stage_fn(model, sources, cfg, g, tok.special, **extra)
        model.train()
        loss_value = None
        if sb.examples:
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            opt.zero_grad(set_to_none=True)
            loss = accumulate_gradients(model, sb.examples, tok.special.pad, micro, dev)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_value = round(loss, 5)
        state["step"] = step + 1
        state["kept"] += sb.kept
        state["rejected"] += sb.rejected
        state["examples"] += len(sb.examples)
        state["rollout_steps"] += sb.rollout_steps
        state["rollout_tokens"] += sb.rollout_tokens
        state["losses"].append([step + 1, loss_value])
        state["wall_seconds"] = wall0 + time.time() - t_start
        done_here += 1
        if bar is not None:
            bar.update(1)
            kept_rate = state["kept"] / max(1, state["kept"] + state["rejected"])
            tps = state["rollout_tokens"] / max(1, state["rollout_steps"])
            bar.set_postfix(loss="-" if loss_value is None else f"{loss_value:.3f}", kept=f"{kept_rate:.2f}",
                            tok_step=f"{tps:.2f}")
        done = state["step"] >= cfg.steps
        stop = (max_seconds is not None and time.time() - t_start >= max_seconds) or (
            max_steps is not None and done_here >= max_steps
        )
        if done or stop or time.time() - t_ckpt >= cfg.checkpoint_seconds:
            save_checkpoint(ckpt, model, opt, state)
            t_ckpt = time.time()
        if stop:
            break
    if bar is not None:
        bar.close()
    after = evaluate()
    log(f"after: {after}")
    export(model, tok, out / "model", cfg, state, base, after, eval_split)
    return state


def export(model: CodeTransformer, tok: CodeTokenizer, path: Path, cfg: PostTrainConfig, state: dict,
           base, eval_after: dict, eval_split: str) -> None:
    """Write the fp16 model directory plus its `training.json` record."""
    save_model_dir(model, tok, path)
    base_record = base.path / "training.json"
    losses = [x[1] for x in state["losses"] if x[1] is not None]
    before = state["eval_before"]
    record = {
        "stage": cfg.stage,
        "base_model": str(base.path),
        "base_model_hash": base.model_hash,
        "base_training": json.loads(base_record.read_text()) if base_record.is_file() else None,
        "parameters": model.num_parameters(),
        "data_dirs": list(cfg.data_dirs),
        "steps": state["step"],
        "planned_steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "trajectories_kept": state["kept"],
        "trajectories_rejected": state["rejected"],
        "keep_rate": round(state["kept"] / max(1, state["kept"] + state["rejected"]), 4),
        "fine_tuning_examples": state["examples"],
        "rollout_tokens_per_step": round(state["rollout_tokens"] / max(1, state["rollout_steps"]), 4),
        "tokens_per_step_before": before["tokens_per_step"],
        "tokens_per_step_after": eval_after["tokens_per_step"],
        "exact_match_before": before["exact_match"],
        "exact_match_after": eval_after["exact_match"],
        "eval": {"split": eval_split, "threshold": cfg.eval_threshold, "block_size": cfg.eval_block_size,
                 "before": before, "after": eval_after},
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "wall_seconds": round(state["wall_seconds"], 1),
        "seed": cfg.seed,
        "torch": torch.__version__,
        "posttrain_config": cfg.to_dict(),
    }
    (path / "training.json").write_text(json.dumps(record, indent=2) + "\n")
