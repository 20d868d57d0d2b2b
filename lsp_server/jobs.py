"""The jobs behind completion and "Repair this block", free of LSP.

A job takes a document text and string offsets, runs the engine (with the per-document
block KV cache for completions), and returns plain results: the completion text, or the
repaired block and the minimal edits (string offsets of the document) that produce it.
The server, the `complete`/`repair` CLI and the headless `check` mode all call these.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from diffusion_core.engine import MAX_REPAIR_TOKENS, Engine
from lsp_server.blocks import PYTHON, Block, enclosing_block, syntax_errors
from lsp_server.edits import Edit, minimal_edits, shift
from lsp_server.positions import LineIndex

CancelFn = Callable[[], bool]
SINGLE = "single"
MULTI = "multi"
_OPENERS = (":", "(", "[", "{")
_WORD_TAIL = re.compile(r"[A-Za-z0-9_]*$")


@dataclass
class CompletionResult:
    text: str  # what to insert at the cursor ("" if nothing useful)
    mode: str  # SINGLE or MULTI
    raw: str  # the model output before trimming
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"text": self.text, "mode": self.mode, "raw": self.raw, "timings": self.timings}


@dataclass
class RepairResult:
    start: int  # document offsets of the repaired block [start, end)
    end: int
    start_line: int
    end_line: int
    old_block: str
    new_block: str
    edits: list[Edit]  # document offsets; empty if the model changed nothing
    confidence: float
    timings: dict = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.edits)

    def to_json(self) -> dict:
        return {
            "start_line": self.start_line, "end_line": self.end_line,
            "changed": self.changed, "old_block": self.old_block, "new_block": self.new_block,
            "edits": [e.to_dict() for e in self.edits], "confidence": self.confidence,
            "timings": self.timings,
        }


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


def context_text(engine: Engine, text: str, start: int, end: int) -> tuple[str, str]:
    """text[:start] and text[end:], cut well outside the model's context window.

    The engine keeps only the last `max_prefix` tokens of the prefix and the first
    `max_suffix` of the suffix, but tokenizing a 5 MB file to find them took seconds per
    request. A token covers at most `_max_token_chars` characters, so a prefix of
    K = (max_prefix + block) * that many characters still fills the window. The cut moves
    on a grid of K characters (and starts a line) so that it stays put while the user
    types, keeping the prefix window's block alignment, and with it the KV cache, stable.
    """
    w, b, n = engine.window, engine.sampler.block_size, _max_token_chars(engine)
    k_pre, k_suf = (w.max_prefix + b) * n, (w.max_suffix + b) * n
    lo = 0
    if start > 2 * k_pre:
        grid = (start - k_pre) // k_pre * k_pre
        nl = text.rfind("\n", max(0, grid - k_pre), grid)
        lo = nl + 1 if nl >= 0 else grid
    hi = len(text)
    if hi - end > 2 * k_suf:
        hi = (end + 2 * k_suf) // k_suf * k_suf
    return text[lo:start], text[end:hi]


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


def run_completion(
    engine: Engine,
    text: str,
    offset: int,
    *,
    store=None,
    uri: str | None = None,
    cancel: CancelFn | None = None,
    max_tokens: int | None = None,
    mode: str | None = None,
) -> CompletionResult:
    """Infill at `offset`; with `store` (a cache.DocumentCacheStore) and `uri`, reuse and
    update the document's block KV cache. Raises diffusion_core.sampler.Cancelled."""
    t0 = time.perf_counter()
    text = clean(text)
    mode = mode or completion_mode(text, offset)
    prefix, suffix = context_text(engine, text, offset, offset)
    b = engine.sampler.block_size
    cache = cache_ids = ids = None
    if store is not None and uri is not None:
        ids = engine.infill_context(prefix, suffix)
        cache, cache_ids = store.acquire(uri, ids, b)
    out = engine.infill(
        prefix, suffix, cache=cache, cache_ids=cache_ids, cancel=cancel,
        max_tokens=max_tokens, stop_at_newline=(mode == SINGLE), context_ids=ids,
    )
    if store is not None and uri is not None:
        store.update(uri, out.context_ids, out.context_cache, b, out.encoded_tokens)
    completion = trim_completion(out.text, mode, text, offset)
    timings = {
        "total_ms": round((time.perf_counter() - t0) * 1000, 2),
        "engine_ms": round(out.total_ms, 2),
        "encode_ms": round(out.stats.encode_ms, 2),
        "steps": out.stats.steps,
        "tokens": len(out.tokens),
        "out_of_time": out.stats.out_of_time,
        "reused_tokens": out.reused_tokens,
        "encoded_tokens": out.encoded_tokens,
    }
    return CompletionResult(completion, mode, out.text, timings)


# -- repair -----------------------------------------------------------------------------
def line_span(text: str, start_line: int, end_line: int) -> tuple[int, int]:
    """Offsets [start, end) of whole lines start_line..end_line (inclusive, 0-based),
    terminator of the last line included."""
    index = LineIndex(text)
    n = index.line_count
    start_line = max(0, min(start_line, n - 1))
    end_line = max(start_line, min(end_line, n - 1))
    start = index.starts[start_line]
    end = index.starts[end_line + 1] if end_line + 1 < n else len(text)
    return start, end


