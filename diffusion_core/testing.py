"""Tiny random models for tests: built on the fly, nothing downloaded, a second or two."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import torch

from diffusion_core.checkpoint import save_model_dir
from diffusion_core.config import ModelConfig
from diffusion_core.model import CodeTransformer
from diffusion_core.tokenizer import CodeTokenizer, train_tokenizer


def sample_code() -> list[str]:
    """Python source to train a toy tokenizer on (stdlib sources, same on every machine)."""
    import argparse
    import dataclasses
    import json as json_mod
    import textwrap as textwrap_mod

    return [inspect.getsource(m) for m in (json_mod, textwrap_mod, dataclasses, argparse)]


def tiny_tokenizer(vocab_size: int = 512) -> CodeTokenizer:
    return train_tokenizer(iter(sample_code()), vocab_size)


def tiny_config(tokenizer: CodeTokenizer, kind: str = "diffusion", **over) -> ModelConfig:
    base = dict(
        vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
        kind=kind, mask_token_id=tokenizer.special.mask, pad_token_id=tokenizer.special.pad,
    )
    base.update(over)
    return ModelConfig(**base)


def tiny_model(tokenizer: CodeTokenizer, kind: str = "diffusion", seed: int = 0, **over) -> CodeTransformer:
    torch.manual_seed(seed)
    model = CodeTransformer(tiny_config(tokenizer, kind, **over))
    # Random init gives near-uniform predictions; sharpen them so samplers commit
    # several tokens per step and tests exercise the multi-token paths.
    with torch.no_grad():
        model.embed_tokens.weight.mul_(25.0)
    return model.eval()


def make_tiny_model_dir(path: str | Path, kind: str = "diffusion", seed: int = 0) -> Path:
    """Write a complete model directory (config, fp16 weights, tokenizer) to `path`."""
    path = Path(path)
    tok = tiny_tokenizer()
    save_model_dir(tiny_model(tok, kind, seed), tok, path)
    (path / "training.json").write_text(json.dumps({"note": "random tiny test model"}) + "\n")
    return path


DEMO = textwrap.dedent(
    '''
    def add(a, b):
        """Return the sum of a and b."""
        return a + b
    '''
)
