"""The msgpack spill format: exact round trips, and every kind of bad file is refused."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
import torch

from diffusion_core.kv_cache import KVCache
from dlsp_cache import spill

MODEL = "model-aaaa"
URI = "file:///home/u/project/pkg/mod.py"


def make_cache(n: int, *, layers: int = 2, heads: int = 2, dim: int = 8, dtype=torch.float32) -> KVCache:
    g = torch.Generator().manual_seed(n)
    keys = tuple(torch.randn(1, heads, n, dim, generator=g).to(dtype) for _ in range(layers))
    values = tuple(torch.randn(1, heads, n, dim, generator=g).to(dtype) for _ in range(layers))
    return KVCache(keys, values)


def blob(n: int = 40, dtype=torch.float32, **over) -> bytes:
    args = dict(model_hash=MODEL, uri=URI, block_size=16, ids=list(range(100, 100 + n)), cache=make_cache(n, dtype=dtype))
    args.update(over)
    return spill.encode(**args)


def reseal(env: dict, payload: dict) -> bytes:
    """A file whose checksum is right but whose payload says something else."""
    raw = msgpack.packb(payload, use_bin_type=True)
    env = dict(env, payload=raw, sha256=hashlib.sha256(raw).hexdigest())
    return msgpack.packb(env, use_bin_type=True)


def parts(data: bytes) -> tuple[dict, dict]:
    env = msgpack.unpackb(data, raw=False)
    return env, msgpack.unpackb(env["payload"], raw=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_is_bit_exact(dtype):
    cache = make_cache(37, dtype=dtype)
    ids = list(range(5, 42))
    data = spill.encode(model_hash=MODEL, uri=URI, block_size=16, ids=ids, cache=cache)
    rec = spill.decode(data, model_hash=MODEL, uri=URI)
    assert rec.uri == URI and rec.block_size == 16 and rec.ids == tuple(ids)
    assert rec.cache.length == 37 and rec.cache.n_layers == 2
    for a, b in zip((*rec.cache.keys, *rec.cache.values), (*cache.keys, *cache.values), strict=True):
        assert a.dtype == dtype and a.shape == b.shape
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))  # bit-exact, NaN-safe


@pytest.mark.parametrize("n", [1, 3, 1100])  # tensor data in msgpack bin8, bin16 and bin32
def test_round_trip_of_every_size(n):
    cache = make_cache(n, heads=1, dim=16)
    data = spill.encode(model_hash=MODEL, uri=URI, block_size=16, ids=list(range(n)), cache=cache)
    env, payload = parts(data)  # plain msgpack reads it
    assert len(payload["keys"][0]["data"]) == 64 * n
    rec = spill.decode(data, model_hash=MODEL, uri=URI)
    assert all(torch.equal(a, b) for a, b in zip(rec.cache.values, cache.values, strict=True))


def test_views_and_inference_tensors_are_spilled_by_value():
    with torch.inference_mode():
        full = make_cache(64)
    cache = full.truncate(48)  # non-contiguous views into larger storage
    data = spill.encode(model_hash=MODEL, uri=URI, block_size=16, ids=list(range(64)), cache=cache)
    rec = spill.decode(data, model_hash=MODEL)
    assert rec.cache.length == 48
    assert all(torch.equal(a, b) for a, b in zip(rec.cache.keys, cache.keys, strict=True))


def test_envelope_fields():
    env, payload = parts(blob())
    assert env["magic"] == spill.MAGIC and env["format"] == spill.FORMAT_VERSION
    assert env["sha256"] == hashlib.sha256(env["payload"]).hexdigest()
    for key in ("model_hash", "uri", "block_size", "ids", "length", "dtype", "keys", "values", "format"):
        assert key in payload
    assert payload["keys"][0]["shape"] == [1, 2, 40, 8]


def test_names_are_hashes():
    name = spill.spill_name(MODEL, "file:///../../etc/passwd")
    assert spill.is_spill_name(name) and "/" not in name and "passwd" not in name
    assert name != spill.spill_name("model-bbbb", "file:///../../etc/passwd")
    assert name == hashlib.sha256(f"{MODEL}\0file:///../../etc/passwd".encode()).hexdigest() + ".kv"
    assert not spill.is_spill_name(".tmp-123.kv") and not spill.is_spill_name("x" * 64 + ".kv")


@pytest.mark.parametrize("cut", [0, 1, 10, 100, 1000, -1000, -100, -1])
def test_truncated_files_are_refused(cut):
    data = blob()
    with pytest.raises(spill.SpillError):
        spill.decode(data[:cut], model_hash=MODEL, uri=URI)


def test_every_single_byte_flip_is_refused_or_harmless():
    data = blob(n=20)
    # Flip bytes across the file: in the payload the checksum catches it; in the envelope
    # the structure does. Nothing may decode to a different cache.
    step = max(1, len(data) // 400)
    for i in range(0, len(data), step):
        bad = bytearray(data)
        bad[i] ^= 0x41
        try:
            rec = spill.decode(bytes(bad), model_hash=MODEL, uri=URI)
        except spill.SpillError:
            continue
        ref = spill.decode(data, model_hash=MODEL, uri=URI)  # only a no-op flip may load
        assert rec.ids == ref.ids
        assert all(torch.equal(a, b) for a, b in zip(rec.cache.keys, ref.cache.keys, strict=True))


@pytest.mark.parametrize(
    "junk", [b"", b"\x00", b"\xff" * 64, b"not msgpack at all", msgpack.packb([1, 2, 3]), msgpack.packb({"magic": 1})]
)
def test_garbage_is_refused(junk):
    with pytest.raises(spill.SpillError):
        spill.decode(junk, model_hash=MODEL)


def test_foreign_model_and_uri_are_refused():
    data = blob()
    with pytest.raises(spill.SpillError, match="model"):
        spill.decode(data, model_hash="model-bbbb", uri=URI)
    with pytest.raises(spill.SpillError, match="another document"):
        spill.decode(data, model_hash=MODEL, uri="file:///other.py")


def test_other_format_versions_are_refused():
    env, payload = parts(blob())
    with pytest.raises(spill.SpillError, match="format"):
        spill.decode(msgpack.packb(dict(env, format=spill.FORMAT_VERSION + 1), use_bin_type=True), model_hash=MODEL)
    with pytest.raises(spill.SpillError, match="format"):
        spill.decode(reseal(env, dict(payload, format=0)), model_hash=MODEL)


def test_checksum_mismatch_is_refused():
    env, _ = parts(blob())
    bad = msgpack.packb(dict(env, sha256="0" * 64), use_bin_type=True)
    with pytest.raises(spill.SpillError, match="checksum"):
        spill.decode(bad, model_hash=MODEL)


@pytest.mark.parametrize(
    "change",
    [
        {"dtype": "int64"},
        {"dtype": "float64"},
        {"length": 41},
        {"length": -1},
        {"block_size": 0},
        {"block_size": True},
        {"ids": [1, 2, "x"]},
        {"ids": list(range(10))},  # fewer ids than cached positions
        {"keys": []},
        {"values": []},
        {"uri": 7},
    ],
)
def test_inconsistent_payloads_are_refused_even_with_a_valid_checksum(change):
    env, payload = parts(blob())
    with pytest.raises(spill.SpillError):
        spill.decode(reseal(env, dict(payload, **change)), model_hash=MODEL)


def test_tensor_byte_count_and_shape_are_checked():
    env, payload = parts(blob())
    k = [dict(m) for m in payload["keys"]]
    k[0]["data"] = k[0]["data"][:-2]
    with pytest.raises(spill.SpillError, match="bytes"):
        spill.decode(reseal(env, dict(payload, keys=k)), model_hash=MODEL)
    k = [dict(m) for m in payload["keys"]]
    k[1]["shape"] = [1, 2, 40]
    with pytest.raises(spill.SpillError, match="shape"):
        spill.decode(reseal(env, dict(payload, keys=k)), model_hash=MODEL)
    k = [dict(m) for m in payload["keys"]]
    k[1]["shape"] = [2, 1, 40, 8]  # same byte count, other batch: layers disagree
    with pytest.raises(spill.SpillError, match="batch"):
        spill.decode(reseal(env, dict(payload, keys=k)), model_hash=MODEL)


def test_write_atomic_leaves_no_temp_file(tmp_path):
    spill.write_atomic(tmp_path, "a.kv", b"one")
    spill.write_atomic(tmp_path, "a.kv", b"two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.kv"]
    assert (tmp_path / "a.kv").read_bytes() == b"two"
    assert (tmp_path / "a.kv").stat().st_mode & 0o077 == 0
