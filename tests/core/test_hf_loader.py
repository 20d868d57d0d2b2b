"""Parity of the Hugging Face loader with `transformers`' own forward pass.

Tiny random Qwen2 and LLaMA models are built with `transformers`, saved as safetensors
(single file and sharded), loaded into `CodeTransformer` and compared logit by logit.
Then the diffusion variants (Dream: bidirectional + shifted logits; LLaDA names) must give
the same block logits with the KV cache as in one full block-causal pass, and the Engine
must run on them unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from diffusion_core.checkpoint import ModelLoadError
from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Cancelled, Engine
from diffusion_core.hf_loader import (
    load_any_model_dir,
    load_hf_model_dir,
    memory_estimate,
    parameter_count,
)
from diffusion_core.hf_prompts import HFTokenizer
from diffusion_core.masks import block_causal_mask, causal_mask
from diffusion_core.testing import make_tiny_model_dir, sample_code
from diffusion_core.tokenizer import CodeTokenizer

transformers = pytest.importorskip("transformers")

TOKENIZER_VOCAB = 300
MODEL_VOCAB = 320  # padded embedding rows beyond the tokenizer, as in real checkpoints
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|mask|>"]
TINY = dict(
    vocab_size=MODEL_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    initializer_range=0.2,  # sharper than the default so logits differ visibly between rows
)


# -- fixtures -------------------------------------------------------------------------------
def byte_level_tokenizer(vocab_size: int, specials: list[str]) -> Tokenizer:
    """A small Qwen-like byte-level BPE trained on the sample code, with `specials` added."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sample_code(), trainer)
    return tok


@pytest.fixture(scope="module")
def hf_tokenizer() -> Tokenizer:
    return byte_level_tokenizer(TOKENIZER_VOCAB, SPECIALS)


def _save(model, tok: Tokenizer, path: Path, **kw) -> Path:
    model.save_pretrained(str(path), safe_serialization=True, **kw)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return path


def _patch(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory, hf_tokenizer):
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(**TINY, tie_word_embeddings=False)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    return model, _save(model, hf_tokenizer, tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="module")
def llama_sharded(tmp_path_factory, hf_tokenizer):
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        **TINY, tie_word_embeddings=True, attention_bias=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    path = _save(model, hf_tokenizer, tmp_path_factory.mktemp("llama"), max_shard_size="40KB")
    return model, path


@pytest.fixture(scope="module")
def dream_dir(qwen2, tmp_path_factory, hf_tokenizer):
    """The Qwen2 weights under a Dream config: bidirectional, shifted logits, mask token."""
    path = tmp_path_factory.mktemp("dream") / "m"
    shutil.copytree(qwen2[1], path)
    _patch(path, model_type="Dream", architectures=["DreamModel"],
           mask_token_id=hf_tokenizer.token_to_id("<|mask|>"),
           eos_token_id=hf_tokenizer.token_to_id("<|endoftext|>"))
    return path


def _ids(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, TOKENIZER_VOCAB, (1, n), generator=g)  # (1, n)


def _hf_logits(model, ids: torch.Tensor, mask4d: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, attention_mask=mask4d).logits[0]  # (T, V)


