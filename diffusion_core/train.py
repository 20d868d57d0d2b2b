"""Training loop: stage 1 mask corruption, stage 2 edit corruption (last 20% of steps).

Runs unchanged on CPU, one CUDA GPU, or many GPUs/nodes under `torchrun`
(torch.distributed DDP). Checkpoints hold the fp32 weights, the optimizer state (AdamW,
or Muon plus AdamW: `--optimizer muon`) and the RNG state in safetensors (no pickle), so a
resumed run continues bit for bit.
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
from typing import Literal, get_args

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
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

# "adamw": AdamW for every parameter. "muon": Muon for the 2-D matrices of the transformer
# blocks, AdamW for the rest (`_optimizer`).
OptimizerName = Literal["adamw", "muon"]


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
    # every this many steps, also write the weights as a model directory
    # `out_dir/snapshots/step<N>` (fp16, with its training.json), so that a run's checkpoints
    # can be evaluated and one of them chosen on a dev split; 0: only the final export
    snapshot_every: int = 0
    # examples per forward pass (gradients accumulate over a step's passes); 0 = one per
    # pass on CPU, where padding costs more than small matmuls lose (1.45x tokens/s at
    # batch 6), the whole batch on GPU
    micro_batch: int = 0
    tokenizer: str | None = None  # reuse a tokenizer.json (the AR baseline shares the diffusion one)
    init_from: str | None = None  # start from these weights: a model dir or a run's checkpoint dir
    forbidden: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerName = "adamw"

    def __post_init__(self) -> None:
        if self.optimizer not in get_args(OptimizerName):
            raise ValueError(f"optimizer must be one of {get_args(OptimizerName)}, got {self.optimizer!r}")
        if self.snapshot_every < 0:
            raise ValueError(f"snapshot_every must be 0 or more, got {self.snapshot_every}")


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


class CheckpointMismatch(ValueError):
    """A checkpoint that this run cannot resume exactly (written with another optimizer)."""


class Optimizers:
    """The run's optimizers behind one interface: `param_groups` (all of them, for the lr
    schedule), `zero_grad`, `step`; `name` is the TrainConfig.optimizer that built them."""

    def __init__(self, name: str, *optimizers: torch.optim.Optimizer) -> None:
        self.name = name
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()


def newton_schulz(g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """Approximate orthogonalisation U V^T of `g` = U S V^T in `dtype`: torch.optim.Muon's
    quintic Newton-Schulz iteration (Keller Jordan's coefficients), the same ops in the
    same order, with the working dtype a parameter (torch fixes bfloat16)."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1 (not in place:
    # in float32 `x` may be the momentum buffer itself)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with its Newton-Schulz iteration in float32 off CUDA.

    torch runs the iteration in bfloat16 (the GPU recipe), which CPUs without bfloat16
    matrix units emulate: measured on one AVX2 core of this project's machine, 0.5-0.9 s
    per small-preset matrix (256x256, 256x704) against 0.04-0.09 s in float32, about 28 s
    per small-preset step (42 matrices) instead of 2.6 s. Everything else is torch's update (its
    arguments, defaults and validation, the state key "momentum_buffer", Nesterov
    momentum, decoupled weight decay, the adjust_lr_fn scaling); `ns_dtype` forces a
    dtype (tests: with bfloat16 it matches torch.optim.Muon bit for bit)."""

    ns_dtype: torch.dtype | None = None  # None: bfloat16 on CUDA, float32 elsewhere

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, momentum = float(group["lr"]), group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                dtype = self.ns_dtype or (torch.bfloat16 if p.is_cuda else torch.float32)
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                rows, cols = p.shape[:2]
                if group["adjust_lr_fn"] == "match_rms_adamw":
                    scale = 0.2 * math.sqrt(max(rows, cols))
                else:  # "original" (None): Keller Jordan's sqrt(max(1, rows / cols))
                    scale = math.sqrt(max(1, rows / cols))
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * scale)
        return loss


def is_muon_parameter(name: str, p: torch.Tensor) -> bool:
    """The parameters Muon trains: the 2-D weight matrices of the transformer blocks
    (attention q/k/v/o and MLP gate/up/down projections). Token embeddings, the LM head,
    norms and biases stay with AdamW."""
    return name.startswith("layers.") and p.dim() == 2


def _adamw(named: list[tuple[str, torch.nn.Parameter]], cfg) -> torch.optim.AdamW:
    decay = [p for n, p in named if p.dim() >= 2]
    no_decay = [p for n, p in named if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )


def _optimizer(model: torch.nn.Module, cfg) -> Optimizers:
    """AdamW (weight decay on matrices and embeddings, none on norms and biases), or with
    cfg.optimizer == "muon" the standard Muon recipe: Muon for the blocks' hidden matrices,
    AdamW for embeddings, head, norms and biases (Keller Jordan, "Muon: An optimizer for
    hidden layers in neural networks", https://kellerjordan.github.io/posts/muon/).
    adjust_lr_fn="match_rms_adamw" scales each matrix's orthogonalised update by
    0.2 * sqrt(max(rows, cols)), so that its RMS matches a typical AdamW update and both
    optimizers share one lr and weight decay (Moonshot AI, "Muon is Scalable for LLM
    Training", https://arxiv.org/abs/2502.16982). Momentum 0.95 with Nesterov, 5
    Newton-Schulz steps: the defaults of both (`Muon`: torch's, float32 iteration on CPU).
    Post-training configs have no optimizer field: AdamW."""
    name = getattr(cfg, "optimizer", "adamw")
    named = list(model.named_parameters())
    if name == "adamw":
        return Optimizers(name, _adamw(named, cfg))
    if name != "muon":
        raise ValueError(f"unknown optimizer {name!r}")
    hidden = [p for n, p in named if is_muon_parameter(n, p)]
    rest = [(n, p) for n, p in named if not is_muon_parameter(n, p)]
    muon = Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.95, nesterov=True,
                ns_steps=5, adjust_lr_fn="match_rms_adamw")
    return Optimizers(name, muon, _adamw(rest, cfg))


# -- checkpoints (safetensors + json, never pickle) ----------------------------------------
# Optimizer state per parameter, by the parameter's name: AdamW's "opt.{name}.exp_avg",
# ".exp_avg_sq", ".step"; Muon's "opt.{name}.momentum_buffer" (its only state). The
# file's metadata names the optimizer ("optimizer": "adamw" | "muon"; none: adamw, the
# checkpoints from before Muon).
def _state_keys(o: torch.optim.Optimizer) -> tuple[str, ...]:
    if isinstance(o, torch.optim.Muon):
        return ("momentum_buffer",)
    if isinstance(o, torch.optim.AdamW):
        return ("exp_avg", "exp_avg_sq", "step")
    raise TypeError(f"checkpoints hold AdamW or Muon state, not {type(o).__name__}")


def _parts(opt) -> tuple[str, list[torch.optim.Optimizer]]:
    """(optimizer name, the torch optimizers) of an `Optimizers` or of one torch optimizer."""
    if isinstance(opt, Optimizers):
        return opt.name, opt.optimizers
    return ("muon" if isinstance(opt, torch.optim.Muon) else "adamw"), [opt]


def save_checkpoint(path: Path, model, opt: Optimizers | torch.optim.Optimizer, state: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    opt_name, optimizers = _parts(opt)
    for o in optimizers:
        keys = _state_keys(o)
        for group in o.param_groups:
            for p in group["params"]:
                st = o.state.get(p)
                if st:
                    n = names[id(p)]
                    for key in keys:
                        if key == "step":
                            tensors[f"opt.{n}.step"] = torch.as_tensor(st["step"]).reshape(1).float().cpu()
                        else:
                            tensors[f"opt.{n}.{key}"] = st[key].cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if "lm_head.weight" in model.state_dict() and model.cfg.tie_embeddings:
        tensors.pop("model.lm_head.weight", None)
    tmp = path / "state.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"optimizer": opt_name})
    tmp.replace(path / "state.safetensors")
    (path / "state.json.tmp").write_text(json.dumps(state, indent=2))
    (path / "state.json.tmp").replace(path / "state.json")


def checkpoint_optimizer(path: Path) -> str:
    """The optimizer a checkpoint directory's state was written with ("adamw" or "muon")."""
    with safe_open(str(path / "state.safetensors"), "pt") as f:
        return (f.metadata() or {}).get("optimizer", "adamw")


def load_checkpoint(path: Path, model, opt: Optimizers | torch.optim.Optimizer) -> dict:
    """Restore weights, optimizer state and RNG state; raises CheckpointMismatch for a
    checkpoint written with another optimizer (its state cannot continue this run exactly;
    `--init-from CHECKPOINT_DIR` into a new run takes its weights alone)."""
    opt_name, optimizers = _parts(opt)
    saved = checkpoint_optimizer(path)
    if saved != opt_name:
        raise CheckpointMismatch(
            f"{path} was written with --optimizer {saved}; this run uses --optimizer {opt_name}. "
            f"Resume with --optimizer {saved}, or start a new run (another --out) with "
            f"--init-from {path} to take its weights alone")
    tensors = load_file(str(path / "state.safetensors"))
    sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if model.cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    model.load_state_dict(sd)
    owner = {id(p): o for o in optimizers for g in o.param_groups for p in g["params"]}
    for n, p in model.named_parameters():
        o = owner.get(id(p))
        if o is None:
            continue
        keys = _state_keys(o)
        if f"opt.{n}.{keys[0]}" not in tensors:
            continue  # no state yet (a parameter that has had no gradient)
        st = {k: tensors[f"opt.{n}.{k}"].to(p.device) for k in keys if k != "step"}
        if "step" in keys:
            st["step"] = tensors[f"opt.{n}.step"][0].clone()
        o.state[p] = st
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
    owns_group = dist.is_available() and not dist.is_initialized()  # under torchrun: we start it
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
            log(f"resumed from step {state['step']} ({cfg.optimizer})")
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
        if rank == 0 and cfg.snapshot_every and state["step"] % cfg.snapshot_every == 0 and not done:
            export(model, tok, out / "snapshots" / f"step{state['step']}", cfg, state, corpus)
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if rank == 0:
        export(model, tok, out / "model", cfg, state, corpus)
    if world > 1:
        dist.barrier()
        if owns_group:
            # without this, gloo's threads can still be running at interpreter exit and a
            # rank aborts ("terminate called without an active exception")
            dist.destroy_process_group()
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
