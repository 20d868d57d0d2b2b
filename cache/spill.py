"""The on-disk format of a spilled document cache: msgpack, checksummed, never unpickled.

A spill file is one msgpack map (the *envelope*)::

    {"magic": "diffusion-lsp/kv", "format": FORMAT_VERSION, "sha256": <hex>, "payload": <bin>}

where `sha256` is the digest of the `payload` bytes, and `payload` is itself a msgpack map::

    {"format": FORMAT_VERSION, "model_hash": str, "uri": str, "block_size": int,
     "ids": [int, ...], "length": int, "dtype": "float32" | "float16" | "bfloat16",
     "keys":   [{"shape": [B, H_kv, S, D], "data": <raw bytes>}, ...],   # one per layer
     "values": [{"shape": [B, H_kv, S, D], "data": <raw bytes>}, ...]}

Tensor bytes are the raw little-endian memory of the contiguous CPU tensor, read through a
uint8 view so that bfloat16 needs no numpy. `decode` checks everything (envelope, format
version, checksum, model hash, URI, dtype, shapes, byte counts) before it builds a single
tensor, and raises `SpillError` for anything that does not fit: a file that is truncated,
corrupted, from another model or from another format version is never loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgpack
import torch

from diffusion_core.kv_cache import KVCache

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SUFFIX",
    "SpillError",
    "Encoded",
    "SpillRecord",
    "decode",
    "encode",
    "encode_chunks",
    "is_spill_name",
    "spill_name",
    "write_atomic",
]

MAGIC = "diffusion-lsp/kv"
FORMAT_VERSION = 1
SUFFIX = ".kv"
TMP_PREFIX = ".tmp-"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class SpillError(ValueError):
    """A spill file that must not be loaded (truncated, corrupted, foreign, other version)."""


@dataclass(frozen=True)
class SpillRecord:
    uri: str
    model_hash: str
    block_size: int
    ids: tuple[int, ...]
    cache: KVCache


def spill_name(model_hash: str, uri: str) -> str:
    """File name of a document's spill: a hash, never a path taken from the URI."""
    # surrogatepass: a URI may hold a lone surrogate (a valid JSON escape)
    key = f"{model_hash}\0{uri}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest() + SUFFIX


def is_spill_name(name: str) -> bool:
    stem = name[: -len(SUFFIX)]
    return (
        name.endswith(SUFFIX)
        and len(stem) == 64
        and all(c in "0123456789abcdef" for c in stem)
    )


# -- encoding ----------------------------------------------------------------------------
# The file is produced as a list of chunks, tensor data included without copying, so that
# spilling a 10 MB cache costs one hashing pass and one write instead of several copies.
def _bin_header(n: int) -> bytes:
    """msgpack header of a bin object of n bytes (msgpack-python exposes no such call)."""
    if n < 1 << 8:
        return struct.pack(">BB", 0xC4, n)
    if n < 1 << 16:
        return struct.pack(">BH", 0xC5, n)
    if n < 1 << 32:
        return struct.pack(">BI", 0xC6, n)
    raise ValueError(f"a tensor of {n} bytes is too large for msgpack")


def _tensor_view(t: torch.Tensor, keep: list) -> memoryview:
    """The raw bytes of a tensor (any dtype, including bfloat16) without numpy or a copy
    (unless the tensor is on another device or not contiguous); `keep` holds it alive."""
    c = t.detach().to("cpu").contiguous()
    n = c.numel() * c.element_size()
    if n == 0:
        return memoryview(b"")
    keep.append(c)
    return memoryview((ctypes.c_char * n).from_address(c.data_ptr())).cast("B")


@dataclass
class Encoded:
    """A spill file as a sequence of bytes-like chunks (some point into tensor memory)."""

    chunks: list
    _keep: list  # tensors whose memory the chunks point into

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)

    def tobytes(self) -> bytes:
        return b"".join(self.chunks)