def _ours(loaded, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    pos = torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        return loaded.model(ids, pos, mask).logits[0]  # (T, V)


# -- parity with transformers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen3(tmp_path_factory, hf_tokenizer):
    """Tiny Qwen3: QK-norm, and head_dim 32 where hidden/heads would be 16."""
    torch.manual_seed(2)
    cfg = transformers.Qwen3Config(**TINY, head_dim=32, tie_word_embeddings=True, rope_theta=1e6)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # random norms, so that a missing or misplaced QK-norm shows
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    return model, _save(model, hf_tokenizer, tmp_path_factory.mktemp("qwen3"))


def test_qwen3_logits_match_transformers(qwen3):
    model, path = qwen3
    loaded = load_hf_model_dir(path, device="cpu", dtype=torch.float32)
    cfg = loaded.model.cfg
    assert cfg.family == "qwen3" and cfg.qk_norm and cfg.head_dim == 32 and cfg.kind == "ar"
    ids = _ids(40, seed=3)
    ref = _hf_logits(model, ids)
    got = _ours(loaded, ids, causal_mask(40))
    diff = (got - ref).abs().max().item()
    print(f"qwen3 max |logit difference| = {diff:.2e}")
    assert diff < 1e-4
    assert parameter_count(cfg) == sum(p.numel() for p in model.parameters())

def test_qwen2_causal_logits_match_transformers(qwen2):
    hf, path = qwen2
    loaded = load_hf_model_dir(path, device="cpu")
    cfg = loaded.model.cfg
    assert (cfg.family, cfg.kind, cfg.qkv_bias, cfg.shifted_logits) == ("qwen2", "ar", True, False)
    assert loaded.model.lm_head.weight.dtype == torch.float32  # fp32 on CPU
    ids = _ids(40)
    ref = _hf_logits(hf, ids)
    assert ref.std() > 0.1  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(_ours(loaded, ids, causal_mask(40)), ref, atol=1e-4, rtol=1e-4)


def test_qwen2_bidirectional_logits_match_transformers(qwen2):
    hf, path = qwen2
    loaded = load_hf_model_dir(path, device="cpu")
    ids = _ids(24, seed=3)
    ref = _hf_logits(hf, ids, torch.ones(1, 1, 24, 24, dtype=torch.bool))  # full attention
    assert not torch.allclose(ref, _hf_logits(hf, ids), atol=1e-3)  # really not causal
    torch.testing.assert_close(_ours(loaded, ids, None), ref, atol=1e-4, rtol=1e-4)


def test_sharded_llama3_rope_attention_bias_tied_matches_transformers(llama_sharded):
    hf, path = llama_sharded
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # really sharded
    loaded = load_hf_model_dir(path, device="cpu")
    cfg = loaded.model.cfg
    assert (cfg.rope_type, cfg.rope_scaling_factor, cfg.rope_original_max_positions) == ("llama3", 8.0, 64)
    assert cfg.o_bias and cfg.qkv_bias and cfg.tie_embeddings
    assert loaded.model.lm_head.weight is loaded.model.embed_tokens.weight
    ids = _ids(200, seed=1)  # beyond original_max_position_embeddings: scaling matters
    torch.testing.assert_close(_ours(loaded, ids, causal_mask(200)), _hf_logits(hf, ids),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rope", [{"rope_type": "linear", "factor": 4.0}, {"rope_type": "dynamic", "factor": 2.0}])
def test_linear_and_dynamic_rope_match_transformers(tmp_path, hf_tokenizer, rope):
    torch.manual_seed(2)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY, rope_scaling=rope)).eval()
    loaded = load_hf_model_dir(_save(hf, hf_tokenizer, tmp_path), device="cpu")
    ids = _ids(64, seed=2)  # below max_position_embeddings: dynamic is unscaled there
    torch.testing.assert_close(_ours(loaded, ids, causal_mask(64)), _hf_logits(hf, ids),
                               atol=1e-4, rtol=1e-4)


def test_parameter_count_and_memory_estimate(llama_sharded, qwen2):
    for hf, path in (llama_sharded, qwen2):
        loaded = load_hf_model_dir(path, device="cpu")
        assert parameter_count(loaded.model.cfg) == loaded.model.num_parameters()
        assert parameter_count(loaded.model.cfg) == sum(p.numel() for p in hf.parameters())
        assert memory_estimate(loaded.model.cfg, torch.bfloat16) == 2 * loaded.model.num_parameters()


# -- the diffusion families -------------------------------------------------------------------
def test_dream_shifted_logits_realigned_in_forward(qwen2, dream_dir):
    hf, _ = qwen2
    loaded = load_hf_model_dir(dream_dir, device="cpu")
    cfg = loaded.model.cfg
    assert (cfg.family, cfg.kind, cfg.shifted_logits) == ("dream", "diffusion", True)
    assert cfg.mask_token_id == loaded.tokenizer.special.mask == 4
    ids = _ids(16, seed=4)
    ref = _hf_logits(hf, ids, torch.ones(1, 1, 16, 16, dtype=torch.bool))  # (T, V), row i -> i+1
    ours = _ours(loaded, ids, None)
    keep = torch.arange(MODEL_VOCAB) != cfg.mask_token_id
    assert torch.isinf(ours[:, cfg.mask_token_id]).all()
    # row i holds the prediction for token i: transformers' row i-1; row 0 uses itself
    torch.testing.assert_close(ours[1:, keep], ref[:-1, keep], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours[0, keep], ref[0, keep], atol=1e-4, rtol=1e-4)


