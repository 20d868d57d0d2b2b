"""Token healing: which piece of the prefix is rewritten, and the samplers honour it."""

import pytest
import torch

from diffusion_core.config import SamplerConfig
from diffusion_core.engine import Engine
from diffusion_core.healing import MAX_HEAL_CHARS, TokenHealer
from diffusion_core.testing import make_tiny_model_dir


@pytest.fixture(scope="module")
def healer(tok):
    return TokenHealer(tok)


@pytest.mark.parametrize(("prefix", "kept", "removed"), [
    ("    x = self.val", "    x = self.", "val"),  # mid-identifier
    ("def f():\n    retu", "def f():\n   ", " retu"),  # the word's leading space goes with it
    ("foo(a, b", "foo(a,", " b"),
    ("if x ==", "if x", " =="),  # punctuation runs are pieces too
    ("def f():\n    ", "def f():", "\n    "),  # indented new line: break and indentation
    ("def f():\n", "def f():", "\n"),  # a line start: the tokenizer joins "\n" and the indent
    ("x = 1\n\n", "x = 1", "\n\n"),
    ("a\r\n", "a", "\r\n"),
    ("", "", ""),
    ("s = 'café", "s = 'café", ""),  # non-ASCII pieces are left alone
    ("x = " + "a" * (MAX_HEAL_CHARS + 1), "x = " + "a" * (MAX_HEAL_CHARS + 1), ""),
])
def test_split_backs_up_to_the_last_pre_token(healer, prefix, kept, removed):
    h = healer.split(prefix)
    assert (h.prefix, h.removed) == (kept, removed)
    assert h.prefix + h.removed == prefix


def test_allowed_tokens_continue_the_removed_text(healer, tok):
    rest = " ret"
    allowed = healer.allowed(rest)  # (V,)
    assert allowed.dtype == torch.bool and allowed.numel() == tok.vocab_size
    pieces = [healer.pieces[i] for i in allowed.nonzero()[:, 0].tolist()]
    assert pieces and all(p.startswith(rest) or rest.startswith(p) for p in pieces)
    assert " " in pieces  # a token may spell only the start of the removed text
    assert not any(allowed[i] for i in tok.special_ids)
    whole = [p for p in healer.pieces if p.startswith(rest) or (p and rest.startswith(p))]
    assert len(whole) == len(pieces)  # and every such token is allowed


def test_allowed_is_exactly_the_pieces_that_continue_or_start_the_text(healer):
    rests = {"\n", "\n    ", "\n\n", " ", " r", " ret", " return", "(", "==", " ==", "x",
             "self", "zzzz", "~", "\r\n"}
    rests |= {p[:k] for p in healer.pieces[::97] if p.isascii() for k in range(1, len(p) + 1)}
    for rest in sorted(rests):
        want = [bool(p) and (p.startswith(rest) or rest.startswith(p)) for p in healer.pieces]
        assert healer.allowed(rest).tolist() == want, rest


@pytest.fixture(scope="module", params=["diffusion", "ar", "joint"])
def engine(request, tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp(request.param) / "model", kind=request.param)
    return Engine.from_path(path, sampler=SamplerConfig(block_size=8, max_tokens=12))


@pytest.mark.parametrize("prefix", ["def parse(self, val", "    return self.val", "def f():\n    "])
def test_healed_infill_rewrites_the_piece_and_answers_from_the_cursor(engine, prefix):
    h = engine.healing(prefix)
    assert h.removed
    out = engine.infill(prefix, "\n    return x\n")
    ids = engine.infill_context(h.prefix, "\n    return x\n", sampler=engine.sampler.replace(heal=False))
    assert out.context_ids == (ids[:-1] if _causal(engine) else ids)  # causal decoders feed the last one
    full = engine.tokenizer.decode(out.tokens)
    assert full.startswith(h.removed)  # the random model was held to the removed text
    assert out.text == full[len(h.removed):]
    assert len(out.confidence) == len(out.tokens) or _causal(engine)


def test_healing_off_keeps_the_cursor_split(engine):
    prefix, suffix = "    return self.val", "\n"
    raw = engine.sampler.replace(heal=False)
    out = engine.infill(prefix, suffix, sampler=raw)
    ids = engine.infill_context(prefix, suffix, sampler=raw)
    assert out.context_ids == (ids[:-1] if _causal(engine) else ids)
    assert out.text == engine.tokenizer.decode(out.tokens)
    assert engine.infill_context(prefix, suffix) != ids  # healing on cuts "val"


def _causal(engine) -> bool:
    return engine.model.cfg.has_causal_path


def _single_line_reference(engine, tokens: list[int], removed: str) -> list[int]:
    """`tokens` cut after the first one that writes a line break past the healed text."""
    text = ""
    for i, t in enumerate(tokens):
        text += engine.tokenizer.decode([t])
        if "\n" in text[len(removed) :]:
            return tokens[: i + 1]
    return tokens


@pytest.mark.parametrize("prefix", ["def f():\n", "def f():\n    ", "x = 1\n\n", "    y = 2\n"])
def test_a_line_start_is_healed_and_its_break_does_not_end_a_single_line(engine, prefix):
    h = engine.healing(prefix)
    assert h.removed.startswith("\n") and h.prefix + h.removed == prefix
    one = engine.infill(prefix, "", stop_at_newline=True)
    full = engine.tokenizer.decode(one.tokens)
    assert full.startswith(h.removed) and one.text == full[len(h.removed) :]
    before_last = engine.tokenizer.decode(one.tokens[:-1])[len(h.removed) :]
    assert "\n" not in before_last  # the stop came at the first break of the completion
    if _causal(engine):  # causal decoding: exactly the free-running output, cut after its line
        free = engine.infill(prefix, "", stop_at_newline=False)
        assert one.tokens == _single_line_reference(engine, free.tokens, h.removed)


def test_single_line_stop_skips_only_the_healed_tokens(tok):
    from diffusion_core.sampler import StopRule

    nl = next(iter(tok.newline_ids))
    rule = StopRule(tok.special.eoi, tok.newline_ids, stop_at_newline=True)
    assert rule.cut([nl, 5, nl, 6]) == ([nl], True)
    assert rule.cut([nl, 5, nl, 6], skip=1) == ([nl, 5, nl], True)
    assert rule.cut([nl, tok.special.eoi], skip=2) == ([nl], True)  # <eoi> always ends


def test_advance_says_whether_a_token_writes_a_break_of_its_own(healer):
    c = healer.constraint("\n")
    assert c.advance(healer.pieces.index("\n")) is True and not c.pending
    spill = healer.constraint("\n")
    two = next(i for i, p in enumerate(healer.pieces) if p.startswith("\n\n"))
    assert spill.advance(two) is False


def test_constraint_pads_to_the_model_vocabulary_and_gives_up_without_a_token(healer, tok):
    c = healer.constraint(" ret")
    mask = c.next_allowed(tok.vocab_size + 8, "cpu")  # models may pad their embedding rows
    assert mask.shape == (tok.vocab_size + 8,) and not bool(mask[tok.vocab_size:].any())
    c.advance(healer.pieces.index(" "))  # a token may spell only the start
    assert c.pending and c.rest == "ret"
    with pytest.raises(ValueError, match="does not continue"):
        c.advance(healer.pieces.index(" "))
    # a vocabulary that is not byte-level: no token spells " ret"
    word_piece = TokenHealer(tok, ["" if p.startswith(" ") or " ret".startswith(p) else p
                                   for p in healer.pieces])
    stuck = word_piece.constraint(" ret")
    assert stuck.next_allowed(tok.vocab_size, "cpu") is None and not stuck.pending
