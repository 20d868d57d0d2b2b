"""Syntax errors are always findings, and a repair is offered only when the file parses
with it (issue 20, items 1 and 2)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from diffusion_core.testing import make_tiny_model_dir
from lsp_server import repair_edits, syntax_repair
from lsp_server.check.analyze import check_text
from lsp_server.syntax import BlockSplice, offset_at, python_error, python_parses
from lsp_server.syntax_repair import Candidate, choose, verified_repair
from tests.check.conftest import check
from tests.check.fakes import PlantedFactory, PlantedRepairer
from tests.check.sarif_check import validate

BAD = "def f(x)\n    return x + 1\n"
NO_PLANTS = PlantedFactory(plants=())
COLON = PlantedFactory(plants=(("def f(x)\n", "def f(x):\n", 0.8),))
NOT_A_FIX = PlantedFactory(plants=(("def f(x)\n", "def f(x) =\n", 0.99),))


def _bad(tmp_path: Path) -> Path:
    (tmp_path / "bad.py").write_text(BAD)
    return tmp_path


@pytest.mark.parametrize("factory", [NO_PLANTS, NOT_A_FIX], ids=["no-proposal", "bad-proposal"])
def test_unrepaired_syntax_error_is_a_finding_in_every_format(tmp_path, factory):
    root = _bad(tmp_path)
    doc = check(root, "--format", "json", factory=factory)
    assert doc.code == 1, doc.err
    (f,) = doc.json["findings"]
    assert (f["rule_id"], f["path"], f["line"], f["column"]) == ("DL001", "bad.py", 1, 9)
    assert f["message"].startswith("syntax error: expected ':'")
    assert f["replacement"] is None and f["suggestion"] is None  # nothing that does not parse

    text = check(root, factory=factory)
    assert text.code == 1
    assert text.out.startswith("bad.py:1:9: DL001 syntax-error syntax error: expected ':'")

    jl = check(root, "--format", "jsonl", factory=factory)
    assert jl.code == 1
    (row,) = [json.loads(x) for x in jl.out.splitlines()]
    assert (row["type"], row["rule_id"], row["line"]) == ("finding", "DL001", 1)

    gh = check(root, "--format", "github", factory=factory)
    assert gh.code == 1
    assert gh.out.startswith("::error file=bad.py,line=1,endLine=1,col=9,endColumn=9,title=DL001 syntax-error::")

    sarif = check(root, "--format", "sarif", factory=factory)
    assert sarif.code == 1
    log = json.loads(sarif.out)
    validate(log)
    (res,) = log["runs"][0]["results"]
    assert res["ruleId"] == "DL001" and res["level"] == "error"
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    assert "fixes" not in res

    fix = check(root, "--fix", factory=factory)
    assert fix.code == 1  # the finding is left: nothing to apply
    assert (root / "bad.py").read_text() == BAD


def test_repaired_syntax_error_carries_its_fix_in_every_format(tmp_path):
    root = _bad(tmp_path)
    f = check(root, "--format", "json", factory=COLON).json["findings"][0]
    assert (f["line"], f["column"]) == (1, 9)
    assert f["suggestion"] == {"line": 1, "column": 9, "end_line": 1, "end_column": 9,
                               "original": "", "replacement": ":"}
    assert "fix: insert ':'" in f["message"]
    text = check(root, factory=COLON).out
    assert "    +def f(x):\n" in text  # the suggestion as a diff
    gh = check(root, "--format", "github", factory=COLON).out
    assert "%0Asuggested fix at 1:9-1:9: replace '' with ':'" in gh
    log = json.loads(check(root, "--format", "sarif", factory=COLON).out)
    validate(log)
    (res,) = log["runs"][0]["results"]
    (rep,) = res["fixes"][0]["artifactChanges"][0]["replacements"]
    assert rep["deletedRegion"] == {"startLine": 1, "startColumn": 9, "endLine": 1, "endColumn": 9}
    assert rep["insertedContent"]["text"] == ":"
    run = check(root, "--fix", factory=COLON)
    assert run.code == 0, run.err
    assert (root / "bad.py").read_text() == "def f(x):\n    return x + 1\n"


def test_every_broken_block_is_reported_and_an_error_outside_blocks_too():
    text = "def f(x)\n    return x\n\n\ndef g(y):\n    return (y\n\n\nz = 1\n"
    out = check_text(text, "t.py", "python", PlantedRepairer(plants=()), 0.9)
    assert [(f.rule_id, f.line) for f in out.findings] == [("DL001", 1), ("DL001", 6)]
    assert out.unrepaired_syntax_errors == 2
    # a lone closing bracket at the end: still exactly one finding at CPython's place
    out = check_text("x = 1\n)\n", "t.py", "python", PlantedRepairer(plants=()), 0.9)
    assert [(f.rule_id, f.line, f.column) for f in out.findings] == [("DL001", 2, 1)]


def test_a_stub_takes_the_body_the_block_finder_cut_off():
    """`def f()` without its colon and its body in two blocks: stubbing the header must
    not turn the body into an error of its own."""
    text = "@dec\ndef f()\n    # a comment\n\n    return 1\n"
    spans = [(0, 30), (30, len(text))]
    sp = BlockSplice(text, spans, {0})
    assert sp.own_error(1) is None  # with the header stubbed, the body parses
    assert sp.validator(0)("@dec\ndef f():\n    # a comment\n")


def test_only_cpython_blames_blocks_one_missing_colon_is_one_finding_with_its_fix():
    """argparse.py (the running Python's own) with one colon dropped: tree-sitter's
    recovery flags blocks 460+ lines further down; blaming (and stubbing) those gave 11
    findings, none with a fix. CPython's error alone: one finding, and the planted fix
    (the colon back) parses with nothing else stubbed."""
    import argparse

    src = Path(argparse.__file__).read_text(encoding="utf-8")
    at = src.index(":", src.index("    def format_help(self):"))
    text = src[:at] + src[at + 1 :]
    line = src.count("\n", 0, at) + 1
    fix = PlantedRepairer(plants=(("def format_help(self)\n", "def format_help(self):\n", 0.99),))
    out = check_text(text, "argparse.py", "python", fix, 0.9)
    dl001 = [f for f in out.findings if f.rule_id == "DL001"]
    assert [(f.line, f.has_fix) for f in dl001] == [(line, True)]
    two = text.replace("def _dedent(self):", "def _dedent(self)", 1)  # a second, real error
    out = check_text(two, "argparse.py", "python", PlantedRepairer(plants=()), 0.9)
    assert len([f for f in out.findings if f.rule_id == "DL001"]) == 2


def test_python_error_columns_count_code_points():
    p = python_error('é = "é" +\n')
    assert (p.line, p.column) == (0, 9) and p.message == "invalid syntax"
    assert python_error("x = 1\n") is None


def test_splice_judges_one_block_with_the_others_stubbed():
    text = "def f(x)\n    return x\n\ndef g(:\n    pass\n"
    spans = [(0, 22), (22, len(text))]
    sp = BlockSplice(text, spans, {0, 1})
    assert sp.validator(0)("def f(x):\n    return x\n")
    assert not sp.validator(0)("def f(x)\n    return x\n")
    a, b, p = sp.own_error(1)
    assert spans[1][0] <= a <= b < spans[1][1] and text.count("\n", 0, a) == 3
    assert p.message
    assert sp.own_error(0)[2].message == "expected ':'"


def test_choose_smallest_edit_among_the_most_likely():
    a = Candidate("a", "insert", 1, score=-10.0)
    b = Candidate("b", "model", 9, score=-9.5)  # best score, bigger edit
    c = Candidate("c", "delete", 1, score=-30.0)  # small but unlikely
    chosen, conf = choose([a, b, c])
    assert chosen is a
    assert 0.0 < conf < 0.5
    chosen, _ = choose([a, b, c], margin=0.1)
    assert chosen is b


def test_a_token_deletion_pays_for_the_code_it_removes():
    """log p favours shorter texts: deleting a word of code (score -10) must not beat
    inserting the missing ',' (-12.5) just by being shorter."""
    class Scored:
        def score(self, cands):
            for c in cands:
                c.score = {"delete": -10.0, "insert": -12.5}[c.source]

    cands = [Candidate("f(a b)", "delete", 3, at=4), Candidate("f(a, b, c)", "insert", 1, at=3)]
    res = syntax_repair.VerifiedRepair(None)
    syntax_repair._rank(Scored(), cands, [(3, 4)], res)
    assert res.source == "insert"
    assert [c.score for c in res.ranked] == [-12.5, -10.0 - 3 * syntax_repair.DELETE_COST]


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from diffusion_core.engine import Engine

    return Engine.from_path(make_tiny_model_dir(tmp_path_factory.mktemp("m") / "tiny"))


def _error_at(block: str):
    sp = BlockSplice(block, [(0, len(block))], {0})

    def error_at(candidate: str):
        p = python_error(sp.assemble(0, candidate))
        return None if p is None else offset_at(candidate, p.line, p.column)

    return error_at


def test_verified_repair_offers_only_parsing_candidates(tiny_engine):
    res = verified_repair(tiny_engine, "", BAD, "x = f(1)\n", _error_at(BAD), [(8, 8)])
    assert res.tried > 0
    assert all(python_parses(c.text) for c in res.ranked)
    if res.text is not None:
        ast.parse(res.text)


def test_verified_repair_model_fills_the_slot_and_the_parser_filters(tiny_engine, monkeypatch):
    """The slot predictions are planted (a random tiny model knows no Python): the likeliest
    slot fillers that do not parse are dropped, and the one that parses is chosen."""
    tok = tiny_engine.tokenizer
    fillers = [t for t in (tok.encode("("), tok.encode("="), tok.encode(":")) if len(t) == 1]
    assert len(fillers) == 3

    def planted(model, cache, canvases, slots, **kw):
        return [[(f[0], -0.1 * i) for i, f in enumerate(fillers)] for _ in canvases]

    monkeypatch.setattr(syntax_repair, "slot_predictions", planted)
    res = verified_repair(tiny_engine, "", BAD, "", _error_at(BAD), [(8, 8)],
                          use_model_proposal=False)
    assert res.text == "def f(x):\n    return x + 1\n"
    assert res.source == "insert"
    assert res.tried > res.parsed >= 1


def test_two_edits_when_one_is_not_enough(tiny_engine, monkeypatch):
    block = "def f(x\n    return x + 1\n"  # needs ")" and ":"
    tok = tiny_engine.tokenizer
    fillers = [tok.encode(")")[0], tok.encode(":")[0]]

    def planted(model, cache, canvases, slots, **kw):
        return [[(t, -0.1 * i) for i, t in enumerate(fillers)] for _ in canvases]

    monkeypatch.setattr(syntax_repair, "slot_predictions", planted)
    res = verified_repair(tiny_engine, "", block, "", _error_at(block), [(5, 7)],
                          use_model_proposal=False)
    assert res.text is not None and python_parses(res.text)
    assert res.source.count("+") == 1  # two single-token edits


@pytest.fixture(scope="module")
def tiny_joint_engine(tmp_path_factory):
    from diffusion_core.engine import Engine

    return Engine.from_path(make_tiny_model_dir(tmp_path_factory.mktemp("j") / "tiny", "joint"))


def test_causal_path_proposes_the_token_of_every_slot_in_one_pass(tiny_joint_engine, monkeypatch):
    """With a causal path, insertions and replacements also come from its next-token
    predictions (planted here: ':' first), one call for all slots; the parser filters."""
    tok = tiny_joint_engine.tokenizer
    colon = tok.encode(":")
    assert len(colon) == 1
    calls = []

    def planted(model, prompt, ids, slots, *, k, exclude=()):
        calls.append(len(slots))
        return [[(colon[0], -0.1)] for _ in slots]

    monkeypatch.setattr(syntax_repair, "causal_next_tokens", planted)
    monkeypatch.setattr(syntax_repair, "USE_SLOTS", False)  # the causal proposals alone
    res = verified_repair(tiny_joint_engine, "", BAD, "", _error_at(BAD), [(8, 8)],
                          use_model_proposal=False)
    assert calls and calls[0] > 1  # every slot from one call
    # the random network ranks them; the insertion is among the parsing candidates
    assert "def f(x):\n    return x + 1\n" in [c.text for c in res.ranked]
    assert res.text is not None and all(python_parses(c.text) for c in res.ranked)


def test_a_joint_model_proposes_from_its_causal_path_not_masked_slots(tiny_joint_engine, monkeypatch):
    called = []
    monkeypatch.setattr(syntax_repair, "slot_predictions",
                        lambda *a, **kw: called.append(1) or [])
    res = verified_repair(tiny_joint_engine, "", BAD, "", _error_at(BAD), [(8, 8)],
                          use_model_proposal=False)
    assert res.tried > 0 and not called  # a diffusion-only model uses them (tests above)


class _Pieces:
    def __init__(self, pieces):
        self.pieces = pieces


def test_near_words_respell_a_word_as_a_vocabulary_word_one_edit_away():
    tok = _Pieces([" return", "return", " retry", " x", "def", " if", " print"])
    text = "def f(x):\n    retrun x\n"
    got = {t for t, kind in repair_edits.near_words(tok, text, [(14, 20)]) if kind == "respell"}
    assert "def f(x):\n    return x\n" in got  # a transposition is one edit
    assert "def f(x):\n    retry x\n" not in got  # two edits away
    assert all(t.count("\n") == 2 for t in got)
    assert repair_edits.near_words(_Pieces([]), text, [(14, 20)]) == []


def test_a_repair_never_comments_code_out(tiny_joint_engine, monkeypatch):
    assert repair_edits.comments_out("x = (1\n", "x = #(1\n")
    assert not repair_edits.comments_out("x = (1  # one\n", "x = (1)  # one\n")
    block = "print(1))\n"
    assert _error_at(block)("print(1)#)\n") is None  # it would parse
    hash_id = tiny_joint_engine.tokenizer.encode("#")
    assert len(hash_id) == 1
    monkeypatch.setattr(syntax_repair, "causal_next_tokens",  # '#' first everywhere
                        lambda model, prompt, ids, slots, *, k, exclude=(): [[(hash_id[0], -0.1)] for _ in slots])
    monkeypatch.setattr(syntax_repair, "USE_SLOTS", False)
    res = verified_repair(tiny_joint_engine, "", block, "", _error_at(block), [(8, 9)],
                          use_model_proposal=False)
    assert res.ranked and all("#" not in c.text for c in res.ranked)


def test_char_edits_split_tokens_the_token_edits_cannot():
    text = "def f(x):\n    return (x))\n"
    err = text.index("))") + 1
    got = repair_edits.char_edits(text, [(err, err + 1)], {")", ":", "a"})
    texts = {t for t, _ in got}
    assert "def f(x):\n    return (x)\n" in texts  # one ')' of the '))' token deleted
    assert "def f(x):\n    return (x):)\n" in texts  # inserted inside a token
    assert not any("a" in t.replace("return", "") for t in texts)  # letters: respelling's job
    assert {k for _, k in got} == {"delete-char", "insert-char"}


def test_a_misspelt_keyword_is_repaired_by_respelling(tiny_joint_engine, monkeypatch):
    block = "def f(x):\n    retrun x\n"
    monkeypatch.setattr(syntax_repair, "causal_next_tokens",
                        lambda model, prompt, ids, slots, *, k, exclude=(): [[] for _ in slots])
    monkeypatch.setattr(syntax_repair, "USE_SLOTS", False)
    monkeypatch.setattr(tiny_joint_engine.tokenizer, "pieces",
                        list(tiny_joint_engine.tokenizer.pieces) + [" return"])
    repair_edits._vocabulary_index.cache_clear()
    try:
        res = verified_repair(tiny_joint_engine, "", block, "", _error_at(block), [(14, 20)],
                              use_model_proposal=False)
    finally:
        repair_edits._vocabulary_index.cache_clear()
    assert res.text == "def f(x):\n    return x\n"
    assert res.source == "respell"


def test_fixes_are_offered_only_when_together_they_make_the_file_parse():
    from lsp_server.check.analyze import LineTable, _fixes_that_parse_together

    text = "def f(x)\n    return x\n\n\ndef g(y):\n    return (y\n\n\nz = 1\n"
    plants = (("def f(x)\n", "def f(x):\n", 0.9), ("return (y\n", "return (y)\n", 0.9))
    out = check_text(text, "t.py", "python", PlantedRepairer(plants), 0.9)
    assert [f.replacement for f in out.findings] == [":", ")"]  # both fixed, together they parse
    assert out.unrepaired_syntax_errors == 0
    # the same two fixes on a file with a third error they do not touch: none is offered
    worse = text + "print((\n"
    kept, dropped = _fixes_that_parse_together(worse, LineTable(worse, "python"), out.findings)
    assert dropped == 2 and all(f.replacement is None for f in kept)
    assert all("no repair that parses" in f.message and f.start_offset == f.end_offset for f in kept)
    assert [(f.line, f.column) for f in kept] == [(f.line, f.column) for f in out.findings]
