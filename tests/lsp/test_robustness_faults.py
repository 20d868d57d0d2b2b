"""Faults against the real server: broken models, broken cache files and directories, a job
that raises, and a client that dies in the middle of a request.

One server for the module (tests run in file order): it starts with a truncated model,
is pointed at other broken models, then at a good one, then at bad cache directories.
"""

from __future__ import annotations

import json
import pickle
import resource
import shutil
import time
from pathlib import Path

import pytest
import torch

from diffusion_core.checkpoint import load_model_dir
from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from diffusion_core.kv_cache import KVCache
from dlsp_cache import spill
from tests.stress.helpers import completion, open_doc, start_server, traceback_count

BLOCK = 8
OPTIONS = {"maxTokens": 4, "blockSize": BLOCK, "threshold": 0.9}


class Bomb:
    """Unpickling this creates `path`: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def bomb_bytes(marker: Path) -> bytes:
    return pickle.dumps(Bomb(marker))


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("faults")
    marker = tmp / "UNPICKLED"
    good = Path(tiny_model)

    def variant(name: str, fn) -> str:
        d = tmp / name
        shutil.copytree(good, d)
        fn(d)
        return str(d)

    weights = (good / "model.safetensors").read_bytes()
    models = {
        "truncated": variant("truncated", lambda d: (d / "model.safetensors").write_bytes(
            weights[: len(weights) // 2])),
        "bad-header": variant("bad-header", lambda d: (d / "model.safetensors").write_bytes(
            b"\xff" * 8 + weights[8:])),
        "pickle-as-safetensors": variant("pickle", lambda d: (d / "model.safetensors").write_bytes(
            bomb_bytes(marker))),
        "no-weights": variant("no-weights", lambda d: (d / "model.safetensors").unlink()),
        "bad-config": variant("bad-config", lambda d: (d / "config.json").write_text("{not json")),
        "bad-tokenizer": variant("bad-tokenizer", lambda d: (d / "tokenizer.json").write_text("[]")),
        "missing": str(tmp / "does-not-exist"),
    }
    hf = tmp / "hf-pickle"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["X"]}))
    (hf / "pytorch_model.bin").write_bytes(bomb_bytes(marker))
    models["hf-pytorch_model.bin"] = str(hf)
    c = start_server(tmp)
    c.initialize({"modelPath": models["truncated"], **OPTIONS})
    yield {"client": c, "tmp": tmp, "marker": marker, "models": models, "good": tiny_model}
    c.close()


def configure(c, **values) -> dict:
    c.notify("workspace/didChangeConfiguration", {"settings": {"diffusionLsp": values}})
    deadline = time.monotonic() + 60
    while True:  # each status is a real round trip; settings apply in order
        s = c.status()
        if all(s["settings"][k] == v for k, v in values.items()):
            return s
        assert time.monotonic() < deadline, s["settings"]


def error_messages(c, start: int = 0) -> list[str]:
    return [n["params"]["message"] for n in c.notifications[start:]
            if n["method"] == "window/showMessage" and n["params"]["type"] == 1]


def test_broken_model_at_startup_is_one_clear_message(env):
    c = env["client"]
    msg = c.wait_notification(lambda n: n["method"] == "window/showMessage", 120)
    assert msg["params"]["type"] == 1
    text = msg["params"]["message"]
    assert "cannot load the model" in text and "truncated or corrupted" in text
    s = c.wait_model()
    assert s["model"] is None and "model.safetensors" in s["model_error"]
    uri = "file:///a.py"
    open_doc(c, uri, "x = 1\n")
    for _ in range(3):  # answered, empty, and no new message per request
        assert completion(c, uri, 0, 5)["result"]["items"] == []
    assert len(error_messages(c)) == 1
    assert traceback_count(c.stderr_text()) == 0, c.stderr_tail()


@pytest.mark.parametrize("kind", ["bad-header", "pickle-as-safetensors", "no-weights",
                                  "bad-config", "bad-tokenizer", "missing",
                                  "hf-pytorch_model.bin"])
def test_each_broken_model_is_a_clear_message_without_traceback(env, kind):
    c = env["client"]
    n = len(c.notifications)
    configure(c, modelPath=env["models"][kind])
    msg = c.wait_notification(lambda m: m["method"] == "window/showMessage"
                              and m["params"]["type"] == 1, 120, start=n)
    assert "cannot load the model" in msg["params"]["message"]
    if kind != "hf-pytorch_model.bin":  # (the Hugging Face loader names the file only)
        assert env["models"][kind] in msg["params"]["message"]
    assert not env["marker"].exists(), "a model file was unpickled"
    assert traceback_count(c.stderr_text()) == 0, c.stderr_tail()
    assert c.proc.poll() is None


def test_a_good_model_after_broken_ones(env):
    c = env["client"]
    configure(c, modelPath=env["good"])
    s = c.wait_model()
    assert s["model"] is not None and s["model_error"] is None
    resp = completion(c, "file:///a.py", 0, 5)
    assert "result" in resp


def _plant(cache_dir: Path, model_hash: str, uri: str, ids: list[int], *, layers=2, heads=2,
           dim=8, dtype=torch.float32, hash_override: str | None = None) -> Path:
    n = len(ids) // BLOCK * BLOCK
    kv = KVCache(tuple(torch.randn(1, heads, n, dim).to(dtype) for _ in range(layers)),
                 tuple(torch.randn(1, heads, n, dim).to(dtype) for _ in range(layers)))
    data = spill.encode(model_hash=hash_override or model_hash, uri=uri, block_size=BLOCK,
                        ids=ids, cache=kv)
    path = cache_dir / spill.spill_name(model_hash, uri)
    path.write_bytes(data)
    return path


def test_corrupted_foreign_and_forged_cache_files(env):
    c = env["client"]
    cache_dir = env["tmp"] / "cache"
    cache_dir.mkdir(mode=0o700)
    loaded = load_model_dir(env["good"])
    engine = Engine(loaded, SamplerConfig(block_size=BLOCK, max_tokens=4, threshold=0.9))
    h = loaded.model_hash
    text = "def area(r):\n    return 3.14 * r * r\n\nprint(area(2))\n" * 3
    offset = text.index("3.14")
    ids = engine.infill_context(text[:offset], text[offset:])  # what the server will encode
    good = spill.encode(model_hash=h, uri="x", block_size=BLOCK, ids=ids, cache=KVCache(
        tuple(torch.zeros(1, 2, 8, 8) for _ in range(2)), tuple(torch.zeros(1, 2, 8, 8)
                                                                for _ in range(2))))
    planted = {}
    for name in ("garbage", "truncated", "pickle", "foreign", "half-precision", "forged-shape"):
        uri = f"file:///cache/{name}.py"
        path = cache_dir / spill.spill_name(h, uri)
        if name == "garbage":
            path.write_bytes(b"\x00garbage" * 100)
        elif name == "truncated":
            path.write_bytes(good[: len(good) // 2])
        elif name == "pickle":
            path.write_bytes(bomb_bytes(env["marker"]))
        elif name == "foreign":  # another model's cache, under this model's file name
            _plant(cache_dir, h, uri, ids, hash_override="0123456789abcdef")
        elif name == "half-precision":  # right model, wrong dtype
            _plant(cache_dir, h, uri, ids, dtype=torch.float16)
        else:  # right model and dtype, shapes that do not fit the model: the job raises
            _plant(cache_dir, h, uri, ids, heads=3, dim=5)
        planted[name] = (uri, path)
    configure(c, cacheDir=str(cache_dir), cacheBudgetMb=64)
    line, ch = 1, 11  # the offset of "3.14" in the first function
    assert text[:offset].count("\n") == line
    for name, (uri, path) in planted.items():
        open_doc(c, uri, text)
        resp = completion(c, uri, line, ch)
        if name == "forged-shape":
            # a job that raises: the request fails with an error, the server lives on, and
            # the bad entry is dropped, so the next request works
            assert resp["error"]["code"] == -32803 and "failed" in resp["error"]["message"]
            resp = completion(c, uri, line, ch)
        assert "result" in resp, (name, resp)
        assert not path.exists() or name == "forged-shape", f"{name} file was not removed"
    s = c.status()
    assert s["cache"]["rejected_spill_files"] >= 5, s["cache"]
    assert s["errors"] == 1
    assert not env["marker"].exists(), "a cache file was unpickled"


def _settled(c) -> dict:
    """The status once the spill writer thread has tried every queued spill (closes spill
    in the background, so a status right after didClose can predate the write)."""
    deadline = time.monotonic() + 60
    while True:  # each status is a real round trip
        s = c.status()
        if s["cache"]["bytes_pending_spill"] == 0:
            return s
        assert time.monotonic() < deadline, s["cache"]


def _complete_and_close(c, folder: str, first: int = 0, n: int = 3) -> dict:
    """Complete in `n` documents and close them (closing spills a cache: a write attempt
    each); the server's status once those writes were tried."""
    for i in range(first, first + n):
        uri = f"file:///{folder}/{i}.py"
        open_doc(c, uri, "import os\n" * 40)
        assert "result" in completion(c, uri, 20, 0)
        c.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    return _settled(c)