def token_fits(engine: Engine, text: str, limit: int = MAX_REPAIR_TOKENS) -> Callable[[Block], bool]:
    """A `fits(block)` predicate: the block's lines tokenize to at most `limit` tokens."""

    def fits(b: Block) -> bool:
        s, e = line_span(text, b.start_line, b.end_line)
        return len(engine.tokenizer.encode(text[s:e])) <= limit

    return fits


def choose_repair_block(engine: Engine, text: str, line: int, language: str = PYTHON) -> Block:
    """The enclosing block of `line` that the model can repair in one job."""
    text = clean(text)
    return enclosing_block(text, line, language, fits=token_fits(engine, text))


def block_has_error(text: str, block: Block, language: str = PYTHON) -> bool:
    text = clean(text)
    return any(a <= block.end_line and b >= block.start_line for a, b in syntax_errors(text, language))


def _breaks_syntax(old: str, new: str) -> bool:
    import textwrap

    from lsp_server.syntax import python_parses

    return python_parses(textwrap.dedent(old)) and not python_parses(textwrap.dedent(new))


def _broken_splice(text: str, start: int, end: int):
    """For a Python text that does not parse: a splice whose block 0 is [start, end), with
    the other broken blocks stubbed, or None when [start, end) is not what breaks it."""
    from lsp_server.blocks import find_blocks
    from lsp_server.syntax import BlockSplice, locate, python_error

    if python_error(text) is None:
        return None
    blocks = find_blocks(text, PYTHON)
    spans = [line_span(text, b.start_line, b.end_line) for b in blocks]
    _, located = locate(text, blocks, spans)
    others = sorted({spans[loc.block] for loc in located
                     if loc.block >= 0 and (spans[loc.block][1] <= start or spans[loc.block][0] >= end)})
    splice = BlockSplice(text, [(start, end), *others], set(range(len(others) + 1)))
    if splice.own_error(0) is None:
        return None
    return splice


def _verified_block(engine: Engine, text: str, start: int, end: int, splice, cancel):
    """The block repaired by `syntax_repair.verified_repair` (the block itself when no
    candidate parses) and the confidence."""
    from lsp_server.syntax import offset_at, python_error
    from lsp_server.syntax_repair import verified_repair

    base = splice.offset_of(0)

    def error_at(candidate: str) -> int | None:
        assembled = splice.assemble(0, candidate)
        p = python_error(assembled)
        return None if p is None else offset_at(assembled, p.line, p.column) - base

    a, b, _ = splice.own_error(0)
    block = text[start:end]
    prefix, suffix = context_text(engine, text, start, end)
    res = verified_repair(engine, prefix, block, suffix, error_at, [(a - start, b - start)],
                          cancel=cancel)
    if res.text is None or not splice.validator(0)(res.text):
        return block, 0.0
    return res.text, res.confidence


def run_repair(
    engine: Engine, text: str, start_line: int, end_line: int, *, cancel: CancelFn | None = None,
    language: str | None = None,
) -> RepairResult:
    """Repair lines start_line..end_line (inclusive, 0-based) given the rest of the file.

    For Python (`language`) lines that hold a syntax error, the repair is the parser-verified
    one (`lsp_server.syntax_repair`): no edit at all rather than one that does not parse.
    Raises ValueError if the block is longer than the model's repair limit and
    diffusion_core.sampler.Cancelled when `cancel()` turns true.
    """
    t0 = time.perf_counter()
    text = clean(text)
    start, end = line_span(text, start_line, end_line)
    block = text[start:end]
    splice = _broken_splice(text, start, end) if language == PYTHON else None
    if splice is not None:
        if len(engine.tokenizer.encode(block)) > MAX_REPAIR_TOKENS:
            raise ValueError(f"block is longer than the repair limit of {MAX_REPAIR_TOKENS} tokens")
        new_block, confidence = _verified_block(engine, text, start, end, splice, cancel)
        steps, engine_ms = 0, (time.perf_counter() - t0) * 1000
    else:
        prefix, suffix = context_text(engine, text, start, end)
        out = engine.repair(prefix, block, suffix, cancel=cancel)
        new_block, confidence, steps = out.text, out.confidence, out.stats.steps
        engine_ms = out.total_ms
        if language == PYTHON and _breaks_syntax(block, new_block):
            new_block, confidence = block, 0.0  # never offer an edit that stops it parsing
    # Keep the block's own line ending: the model's canvas may drop or add the last one.
    ending = block[len(block.rstrip("\r\n")) :]
    new_block = new_block.rstrip("\r\n") + ending if ending else new_block
    edits = shift(minimal_edits(block, new_block), start)
    index = LineIndex(text)
    s_line = index.position(start)[0]
    e_line = index.position(start + len(block.rstrip("\r\n")))[0]
    timings = {
        "total_ms": round((time.perf_counter() - t0) * 1000, 2),
        "engine_ms": round(engine_ms, 2),
        "steps": steps,
        "verified": splice is not None,
    }
    return RepairResult(start, end, s_line, e_line, block, new_block, edits, confidence, timings)
