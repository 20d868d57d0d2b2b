"""Byte-level BPE tokenizer for code, trained with the `tokenizers` library."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Order fixes the ids: pad=0, mask=1, ... (the model config repeats pad/mask ids).
SPECIAL_TOKENS = ("<pad>", "<mask>", "<eoi>", "<pre>", "<suf>", "<mid>", "<edit>", "<bos>", "<eos>")


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    mask: int
    eoi: int  # end of infill: fills the rest of a middle / canvas
    pre: int
    suf: int
    mid: int  # start of an infill middle
    edit: int  # start of a repair canvas
    bos: int
    eos: int


class CodeTokenizer:
    """Thin wrapper that knows the special tokens and which ids contain a newline."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        ids = {}
        for name in SPECIAL_TOKENS:
            i = tokenizer.token_to_id(name)
            if i is None:
                raise ValueError(f"tokenizer has no special token {name}")
            ids[name.strip("<>")] = i
        self.special = SpecialIds(**ids)
        self.vocab_size = tokenizer.get_vocab_size()
        self.special_ids = frozenset(ids.values())
        self.pieces = [self.tok.decode([i]) for i in range(self.vocab_size)]  # the text of each id
        self.newline_ids = frozenset(i for i, s in enumerate(self.pieces) if "\n" in s)

    @classmethod
    def load(cls, path: str | Path) -> CodeTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and each id's [start, end) code-point offsets in `text`."""
        e = self.tok.encode(text, add_special_tokens=False)
        return e.ids, e.offsets

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=False)


def train_tokenizer(texts: Iterator[str], vocab_size: int = 8192) -> CodeTokenizer:
    """Train a GPT-2 style byte-level BPE (no added prefix space, so indentation survives)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return CodeTokenizer(tok)