def test_unwritable_cache_directory(env):
    c = env["client"]
    # /sys refuses new files even to root (a chmod'ed directory would not stop root)
    configure(c, cacheDir="/sys")
    s = _complete_and_close(c, "ro")
    assert s["cache"]["spill_errors"] >= 1 and s["cache"]["spills"] == 0, s["cache"]
    assert c.proc.poll() is None


def test_full_disk_while_spilling(env):
    c = env["client"]
    cache_dir = env["tmp"] / "cache-full"
    configure(c, cacheDir=str(cache_dir))
    pid = c.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    # files of the server cannot grow past 512 bytes: every spill write fails midway
    # (EFBIG, as ENOSPC would); its stderr log is a file too and loses lines meanwhile
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (512, old[1]))
    try:
        s = _complete_and_close(c, "full")
        assert s["cache"]["spill_errors"] >= 1 and s["cache"]["spills"] == 0, s["cache"]
        # no partial file is left behind, under either name
        assert not list(cache_dir.iterdir())
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, old)
    s = _complete_and_close(c, "full", first=3, n=2)  # space again: spilling resumes
    assert s["cache"]["spills"] >= 1
    assert all(spill.is_spill_name(p.name) for p in cache_dir.iterdir())


def test_client_dies_in_the_middle_of_a_request(env):
    c = env["client"]
    # Its own preconditions, not the earlier tests': run alone (-k, a rerun of failures),
    # the server would still serve the truncated model it started with, answer every
    # completion empty at once, and no job would ever run. Thousands of denoising steps:
    # 4000 tokens, about one a step (threshold 1.0), and no stop at minProbability (where
    # the tiny random model's probability falls under it depends on the CPU's rounding): a
    # long job (over a minute) on every machine.
    configure(c, modelPath=env["good"], maxTokens=4000, threshold=1.0, minProbability=0.0, cacheDir=None)
    s = c.wait_model()
    assert s["model"] is not None, s["model_error"]
    mark = len(c.stderr_text())  # (the forged cache above logged one traceback: a real failure)
    uri = "file:///slow.py"
    open_doc(c, uri, "def slow():\n    return ")
    rid = c.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                "position": {"line": 1, "character": 11}})
    deadline = time.monotonic() + 60
    while f"[{rid}]" not in (c.status()["worker"]["running"] or ""):
        # each status is a round trip: the job has started when it shows up
        assert rid not in c.responses, (
            f"the completion was answered before it was seen running (not a long job): "
            f"{c.responses[rid]}")
        assert time.monotonic() < deadline, "the completion job never showed up as running"
    c.proc.stdin.close()  # the editor is gone: EOF on the server's stdin
    code = c.wait_exit(30)  # the running job is cancelled; the process does not linger
    assert code == 0
    err = c.stderr_text()[mark:]
    assert traceback_count(err) == 0, err[-3000:]
    assert "cancelled" in err
