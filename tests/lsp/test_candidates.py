"""Several suggestions when the user asks (issue 22): the line and the block, deduplicated,
then the other reranked lines (issue 19); one greedy answer while typing.
`features.completion.candidates` with the completion job faked."""

import asyncio
from types import SimpleNamespace

import pytest

from lsp_server import jobs
from lsp_server.features import completion
from lsp_server.service import Completion, Timings
from lsp_server.settings import Settings


def fake_jobs(monkeypatch, answers: dict, alternatives: dict | None = None):
    """Fake completion jobs; returns what they were asked: `calls` (modes), `reranks`."""
    got = SimpleNamespace(calls=[], reranks=[])

    async def complete(ls, uri, pos, what, mode=None, rerank=0):
        got.calls.append(mode)
        got.reranks.append(rerank)
        alts = tuple((alternatives or {}).get(mode, ())) if rerank else ()
        res = Completion(answers[mode], mode or jobs.SINGLE, answers[mode], Timings(1.0, 1.0, 1), alts)
        return SimpleNamespace(version=1), 7, res

    monkeypatch.setattr(completion, "complete", complete)
    return got


def run(invoked: bool, candidates: int = 6):
    ls = SimpleNamespace(settings=Settings(completion_candidates=candidates))
    return asyncio.run(completion.candidates(ls, "file:///a.py", None, "inline completion", invoked))


def test_asked_for_gives_the_line_then_the_block(monkeypatch):
    got = fake_jobs(monkeypatch, {None: "x + 1", jobs.MULTI: "x + 1\n    return y"})
    snap, offset, found = run(invoked=True)
    assert [r.text for r in found] == ["x + 1", "x + 1\n    return y"] and offset == 7
    assert got.calls == [None, jobs.MULTI] and got.reranks == [6, 6]


def test_while_typing_one_answer_and_no_second_job(monkeypatch):
    got = fake_jobs(monkeypatch, {None: "x + 1", jobs.MULTI: "other"}, {None: ["x + 2"]})
    _, _, found = run(invoked=False)
    assert [r.text for r in found] == ["x + 1"] and got.calls == [None] and got.reranks == [0]


def test_asked_for_the_reranked_lines_follow_the_block(monkeypatch):
    got = fake_jobs(monkeypatch, {None: "x + 1", jobs.MULTI: "x + 1\n    return y"},
                    {None: ["x - 1", "x + 1", " ", "x * 2"]})
    _, _, found = run(invoked=True, candidates=3)
    # the best line, the block, then the other lines (duplicates and blanks dropped)
    assert [r.text for r in found] == ["x + 1", "x + 1\n    return y", "x - 1", "x * 2"]
    assert [r.mode for r in found] == [jobs.SINGLE, jobs.MULTI, jobs.SINGLE, jobs.SINGLE]
    assert got.reranks == [3, 3]
    _, _, off = run(invoked=True, candidates=0)
    assert [r.text for r in off] == ["x + 1", "x + 1\n    return y"]


@pytest.mark.parametrize(("first", "second", "want"), [
    ("x + 1", "x + 1", ["x + 1"]),  # the same text once
    ("   ", "y", ["y"]),  # an empty first answer is not offered, the other is
    ("", " \n", None),  # nothing to offer
])
def test_duplicates_and_empty_answers_are_dropped(monkeypatch, first, second, want):
    fake_jobs(monkeypatch, {None: first, jobs.MULTI: second})
    got = run(invoked=True)
    assert (None if got is None else [r.text for r in got[2]]) == want
