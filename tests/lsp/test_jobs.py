"""The LSP-free helpers: minimal edits, block choice, settings, completion trimming, worker."""

import ast
import asyncio
import textwrap
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffusion_core.sampler import Cancelled
from lsp_server.blocks import enclosing_block, find_blocks, python_blocks, syntax_errors
from lsp_server.edits import Edit, apply_edits, minimal_edits
from lsp_server.jobs import MULTI, SINGLE, completion_mode, line_span, trim_completion, word_before
from lsp_server.settings import Settings, parse_settings
from lsp_server.worker import Worker

SRC = """import os
import sys

class A:
    def f(self, x):
        if x:
            return (x +
        y = 2

def g(:
    pass
x = 1
"""


# -- edits ------------------------------------------------------------------------------
def test_minimal_edits_is_small():
    old = "def f(a, b):\n    return a +\n\nprint(f(1, 2))\n"
    new = "def f(a, b):\n    return a + b\n\nprint(f(1, 2))\n"
    edits = minimal_edits(old, new)
    assert edits == [Edit(old.index("+") + 1, old.index("+") + 1, " b")]
    assert apply_edits(old, edits) == new
    assert minimal_edits(old, old) == []


def test_minimal_edits_never_splits_crlf():
    old = "a\r\nb\r\n"
    new = "a\rx\nb\r\n"
    edits = minimal_edits(old, new)
    assert apply_edits(old, edits) == new
    for e in edits:
        for off in (e.start, e.end):
            assert not (0 < off < len(old) and old[off - 1] == "\r" and old[off] == "\n")


LINES = st.lists(st.sampled_from(["a", "b", " ", "(", ")", "\n", "\r\n", "x = 1\n", "é", "\U0001f600"]),
                 max_size=25).map("".join)


@given(LINES, LINES)
def test_minimal_edits_round_trip(old, new):
    edits = minimal_edits(old, new)
    assert apply_edits(old, edits) == new
    assert all(a.end <= b.start for a, b in zip(edits, edits[1:], strict=False))


# -- blocks ----------------------------------------------------------------------------
def test_syntax_errors_and_enclosing_blocks():
    assert syntax_errors(SRC) == [(6, 6), (9, 9)]
    assert syntax_errors("x = 1\n") == []
    assert enclosing_block(SRC, 6).kind == "function_definition"
    b = enclosing_block(SRC, 6)
    assert (b.start_line, b.end_line) == (4, 7)
    # too big for `fits`: falls back to the innermost statement that fits
    small = enclosing_block(SRC, 6, fits=lambda b: b.n_lines <= 2)
    assert (small.start_line, small.end_line) == (5, 6)
    assert enclosing_block(SRC, 11).kind == "expression_statement"
    js = "function f() {\n  return 1;\n}\nlet x = 2;\n"
    jb = enclosing_block(js, 1, "javascript")
    assert (jb.start_line, jb.end_line) == (0, 2)


def test_blocks_at_a_line_are_the_containing_blocks_of_the_whole_walk():
    # `python_blocks(text, line)` descends only into the nodes that hold the line (so a code
    # action costs one parse, not a walk of every statement of a 5 MB file).
    nested = SRC + "if x:\n    for i in y:\n        z = i\n    else:\n        w = 1\n"
    everything = python_blocks(nested)
    for line in range(len(nested.splitlines())):
        assert python_blocks(nested, line) == [b for b in everything if b.contains(line)]
    assert [b.kind for b in python_blocks(nested, 16)] == ["if_statement", "for_statement", "expression_statement"]


def test_find_blocks_cover_code_without_overlap():
    blocks = find_blocks(SRC, max_chars=40)
    spans = [(b.start_line, b.end_line) for b in blocks]
    assert spans == sorted(spans)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    covered = {i for s, e in spans for i in range(s, e + 1)}
    code = {i for i, line in enumerate(SRC.splitlines()) if line.strip()}
    assert code <= covered
    assert spans[0] == (0, 1)  # the two imports are grouped
    assert [(b.start_line, b.end_line) for b in find_blocks(SRC)][1] == (3, 7)  # whole class


