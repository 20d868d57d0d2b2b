"""Open diffusion code models from a local Hugging Face directory, into `CodeTransformer`.

Supported (`config.json` "model_type"):

- "Dream" (Dream 7B, Dream-Coder 7B, DiffuCoder 7B): Qwen2 weights, bidirectional
  attention, mask token 151666, shifted logits (position i predicts token i+1);
- "llada" (LLaDA 8B): OLMo-style LLaMA block names (`model.transformer.blocks.N.ff_proj`...),
  mask token 126336, unshifted;
- "qwen2", "qwen3", "llama": plain causal checkpoints (Qwen3: QK-norm and a head size
  of its own, `head_dim`). They load as autoregressive models
  (`kind="ar"`, the next-token head of the baseline) unless config.json names a
  `mask_token_id`, which makes them diffusion models;
- the block-causal families (`BLOCK_FAMILIES`, issue 21): "a2d-qwen3" / "a2d-qwen2"
  (dllm's BD3LM conversions of Qwen3 / Qwen2.5), "Fast_dLLM_Qwen" (Fast-dLLM v2, shifted
  logits) and "sdar" (SDAR, Qwen3). Trained with block-causal attention (a block sees
  itself and every earlier block), so the block KV cache is exact for them; their trained
  block size lands in `ModelConfig.trained_block_size`.

Options in `diffusion-lsp.json` (see `hf_prompts.read_overrides`): "kind",
"shifted_logits", "tokens", "block_size" (the trained block size), "dtype" ("float32",
"bfloat16", "float16") and "quantize" ("int8": dynamic int8 Linear layers, CPU only;
`diffusion_core.quantize`).

Everything is read into the project's own `CodeTransformer`, so the block KV cache,
masks, samplers and cancellation are the same code for every model; the shifted-logit
convention lives in ONE place, `CodeTransformer.forward` (see `diffusion_core.model`).
Weights are read with safetensors only (single file or sharded with
`model.safetensors.index.json`); nothing is unpickled, nothing is downloaded and no code
from the model directory runs (no trust_remote_code). A missing file, an unsupported
architecture or an unsupported option raises `ModelLoadError` naming it.

Loading builds the network on the meta device and assigns each tensor, converted to the
target dtype and moved to the target device, as it is read: peak memory is about the
model in its target dtype, not an fp32 copy of it. The estimate is logged first.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from diffusion_core.checkpoint import (
    LoadedModel,
    ModelLoadError,
    check_model_files,
    file_digest,
    load_model_dir,
    read_json_file,
)
from diffusion_core.config import ModelConfig, parameter_count
from diffusion_core.hf_prompts import HFTokenizer, read_json, read_overrides
from diffusion_core.model import CodeTransformer
from diffusion_core.quantize import check_quantize, quantize_int8, quantized_hash

log = logging.getLogger(__name__)

SUPPORTED = ("Dream", "llada", "qwen2", "qwen3", "llama", "a2d-qwen2", "a2d-qwen3",
             "Fast_dLLM_Qwen", "sdar")


@dataclass(frozen=True)
class BlockFamily:
    """A block-causal diffusion family: its backbone and the conventions it was trained with."""

    backbone: str  # "qwen2" (q/k/v biases) or "qwen3" (QK-norm, own head_dim)
    shifted_logits: bool  # position i predicts token i+1 (AR-initialised, Fast-dLLM v2)
    mask_token_id: int | None  # the family's fixed mask id; None: the tokenizer's mask token
    block_key: str | None  # config.json key holding the trained block size, if any
    block_size: int  # trained block size when config.json does not say


# Every value below was checked against the family's published code (read 2026-12):
# - a2d-qwen3 / a2d-qwen2: ZHZisZZ/dllm (the dllm-hub checkpoints' code).
#   dllm/pipelines/a2d/convert.py: A2DQwen3Config / A2DQwen2Config subclass
#   transformers.Qwen3Config / Qwen2Config with model_type "a2d-qwen3" / "a2d-qwen2" and
#   take the source model's state dict unchanged (Qwen weight names).
#   dllm/core/trainers/bd3lm.py: BD3LM two-stream training mask (block_diff_mask: noisy
#   block b sees clean blocks < b and itself; clean stream block-causal), loss on
#   logits[masked] against input_ids[masked] at the same position: unshifted.
#   dllm/core/samplers/bd3lm.py: staircase mask bid_k <= bid_q, mask id =
#   tokenizer.mask_token_id, right_shift_logits=False, block_size=32 (also the default of
#   dllm/pipelines/a2d/eval.py BD3LMEvalConfig). No block-size key in config.json.
# - Fast_dLLM_Qwen: Fast-dLLM v2 modeling.py (copy read: HoangMaizzz/failfasttesting,
#   Fast_dLLM_v2_1_5B/modeling.py; NVlabs/Fast-dLLM v2/ ships it on the Hub): Qwen2 layers
#   (q/k/v bias=True, o_proj bias=False), config.bd_size = training block size,
#   eval_block_diff_mask (q_idx // B >= kv_idx // B), mask_id=151665 (forward and
#   generate defaults), generate: logits = cat(logits[:, :1], logits[:, :-1]) inside a
#   block and the block's first token from the previous block's last logits (shifted),
#   block_size=32, small_block_size=8 (a sampler policy: sub-blocks committed in order).
# - sdar: JetAstra/SDAR training/model/SDAR-4B-Chat/modeling_sdar.py (Qwen3 layers:
#   q_norm/k_norm over head_dim, attention_bias on q/k/v/o) and generate.py
#   (block_diffusion_generate: block mask tril(blocks) repeated per token, logits used at
#   their own position: unshifted; mask id = tokenizer.mask_token, "<|MASK|>"; default
#   --block_length 4). Not verified: whether SDAR's config.json names its block size (no
#   key is read; set "block_size" in diffusion-lsp.json for the b8/b16/b32 variants), and
#   the id 151669 of "<|MASK|>" (from the issue; the loader takes it from tokenizer.json).
# open-dcoder (bidirectional Qwen2, shifted) is not a block family: it loads as "qwen2"
# with a mask_token_id and "shifted_logits": true in diffusion-lsp.json (docs/byo-model.md).
BLOCK_FAMILIES: dict[str, BlockFamily] = {
    "a2d-qwen3": BlockFamily("qwen3", False, None, None, 32),
    "a2d-qwen2": BlockFamily("qwen2", False, None, None, 32),
    "fast_dllm_qwen": BlockFamily("qwen2", True, 151665, "bd_size", 32),
    "sdar": BlockFamily("qwen3", False, None, None, 4),
}
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
FULL_HASH_LIMIT = 256 << 20  # files up to this size are hashed whole, larger by header


# -- device and dtype ---------------------------------------------------------------------
def select_device_dtype(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """CUDA when present (bf16 where supported, else fp16), else CPU with fp32."""
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    if dtype is None:
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    return dev, dtype


def memory_estimate(cfg: ModelConfig, dtype: torch.dtype) -> int:
    """Bytes of the weights in `dtype` (activations and KV cache come on top: a few %)."""
    return parameter_count(cfg) * torch.empty((), dtype=dtype).element_size()


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


# -- config.json -> ModelConfig -------------------------------------------------------------
def is_hf_config(raw: dict[str, Any]) -> bool:
    return "model_type" in raw or "architectures" in raw


def _family(raw: dict[str, Any]) -> str:
    mt = str(raw.get("model_type", "")).lower()
    arch = " ".join(map(str, raw.get("architectures") or [])).lower()
    if mt == "dream" or "dream" in arch:
        return "dream"
    if mt == "llada" or "llada" in arch:
        return "llada"
    if mt in BLOCK_FAMILIES:
        return mt
    if "fast_dllm" in arch:
        return "fast_dllm_qwen"
    if "sdarfor" in arch:
        return "sdar"
    if mt in ("qwen2", "qwen3", "llama"):
        return mt
    raise ModelLoadError(
        f"unsupported architecture: model_type={raw.get('model_type')!r}, "
        f"architectures={raw.get('architectures')!r}; supported model_type values: "
        + ", ".join(SUPPORTED)
    )


def _rope(raw: dict[str, Any], default_theta: float) -> dict[str, Any]:
    """RoPE fields from transformers v4 (`rope_theta` + `rope_scaling`) or v5 (`rope_parameters`)."""
    params = raw.get("rope_parameters") or {}
    scaling = raw.get("rope_scaling") or {}
    if not isinstance(params, dict) or not isinstance(scaling, dict):
        raise ModelLoadError("config.json: rope_parameters / rope_scaling must be objects")
    theta = float(raw.get("rope_theta") or params.get("rope_theta") or default_theta)
    spec = scaling or params
    rtype = str(spec.get("rope_type", spec.get("type", "default")))
    out: dict[str, Any] = {"rope_theta": theta}
    if rtype == "default":
        return out
    if rtype == "linear":
        return {**out, "rope_type": "linear", "rope_scaling_factor": float(spec["factor"])}
    if rtype == "llama3":
        return {
            **out,
            "rope_type": "llama3",
            "rope_scaling_factor": float(spec["factor"]),
            "rope_low_freq_factor": float(spec.get("low_freq_factor", 1.0)),
            "rope_high_freq_factor": float(spec.get("high_freq_factor", 4.0)),
            "rope_original_max_positions": int(spec["original_max_position_embeddings"]),
        }
    if rtype == "dynamic":
        # Dynamic NTK changes the frequencies only once a sequence is longer than
        # max_position_embeddings; editor contexts here are about a thousand tokens.
        log.info("rope_scaling 'dynamic' equals unscaled RoPE below %s positions",
                 raw.get("max_position_embeddings"))
        return out
    raise ModelLoadError(
        f"unsupported rope_scaling type {rtype!r} in config.json (supported: default, linear, "
        "llama3, dynamic)"
    )


def _require(raw: dict[str, Any], key: str, family: str) -> Any:
    if key not in raw or raw[key] is None:
        raise ModelLoadError(f"config.json of this {family} model has no {key!r}")
    return raw[key]


def _check_head_dim(raw: dict[str, Any], d: int, heads: int) -> None:
    hd = raw.get("head_dim")
    if hd is not None and hd != d // heads:
        raise ModelLoadError(
            f"config.json head_dim={hd} differs from hidden_size/num_attention_heads={d // heads}; "
            "decoupled head sizes are not supported"
        )


def trained_block_size(raw: dict[str, Any], block: BlockFamily) -> int:
    """The block size a block family was trained with: its config.json key, else the default."""
    value = raw.get(block.block_key) if block.block_key else None
    if value is None:
        return block.block_size
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 512:
        raise ModelLoadError(f"config.json {block.block_key}={value!r} is not a block size in 1..512")
    return value


def family_config(raw: dict[str, Any]) -> dict[str, Any]:
    """config.json with the family's fixed conventions filled in where it is silent
    (Fast-dLLM v2's mask id 151665, which its code hard-codes), so the tokenizer adapter
    sees the id the network was trained with."""
    block = BLOCK_FAMILIES.get(_family(raw))
    if block is None or block.mask_token_id is None or raw.get("mask_token_id") is not None:
        return raw
    return {**raw, "mask_token_id": block.mask_token_id}


def hf_model_config(
    raw: dict[str, Any], *, kind: str | None = None, shifted_logits: bool | None = None,
    mask_token_id: int | None = None, pad_token_id: int = 0, block_size: int | None = None,
) -> ModelConfig:
    """The `ModelConfig` of a Hugging Face config.json (raises `ModelLoadError` if unsupported)."""
    family = _family(raw)
    if family == "llada":
        return _llada_config(raw, kind, shifted_logits, mask_token_id, pad_token_id)
    block = BLOCK_FAMILIES.get(family)
    backbone = block.backbone if block else family
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ModelLoadError(f"unsupported hidden_act {act!r} (only silu/SwiGLU)")
    if raw.get("mlp_bias"):
        raise ModelLoadError("unsupported: mlp_bias=true (biases on the MLP projections)")
    if raw.get("use_sliding_window"):
        log.info("sliding_window=%s ignored: contexts here are far shorter", raw.get("sliding_window"))
    d = int(_require(raw, "hidden_size", family))
    heads = int(_require(raw, "num_attention_heads", family))
    qwen3 = backbone == "qwen3"
    head_dim = int(raw.get("head_dim") or d // heads) if qwen3 else 0
    if not qwen3:
        _check_head_dim(raw, d, heads)
    attention_bias = bool(raw.get("attention_bias", False))
    diffusion = family == "dream" or block is not None or raw.get("mask_token_id") is not None
    k = kind or ("diffusion" if diffusion else "ar")
    if shifted_logits is None:
        shifted_logits = family == "dream" or bool(block and block.shifted_logits)
    family_block = trained_block_size(raw, block) if block else 0  # validated even if overridden
    trained_block = int(block_size or family_block)
    try:
        return ModelConfig(
            vocab_size=int(_require(raw, "vocab_size", family)),
            d_model=d,
            n_layers=int(_require(raw, "num_hidden_layers", family)),
            n_heads=heads,
            n_kv_heads=int(raw.get("num_key_value_heads") or heads),
            d_ff=int(_require(raw, "intermediate_size", family)),
            norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            qkv_bias=backbone in ("qwen2", "dream") or attention_bias,
            o_bias=attention_bias,
            tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
            kind=k,  # type: ignore[arg-type]
            mask_token_id=int(mask_token_id if mask_token_id is not None else pad_token_id),
            pad_token_id=int(pad_token_id),
            shifted_logits=bool(shifted_logits),
            family=family,
            qk_norm=qwen3,
            head_dim_override=head_dim if head_dim != d // heads else 0,
            trained_block_size=trained_block,
            block_causal=block is not None,
            **_rope(raw, 10000.0),
        )
    except ValueError as e:
        raise ModelLoadError(f"config.json does not describe a valid model: {e}") from e


def _llada_config(raw, kind, shifted_logits, mask_token_id, pad_token_id) -> ModelConfig:
    expect = {
        "block_type": "llama", "layer_norm_type": "rms", "alibi": False, "rope": True,
        "attention_layer_norm": False, "input_emb_norm": False, "scale_logits": False,
        "block_group_size": 1, "clip_qkv": None, "include_bias": False,
    }
    for key, want in expect.items():
        if key in raw and raw[key] != want:
            raise ModelLoadError(f"unsupported LLaDA option {key}={raw[key]!r} (supported: {want!r})")
    if raw.get("activation_type", "silu") not in ("silu", "swiglu"):
        raise ModelLoadError(f"unsupported LLaDA activation_type {raw.get('activation_type')!r}")
    d = int(_require(raw, "d_model", "LLaDA"))
    heads = int(_require(raw, "n_heads", "LLaDA"))
    kv = 1 if raw.get("multi_query_attention") else int(raw.get("n_kv_heads") or heads)
    ff = raw.get("mlp_hidden_size") or int(raw.get("mlp_ratio", 4)) * d
    try:
        return ModelConfig(
            vocab_size=int(raw.get("embedding_size") or _require(raw, "vocab_size", "LLaDA")),
            d_model=d,
            n_layers=int(_require(raw, "n_layers", "LLaDA")),
            n_heads=heads,
            n_kv_heads=kv,
            d_ff=int(ff),
            norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            qkv_bias=bool(raw.get("include_qkv_bias", False)),
            tie_embeddings=bool(raw.get("weight_tying", False)),
            kind=kind or "diffusion",  # type: ignore[arg-type]
            mask_token_id=int(mask_token_id if mask_token_id is not None else 126336),
            pad_token_id=int(pad_token_id),
            shifted_logits=bool(shifted_logits),
            family="llada",
            **_rope(raw, 10000.0),
        )
    except ValueError as e:
        raise ModelLoadError(f"config.json does not describe a valid LLaDA model: {e}") from e


# -- weight names ---------------------------------------------------------------------------
_LLADA_BLOCK = {
    "attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm",
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj", "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}
_LLADA_TOP = {"wte.weight": "embed_tokens.weight", "ln_f.weight": "norm.weight",
              "ff_out.weight": "lm_head.weight"}
_LLADA_RE = re.compile(r"^(?:model\.)?transformer\.blocks\.(\d+)\.(\w+)\.(weight|bias)$")


def map_weight_name(name: str, family: str) -> str | None:
    """Our parameter name for a checkpoint tensor; None for tensors to skip (rotary buffers)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None
    if family == "llada":
        m = _LLADA_RE.match(name)
        if m and m.group(2) in _LLADA_BLOCK:
            return f"layers.{m.group(1)}.{_LLADA_BLOCK[m.group(2)]}.{m.group(3)}"
        top = re.sub(r"^(?:model\.)?transformer\.", "", name)
        return _LLADA_TOP.get(top, name)
    return name[len("model."):] if name.startswith("model.") else name


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a directory: the single file, or every shard of the index."""
    index = path / INDEX_FILE
    if index.is_file():
        data = read_json(index, "safetensors index")
        wm = data.get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise ModelLoadError(f"{index} has no weight_map")
        files = sorted(set(map(str, wm.values())))
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise ModelLoadError(
                f"model directory {path} is missing {len(missing)} shard(s) named in {INDEX_FILE}: "
                + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            )
        return [path / f for f in files]
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = (
        f" (found {', '.join(pickles[:3])}: pickle weights are never loaded; "
        "convert them to safetensors)" if pickles else ""
    )
    raise ModelLoadError(f"model directory {path} has neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")


def iter_weights(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                    yield name, st.get_tensor(name)
        except ModelLoadError:
            raise
        except Exception as e:  # SafetensorError / OSError on truncated files
            raise ModelLoadError(f"{f} is truncated or corrupted: {e}") from e


def weights_hash(path: Path, files: list[Path]) -> str:
    """Identifies weights + tokenizer for cache invalidation without reading 15 GB.

    Small files are hashed whole; a large shard contributes its name, size, modification
    time and safetensors header (names, dtypes, shapes, offsets).
    """
    h = hashlib.sha256()
    for f in [path / "config.json", path / "tokenizer.json", *files]:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}".encode())
        if st.st_size <= FULL_HASH_LIMIT:
            file_digest(f, h)
            continue
        h.update(str(st.st_mtime_ns).encode())
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(n, 100 << 20)))
    return h.hexdigest()[:16]


# -- loading ----------------------------------------------------------------------------------
def load_hf_model_dir(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    kind: str | None = None,
    shifted_logits: bool | None = None,
    quantize: str | None = None,
) -> LoadedModel:
    """Load a Hugging Face model directory (config.json, *.safetensors, tokenizer.json).

    `kind`/`shifted_logits` override what config.json implies (also settable in
    diffusion-lsp.json); `device`/`dtype` default to `select_device_dtype()`, or to the
    "dtype" of diffusion-lsp.json. `quantize="int8"` (or "quantize" in diffusion-lsp.json)
    makes every Linear layer dynamic int8 after loading (CPU only, `diffusion_core.quantize`).
    """
    t_start = time.perf_counter()
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist")
    check_model_files(path)  # FIFOs, devices, oversized JSON: refused before any read
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory {path} is missing config.json")
    raw = family_config(read_json(path / "config.json", "model config"))
    family = _family(raw)
    over = read_overrides(path)
    kind = kind or over["kind"]
    if shifted_logits is None:
        shifted_logits = over["shifted_logits"]
    quantize = quantize if quantize is not None else over["quantize"]
    if dtype is None and over["dtype"] is not None:
        dtype = over["dtype"]
    probe = hf_model_config(raw, kind=kind, shifted_logits=shifted_logits,
                            block_size=over["block_size"])  # validates early
    files = weight_files(path)
    tokenizer = HFTokenizer.from_dir(path, raw, need_mask=probe.kind == "diffusion")
    sp = tokenizer.special
    cfg = hf_model_config(
        raw, kind=kind, shifted_logits=shifted_logits, mask_token_id=sp.mask, pad_token_id=sp.pad,
        block_size=over["block_size"],
    )
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ModelLoadError(
            f"tokenizer.json has {tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}"
        )
    if cfg.kind == "diffusion" and not 0 <= cfg.mask_token_id < cfg.vocab_size:
        raise ModelLoadError(f"mask token id {cfg.mask_token_id} is outside the model's vocabulary")
    dev, dt = select_device_dtype(device, dtype)
    check_quantize(quantize, dev)
    need = memory_estimate(cfg, dt)
    log.info(
        "loading %s (%s, %s, %.2fB parameters) on %s as %s: about %s of weights",
        path, family, cfg.kind, parameter_count(cfg) / 1e9, dev, str(dt).removeprefix("torch."),
        _gib(need),
    )
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        if need > free:
            raise ModelLoadError(
                f"{path} needs about {_gib(need)} of GPU memory for its weights, {_gib(free)} is free"
            )
    model = _build(cfg, files, family, dev, dt)
    model_hash = weights_hash(path, files)
    if quantize == "int8":
        model, model_hash = quantize_int8(model), quantized_hash(model_hash)
    log.info("loaded %s in %.2f s%s: %s", path, time.perf_counter() - t_start,
             " (int8 dynamic)" if quantize == "int8" else "",
             "; ".join(tokenizer.prompt.notes) or "no FIM tokens")
    return LoadedModel(model, tokenizer, path, model_hash)


def _build(
    cfg: ModelConfig, files: list[Path], family: str, device: torch.device, dtype: torch.dtype
) -> CodeTransformer:
    with torch.device("meta"):
        model = CodeTransformer(cfg)
    expected = set(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for name, tensor in iter_weights(files):
        ours = map_weight_name(name, family)
        if ours is None:
            continue
        if ours not in expected:
            unexpected.append(name)
            continue
        state[ours] = tensor.to(device=device, dtype=dtype)
    if cfg.tie_embeddings and "embed_tokens.weight" in state:
        state.setdefault("lm_head.weight", state["embed_tokens.weight"])
    missing = sorted(expected - set(state))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected weights {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        raise ModelLoadError(f"safetensors do not match config.json ({family}): " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelLoadError(f"safetensors do not match config.json: {e}") from e
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval()


def load_any_model_dir(
    path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    quantize: str | None = None,
) -> LoadedModel:
    """Our own model directory or a Hugging Face one, told apart by config.json.

    Ours (`"family": "own"`, `d_model`...) loads with `load_model_dir` (CPU/fp32 unless
    given); a Hugging Face one (`model_type`/`architectures`) with `load_hf_model_dir`
    (CUDA when present). `None` is the shipped default model. `quantize="int8"`: dynamic
    int8 Linear layers (CPU only) for either kind.
    """
    if path is not None:
        path = Path(path)
        cfg = path / "config.json"
        if path.is_dir():
            check_model_files(path)  # before anything in it is opened
        if path.is_dir() and cfg.is_file():
            raw = read_json_file(cfg, "model config")
            # Our ModelConfig never has model_type/architectures (LLaDA's has d_model too).
            if isinstance(raw, dict) and is_hf_config(raw):
                return load_hf_model_dir(path, device=device, dtype=dtype, quantize=quantize)
    check_quantize(quantize, torch.device(device or "cpu"))
    loaded = load_model_dir(path, device=device or "cpu", dtype=dtype or torch.float32)
    if quantize == "int8":
        loaded = LoadedModel(quantize_int8(loaded.model), loaded.tokenizer, loaded.path,
                             quantized_hash(loaded.model_hash))
    return loaded
