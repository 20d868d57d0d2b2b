"""Several suggestions when the user asks (issue 22): the line and the block, deduplicated;
one while typing. `features.completion.candidates` with the completion job faked."""

import asyncio
from types import SimpleNamespace

import pytest

from lsp_server import jobs
from lsp_server.features import completion


def fake_jobs(monkeypatch, answers: dict):
    calls = []

    async def complete(ls, uri, pos, what, mode=None):
        calls.append(mode)
        text = answers[mode]
        res = SimpleNamespace(text=text, mode=mode or jobs.SINGLE)
        return SimpleNamespace(version=1), 7, res

    monkeypatch.setattr(completion, "complete", complete)
    return calls


def run(invoked: bool):
    return asyncio.run(completion.candidates(None, "file:///a.py", None, "inline completion", invoked))


def test_asked_for_gives_the_line_then_the_block(monkeypatch):
    calls = fake_jobs(monkeypatch, {None: "x + 1", jobs.MULTI: "x + 1\n    return y"})
    snap, offset, found = run(invoked=True)
    assert [r.text for r in found] == ["x + 1", "x + 1\n    return y"] and offset == 7
    assert calls == [None, jobs.MULTI]


def test_while_typing_one_answer_and_no_second_job(monkeypatch):
    calls = fake_jobs(monkeypatch, {None: "x + 1", jobs.MULTI: "other"})
    _, _, found = run(invoked=False)
    assert [r.text for r in found] == ["x + 1"] and calls == [None]


@pytest.mark.parametrize(("first", "second", "want"), [
    ("x + 1", "x + 1", ["x + 1"]),  # the same text once
    ("   ", "y", ["y"]),  # an empty first answer is not offered, the other is
    ("", " \n", None),  # nothing to offer
])
def test_duplicates_and_empty_answers_are_dropped(monkeypatch, first, second, want):
    fake_jobs(monkeypatch, {None: first, jobs.MULTI: second})
    got = run(invoked=True)
    assert (None if got is None else [r.text for r in got[2]]) == want
