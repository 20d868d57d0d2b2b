"""The CLI imports only the subcommand it runs: `serve` (which both editor clients start)
and `--help` come up without the training and benchmark modules, torch behind them."""

import subprocess
import sys

from lsp_server import cli
from lsp_server.cli import build_parser, chosen_command, commands

HEAVY = ("torch", "dlsp_benchmarks.quality", "dlsp_benchmarks.cli", "diffusion_core.train", "lsp_server.cmd_train")


def _imported_after(argv: list[str]) -> list[str]:
    code = (
        "import sys\nfrom lsp_server import cli\n"
        f"cli.build_parser(cli.chosen_command({argv!r}))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_help_and_serve_import_nothing_heavy():
    assert _imported_after(["--help"]) == []
    assert _imported_after(["serve"]) == []
    assert "diffusion_core.train" in _imported_after(["train", "x", "--out", "y"])


def test_the_plugged_in_subcommands_load_only_when_run():
    """`eval` and `bench` come from the benchmarks' entry points: listed by name, their
    module imported only for that subcommand."""
    assert {"eval", "bench"} <= set(cli._plugins())  # the installed metadata declares them
    bench = _imported_after(["bench", "latency"])
    assert "dlsp_benchmarks.cli" in bench and "dlsp_benchmarks.quality" not in bench
    assert "dlsp_benchmarks.quality" in _imported_after(["eval"])


def test_a_missing_plugin_is_reported_when_run(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_PLUGINS", {})
    assert "eval" in build_parser().format_help()  # still listed
    assert cli.main(["eval"]) == 2
    assert "not installed" in capsys.readouterr().err


def test_chosen_command_and_the_full_parser():
    assert chosen_command(["--version"]) == ""
    assert chosen_command(["eval", "--model", "m"]) == "eval"
    assert chosen_command(["nonsense"]) == ""
    help_text = build_parser().format_help()
    for name in commands():
        assert name in help_text
    assert {"serve", "check", "train", "eval", "bench"} <= set(commands())
    args = build_parser("complete").parse_args(["complete", "f.py", "--line", "3", "--decoder", "draft"])
    assert args.decoder == "draft" and args.line == 3


def test_help_names_only_files_that_exist():
    from pathlib import Path

    from lsp_server.cli import EPILOG

    root = Path(__file__).resolve().parents[2]
    for word in EPILOG.split():
        if word.startswith("examples/"):
            assert (root / word).is_file(), word