def encode_chunks(
    *, model_hash: str, uri: str, block_size: int, ids: list[int] | tuple[int, ...], cache: KVCache
) -> Encoded:
    """Serialize one document entry as the chunks of a spill file."""
    if cache.n_layers == 0:
        raise ValueError("cannot spill a cache without layers")
    dtypes = {t.dtype for t in (*cache.keys, *cache.values)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in DTYPE_NAMES:
        raise ValueError(f"cannot spill tensors of dtype {sorted(map(str, dtypes))}")
    if cache.length > len(ids):
        raise ValueError(f"cache of {cache.length} tokens but only {len(ids)} ids")
    pk = msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass")  # URIs, see spill_name
    keep: list = []
    small = {
        "format": FORMAT_VERSION,
        "model_hash": model_hash,
        "uri": uri,
        "block_size": int(block_size),
        "ids": [int(i) for i in ids],
        "length": cache.length,
        "dtype": DTYPE_NAMES[next(iter(dtypes))],
    }
    head = [pk.pack_map_header(len(small) + 2)]
    for k, v in small.items():
        head += [pk.pack(k), pk.pack(v)]
    payload: list = [b"".join(head)]
    for name, tensors in (("keys", cache.keys), ("values", cache.values)):
        payload.append(pk.pack(name) + pk.pack_array_header(len(tensors)))
        for t in tensors:
            data = _tensor_view(t, keep)
            payload.append(
                pk.pack_map_header(2) + pk.pack("shape") + pk.pack(list(t.shape))
                + pk.pack("data") + _bin_header(len(data))
            )
            payload.append(data)
    h = hashlib.sha256()
    for c in payload:
        h.update(c)
    size = sum(len(c) for c in payload)
    env = b"".join(
        [
            pk.pack_map_header(4),
            pk.pack("magic"), pk.pack(MAGIC),
            pk.pack("format"), pk.pack(FORMAT_VERSION),
            pk.pack("sha256"), pk.pack(h.hexdigest()),
            pk.pack("payload"), _bin_header(size),
        ]
    )
    return Encoded([env, *payload], keep)


def encode(
    *, model_hash: str, uri: str, block_size: int, ids: list[int] | tuple[int, ...], cache: KVCache
) -> bytes:
    """Serialize one document entry to the bytes of a spill file."""
    return encode_chunks(
        model_hash=model_hash, uri=uri, block_size=block_size, ids=ids, cache=cache
    ).tobytes()


# -- decoding ----------------------------------------------------------------------------
def _unpack(data: bytes, what: str) -> dict:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, unicode_errors="surrogatepass")
    except Exception as e:  # ExtraData, OutOfData, FormatError, ValueError, ...: all "broken"
        raise SpillError(f"{what} is not valid msgpack ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise SpillError(f"{what} is a msgpack {type(obj).__name__}, not a map")
    return obj


def _field(d: dict, key: str, typ: type | tuple[type, ...]):
    v = d.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise SpillError(f"field {key!r} is missing or not a {typ}")
    return v


def _tensor(m, dtype: torch.dtype, length: int, where: str) -> tuple[list[int], bytes]:
    if not isinstance(m, dict):
        raise SpillError(f"{where} is not a map")
    shape = m.get("shape")
    data = m.get("data")
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise SpillError(f"{where} has a bad shape {shape!r}")
    if shape[2] != length:
        raise SpillError(f"{where} holds {shape[2]} positions, the entry says {length}")
    if not isinstance(data, bytes):
        raise SpillError(f"{where} has no raw data")
    itemsize = torch.empty((), dtype=dtype).element_size()
    want = math.prod(shape) * itemsize
    if len(data) != want:
        raise SpillError(f"{where} has {len(data)} bytes, shape {shape} needs {want}")
    return shape, data


def _build(shape: list[int], data: bytes, dtype: torch.dtype, device) -> torch.Tensor:
    if not data:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
    return t if device is None else t.to(device)


def decode(
    data: bytes,
    *,
    model_hash: str,
    uri: str | None = None,
    device: str | torch.device | None = None,
) -> SpillRecord:
    """Validate and load a spill file; raises `SpillError` unless everything matches."""
    env = _unpack(data, "spill file")
    if env.get("magic") != MAGIC:
        raise SpillError("not a diffusion-lsp cache file (bad magic)")
    if env.get("format") != FORMAT_VERSION:
        raise SpillError(f"format version {env.get('format')!r}, expected {FORMAT_VERSION}")
    payload = _field(env, "payload", bytes)
    digest = _field(env, "sha256", str)
    if hashlib.sha256(payload).hexdigest() != digest:
        raise SpillError("checksum mismatch (corrupted payload)")
    p = _unpack(payload, "payload")
    if p.get("format") != FORMAT_VERSION:
        raise SpillError(f"payload format version {p.get('format')!r}, expected {FORMAT_VERSION}")
    if p.get("model_hash") != model_hash:
        raise SpillError(f"written by model {p.get('model_hash')!r}, not {model_hash!r}")
    file_uri = _field(p, "uri", str)
    if uri is not None and file_uri != uri:
        raise SpillError("written for another document")
    block_size = _field(p, "block_size", int)
    if block_size < 1:
        raise SpillError(f"bad block size {block_size}")
    ids = _field(p, "ids", list)
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise SpillError("token ids are not all non-negative integers")
    length = _field(p, "length", int)
    if not 0 <= length <= len(ids):
        raise SpillError(f"cache length {length} does not fit {len(ids)} ids")
    dtype = DTYPES.get(p.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise SpillError(f"unsupported dtype {p.get('dtype')!r}")
    keys, values = _field(p, "keys", list), _field(p, "values", list)
    if not keys or len(keys) != len(values):
        raise SpillError(f"{len(keys)} key layers and {len(values)} value layers")
    # Validate every tensor before building any.
    k_raw = [_tensor(m, dtype, length, f"keys[{i}]") for i, m in enumerate(keys)]
    v_raw = [_tensor(m, dtype, length, f"values[{i}]") for i, m in enumerate(values)]
    batch = {s[0] for s, _ in (*k_raw, *v_raw)}
    if len(batch) != 1:
        raise SpillError("layers disagree on the batch size")
    cache = KVCache(
        tuple(_build(s, d, dtype, device) for s, d in k_raw),
        tuple(_build(s, d, dtype, device) for s, d in v_raw),
    )
    return SpillRecord(file_uri, model_hash, block_size, tuple(ids), cache)


# -- files -------------------------------------------------------------------------------
def write_atomic(directory: Path, name: str, data: bytes | Encoded) -> Path:
    """Write `data` to directory/name through a temp file (mode 0600) and os.replace.

    On any error the temp file is removed and the exception propagates; the target is
    either the old file or the complete new one, never a partial write.
    """
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in data.chunks if isinstance(data, Encoded) else [data]:
                f.write(chunk)
        target = directory / name
        os.replace(tmp, target)
        return target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
