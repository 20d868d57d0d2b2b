"""Model directories: `config.json` + `model.safetensors` + `tokenizer.json`.

Weights are read with safetensors only; nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusion_core.config import ModelConfig
from diffusion_core.model import CodeTransformer
from diffusion_core.tokenizer import CodeTokenizer

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class ModelLoadError(RuntimeError):
    """A model directory is missing, incomplete or does not match its config."""


@dataclass
class LoadedModel:
    model: CodeTransformer
    tokenizer: CodeTokenizer
    path: Path
    model_hash: str  # identifies weights + tokenizer; caches built with another are invalid


def save_model_dir(
    model: CodeTransformer, tokenizer: CodeTokenizer, path: str | Path, *, dtype: torch.dtype = torch.float16
) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.cfg.save(path / "config.json")
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    tmp = path / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(path / "model.safetensors")
    tokenizer.save(path / "tokenizer.json")


def file_digest(path: Path, h: hashlib._Hash | None = None) -> hashlib._Hash:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def load_model_dir(
    path: str | Path | None = None, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    path = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {path} is missing {', '.join(missing)}")
    try:
        cfg = ModelConfig.load(path / "config.json")
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path / 'config.json'} is not a valid model config: {e}") from e
    try:
        tokenizer = CodeTokenizer.load(path / "tokenizer.json")
    except Exception as e:  # tokenizers raises plain Exceptions on bad JSON
        raise ModelLoadError(f"{path / 'tokenizer.json'} cannot be read: {e}") from e
    try:
        state = load_file(str(path / "model.safetensors"), device="cpu")
    except Exception as e:  # safetensors raises SafetensorError / OSError on truncation
        raise ModelLoadError(f"{path / 'model.safetensors'} is truncated or corrupted: {e}") from e
    model = CodeTransformer(cfg)
    if cfg.tie_embeddings:
        state.setdefault("lm_head.weight", state.get("embed_tokens.weight"))
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items() if v is not None}, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{path / 'model.safetensors'} does not match config.json: {e}") from e
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ModelLoadError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}"
        )
    model.to(device=device, dtype=dtype).eval()
    h = file_digest(path / "model.safetensors")
    file_digest(path / "tokenizer.json", h)
    return LoadedModel(model, tokenizer, path, h.hexdigest()[:16])
