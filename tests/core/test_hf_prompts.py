"""The Hugging Face tokenizer adapter, prompt tokens and loader errors (no `transformers`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from diffusion_core.checkpoint import ModelLoadError
from diffusion_core.config import ModelConfig
from diffusion_core.engine import Engine
from diffusion_core.hf_loader import load_any_model_dir, load_hf_model_dir, select_device_dtype
from diffusion_core.hf_prompts import HFTokenizer, resolve_prompt_tokens
from diffusion_core.masks import causal_mask
from diffusion_core.model import CodeTransformer
from diffusion_core.testing import sample_code

QWEN = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|mask|>", "<|im_end|>"]
LLADA = ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>"]


def _tokenizer(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sample_code(), trainer)
    return tok


@pytest.fixture(scope="module")
def qwen_tok() -> Tokenizer:
    return _tokenizer(QWEN)


@pytest.fixture(scope="module")
def llada_tok() -> Tokenizer:
    return _tokenizer(LLADA)


def test_fim_tokens_mask_and_eoi_of_a_qwen_style_tokenizer(qwen_tok):
    pt = resolve_prompt_tokens(qwen_tok, {"eos_token_id": 5, "mask_token_id": 4}, {}, need_mask=True)
    sp = pt.special
    name = qwen_tok.id_to_token
    assert pt.has_fim and pt.has_mask
    assert (name(sp.pre), name(sp.suf), name(sp.mid), name(sp.edit)) == (
        "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_middle|>")
    assert name(sp.mask) == "<|mask|>"
    assert name(sp.eos) == "<|im_end|>"  # config.json's eos ...
    assert name(sp.eoi) == "<|endoftext|>"  # ... but generations end with <|endoftext|>


def test_llada_style_tokenizer_falls_back_and_warns(llada_tok, caplog):
    with caplog.at_level(logging.WARNING, logger="diffusion_core.hf_prompts"):
        pt = resolve_prompt_tokens(llada_tok, {}, {"eos_token": "<|endoftext|>"}, need_mask=True)
    name = llada_tok.id_to_token
    assert not pt.has_fim and "fill-in-the-middle" in caplog.text
    assert name(pt.special.mask) == "<|mdm_mask|>"
    assert (name(pt.special.suf), name(pt.special.pre), name(pt.special.mid)) == (
        "<|endoftext|>", "<|startoftext|>", "<|startoftext|>")


def test_missing_mask_token_is_an_error_only_for_diffusion():
    tok = _tokenizer(["<|endoftext|>"])
    with pytest.raises(ModelLoadError, match="mask token"):
        resolve_prompt_tokens(tok, {}, {}, need_mask=True)
    pt = resolve_prompt_tokens(tok, {}, {}, need_mask=False)
    assert not pt.has_mask and pt.special.mask == pt.special.pad


def test_missing_eos_is_an_error():
    with pytest.raises(ModelLoadError, match="end-of-text"):
        resolve_prompt_tokens(_tokenizer(["<|mask|>"]), {}, {}, need_mask=True)


def test_adapter_encode_decode_newlines_and_specials(qwen_tok):
    pt = resolve_prompt_tokens(qwen_tok, {}, {}, need_mask=True)
    tok = HFTokenizer(qwen_tok, pt)
    text = "def f(x):\n    return x + 1\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.vocab_size == 300
    nl = tok.encode("\n")
    assert set(nl) <= tok.newline_ids and tok.newline_ids
    assert not any("\n" in qwen_tok.decode([i]) for i in set(range(300)) - tok.newline_ids)
    # special tokens and padded embedding rows (ids >= tokenizer vocab) decode to nothing
    assert tok.decode([pt.special.mask, *ids, pt.special.eoi, 310]) == text


def _write_model_dir(
    path: Path, tok: Tokenizer, config: dict, overrides: dict | None = None
) -> tuple[Path, CodeTransformer]:
    """A Qwen2-named checkpoint written from our own CodeTransformer (no transformers needed).

    Returns (directory, the CodeTransformer whose weights it holds).
    """
    path.mkdir()
    cfg = ModelConfig(vocab_size=320, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                      qkv_bias=True, tie_embeddings=False, kind="ar")
    torch.manual_seed(0)
    model = CodeTransformer(cfg)
    state = {("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v.contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    raw = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 320,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 64, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu", **config}
    (path / "config.json").write_text(json.dumps(raw))
    tok.save(str(path / "tokenizer.json"))
    if overrides is not None:
        (path / "diffusion-lsp.json").write_text(json.dumps(overrides))
    return path, model


def test_round_trip_through_hf_names_gives_the_same_logits(tmp_path, qwen_tok):
    path, model = _write_model_dir(tmp_path / "m", qwen_tok, {})
    loaded = load_any_model_dir(path, device="cpu")
    ids = torch.randint(0, 300, (1, 12))
    pos = torch.arange(12)[None]
    with torch.no_grad():
        want = model.eval()(ids, pos, causal_mask(12)).logits
        got = loaded.model(ids, pos, causal_mask(12)).logits
    torch.testing.assert_close(got, want)
    assert len(loaded.model_hash) == 16


def test_override_file_sets_kind_shift_and_tokens(tmp_path, qwen_tok):
    path, _ = _write_model_dir(
        tmp_path / "m", qwen_tok, {},
        {"kind": "diffusion", "shifted_logits": True, "tokens": {"eoi": "<|im_end|>", "edit": "<|fim_prefix|>"}},
    )
    loaded = load_hf_model_dir(path, device="cpu")
    cfg, sp = loaded.model.cfg, loaded.tokenizer.special
    assert (cfg.kind, cfg.shifted_logits, cfg.mask_token_id) == ("diffusion", True, 4)
    assert qwen_tok.id_to_token(sp.eoi) == "<|im_end|>"
    assert qwen_tok.id_to_token(sp.edit) == "<|fim_prefix|>"
    assert Engine(loaded).infill("x = ", "\n", max_tokens=4).stats.steps >= 1


def test_override_file_with_an_unknown_token_is_an_error(tmp_path, qwen_tok):
    path, _ = _write_model_dir(tmp_path / "m", qwen_tok, {}, {"tokens": {"mid": "<nope>"}})
    with pytest.raises(ModelLoadError, match="<nope>"):
        load_hf_model_dir(path, device="cpu")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "unsupported architecture.*gpt2"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"head_dim": 16}, "head_dim=16"),
        ({"rope_scaling": {"type": "longrope", "factor": 2.0}}, "rope_scaling type 'longrope'"),
        ({"model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": None}, "'hidden_size'"),
    ],
)
def test_unsupported_configs_are_named(tmp_path, qwen_tok, change, message):
    path, _ = _write_model_dir(tmp_path / "m", qwen_tok, change)
    with pytest.raises(ModelLoadError, match=message):
        load_hf_model_dir(path, device="cpu")


def test_missing_files_are_named(tmp_path, qwen_tok):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_hf_model_dir(tmp_path / "nowhere")
    path, _ = _write_model_dir(tmp_path / "m", qwen_tok, {})
    (path / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="no tokenizer.json"):
        load_hf_model_dir(path, device="cpu")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pytorch_model.bin: pickle weights are never loaded"):
        load_hf_model_dir(path, device="cpu")
    (path / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="missing config.json"):
        load_hf_model_dir(path, device="cpu")


def test_device_and_dtype_selection():
    dev, dt = select_device_dtype("cpu")
    assert (dev.type, dt) == ("cpu", torch.float32)
    dev, dt = select_device_dtype()
    if torch.cuda.is_available():
        assert dev.type == "cuda" and dt in (torch.bfloat16, torch.float16)
    else:
        assert (dev.type, dt) == ("cpu", torch.float32)
