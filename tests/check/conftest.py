from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lsp_server.check.cli import execute
from lsp_server.cli import build_parser
from tests.check.fakes import PlantedFactory
from tests.check.tree import write_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree")


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json(self) -> dict:
        return json.loads(self.out)


_PLANTED = object()


def check(root: Path, *argv: str, factory=_PLANTED, paths=None) -> Run:
    """`diffusion-lsp check` in this process, through the real argument parser; the
    planted repairer unless `factory` says otherwise (None: the real engine from --model)."""
    paths = [str(root)] if paths is None else paths
    args = build_parser().parse_args(["check", *paths, "--root", str(root), *argv])
    out, err = io.StringIO(), io.StringIO()
    factory = PlantedFactory() if factory is _PLANTED else factory
    code = execute(args, factory, out, err)
    return Run(code, out.getvalue(), err.getvalue())
