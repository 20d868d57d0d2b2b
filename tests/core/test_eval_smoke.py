"""`diffusion-lsp eval` end to end on tiny models: report layout, the AR baseline in its own
process, and --merge of the two reports (the way the two cores of a laptop run them)."""

from __future__ import annotations

import json

import pytest

from diffusion_core.data import is_heldout
from diffusion_core.testing import make_tiny_model_dir
from dlsp_benchmarks import humaneval
from lsp_server.cli import main

FUNC = '''def f_{i}(values, limit={i}):
    """Keep the values under the limit."""
    out = []
    for v in values:
        if v < limit:
            out.append(v * {i})
    return out
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    src = d / "src"
    src.mkdir()
    heldout = 0
    i = 0
    while heldout < 3:  # enough files that the 2% held-out split (by content hash) is not empty
        text = FUNC.format(i=i) + "\n\n" + FUNC.format(i=i + 1)
        (src / f"m{i}.py").write_text(text)
        heldout += is_heldout(text, 0.02)
        i += 1
    return d, src, make_tiny_model_dir(d / "diffusion"), make_tiny_model_dir(d / "ar", kind="ar")


def _eval(src, model, *extra: str) -> int:
    n = "1" if (humaneval.eval_dir() / humaneval.FILES["single_line"]).exists() else "0"
    return main(["eval", "--model", str(model), "--heldout-dirs", str(src), "--single-line", n,
                 "--multi-line", "0", "--next-line", "3", "--mid-line", "4", "--repair", "2", "--check", "2",
                 "--check-clean-files", "1", "--dev-lines", "3", *extra])


def test_ar_alone_then_merged_beside_the_diffusion_model(setup):
    d, src, diffusion, ar = setup
    assert _eval(src, ar, "--json", str(d / "ar.json"), "--rerank", "2") == 0
    ar_report = json.loads((d / "ar.json").read_text())
    if "humaneval_single_line" in ar_report["models"]["ar"]:  # HumanEval data present
        single = ar_report["models"]["ar"]["humaneval_single_line"]
        assert single["rerank"] == 2
        assert len(single["passed_tasks"]) == round(single["pass@1"] * single["tasks"])
    assert list(ar_report["models"]) == ["ar"]
    assert "repair" not in ar_report["models"]["ar"]  # repair is a diffusion (edit-mode) job
    assert ar_report["models"]["ar"]["next_line"]["positions"] == 3
    mid = ar_report["models"]["ar"]["mid_line"]
    assert mid["positions"] == 4 and 0 <= mid["exact_match"] <= mid["useful"] + mid["empty"] <= 1
    # as the server shows it: cut at minProbability, a prefix of the whole suggestion
    assert mid["min_prob"] == 0.1 and mid["empty"] <= mid["shown_empty"] <= 1
    assert 0 <= mid["shown_exact_match"] <= mid["shown_useful"] + mid["shown_empty"] <= 1
    assert ar_report["sampler"]["token_healing"] is True
    dev = ar_report["models"]["ar"]["dev_lines"]  # HumanEval-shaped holes from held-out code
    assert dev["holes"] == 3 and dev["functions"] >= 1 and 0 <= dev["exact_match"] <= 1
    assert _eval(src, diffusion, "--merge", str(d / "ar.json"), "--json", str(d / "both.json"),
                 "--markdown", str(d / "both.md"), "--fallback", "confident", "--no-token-healing") == 0
    both = json.loads((d / "both.json").read_text())
    assert both["sampler"]["fallback"] == "confident" and both["sampler"]["token_healing"] is False
    line_steps = both["models"]["diffusion"]["next_line"]
    assert line_steps["steps"] >= line_steps["positions"] == 3  # at least one step per line
    assert list(both["models"]) == ["diffusion", "ar"]
    assert both["models"]["ar"] == ar_report["models"]["ar"]
    assert set(both["models"]["diffusion"]["repair"]) >= {"token_edits_restored", "syntax_errors_fixed_exactly"}
    check = both["models"]["diffusion"]["check"]  # through `check` itself
    assert check["functions"] == 2 and check["syntax_errors"] >= 1 and check["clean_files"] == 1
    assert 0 <= check["syntax_restored_exactly"] <= check["syntax_fixed_and_parses"] <= 1
    assert check["syntax_proposals_not_parsing"] == 0  # nothing unparsed is ever proposed
    assert check["findings_per_1000_clean_lines"] >= 0 and check["clean_lines"] > 0
    assert "check" not in both["models"]["ar"]
    header = (d / "both.md").read_text().splitlines()[0]
    assert header == "| metric | diffusion | ar |"


def test_bad_combinations_are_usage_errors(setup, tmp_path):
    d, src, diffusion, ar = setup
    report = tmp_path / "ar.json"
    report.write_text(json.dumps({"models": {"ar": {}}}))
    with pytest.raises(SystemExit, match="already autoregressive"):
        _eval(src, ar, "--ar-model", str(ar))
    with pytest.raises(SystemExit, match="two reports have a 'ar' model"):
        _eval(src, diffusion, "--merge", str(report), str(report))
    with pytest.raises(SystemExit, match="already has a 'ar' model"):
        _eval(src, diffusion, "--ar-model", str(ar), "--merge", str(report))
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not an eval report"):
        _eval(src, diffusion, "--merge", str(tmp_path / "junk.json"))


def test_dev_holes_come_from_documented_function_bodies():
    from dlsp_benchmarks.quality import documented_functions

    text = FUNC.format(i=1) + "\n\ndef g(x):\n    return x\n\n\ndef h():\n    \"\"\"Only a docstring.\"\"\"\n"
    found = documented_functions([text, "def broken(:\n"])
    assert len(found) == 1  # g has no docstring, h has no body, the second file does not parse
    before, lines, body = found[0]
    assert lines[0].startswith("def f_1") and lines[body].strip() == "out = []" and before == ""


def test_a_run_over_more_tasks_reports_the_quoted_subset_and_the_rest_apart():
    """`split_rates`: the reported subset (the README's 200) and the other tasks, where
    checkpoints are chosen, each with its own rate; None unless the run holds the whole
    subset and more."""
    tasks = [humaneval.InfillTask(f"T/{i}", "f", "", "", "", "") for i in range(10)]
    ok = [i % 3 == 0 for i in range(10)]  # T/0, T/3, T/6, T/9 pass
    split = humaneval.split_rates(tasks, ok, {"T/0", "T/1", "T/3"})
    assert split == {"reported": {"tasks": 3, "passed": 2, "pass@1": 2 / 3},
                     "rest": {"tasks": 7, "passed": 2, "pass@1": 2 / 7}}
    assert humaneval.split_rates(tasks, ok, {"T/0", "T/42"}) is None  # misses part of the subset
    assert humaneval.split_rates(tasks[:2], ok[:2], {"T/0", "T/1"}) is None  # the subset itself


def test_reference_nll_is_the_causal_log_likelihood_of_the_canonical_answer(tmp_path):
    """The smooth view of a HumanEval hole: -log p of healed piece + canonical line +
    `<eoi>` after the infill context, checked against one plain causal forward pass over
    the whole sequence."""
    import torch

    from diffusion_core.engine import Engine
    from dlsp_benchmarks.quality import nll_summary, reference_nll

    engine = Engine.from_path(make_tiny_model_dir(tmp_path / "m", kind="joint"))
    task = humaneval.InfillTask("T/0", "f", 'def f(x):\n    """Double x."""\n    y = x\n',
                                "    return y\n", "    y = 2 * y\n", "assert f(1) == 2\n")
    nats, n = reference_nll(engine, task)
    healed = engine.healing(task.prompt)
    ctx = engine.infill_context(task.prompt, task.suffix)
    answer = [*engine.tokenizer.encode(healed.removed + task.canonical_solution), engine.special.eoi]
    seq = torch.tensor([ctx + answer])  # (1, T)
    with torch.no_grad():
        logits = engine.model(seq, torch.arange(seq.shape[1])[None], causal=True).logits.float()  # (1, T, V)
    lp = torch.log_softmax(logits[0, len(ctx) - 1 : -1], -1)  # rows that predict the answer
    expected = -lp.gather(-1, seq[0, len(ctx):, None]).sum().item()
    assert n == len(answer) and abs(nats - expected) < 1e-3 * max(1.0, abs(expected))
    other = humaneval.InfillTask(**{**task.__dict__, "canonical_solution": "    y = y + y\n"})
    summary = nll_summary([(nats, n), reference_nll(engine, other)])
    assert summary["holes"] == 2
    assert summary["per_hole"] == pytest.approx((nats + reference_nll(engine, other)[0]) / 2)
