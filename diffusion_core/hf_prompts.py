"""Tokenizer adapter and prompt tokens for Hugging Face model directories.

`Engine` speaks in the roles of the project's own tokenizer (`<pad> <mask> <eoi> <pre>
<suf> <mid> <edit>`) and lays out every context as

    <suf> suffix <pre> prefix <mid>      (infill; generation follows)
    <suf> suffix <pre> prefix <edit>     (repair; the canvas follows)

`HFTokenizer` exposes the same interface as `CodeTokenizer` (encode/decode, `special`,
`special_ids`, `newline_ids`, `vocab_size`) over a model's own `tokenizer.json` and maps
each role to one of the model's own tokens, so the Engine runs unchanged:

- `<mask>`: the model's mask token (config.json `mask_token_id`, else the tokenizer's
  `mask_token`, else a token named `<|mask|>`, `<|mdm_mask|>`, `<mask>` or `[MASK]`);
- `<eoi>`: `<|endoftext|>` when the vocabulary has it (Qwen-family models, Dream-Coder and
  DiffuCoder, fill the unused tail of a generation with it), else the model's eos token;
- `<pre> <suf> <mid>`: the fill-in-the-middle tokens when the vocabulary has a known set
  (Qwen2.5-Coder `<|fim_prefix|> <|fim_suffix|> <|fim_middle|>`, StarCoder `<fim_prefix>
  ...`); the context is then the suffix-prefix-middle ("SPM") order that keeps the block
  KV cache valid while the user types;
- `<edit>`: no open model has one, so it is the `<mid>` token (the canvas is a middle);
- models without FIM tokens (LLaDA) get `<suf>` = eos (the suffix reads as an earlier
  document), `<pre>` = `<mid>` = `<edit>` = bos (or eos); a warning is logged, since
  such a model was never trained on this layout.

Every choice can be overridden by an optional `diffusion-lsp.json` in the model directory:
`{"tokens": {"mid": "<|fim_middle|>", "eoi": "<|im_end|>", ...}}` (token strings).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from diffusion_core.checkpoint import ModelLoadError, read_json_file
from diffusion_core.tokenizer import CodeTokenizer, SpecialIds

log = logging.getLogger(__name__)

OVERRIDE_FILE = "diffusion-lsp.json"
ROLES = ("pad", "mask", "eoi", "pre", "suf", "mid", "edit", "bos", "eos")
FIM_TOKEN_SETS = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, Dream-Coder, DiffuCoder
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder (prefix, hole, end)
)
# "<|MASK|>": SDAR's tokenizer mask_token (JetAstra/SDAR generate.py reads tokenizer.mask_token).
MASK_NAMES = ("<|mask|>", "<|MASK|>", "<|mdm_mask|>", "<mask>", "[MASK]")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
OVERRIDE_KEYS = ("tokens", "kind", "shifted_logits", "block_size", "dtype", "quantize")
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>")
BOS_NAMES = ("<|startoftext|>", "<s>", "<|begin_of_text|>", "<bos>")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file of a model directory, read through `read_json_file` (regular
    files only, size bounded)."""
    data = read_json_file(path, what)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} ({what}) is not a JSON object")
    return data


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as "str" or {"content": "str", ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _first_id(value: Any) -> int | None:
    """config.json ids may be an int, a list of ints (several eos ids) or null."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PromptTokens:
    """Which of the model's own tokens plays each role of the Engine's layout."""

    special: SpecialIds
    has_fim: bool
    has_mask: bool
    notes: tuple[str, ...] = ()  # how each choice was made, for logs and the docs


def resolve_prompt_tokens(
    tok: Tokenizer,
    model_config: dict[str, Any],
    tokenizer_config: dict[str, Any],
    overrides: dict[str, str] | None = None,
    *,
    need_mask: bool,
) -> PromptTokens:
    """Map every Engine role to a token id of `tok` (see the module docstring)."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise ModelLoadError(f"{OVERRIDE_FILE}: unknown token roles {sorted(unknown)}; known: {ROLES}")
    notes: list[str] = []

    def by_name(*names: str | None) -> int | None:
        for name in names:
            if name is not None and (i := tok.token_to_id(name)) is not None:
                return i
        return None

    ids: dict[str, int | None] = {}
    for role, name in overrides.items():
        i = tok.token_to_id(name)
        if i is None:
            raise ModelLoadError(f"{OVERRIDE_FILE}: token {name!r} for <{role}> is not in tokenizer.json")
        ids[role] = i
        notes.append(f"<{role}> = {name!r} ({OVERRIDE_FILE})")

    def pick(role: str, *candidates: int | None) -> int | None:
        if ids.get(role) is None:
            ids[role] = next((c for c in candidates if c is not None), None)
        return ids[role]

    tc = tokenizer_config
    eos = pick(
        "eos", _first_id(model_config.get("eos_token_id")), by_name(_token_content(tc.get("eos_token"))),
        by_name(*EOS_NAMES),
    )
    if eos is None:
        raise ModelLoadError(
            "cannot find the end-of-text token: config.json has no eos_token_id, "
            "tokenizer_config.json no eos_token, and tokenizer.json none of " + ", ".join(EOS_NAMES)
        )
    bos = pick(
        "bos", _first_id(model_config.get("bos_token_id")), by_name(_token_content(tc.get("bos_token"))),
        by_name(*BOS_NAMES), eos,
    )
    pick("eoi", by_name("<|endoftext|>"), eos)
    pick("pad", _first_id(model_config.get("pad_token_id")), by_name(_token_content(tc.get("pad_token"))), eos)
    mask = pick(
        "mask", _first_id(model_config.get("mask_token_id")), by_name(_token_content(tc.get("mask_token"))),
        by_name(*MASK_NAMES),
    )
    has_mask = mask is not None
    if mask is None:
        if need_mask:
            raise ModelLoadError(
                "this diffusion model needs a mask token: config.json has no mask_token_id, "
                "tokenizer_config.json no mask_token, and tokenizer.json none of " + ", ".join(MASK_NAMES)
            )
        ids["mask"] = ids["pad"]  # autoregressive models never use it
    has_fim = False
    for pre, suf, mid in FIM_TOKEN_SETS:
        found = [tok.token_to_id(n) for n in (pre, suf, mid)]
        if all(i is not None for i in found):
            pick("pre", found[0])
            pick("suf", found[1])
            pick("mid", found[2])
            has_fim = True
            notes.append(f"fill-in-the-middle tokens {pre} {suf} {mid}")
            break
    if not has_fim and not all(r in overrides for r in ("pre", "suf", "mid")):
        log.warning(
            "tokenizer has no fill-in-the-middle tokens: the infill layout falls back to "
            "<eos> suffix <bos> prefix <bos>; expect weaker infill (override in %s)", OVERRIDE_FILE,
        )
        notes.append("no FIM tokens: <suf> = eos, <pre> = <mid> = bos")
    pick("suf", eos)
    pick("pre", bos)
    mid = pick("mid", bos)
    pick("edit", mid)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    bad = {r: i for r, i in ids.items() if i is None or not 0 <= i < vocab}
    if bad and any(r != "mask" for r in bad):
        raise ModelLoadError(f"special token ids outside the tokenizer's {vocab} tokens: {bad}")
    special = SpecialIds(**{r: int(ids[r]) for r in ROLES})  # type: ignore[arg-type]
    return PromptTokens(special, has_fim, has_mask, tuple(notes))


class HFTokenizer(CodeTokenizer):
    """`CodeTokenizer`'s interface over a Hugging Face `tokenizer.json` (see module docstring).

    Subclasses `CodeTokenizer` only so that `LoadedModel.tokenizer` keeps its type; it has
    its own constructor because the special tokens are the model's, not ours.
    """

    def __init__(self, tokenizer: Tokenizer, prompt: PromptTokens) -> None:  # noqa: D107
        self.tok = tokenizer
        self.prompt = prompt
        self.special = prompt.special
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        added = tokenizer.get_added_tokens_decoder()  # {id: AddedToken}
        self.special_ids = frozenset(
            {i for i, t in added.items() if t.special} | {getattr(prompt.special, r) for r in ROLES}
        )
        # the text of each id
        self.pieces = tokenizer.decode_batch([[i] for i in range(self.vocab_size)], skip_special_tokens=False)
        self.newline_ids = frozenset(i for i, s in enumerate(self.pieces) if "\n" in s)

    @classmethod
    def from_dir(
        cls, path: str | Path, model_config: dict[str, Any], *, need_mask: bool
    ) -> HFTokenizer:
        """Read tokenizer.json (+ optional tokenizer_config.json and diffusion-lsp.json)."""
        path = Path(path)
        tj = path / "tokenizer.json"
        if not tj.is_file():
            raise ModelLoadError(
                f"model directory {path} has no tokenizer.json (only the fast-tokenizer file "
                "is supported; vocab.json/merges.txt or sentencepiece models are not read)"
            )
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as e:  # tokenizers raises plain Exceptions on bad JSON
            raise ModelLoadError(f"{tj} cannot be read: {e}") from e
        tc_path = path / "tokenizer_config.json"
        tc = read_json(tc_path, "tokenizer config") if tc_path.is_file() else {}
        return cls(tok, resolve_prompt_tokens(tok, model_config, tc, read_overrides(path)["tokens"],
                                              need_mask=need_mask))

    @classmethod
    def load(cls, path: str | Path) -> CodeTokenizer:
        raise TypeError("use HFTokenizer.from_dir(model_dir, config) for Hugging Face tokenizers")

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        # Padded embedding rows (model vocab > tokenizer vocab) have no text either.
        keep = [i for i in ids if i not in self.special_ids and 0 <= i < self.vocab_size]
        return self.tok.decode(keep, skip_special_tokens=False)


def read_overrides(path: Path) -> dict[str, Any]:
    """The optional `diffusion-lsp.json`: {"tokens": {role: token}, "kind": ...,
    "shifted_logits": ..., "block_size": trained block size, "dtype": "float32" |
    "bfloat16" | "float16", "quantize": "none" | "int8"}. "dtype" comes back as a
    `torch.dtype` (or None)."""
    import torch

    f = path / OVERRIDE_FILE
    data = read_json(f, "diffusion-lsp overrides") if f.is_file() else {}
    unknown = set(data) - set(OVERRIDE_KEYS)
    if unknown:
        raise ModelLoadError(f"{f}: unknown keys {sorted(unknown)}; known: {', '.join(OVERRIDE_KEYS)}")
    tokens = data.get("tokens", {})
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        raise ModelLoadError(f"{f}: 'tokens' must map roles to token strings")
    block = data.get("block_size")
    if block is not None and (not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 512):
        raise ModelLoadError(f"{f}: 'block_size' must be an integer in 1..512, got {block!r}")
    dtype = data.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ModelLoadError(f"{f}: unsupported dtype {dtype!r} (supported: float32, bfloat16, float16)")
    quantize = data.get("quantize")
    if quantize is not None and quantize not in ("none", "int8"):
        raise ModelLoadError(f"{f}: unsupported quantize option {quantize!r} (supported: none, int8)")
    return {"tokens": tokens, "kind": data.get("kind"), "shifted_logits": data.get("shifted_logits"),
            "block_size": block, "dtype": getattr(torch, DTYPES[dtype]) if dtype else None,
            "quantize": quantize}
