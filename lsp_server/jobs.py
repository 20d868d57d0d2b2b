"""The pieces of the jobs behind completion and "Repair this block", free of LSP.

Cutting a document around the cursor or a block (`context_text`, `context_window`),
completion modes and trimming, whole-line spans, and the syntax error a block holds
(`broken_block`). `lsp_server.service.Service` runs the jobs with them; the server, the
`complete`/`repair` CLI and `check` call the service.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lsp_server.blocks import PYTHON, Block, syntax_errors
from lsp_server.positions import LineIndex
from lsp_server.repair import Broken

if TYPE_CHECKING:  # the engine imports torch: the server loads it in the background
    from diffusion_core.config import SamplerConfig
    from diffusion_core.engine import Engine

SINGLE = "single"
MULTI = "multi"
_OPENERS = (":", "(", "[", "{")
_WORD_TAIL = re.compile(r"[A-Za-z0-9_]*$")


# -- context text -----------------------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` with lone surrogates (which JSON can carry but the tokenizer and tree-sitter
    reject) replaced by U+FFFD: same length, so every offset still holds."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


_MAX_TOKEN_CHARS: dict[int, int] = {}


def _max_token_chars(engine: Engine) -> int:
    """The longest vocabulary entry in bytes (>= characters): no token covers more text."""
    key = id(engine.tokenizer)
    if key not in _MAX_TOKEN_CHARS:
        vocab = engine.tokenizer.tok.get_vocab()  # byte-level: one vocab char per byte
        _MAX_TOKEN_CHARS[key] = max(1, max((len(s) for s in vocab), default=1))
    return _MAX_TOKEN_CHARS[key]


# Characters per token assumed for the first cut of a document: generous (the project's
# own source averages 3.1 with the shipped tokenizer; the cut keeps one to two times this
# many characters a window token); a cut that turns out too short for the window is redone
# with the longest token (`_max_token_chars`, 78 characters).
TYPICAL_TOKEN_CHARS = 6


def _cuts(engine: Engine, block_size: int | None, chars: int | None = None) -> tuple[int, int]:
    """Characters of prefix and of suffix that fill the engine's windows at `chars`
    characters a token (None: surely, at the longest token's length)."""
    w, n = engine.window, chars or _max_token_chars(engine)
    b = block_size or engine.sampler.block_size
    return (w.max_prefix + b) * n, (w.max_suffix + b) * n


def _prefix_cut(text: str, start: int, k: int) -> int:
    lo = 0
    if start > 2 * k:
        grid = (start - k) // k * k
        nl = text.rfind("\n", max(0, grid - k), grid)
        lo = nl + 1 if nl >= 0 else grid
    return lo


def _suffix_cut(text: str, end: int, k: int) -> int:
    return (end + 2 * k) // k * k if len(text) - end > 2 * k else len(text)


def context_text(
    engine: Engine, text: str, start: int, end: int, block_size: int | None = None
) -> tuple[str, str]:
    """text[:start] and text[end:], cut well outside the model's context window.

    The engine keeps only the last `max_prefix` tokens of the prefix and the first
    `max_suffix` of the suffix, but tokenizing a 5 MB file to find them took seconds per
    request. A prefix of K = (max_prefix + block) * `TYPICAL_TOKEN_CHARS` characters
    fills the window unless the code is unusually dense: then (when its tokens fall
    short) K is computed from the longest token, which surely fills it. The cut moves on a
    grid of K characters (and starts a line) so that it stays put while the user types,
    keeping the prefix window's block alignment, and with it the KV cache, stable. The
    suffix likewise. (The sure bound alone tokenized 45k characters a side per keystroke
    on a 2,000-line file: 90 ms of a 176 ms completion.)
    """
    tok = engine.tokenizer
    prefix, suffix, _, _ = _cut(engine, text, start, end, block_size, tok.encode, tok.encode,
                                always=False)
    return prefix, suffix


def infill_text(
    engine: Engine, text: str, start: int, end: int, sampler: SamplerConfig
) -> tuple[str, str, list[int]]:
    """`context_text`'s cut and the engine's context ids of it (`Engine.infill`'s
    `context_ids`), each side tokenized once: the cut is checked on the very tokens the
    model is conditioned on, the token-healed prefix (4 tokenizer passes a keystroke were
    ~20 ms of a ~140 ms completion)."""
    tok, b = engine.tokenizer, sampler.block_size
    prefix, suffix, pre, suf = _cut(
        engine, text, start, end, b,
        lambda p: tok.encode(engine.healing(p, sampler).prefix), tok.encode, always=True)
    return prefix, suffix, engine.context_ids(pre, suf, b)


def _cut(engine: Engine, text: str, start: int, end: int, block_size: int | None,
         encode_prefix, encode_suffix, always: bool) -> tuple[str, str, list[int], list[int]]:
    """(prefix, suffix, their ids): the cut `context_text` describes; a side that was not
    cut is tokenized only if `always` (else its ids are [])."""
    b = block_size or engine.sampler.block_size
    w = engine.window
    (p_fast, s_fast), (p_safe, s_safe) = _cuts(engine, b, TYPICAL_TOKEN_CHARS), _cuts(engine, b)
    lo = _prefix_cut(text, start, p_fast)
    pre = encode_prefix(text[lo:start]) if lo > 0 or always else []
    if lo > 0 and len(pre) < w.max_prefix + b:
        lo = _prefix_cut(text, start, p_safe)
        pre = encode_prefix(text[lo:start])
    hi = _suffix_cut(text, end, s_fast)
    suf = encode_suffix(text[end:hi]) if hi < len(text) or always else []
    if hi < len(text) and len(suf) < w.max_suffix + b:
        hi = _suffix_cut(text, end, s_safe)
        suf = encode_suffix(text[end:hi])
    return text[lo:start], text[end:hi], pre, suf


def context_window(
    engine: Engine, prefix: str, suffix: str, block_size: int | None = None
) -> tuple[str, str]:
    """`prefix` and `suffix` cut like `context_text` cuts a document (for a repair, where no
    cache depends on where the cut falls)."""
    k_pre, k_suf = _cuts(engine, block_size)
    if len(prefix) > 2 * k_pre:
        nl = prefix.rfind("\n", 0, len(prefix) - k_pre)
        prefix = prefix[nl + 1 if nl >= 0 else len(prefix) - k_pre :]
    return prefix, suffix[: 2 * k_suf]


# -- completion -------------------------------------------------------------------------
def completion_mode(text: str, offset: int) -> str:
    """MULTI on an empty line or at the end of a line opening a block (`:`, `(`...), else SINGLE."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    before = text[line_start:offset]
    after = text[offset : len(text) if line_end < 0 else line_end].strip()
    if after:
        return SINGLE
    if not before.strip() or before.rstrip().endswith(_OPENERS):
        return MULTI
    return SINGLE


def word_before(text: str, offset: int) -> str:
    """The identifier characters right before `offset` (what clients filter items with)."""
    line_start = text.rfind("\n", 0, offset) + 1
    m = _WORD_TAIL.search(text, line_start, offset)
    return m.group(0) if m else ""


def _indent(s: str) -> int:
    return len(s) - len(s.lstrip(" \t"))


def trim_completion(raw: str, mode: str, text: str, offset: int) -> str:
    """Cut a model output down to what is worth showing at `offset`."""
    line_end = text.find("\n", offset)
    rest = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")
    if mode == SINGLE:
        out = raw.split("\n", 1)[0].rstrip("\r")
        tail = rest.strip()
        if tail and out.rstrip().endswith(tail):  # the model retyped what follows the cursor
            out = out.rstrip()[: -len(tail)]
        return out.rstrip() if not rest else out
    # MULTI: stop where the code dedents out of the block being written
    line_start = text.rfind("\n", 0, offset) + 1
    before = text[line_start:offset]
    base = _indent(before) if not before.strip() else _indent(before) + 1
    lines = raw.split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip() and _indent(line) < base and len(kept) > 1:
            break
        kept.append(line)
    return "\n".join(kept).rstrip()


# -- repair -----------------------------------------------------------------------------
def line_span(text: str, start_line: int, end_line: int,
              index: LineIndex | None = None) -> tuple[int, int]:
    """Offsets [start, end) of whole lines start_line..end_line (inclusive, 0-based),
    terminator of the last line included. `index`: the text's line table, when the caller
    has one (building it reads the whole text)."""
    index = index or LineIndex(text)
    n = index.line_count
    start_line = max(0, min(start_line, n - 1))
    end_line = max(start_line, min(end_line, n - 1))
    start = index.starts[start_line]
    end = index.starts[end_line + 1] if end_line + 1 < n else len(text)
    return start, end


def block_spans(text: str, blocks: list[Block]) -> list[tuple[int, int]]:
    """`line_span` of each block, from one line table (a 2,000-line document has ~300
    blocks: one table per block made every diagnostics pass cost ~1 s)."""
    index = LineIndex(text)
    return [line_span(text, b.start_line, b.end_line, index) for b in blocks]


def block_has_error(text: str, block: Block, language: str = PYTHON) -> bool:
    text = clean(text)
    return any(a <= block.end_line and b >= block.start_line for a, b in syntax_errors(text, language))


def broken_block(text: str, start: int, end: int) -> Broken | None:
    """For a Python text that does not parse: the error of block [start, end) with the
    other broken blocks stubbed (as block 0 of the splice), or None when [start, end) is
    not what breaks it."""
    from lsp_server.blocks import find_blocks
    from lsp_server.syntax import BlockSplice, locate, python_error

    if python_error(text) is None:
        return None
    blocks = find_blocks(text, PYTHON)
    spans = block_spans(text, blocks)
    _, located = locate(text, blocks, spans)
    others = sorted({spans[loc.block] for loc in located
                     if loc.block >= 0 and (spans[loc.block][1] <= start or spans[loc.block][0] >= end)})
    splice = BlockSplice(text, [(start, end), *others], set(range(len(others) + 1)))
    own = splice.own_error(0)
    if own is None:
        return None
    return Broken(splice, 0, own[0], own[1])
