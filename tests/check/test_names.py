"""Rule DL003: misspelt names, found by `ast`, chosen by the model's ranking."""

from __future__ import annotations

import textwrap

import pytest

from lsp_server.blocks import PYTHON
from lsp_server.check.analyze import check_text
from lsp_server.check.fix import fixed_text
from lsp_server.check.names import edit_distance, misspelt_names
from tests.check.fakes import RankingRepairer

SRC = textwrap.dedent("""\
    import os


    def total(values):
        result = 0
        for v in vales:
            result += v
        return result + lenn(values)


    def other():
        return os.sep
""")


@pytest.mark.parametrize("a,b,d", [("vales", "values", 1), ("lenn", "len", 1), ("abc", "acb", 1),
                                   ("kitten", "sitting", 3), ("same", "same", 0)])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b, 5) == d
    assert edit_distance(a, b, d - 1) > d - 1 if d else True


def test_unbound_names_near_names_in_scope():
    uses = misspelt_names(SRC)
    assert [(u.name, SRC[u.start:u.end], u.candidates[0]) for u in uses] == [
        ("vales", "vales", "values"), ("lenn", "lenn", "len")]


@pytest.mark.parametrize("src", [
    "from os.path import *\nprint(jion)\n",  # star import: names unknown
    "def f(x):\n    return x +\n",  # does not parse
    "def f(values):\n    return values\n",  # everything bound
    "print(qzxwv)\n",  # unbound, but nothing near
    "def f(ab):\n    return ac\n",  # shorter than 3 characters is never reported
    "import enum\nvalues = 1\nenum.IntEnum._convert_('Values', __name__)\nprint(Values)\n",
])
def test_no_candidates(src):
    assert misspelt_names(src) == []


def test_offsets_are_code_points_after_non_ascii_and_odd_line_breaks():
    src = "s = 'héllo ∑'; value = 1\r\nprint(s, valeu)\x0c\n"
    (use,) = misspelt_names(src)
    assert src[use.start:use.end] == "valeu" and use.candidates[0] == "value"


def _check(repairer, text=SRC, threshold=0.9, **kw):
    return check_text(text, "t.py", PYTHON, repairer, 0.9, name_threshold=threshold, **kw)


def test_the_model_chooses_and_the_fix_restores_the_name():
    model = RankingRepairer(plants=(), preferred=(("values", 5.0), ("len(", 5.0)))
    out = _check(model)
    got = [(f.rule_id, f.original, f.replacement, f.line) for f in out.findings]
    assert got == [("DL003", "vales", "values", 6), ("DL003", "lenn", "len", 8)]
    assert "did you mean 'values'" in out.findings[0].message
    assert fixed_text(SRC, out.findings) == SRC.replace("vales", "values").replace("lenn", "len")


def test_a_name_the_model_prefers_as_written_is_no_finding():
    model = RankingRepairer(plants=(), preferred=(("vales", 5.0), ("lenn", 5.0)))
    assert _check(model).findings == []


def test_below_the_name_threshold_is_no_finding():
    # values +1 nat over vales and the two other candidates: p = e/(e + 3) = 0.48
    model = RankingRepairer(plants=(), preferred=(("values", 1.0),))
    assert [f for f in _check(model).findings if f.original == "vales"] == []
    assert [f.original for f in _check(model, threshold=0.45).findings] == ["vales"]


def test_only_changed_lines_are_looked_at():
    model = RankingRepairer(plants=(), preferred=(("values", 5.0), ("len(", 5.0)))
    out = _check(model, lines={11})  # only `other`
    assert out.findings == []


def test_a_repairer_without_rank_finds_no_names():
    from tests.check.fakes import PlantedRepairer

    assert _check(PlantedRepairer(plants=())).findings == []


def test_the_cheap_pass_runs_once_per_file_and_gates_the_full_repair():
    calls, scans = [], []
    model = RankingRepairer(plants=(("os.sep", "os.pathsep", 0.99),), calls=calls,
                            flag=("os.sep",), scans=scans)
    out = check_text(SRC, "t.py", PYTHON, model, 0.9)
    assert len(scans) == 1 and len(scans[0]) == out.blocks  # every fitting block, one call
    assert calls == [SRC[SRC.index("def other"):]]  # only the flagged block was repaired
    assert [(f.rule_id, f.original, f.replacement) for f in out.findings] == [("DL002", "", "path")]
    assert out.suspect_blocks == 1


@pytest.mark.parametrize("kind", ["joint", "diffusion"])
def test_the_engine_model_scans_ranks_and_checks(tmp_path, kind):
    """The real service model on a tiny random model: a causal whole-file scan (joint) or
    the per-block exact gate (diffusion), and the ranking, end to end through check."""
    from diffusion_core.engine import Engine
    from diffusion_core.testing import make_tiny_model_dir
    from lsp_server.service import Service

    model = Service(Engine.from_path(make_tiny_model_dir(tmp_path / kind, kind=kind))).model()
    spans = [(0, SRC.index("def total")), (SRC.index("def total"), len(SRC))]
    flags = model.suspects(SRC, spans, 0.5)
    assert len(flags) == 2 and all(isinstance(f, bool) for f in flags)
    if kind == "joint":
        assert model.suspects(SRC, spans, 0.0) == [True, True]  # level 0: every block
        assert model.suspects(SRC, spans, 1.0) == [False, False]  # nothing is that sure
    block = SRC[spans[1][0]:]
    scores = model.rank(SRC[: spans[1][0]], block, "", [block, block.replace("vales", "values")])
    assert len(scores) == 2 and all(s < 0 for s in scores)
    out = check_text(SRC, "t.py", PYTHON, model, 0.9, name_threshold=0.0)
    assert {f.rule_id for f in out.findings} <= {"DL002", "DL003"}
    # at name threshold 0 every unbound name gets the model's choice, when it is not the name
    assert all(f.replacement in ("values", "False", "vars", "len") for f in out.findings
               if f.rule_id == "DL003")
