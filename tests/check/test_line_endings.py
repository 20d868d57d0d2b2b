"""`check --fix` keeps a file's line endings: a `\\r\\n` block stays `\\r\\n` whatever line
break the model ends its proposal with (the shared repair job, `lsp_server.repair`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lsp_server.repair import Proposal
from tests.check.conftest import check

SRC = (
    "def f(total):\r\n"
    "    total =+ 1\r\n"
    "    return total\r\n"
    "\r\n"
    "\r\n"
    "def g():\r\n"
    "    return 2\r\n"
)


@dataclass(frozen=True)
class EndingRepairer:
    """Fixes `=+` and ends its proposal with `tail` instead of the block's own ending."""

    tail: str

    def fits(self, block: str) -> bool:
        return True

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal:
        return Proposal(block.replace("=+", "+=").rstrip("\r\n") + self.tail, 0.99)


@pytest.mark.parametrize("tail", ["", "\n", "\r\n", "\n\n"])
def test_fix_round_trips_crlf(tmp_path, tail):
    path = tmp_path / "m.py"
    path.write_bytes(SRC.encode())
    run = check(tmp_path, "--fix", "--format", "json", factory=lambda: EndingRepairer(tail))
    assert run.code in (0, 1), run.err
    assert path.read_bytes() == SRC.replace("=+", "+=").encode()


def test_findings_replace_no_line_break(tmp_path):
    (tmp_path / "m.py").write_bytes(SRC.encode())
    run = check(tmp_path, "--format", "json", factory=lambda: EndingRepairer(""))
    (finding,) = run.json["findings"]
    assert "\r" not in finding["replacement"] or finding["replacement"].endswith("\r\n")
    assert finding["original"].count("\r\n") == finding["replacement"].count("\r\n")
