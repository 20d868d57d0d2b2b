"""Model directories: `config.json` + `model.safetensors` + `tokenizer.json`.

Weights are read with safetensors only; nothing here ever unpickles.

`read_regular` is the one way small files (JSON, tokenizers, cache spills) are read: it
refuses anything that is not a regular file (a FIFO would block the reader forever, a
symlink to /dev/zero never ends) and bounds the size before reading. `check_model_files`
applies the same rule to every file a model directory load may open, before any is read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusion_core.config import ModelConfig, parameter_count
from diffusion_core.errors import ModelLoadError  # noqa: F401 - re-exported
from diffusion_core.model import CodeTransformer
from diffusion_core.tokenizer import CodeTokenizer

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


# JSON and tokenizer files of a model directory (Qwen's tokenizer.json is 7 MB).
MAX_SMALL_FILE_BYTES = 64 * 2**20
# Files a model load may read besides the weights; all must be regular and bounded.
SMALL_MODEL_FILES = (
    "config.json", "tokenizer.json", "training.json", "tokenizer_config.json",
    "diffusion-lsp.json", "model.safetensors.index.json", "generation_config.json",
    "special_tokens_map.json",
)


class UnreadableFileError(OSError):
    """A file that is not read: not a regular file, or larger than allowed."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str | os.PathLike, max_bytes: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; raises `UnreadableFileError`
    (an OSError) for a FIFO, device, socket, directory, a file that is too large (checked
    before reading, and again while reading, in case it grows), or, without
    `follow_symlinks`, a symlink. Never blocks on a FIFO: it is refused by `stat` before
    any open, and the open itself is non-blocking (a FIFO swapped in meanwhile)."""
    st = os.stat(path, follow_symlinks=follow_symlinks)
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFileError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file", str(path))
    if st.st_size > max_bytes:
        raise UnreadableFileError(errno.EFBIG, f"{st.st_size} bytes (at most {max_bytes} are read)",
                                  str(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file",
                                      str(path))
        chunks, n = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - n))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            n += len(chunk)
            if n > max_bytes:
                raise UnreadableFileError(errno.EFBIG, f"more than {max_bytes} bytes", str(path))
    finally:
        os.close(fd)


def check_model_files(path: Path, weights: tuple[str, ...] = ()) -> None:
    """Refuse a model directory in which a file the load may open is not a regular file
    (symlinks to regular files are fine: the Hugging Face cache is made of them), or a
    small file is larger than `MAX_SMALL_FILE_BYTES`. Every `*.safetensors` counts."""
    names = [*SMALL_MODEL_FILES, *weights]
    try:
        names += sorted(e.name for e in os.scandir(path) if e.name.endswith(".safetensors"))
    except OSError as e:
        raise ModelLoadError(f"model directory {path} cannot be listed: {e.strerror or e}") from e
    for name in dict.fromkeys(names):
        f = path / name
        try:
            st = f.stat()
        except FileNotFoundError:
            continue  # missing files are reported by the loaders, which know what is required
        except OSError as e:
            raise ModelLoadError(f"{f} cannot be read: {e.strerror or e}") from e
        if not stat.S_ISREG(st.st_mode):
            raise ModelLoadError(f"{f} is {_kind(st.st_mode)}, not a regular file; not read")
        if name in SMALL_MODEL_FILES and st.st_size > MAX_SMALL_FILE_BYTES:
            raise ModelLoadError(f"{f} has {st.st_size} bytes; files other than weights are "
                                 f"read up to {MAX_SMALL_FILE_BYTES}")


def read_json_file(path: Path, what: str) -> object:
    """A JSON file through `read_regular`; ModelLoadError when it cannot be read or parsed."""
    try:
        return json.loads(read_regular(path, MAX_SMALL_FILE_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelLoadError(f"{path} ({what}) cannot be read: {e}") from e


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


def _check_size(cfg: ModelConfig, state: dict, path: Path) -> None:
    """Refuse a config.json that describes a bigger model than the weights hold, before
    that model is allocated (it allocated 860 MB before failing). The count comes from
    the config alone: building the model on the meta device would import torch._dynamo,
    which writes to the temp directory. Shapes are checked by `load_state_dict` after,
    once the allocation is known to be the weights' own size (5% + 1M parameters slack)."""
    want = parameter_count(cfg)
    have = sum(v.numel() for k, v in state.items()
               if v is not None and not (cfg.tie_embeddings and k == "lm_head.weight"))
    if want > have * 1.05 + 1_000_000:
        raise ModelLoadError(
            f"{path / 'model.safetensors'} does not match config.json: the config describes "
            f"{want:,} parameters, the weights hold {have:,}")


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
    check_model_files(path)
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {path} is missing {', '.join(missing)}")
    raw = read_json_file(path / "config.json", "model config")
    try:
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        cfg = ModelConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{path / 'config.json'} is not a valid model config: {e}") from e
    try:
        from tokenizers import Tokenizer

        text = read_regular(path / "tokenizer.json", MAX_SMALL_FILE_BYTES).decode("utf-8")
        tokenizer = CodeTokenizer(Tokenizer.from_str(text))
    except Exception as e:  # tokenizers raises plain Exceptions on bad JSON
        raise ModelLoadError(f"{path / 'tokenizer.json'} cannot be read: {e}") from e
    try:
        state = load_file(str(path / "model.safetensors"), device="cpu")
    except Exception as e:  # safetensors raises SafetensorError / OSError on truncation
        raise ModelLoadError(f"{path / 'model.safetensors'} is truncated or corrupted: {e}") from e
    if cfg.tie_embeddings:
        state.setdefault("lm_head.weight", state.get("embed_tokens.weight"))
    _check_size(cfg, state, path)  # before the model is allocated at the size config.json claims
    model = CodeTransformer(cfg)
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
