"""Safety: nothing is unpickled, nothing is fetched, the sources say so and so does the code.

In-process and fast. The same guarantees are checked against a running server in
test_robustness_content.py (an audit hook in the server process records every socket,
pickle lookup, program start and file write); `check --fix` never leaving a partial file
is tests/check/test_cli_e2e.py::test_sigkill_during_fix_leaves_every_file_whole.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from diffusion_core.checkpoint import ModelLoadError, load_model_dir
from diffusion_core.hf_loader import load_any_model_dir
from dlsp_cache import DocumentCacheStore, spill

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["diffusion_core", "cache", "lsp_server"]
# Calls that unpickle or fetch. Matched on code (comments and strings are stripped first).
FORBIDDEN = {
    "unpickling": re.compile(r"\b(pickle|cPickle|dill|joblib|shelve|marshal)\b|torch\.load\b|"
                             r"allow_pickle\s*=\s*True|weights_only\s*=\s*False"),
    "network": re.compile(r"\b(requests|urllib3|httpx|aiohttp|huggingface_hub|hf_hub_download|"
                          r"snapshot_download|urlopen|urlretrieve)\b|urllib\.request|"
                          r"socket\.(create_connection|connect)|from_pretrained"),
}


def _code_only(source: str) -> str:
    """The source without comments, docstrings and string literals."""
    import io
    import tokenize

    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.STRING):
            out.append(tok.string)
    return " ".join(out)


def test_sources_never_unpickle_or_fetch():
    hits = []
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 20
    for path in files:
        code = _code_only(path.read_text(encoding="utf-8"))
        for what, pattern in FORBIDDEN.items():
            for m in pattern.finditer(code):
                hits.append(f"{path.relative_to(ROOT)}: {what}: {m.group(0)}")
    assert not hits, "\n".join(hits)


class Bomb:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture
def bomb(tmp_path):
    marker = tmp_path / "EXECUTED"
    yield pickle.dumps(Bomb(marker)), marker
    assert not marker.exists(), "a pickle planted by the test was executed"


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "model.pt"])
def test_pickle_bomb_named_like_a_model_file_is_rejected(tmp_path, tiny_model, bomb, name):
    data, _ = bomb
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    if name != "model.safetensors":
        (d / "model.safetensors").unlink()
    (d / name).write_bytes(data)
    with pytest.raises(ModelLoadError):
        load_any_model_dir(d)
    with pytest.raises(ModelLoadError):
        load_model_dir(d)


def test_pickle_bomb_in_a_hugging_face_directory_is_rejected(tmp_path, bomb):
    data, _ = bomb
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
        "vocab_size": 512}))
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (d / name).write_bytes(data)
    with pytest.raises(ModelLoadError):
        load_any_model_dir(d)


@pytest.mark.parametrize("wrap", ["raw", "msgpack-bin"])
def test_pickle_bomb_named_like_a_cache_spill_is_rejected(tmp_path, bomb, wrap):
    import msgpack

    data, _ = bomb
    uri = "file:///x.py"
    store = DocumentCacheStore(model_hash="h" * 16, budget_bytes=2**20, spill_dir=tmp_path / "c")
    path = tmp_path / "c" / spill.spill_name("h" * 16, uri)
    if wrap == "msgpack-bin":  # a well-formed envelope around pickle bytes
        import hashlib

        data = msgpack.packb({"magic": spill.MAGIC, "format": spill.FORMAT_VERSION,
                              "sha256": hashlib.sha256(data).hexdigest(), "payload": data})
    path.write_bytes(data)
    cache, ids = store.lookup(uri, 8)
    assert cache is None and ids is None
    assert store.stats()["rejected_spill_files"] == 1 and not path.exists()


def test_nothing_in_the_package_loads_torch_pickles(monkeypatch, tiny_model, tmp_path):
    """Belt and braces: loading a model and spilling/restoring a cache never reach
    pickle.Unpickler or torch.load, whatever file names are around."""
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append("torch.load"))
    real = pickle.Unpickler

    class Spy(real):
        def __init__(self, *a, **k):
            calls.append("Unpickler")
            super().__init__(*a, **k)

    monkeypatch.setattr(pickle, "Unpickler", Spy)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append("pickle.loads"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append("pickle.load"))
    loaded = load_any_model_dir(tiny_model)
    store = DocumentCacheStore(model_hash=loaded.model_hash, spill_dir=tmp_path / "c")
    from diffusion_core.kv_cache import KVCache

    kv = KVCache((torch.zeros(1, 2, 8, 8),), (torch.zeros(1, 2, 8, 8),))
    store.update("u", list(range(8)), kv, 8)
    store.close("u")
    assert store.lookup("u", 8)[0] is not None  # restored from disk
    assert calls == []
