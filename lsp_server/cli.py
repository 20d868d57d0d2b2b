"""The `diffusion-lsp` command: one parser, one small module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = """\
diffusion-lsp: code completion and "repair this block" from a discrete diffusion code
model, as a language server (serve), on the command line (complete, repair), and as a
CI lint step (check). The default model ships inside the package; no download needed.
"""

EPILOG = """\
examples:
  diffusion-lsp serve                          # stdio language server for your editor
  diffusion-lsp complete examples/demo.py --line 12 --character 16
  diffusion-lsp repair examples/demo.py --start-line 16 --end-line 18
  diffusion-lsp check src/ --format sarif > results.sarif
  diffusion-lsp train /usr/lib/python3.11 --out runs/mymodel
  diffusion-lsp eval --model runs/mymodel/model
"""

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("lsp_server.cmd_serve", "run the language server (stdio by default, or --tcp HOST:PORT)"),
    "complete": ("lsp_server.cmd_jobs", "complete the code at a position of a file and print it"),
    "repair": ("lsp_server.cmd_jobs", "propose a repair of a line range of a file and print it"),
    "check": ("lsp_server.check.cli", "lint files with the repair model (text, json, sarif, github)"),
    "train": ("lsp_server.cmd_train", "train a model (joint, diffusion or autoregressive) from source dirs"),
    "eval": ("benchmarks.quality", "measure infill, next-line and repair quality of a model"),
    "bench": ("benchmarks.cli", "run the latency and speed benchmarks"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser (`command` None), or one whose only subcommand with its real
    arguments is `command`: the others' modules (training, benchmarks, torch behind them)
    are then not imported, so `serve` and `--help` start without them."""
    parser = argparse.ArgumentParser(
        prog="diffusion-lsp", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module, _name=name)
        if command is not None and name != command:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        mod = _import(module)
        if mod is not None:
            adder = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
            adder(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-lsp")
    except Exception:
        return "0+unknown"


_BROKEN: dict[str, str] = {}


def _import(module: str):
    """The subcommand's module, or None if it cannot be imported.

    One broken subcommand must never take the others (the server above all) down with it:
    the failure is reported when that subcommand is run.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name and module.startswith(e.name):
            _BROKEN[module] = "not built yet in this version"
        else:
            _BROKEN[module] = f"cannot be loaded: {e}"
        return None


def chosen_command(argv: list[str]) -> str:
    """The subcommand named on the command line ("" when none is: --help, --version)."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in SUBCOMMANDS else ""
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    mod = _import(args._module)
    if mod is None:
        why = _BROKEN.get(args._module, "not built yet in this version")
        print(f"diffusion-lsp {args._name}: {why}", file=sys.stderr)
        return 2
    runner = getattr(mod, f"run_{args._name}", None) or mod.run
    try:
        return int(runner(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
