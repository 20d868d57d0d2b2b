"""Dynamic int8 quantization of a `CodeTransformer`'s Linear layers, for CPU inference.

`quantize_int8` replaces every `nn.Linear` (attention and MLP projections and the LM head)
with PyTorch's dynamically quantized Linear (`torch.ao.nn.quantized.dynamic.Linear`, what
`torch.ao.quantization.quantize_dynamic` installs; present, though marked deprecated in
favour of torchao, in torch 2.13): weights are stored as int8 with one scale per output
channel and activations are quantized on the fly per call (per tensor), so nothing needs
calibration data. On a
CPU a decoder step of a few positions is bound by reading the weights, and int8 weights
are a quarter of fp32 (see docs/benchmarks/family_latency.md for the measured speed-up).
Embeddings and norms stay fp32; so do the keys and values of the KV cache, whose exact
cached == uncached property therefore still holds for the quantized network.

On a GPU use bf16/fp16 instead (`dtype`, the loader's default there): dynamic int8 has
no CUDA kernels.
"""

from __future__ import annotations

import hashlib
import warnings

import torch
from torch import nn

from diffusion_core.checkpoint import ModelLoadError
from diffusion_core.model import CodeTransformer

QUANTIZE_CHOICES = ("none", "int8")


def check_quantize(quantize: str | None, device: torch.device) -> None:
    """Raise `ModelLoadError` for an unknown option, or int8 on a device other than the CPU."""
    if quantize in (None, "none"):
        return
    if quantize not in QUANTIZE_CHOICES:
        raise ModelLoadError(
            f"unsupported quantize option {quantize!r} (supported: {', '.join(QUANTIZE_CHOICES)})"
        )
    if device.type != "cpu":
        raise ModelLoadError(
            f"quantize={quantize!r} runs on the CPU only (dynamic int8 has no {device.type} kernels); "
            "on a GPU load in bfloat16 or float16 instead"
        )


def quantized_linear(linear: nn.Linear) -> nn.Module:
    """The dynamic int8 twin of one float Linear layer (per-output-channel weight scales)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    linear.qconfig = per_channel_dynamic_qconfig
    try:
        with warnings.catch_warnings():  # torch.ao.quantization warns it will move to torchao
            warnings.simplefilter("ignore")
            return DynamicLinear.from_float(linear)
    finally:
        del linear.qconfig


def quantize_int8(model: CodeTransformer) -> CodeTransformer:
    """`model` with every Linear layer dynamic int8 (in place; float32 CPU model returned).

    The same conversion as `torch.ao.quantization.quantize_dynamic(model, {nn.Linear:
    per_channel_dynamic_qconfig})`. The LM head shares its weight with the embedding in
    tied models; the quantized head gets its own int8 copy and the embedding keeps the
    float one for lookups.
    """
    model = model.to(device="cpu", dtype=torch.float32).eval()
    for name, module in list(model.named_modules()):
        if type(module) is nn.Linear:
            parent, _, leaf = name.rpartition(".")
            setattr(
                model.get_submodule(parent) if parent else model, leaf, quantized_linear(module)
            )
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def quantized_hash(model_hash: str) -> str:
    """A model hash of its own for the int8 network: its caches are not the fp32 model's."""
    return hashlib.sha256(f"{model_hash}:int8-dynamic".encode()).hexdigest()[:16]