def test_a_broken_file_is_cut_at_whole_statements():
    # one dropped ':' makes tree-sitter lump the rest of the file into one ERROR node; its
    # pieces must still start at statements (not inside a bracket, not at an else), and
    # where they fit, be whole functions that parse once the error is fixed
    fn = ('def test_{i}():\n    x, y = symbols("x,y")\n    source = dump(x + y)\n    expected = (\n'
          '        "REAL*8 function test(x, y)\\n"\n        "implicit none\\n"\n        "end function\\n"\n'
          '    )\n    if source:\n        assert source == expected\n    else:\n        assert not expected\n\n\n')
    good = "".join(fn.format(i=i) for i in range(12))
    bad = good.replace("def test_5():", "def test_5()", 1)
    lines = good.splitlines(keepends=True)
    statements = {n.lineno - 1 for n in ast.walk(ast.parse(good)) if isinstance(n, ast.stmt)}
    for max_chars in (200, 1200):
        blocks = find_blocks(bad, max_chars=max_chars)
        assert any(b.has_error for b in blocks) and len(blocks) > 1
        assert {b.start_line for b in blocks} <= statements
        for b in blocks:
            ast.parse(textwrap.dedent("".join(lines[b.start_line : b.end_line + 1])))
    # a long literal with no statement inside is still cut (at line starts) to fit
    literal = "x = [\n" + "    1,\n" * 400 + "]\n"
    assert len(find_blocks(literal, max_chars=200)) > 1


# -- completion helpers -----------------------------------------------------------------
def test_completion_mode():
    assert completion_mode("def f(x):", 9) == MULTI
    assert completion_mode("x = 1\n    \n", 10) == MULTI  # empty (indented) line
    assert completion_mode("x = foo(a)", 8) == SINGLE  # mid-line
    assert completion_mode("x = foo", 7) == SINGLE


def test_trim_completion():
    text = "x = foo()\n"
    # single line: first line only, and drop a retyped ")" that already follows the cursor
    assert trim_completion("a, b)\nmore", SINGLE, text, 8) == "a, b"
    body = "def f(x):\n    \nz = 1\n"
    raw = "return x\n    y = 2\nz = 3"
    assert trim_completion(raw, MULTI, body, body.index("\n    \n") + 5) == "return x\n    y = 2"
    assert word_before("x = foo_ba", 10) == "foo_ba"
    assert word_before("x = (", 5) == ""


def test_line_span():
    text = "a\nbb\r\nccc"
    assert line_span(text, 1, 1) == (2, 6)
    assert line_span(text, 0, 9) == (0, len(text))


# -- settings --------------------------------------------------------------------------
def test_settings_validation():
    s, problems = parse_settings({"diffusionLsp": {"maxTokens": 12, "threshold": 1.0, "latencyBudgetMs": 80}})
    assert (s.max_tokens, s.threshold, s.latency_budget_ms) == (12, 1.0, 80) and problems == []
    _, problems = parse_settings({"latencyBudgetMs": -5})
    assert len(problems) == 1 and "latencyBudgetMs" in problems[0]
    s, problems = parse_settings({"maxTokens": -1, "bogus": 1, "device": "tpu", "blockSize": 8})
    assert s.max_tokens == Settings().max_tokens and s.device == "cpu" and s.block_size == 8
    assert len(problems) == 3
    assert any("bogus" in p for p in problems) and any("maxTokens" in p for p in problems)
    s2, problems = parse_settings("nope", s)
    assert s2 == s and problems


# -- worker ----------------------------------------------------------------------------
async def test_worker_supersedes_and_cancels():
    w = Worker()
    started, release = threading.Event(), threading.Event()

    def slow(token):
        started.set()
        while not token():
            release.wait(0.01)
        raise Cancelled()

    first = asyncio.ensure_future(w.run(slow, key=("complete", "u")))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    second = asyncio.ensure_future(w.run(lambda tok: "new", key=("complete", "u")))
    with pytest.raises(Cancelled):
        await first
    assert await second == "new"
    # awaiting task cancelled -> job token set
    started.clear()
    third = asyncio.ensure_future(w.run(slow, key=("complete", "v")))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert await w.run(lambda tok: 42) == 42  # the worker is free again
    w.shutdown()