def _llada_dir(src: Path, dst: Path, mask_id: int) -> Path:
    """Rewrite a LLaMA directory with LLaDA's OLMo-style names and config."""
    dst.mkdir()
    raw = json.loads((src / "config.json").read_text())
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ff_norm",
             "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
             "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
             "mlp.down_proj": "ff_out"}
    state = {}
    for name, t in load_file(str(src / "model.safetensors")).items():
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            mod, kind = rest.rsplit(".", 1)
            state[f"model.transformer.blocks.{i}.{names[mod]}.{kind}"] = t
        else:
            state[{"model.embed_tokens.weight": "model.transformer.wte.weight",
                   "model.norm.weight": "model.transformer.ln_f.weight",
                   "lm_head.weight": "model.transformer.ff_out.weight"}[name]] = t
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    llada = {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
        "alibi": False, "attention_layer_norm": False, "block_group_size": 1,
        "block_type": "llama", "d_model": raw["hidden_size"], "embedding_size": raw["vocab_size"],
        "vocab_size": raw["vocab_size"], "eos_token_id": 0, "pad_token_id": 0,
        "include_bias": False, "include_qkv_bias": False, "input_emb_norm": False,
        "layer_norm_type": "rms", "mask_token_id": mask_id, "mlp_hidden_size": raw["intermediate_size"],
        "n_heads": raw["num_attention_heads"], "n_kv_heads": raw["num_key_value_heads"],
        "n_layers": raw["num_hidden_layers"], "rms_norm_eps": raw["rms_norm_eps"], "rope": True,
        "rope_theta": 10000.0, "scale_logits": False, "weight_tying": False,
    }
    (dst / "config.json").write_text(json.dumps(llada))
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    return dst


