"""Training loop: stage 1 mask corruption, stage 2 edit corruption (last 20% of steps).

Runs unchanged on CPU, one CUDA GPU, or many GPUs/nodes under `torchrun`
(torch.distributed DDP). Checkpoints hold the fp32 weights, the AdamW state and the
RNG state in safetensors (no pickle), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffusion_core.checkpoint import save_model_dir
from diffusion_core.config import ModelConfig
from diffusion_core.data import (
    Batch,
    DataConfig,
    Example,
    ExampleBuilder,
    collate,
    list_source_files,
    load_corpus,
)
from diffusion_core.model import CodeTransformer
from diffusion_core.tokenizer import CodeTokenizer, train_tokenizer

PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=176),
    "small": dict(d_model=256, n_layers=6, n_heads=4, n_kv_heads=4, d_ff=704),
    "base": dict(d_model=384, n_layers=8, n_heads=6, n_kv_heads=6, d_ff=1024),
}


@dataclass(frozen=True)
class TrainConfig:
    data_dirs: tuple[str, ...]
    out_dir: str
    kind: str = "diffusion"
    preset: str = "small"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    stage2_fraction: float = 0.2
    seed: int = 0
    vocab_size: int = 8192
    heldout_fraction: float = 0.02
    checkpoint_seconds: float = 300.0
    # examples per forward pass (gradients accumulate over a step's passes); 0 = one per
    # pass on CPU, where padding costs more than small matmuls lose (1.45x tokens/s at
    # batch 6), the whole batch on GPU
    micro_batch: int = 0
    tokenizer: str | None = None  # reuse a tokenizer.json (the AR baseline shares the diffusion one)
    init_from: str | None = None  # start from these weights: a model dir or a run's checkpoint dir
    forbidden: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def stage_at(cfg: TrainConfig, step: int) -> int:
    return 2 if cfg.kind in ("diffusion", "joint") and step >= round(cfg.steps * (1 - cfg.stage2_fraction)) else 1


def loss_fn(model: torch.nn.Module, batch: Batch, region: int | None = None,
            parts: dict[str, float] | None = None) -> torch.Tensor:
    """ELBO-weighted cross-entropy of `batch`, divided by `region` (default: the batch's
    own), so that micro-batches of one step sum to the loss of the whole step.

    `parts`, when given, accumulates the share of the loss that comes from next-token
    rows (key "ar", joint models) and from the rest ("denoise"), for the logs."""
    sel = batch.targets != -100  # (B, L)
    logits = model(batch.ids, batch.positions, batch.mask, select=sel).logits.float()  # (N, V)
    ce = F.cross_entropy(logits, batch.targets[sel], reduction="none")  # (N,)
    norm = max(1, batch.region if region is None else region)
    per_row = ce * batch.weights[sel]  # (N,)
    loss = per_row.sum() / norm
    if parts is not None:
        rows = per_row.detach()
        ar = float(rows[batch.ar_rows[sel]].sum() / norm) if batch.ar_rows is not None else 0.0
        parts["ar"] = parts.get("ar", 0.0) + ar
        parts["denoise"] = parts.get("denoise", 0.0) + float(rows.sum() / norm) - ar
    return loss


def micro_batches(examples: list[Example], size: int) -> list[list[Example]]:
    """Split a step's examples into groups of `size` (0 = all), similar lengths together,
    so that each forward pass pads as little as possible."""
    if size <= 0 or size >= len(examples):
        return [examples]
    ordered = sorted(examples, key=lambda e: e.ids.numel())
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def accumulate_gradients(model: torch.nn.Module, examples: list[Example], pad_id: int,
                         micro_batch: int, device: torch.device,
                         parts: dict[str, float] | None = None) -> float:
    """Forward and backward over one step's examples in micro-batches; returns the step loss.

    The gradient is that of `loss_fn` on the whole collated step (the same sum, divided by
    the same region); under DDP only the last pass all-reduces (`no_sync`).
    """
    region = sum(e.region for e in examples)
    groups = micro_batches(examples, micro_batch)
    total = 0.0
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss = loss_fn(model, collate(group, pad_id).to(device), region, parts)
            loss.backward()
        total += float(loss.detach())
    return total


def resolved_micro_batch(cfg_value: int, device: torch.device) -> int:
    return cfg_value if cfg_value > 0 else (1 if device.type == "cpu" else 0)


def _dist() -> tuple[int, int, int]:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )


# -- checkpoints (safetensors + json, never pickle) ----------------------------------------
def save_checkpoint(path: Path, model, opt: torch.optim.AdamW, state: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                n = names[id(p)]
                tensors[f"opt.{n}.exp_avg"] = st["exp_avg"].cpu().contiguous()
                tensors[f"opt.{n}.exp_avg_sq"] = st["exp_avg_sq"].cpu().contiguous()
                tensors[f"opt.{n}.step"] = torch.as_tensor(st["step"]).reshape(1).float().cpu()
    tensors["rng.torch"] = torch.get_rng_state()
    if "lm_head.weight" in model.state_dict() and model.cfg.tie_embeddings:
        tensors.pop("model.lm_head.weight", None)
    tmp = path / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(path / "state.safetensors")
    (path / "state.json.tmp").write_text(json.dumps(state, indent=2))
    (path / "state.json.tmp").replace(path / "state.json")


def load_checkpoint(path: Path, model, opt: torch.optim.AdamW) -> dict:
    tensors = load_file(str(path / "state.safetensors"))
    sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if model.cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    model.load_state_dict(sd)
    for n, p in model.named_parameters():
        if f"opt.{n}.exp_avg" in tensors:
            opt.state[p] = {
                "step": tensors[f"opt.{n}.step"][0].clone(),
                "exp_avg": tensors[f"opt.{n}.exp_avg"].to(p.device),
                "exp_avg_sq": tensors[f"opt.{n}.exp_avg_sq"].to(p.device),
            }
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads((path / "state.json").read_text())


def init_weights(model: CodeTransformer, path: Path) -> None:
    """Load weights only (no optimizer state) from a model dir or a checkpoint dir."""
    if (path / "state.safetensors").exists():
        tensors = load_file(str(path / "state.safetensors"))
        sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    else:
        sd = load_file(str(path / "model.safetensors"))
    if model.cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    model.load_state_dict({k: v.float() for k, v in sd.items()})


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["data_dirs"] = list(cfg.data_dirs)
    return d


def prepare_tokenizer(cfg: TrainConfig, train_texts: list[str], out: Path) -> CodeTokenizer:
    path = out / "tokenizer.json"
    if path.exists():
        return CodeTokenizer.load(path)
    if cfg.tokenizer:
        tok = CodeTokenizer.load(cfg.tokenizer)
    else:
        # A deterministic ~30 MB sample, spread evenly over the files, is plenty for 8k tokens.
        total = sum(len(t) for t in train_texts)
        stride = max(1, round(total / 30_000_000))
        sample = train_texts[::stride]
        tok = train_tokenizer(iter(sample), cfg.vocab_size)
    tok.save(path)
    return tok


def train(cfg: TrainConfig, *, device: str | None = None, max_seconds: float | None = None,
          progress: bool = True, log=print) -> dict:
    """Train (or resume) into cfg.out_dir; returns the final state record."""
    rank, world, local_rank = _dist()
    dev = torch.device(device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    files = list_source_files(cfg.data_dirs, forbidden=cfg.forbidden)
    corpus = load_corpus(files, cfg.heldout_fraction, "train")
    if rank == 0:
        log(f"data: {len(corpus.texts)} training files, {corpus.n_chars / 1e6:.1f}M characters")
    tok = prepare_tokenizer(cfg, corpus.texts, out) if rank == 0 else None
    if world > 1:
        dist.barrier()
        tok = CodeTokenizer.load(out / "tokenizer.json")
    assert tok is not None
    sp = tok.special
    mcfg = ModelConfig(
        vocab_size=cfg.vocab_size, kind=cfg.kind, mask_token_id=sp.mask, pad_token_id=sp.pad,
        **PRESETS[cfg.preset],
    )
    model = CodeTransformer(mcfg).to(dev)
    opt = _optimizer(model, cfg)
    ckpt = out / "checkpoint"
    state = {"step": 0, "tokens": 0, "wall_seconds": 0.0, "losses": []}
    if (ckpt / "state.json").exists():
        state = load_checkpoint(ckpt, model, opt)
        if rank == 0:
            log(f"resumed from step {state['step']}")
    elif cfg.init_from:
        init_weights(model, Path(cfg.init_from))
        if rank == 0:
            log(f"initialised from {cfg.init_from}")
    if rank == 0:
        mcfg.save(out / "config.json")
        (out / "train_config.json").write_text(json.dumps(_config_dict(cfg), indent=2))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    builder = ExampleBuilder(corpus, tok, cfg.data, cfg.kind, cfg.seed)
    micro = resolved_micro_batch(cfg.micro_batch, dev)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=state["step"], dynamic_ncols=True, file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=f"train[{cfg.kind}]")
    t_start, t_ckpt = time.time(), time.time()
    wall0 = state["wall_seconds"]
    ema = state.get("ema")  # smoothed loss, part of the state so logs resume exactly too
    model.train()
    while state["step"] < cfg.steps:
        step = state["step"]
        stage = stage_at(cfg, step)
        examples = builder.examples(step, rank, cfg.batch_size, stage)
        n_tokens = sum(e.ids.numel() for e in examples)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        t0 = time.time()
        opt.zero_grad(set_to_none=True)
        parts: dict[str, float] = {}
        lv = accumulate_gradients(ddp, examples, sp.pad, micro, dev, parts)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        n_source = sum(e.source_tokens for e in examples)
        ar_part = parts.get("ar", 0.0)
        if world > 1:  # the step's tokens of all ranks and their mean loss, for the record
            both = torch.tensor([n_tokens, lv, n_source, ar_part], dtype=torch.float64, device=dev)
            dist.all_reduce(both)
            n_tokens, lv, n_source = int(both[0]), float(both[1]) / world, int(both[2])
            ar_part = float(both[3]) / world
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        state["ema"] = ema
        joint = cfg.kind == "joint"
        if joint:  # the next-token share of the loss, smoothed like the total
            prev = state.get("ema_ar")
            state["ema_ar"] = ar_part if prev is None else 0.98 * prev + 0.02 * ar_part
        state["step"] = step + 1
        state["tokens"] += n_tokens
        state["source_tokens"] = state.get("source_tokens", 0) + n_source
        state["wall_seconds"] = wall0 + time.time() - t_start
        if (step + 1) % 10 == 0:
            row = [step + 1, stage, round(ema, 4)]
            state["losses"].append(row + [round(state["ema_ar"], 4)] if joint else row)
        if bar is not None:
            bar.update(1)
            extra = {"ar": f"{state['ema_ar']:.3f}"} if joint else {}
            bar.set_postfix(loss=f"{ema:.3f}", **extra, stage=stage,
                            tok_s=f"{n_tokens / (time.time() - t0):.0f}")
        done = state["step"] >= cfg.steps
        out_of_time = max_seconds is not None and time.time() - t_start >= max_seconds
        if rank == 0 and (done or out_of_time or time.time() - t_ckpt >= cfg.checkpoint_seconds):
            save_checkpoint(ckpt, model, opt, state)
            t_ckpt = time.time()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if rank == 0:
        export(model, tok, out / "model", cfg, state, corpus)
    if world > 1:
        dist.barrier()
    return state


def export(model: CodeTransformer, tok: CodeTokenizer, path: Path, cfg: TrainConfig, state: dict, corpus) -> None:
    """Write the fp16 model directory plus a `training.json` record."""
    save_model_dir(model, tok, path)
    losses = state["losses"]
    record = {
        "kind": cfg.kind,
        "preset": cfg.preset,
        "parameters": model.num_parameters(),
        "data_dirs": list(cfg.data_dirs),
        "train_files": len(corpus.texts),
        "train_characters": corpus.n_chars,
        "heldout_fraction": cfg.heldout_fraction,
        "steps": state["step"],
        "planned_steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "tokens": state["tokens"],
        # tokens of source text seen (the clean stream; `tokens` counts both streams)
        "source_tokens": state.get("source_tokens"),
        "seed": cfg.seed,
        "wall_seconds": round(state["wall_seconds"], 1),
        "final_loss_stage1": next((x[2] for x in reversed(losses) if x[1] == 1), None),
        "final_loss_stage2": next((x[2] for x in reversed(losses) if x[1] == 2), None),
        "torch": torch.__version__,
        "train_config": _config_dict(cfg),
    }
    (path / "training.json").write_text(json.dumps(record, indent=2) + "\n")