# -- repair job and its LSP edit ---------------------------------------------------------
def test_run_repair_edits_rebuild_the_document(tiny_model):
    from diffusion_core.config import SamplerConfig
    from diffusion_core.engine import Engine
    from lsp_server.service import Service

    # a high repair threshold makes the random tiny model rewrite tokens: real edits
    engine = Engine.from_path(tiny_model, sampler=SamplerConfig(repair_threshold=0.99))
    text = "import os\n\ndef area(r):\n    return 3.14 * (r *\n\nprint(area(2))\n"
    res = Service(engine).repair(text, 2, 3)
    assert res.changed and (res.start_line, res.end_line) == (2, 3)
    assert text[res.start : res.end] == res.old_block == "def area(r):\n    return 3.14 * (r *\n"
    assert apply_edits(text, res.edits) == text[: res.start] + res.new_block + text[res.end :]
    assert all(res.start <= e.start <= e.end <= res.end for e in res.edits)
    assert res.new_block.endswith("\n")


def test_context_text_tokenizes_little_and_still_fills_the_window(tiny_model):
    from diffusion_core.engine import Engine
    from lsp_server.jobs import TYPICAL_TOKEN_CHARS, _cuts, context_text

    engine = Engine.from_path(tiny_model)
    w, b, tok = engine.window, 8, engine.tokenizer
    sure_pre, sure_suf = _cuts(engine, b)
    code = "".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n" for i in range(3000))
    at = len(code) // 2
    cuts = []
    for typed in ("", "r", "re", "ret"):  # typing at the cursor keeps the cut in place
        text = code[:at] + typed + code[at:]
        prefix, suffix = context_text(engine, text, at + len(typed), at + len(typed), b)
        cuts.append(len(text) - len(prefix) - len(typed) - len(suffix))
        assert len(prefix) <= 2 * _cuts(engine, b, TYPICAL_TOKEN_CHARS)[0] < sure_pre
        assert len(tok.encode(prefix)) >= w.max_prefix + b  # the window is still full
        assert tok.encode(suffix)[: w.max_suffix] == tok.encode(code[at:])[: w.max_suffix]
    assert len(set(cuts)) == 1
    # code whose tokens are all long: the typical cut falls short, the sure one is used
    vocab = tok.tok.get_vocab()
    piece = tok.decode([vocab[max(vocab, key=len)]])  # the longest token's text
    dense = "x = 1" + piece * (4 * sure_pre // len(piece))
    assert len(tok.encode(dense[-1000:])) * TYPICAL_TOKEN_CHARS < 1000
    prefix, _ = context_text(engine, dense + "\n", len(dense), len(dense), b)
    assert len(prefix) > 2 * _cuts(engine, b, TYPICAL_TOKEN_CHARS)[0]
    assert len(tok.encode(prefix)) >= w.max_prefix + b


def test_a_completion_tokenizes_each_side_of_the_cursor_once(tiny_model, monkeypatch):
    from diffusion_core.engine import Engine
    from lsp_server.jobs import context_text, infill_text
    from lsp_server.service import Service

    engine = Engine.from_path(tiny_model)
    sc = engine.sampler
    code = "".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n" for i in range(3000))
    at = len(code) // 2 + 7
    prefix, suffix, ids = infill_text(engine, code, at, at, sc)
    assert (prefix, suffix) == context_text(engine, code, at, at, sc.block_size)
    assert ids == engine.infill_context(prefix, suffix, sc.block_size, sc)
    calls = []
    real = engine.tokenizer.encode
    monkeypatch.setattr(engine.tokenizer, "encode", lambda s: calls.append(len(s)) or real(s))
    out = Service(engine).complete(code, at, max_tokens=2)
    assert len(calls) <= 3  # prefix, suffix (and the answer's own text at most)
    assert out.raw == engine.infill(prefix, suffix, max_tokens=2, context_ids=ids).text


def test_workspace_edit_uses_the_negotiated_encoding():
    from lsprotocol import types as t

    from lsp_server.server import build_server
    from lsp_server.session import Session
    from tests.lsp.conftest import capabilities

    server = build_server()
    text = "s = '\U0001f600'\nx = 1\n"
    snap = server.docs.open("file:///a.py", text, 3, "python")
    start = text.index("'") + 3  # after the closing quote
    for enc, col in (("utf-16", 8), ("utf-8", 10), ("utf-32", 7)):
        server.session = Session.from_client(capabilities(), enc)
        edit = server.workspace_edit(snap, [Edit(start, start, " + s")])
        (doc_edit,) = edit.document_changes
        assert doc_edit.text_document.version == 3
        (te,) = doc_edit.edits
        assert te.range.start == t.Position(line=0, character=col) == te.range.end
    server.worker.shutdown()
