"""Token healing: complete from the last clean token boundary of the prefix, not the cursor.

A completion is asked for wherever the cursor is, usually in the middle of a word: the
prefix `    x = self.val` ends with the token `val`, while the code the model learnt from
writes `self.value` as `.` `value`. Conditioned on a token boundary that the finished text
would not have, a model has to continue a word from an unusual split, and small models do
that badly. Token healing (as in Microsoft's `guidance` library) backs the prefix up to the
start of its last pre-token (the tokenizer's own split of words, numbers, punctuation and
spaces) and lets the model write that piece again, constrained to text that starts with it.

Which piece is removed: the last pre-token of the prefix (`val`, ` ret`, `(`, `==`, or a
whitespace run such as `\n` or `\n    ` when the cursor is at the start of a line), if it
is ASCII and short. Line starts matter most: the tokenizer writes a line break together
with the next line's indentation (`'\n       '`, then `' return'`), so a prefix that ends
with a bare `'\n'` is a split that finished code never has. Healing it too took the
HumanEval single-line pass@1 of the session-6 joint model from 0.5% to 3.5% (200 tasks,
docs/quality.md).

The sampler (`sampler.sample_blocks`, `sampler.sample_ar`, `speculative.sample_draft_verify`)
enforces the constraint: while the generated text does not yet cover the removed piece,
each step commits only the leftmost undecided position, restricted to tokens that continue
the piece (`HealingConstraint.next_allowed`). Line breaks inside the removed piece are the
prefix's, not the completion's: the single-line stop rule skips the tokens that only spell
them (`HealingConstraint.advance` says which; `sampler.StopRule.cut(skip=...)`). The caller
strips the piece from the decoded output.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from diffusion_core.tokenizer import CodeTokenizer

MAX_HEAL_CHARS = 32  # a longer last piece is left alone (no token is that long)


@dataclass(frozen=True)
class Healing:
    prefix: str  # the prefix the model is conditioned on
    removed: str  # text cut from its end; the output must start with it ("" = no healing)


class TokenHealer:
    """Splits prefixes and builds the allowed-token masks for one tokenizer."""

    def __init__(self, tokenizer: CodeTokenizer, pieces: list[str] | None = None) -> None:
        """`pieces`: the text of each id (default: the tokenizer's; special tokens spell
        nothing)."""
        self.tokenizer = tokenizer
        if pieces is None:
            pieces = ["" if i in tokenizer.special_ids else p for i, p in enumerate(tokenizer.pieces)]
        self.pieces = list(pieces)
        self._allowed: dict[str, torch.Tensor] = {}
        # the non-empty pieces sorted, for `allowed`: those that start with a text are one
        # run of this order (a scan of the vocabulary took ~8 ms a keystroke)
        order = sorted((p, i) for i, p in enumerate(self.pieces) if p)
        self._sorted = [p for p, _ in order]
        self._sorted_ids = torch.tensor([i for _, i in order], dtype=torch.long)
        self._by_piece: dict[str, list[int]] = {}
        for p, i in order:
            self._by_piece.setdefault(p, []).append(i)

    def split(self, prefix: str) -> Healing:
        tail = prefix[-2 * MAX_HEAL_CHARS :]
        pre = self.tokenizer.tok.pre_tokenizer.pre_tokenize_str(tail) if tail else []
        if not pre:
            return Healing(prefix, "")
        start, end = pre[-1][1]
        piece = tail[start:end]
        if end != len(tail) or not piece.isascii() or len(piece) > MAX_HEAL_CHARS:
            return Healing(prefix, "")
        return Healing(prefix[: len(prefix) - len(piece)], piece)

    def constraint(self, removed: str) -> HealingConstraint | None:
        return HealingConstraint(self, removed) if removed else None

    def allowed(self, rest: str) -> torch.Tensor:
        """(V,) bool: tokens whose text starts with `rest` or is a non-empty start of it."""
        mask = self._allowed.get(rest)
        if mask is None:
            mask = torch.zeros(len(self.pieces), dtype=torch.bool)
            if rest:
                lo = bisect.bisect_left(self._sorted, rest)
                upper = rest[:-1] + chr(ord(rest[-1]) + 1)  # rest is ASCII (`split`)
                hi = bisect.bisect_left(self._sorted, upper, lo)
                mask[self._sorted_ids[lo:hi]] = True  # pieces that start with rest
            for k in range(1, len(rest)):  # pieces that are a shorter start of it
                for i in self._by_piece.get(rest[:k], ()):
                    mask[i] = True
            if len(self._allowed) >= 256:  # one (V,) bool mask each
                self._allowed.clear()
            self._allowed[rest] = mask
        return mask


class HealingConstraint:
    """The removed piece that the first generated tokens must spell out; tracks progress."""

    def __init__(self, healer: TokenHealer, removed: str) -> None:
        self.healer = healer
        self.rest = removed  # what the generated text still has to start with

    @property
    def pending(self) -> bool:
        return bool(self.rest)

    def next_allowed(self, vocab_size: int, device) -> torch.Tensor | None:
        """(vocab_size,) bool mask for the next generated position, or None once the text is
        spelled out. A tokenizer with no token to continue it (not byte-level) ends the
        constraint: the output then does not start with the piece and the engine answers ""."""
        if not self.rest:
            return None
        mask = self.healer.allowed(self.rest)
        if not bool(mask.any()):
            self.rest = ""
            return None
        if mask.numel() != vocab_size:  # embedding rows past the tokenizer's vocabulary
            mask = torch.cat([mask, torch.zeros(max(0, vocab_size - mask.numel()), dtype=torch.bool)])[:vocab_size]
        return mask.to(device)

    def advance(self, token: int) -> bool:
        """Record `token` as the next generated one; True when every line break it writes
        belongs to the removed piece (the stop-at-newline rule must not count it)."""
        piece = self.healer.pieces[token]
        if not (piece.startswith(self.rest) or self.rest.startswith(piece)) or not piece:
            raise ValueError(f"token {token} ({piece!r}) does not continue the healed text {self.rest!r}")
        beyond = piece[len(self.rest) :]  # what the token writes past the removed piece
        self.rest = self.rest[len(piece) :] if len(piece) < len(self.rest) else ""
        return "\n" not in beyond