def test_llada_names_load_and_match_transformers_llama(tmp_path, hf_tokenizer):
    torch.manual_seed(5)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    src = _save(hf, hf_tokenizer, tmp_path / "llama")
    mask_id = hf_tokenizer.token_to_id("<|mask|>")
    loaded = load_any_model_dir(_llada_dir(src, tmp_path / "llada", mask_id), device="cpu")
    cfg = loaded.model.cfg
    assert (cfg.family, cfg.kind, cfg.shifted_logits, cfg.mask_token_id) == ("llada", "diffusion", False, mask_id)
    ids = _ids(32, seed=5)
    keep = torch.arange(MODEL_VOCAB) != mask_id
    torch.testing.assert_close(_ours(loaded, ids, causal_mask(32))[:, keep], _hf_logits(hf, ids)[:, keep],
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["dream", "llama-diffusion"])
def test_cached_block_logits_equal_full_block_causal_forward(which, dream_dir, llama_sharded, tmp_path):
    if which == "dream":
        path = dream_dir
    else:
        path = shutil.copytree(llama_sharded[1], tmp_path / "m")
        _patch(path, mask_token_id=4)  # a mask token makes a plain LLaMA a diffusion model
    loaded = load_hf_model_dir(path, device="cpu", dtype=torch.float64)
    model = loaded.model
    assert model.cfg.kind == "diffusion"
    b, n = 8, 29  # the last block is short
    ids = _ids(n, seed=6)
    pos = torch.arange(n)[None]
    with torch.no_grad():
        full = model(ids, pos, block_causal_mask(torch.arange(n) // b)).logits[0]
        cache = model.empty_cache()
        for s in range(0, n, b):
            out = model(ids[:, s : s + b], pos[:, s : s + b], None, cache)
            torch.testing.assert_close(out.logits[0], full[s : s + b], rtol=1e-9, atol=1e-9)
            cache = cache.extend(out.kv)
        # a block of masks after the context: row 0 is predicted from the last cached position
        blk = torch.full((1, b), model.cfg.mask_token_id)
        ext = torch.cat([ids, blk], dim=1)
        full2 = model(ext, torch.arange(n + b)[None],
                      block_causal_mask(torch.cat([torch.arange(n) // b, torch.full((b,), 99)]))).logits[0]
        got = model(blk, torch.arange(n, n + b)[None], None, cache).logits[0]
    torch.testing.assert_close(got, full2[n:], rtol=1e-9, atol=1e-9)
    assert cache.length == n
    assert cache.n_layers == model.cfg.n_layers + (1 if which == "dream" else 0)


# -- the Engine on a Hugging Face model --------------------------------------------------------
PREFIX = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        data = json.load(f)\n    "
SUFFIX = "\n    return data\n"


def test_engine_infill_repair_cache_and_cancel_on_dream(dream_dir):
    loaded = load_any_model_dir(dream_dir, device="cpu")
    assert isinstance(loaded.tokenizer, HFTokenizer)
    engine = Engine(loaded, SamplerConfig(block_size=8, max_tokens=12, threshold=0.5))
    ctx = engine.infill_context(PREFIX, SUFFIX)
    tok = loaded.tokenizer
    assert ctx[0] == tok.tok.token_to_id("<|fim_suffix|>")
    assert ctx[-1] == tok.tok.token_to_id("<|fim_middle|>")
    first = engine.infill(PREFIX, SUFFIX)
    assert 0 < len(first.tokens) <= 12 and isinstance(first.text, str)
    assert all(t != loaded.model.cfg.mask_token_id for t in first.tokens)
    again = engine.infill(PREFIX, SUFFIX, cache=first.context_cache, cache_ids=first.context_ids)
    assert again.reused_tokens >= 8 and again.tokens == first.tokens  # cached == uncached
    with pytest.raises(Cancelled):
        engine.infill(PREFIX, SUFFIX, cancel=lambda: True)
    rep = engine.repair(PREFIX, "data = json.load(f)", SUFFIX)
    assert isinstance(rep.text, str) and rep.stats.steps >= 1


def test_engine_runs_plain_qwen2_as_autoregressive(qwen2):
    engine = Engine(load_any_model_dir(qwen2[1], device="cpu"), SamplerConfig(max_tokens=6))
    assert engine.is_ar
    out = engine.infill(PREFIX, SUFFIX)
    assert 1 <= out.stats.steps <= 6
    with pytest.raises(ValueError, match="autoregressive"):
        engine.repair(PREFIX, "x", SUFFIX)


def test_load_any_model_dir_still_loads_our_own_format(tmp_path):
    loaded = load_any_model_dir(make_tiny_model_dir(tmp_path / "own"))
    assert type(loaded.tokenizer) is CodeTokenizer and loaded.model.cfg.family == "own"


# -- clear errors -----------------------------------------------------------------------------
def test_missing_shard_is_named(llama_sharded, tmp_path):
    path = shutil.copytree(llama_sharded[1], tmp_path / "m")
    shard = sorted(path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=shard.name):
        load_hf_model_dir(path, device="cpu")


def test_truncated_weights_and_mismatched_config(qwen2, tmp_path):
    path = shutil.copytree(qwen2[1], tmp_path / "m")
    _patch(path, intermediate_size=96)
    with pytest.raises(ModelLoadError, match="do not match config.json"):
        load_hf_model_dir(path, device="cpu")
    path2 = shutil.copytree(qwen2[1], tmp_path / "t")
    data = (path2 / "model.safetensors").read_bytes()
    (path2 / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupted"):
        load_hf_model_dir(path2, device="cpu")


def test_unsupported_rope_scaling_type_is_named(qwen2, tmp_path):
    path = shutil.copytree(qwen2[1], tmp_path / "m")
    _patch(path, rope_parameters=None, rope_theta=10000.0,
           rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
    with pytest.raises(ModelLoadError, match="unsupported rope_scaling type 'yarn'"):
        load_hf_model_dir(path, device="cpu")
