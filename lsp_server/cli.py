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
  diffusion-lsp average runs/mymodel/snapshots/step2000 runs/mymodel/model --out runs/mymodel/avg
  diffusion-lsp eval --model runs/mymodel/model
"""

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("lsp_server.cmd_serve", "run the language server (stdio by default, or --tcp HOST:PORT)"),
    "complete": ("lsp_server.cmd_jobs", "complete the code at a position of a file and print it"),
    "repair": ("lsp_server.cmd_jobs", "propose a repair of a line range of a file and print it"),
    "check": ("lsp_server.check.cli", "lint files with the repair model (text, json, sarif, github)"),
    "train": ("lsp_server.cmd_train", "train a model (joint, diffusion or autoregressive) from source dirs"),
    "average": ("lsp_server.cmd_average", "average the weights of model directories of one network (a run's last snapshots)"),
}

# Subcommands other packages plug in: entry points of this group, each naming a module with
# the same `add_arguments`/`run` (the benchmarks' `eval` and `bench`, declared in
# pyproject.toml). This module knows them by name only; the one-line help of the known ones
# lives here, so that `--help` lists them without importing anything.
PLUGIN_GROUP = "diffusion_lsp.commands"
PLUGIN_HELP: dict[str, str] = {
    "eval": "measure infill, next-line and repair quality of a model",
    "bench": "run the latency and speed benchmarks",
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
    for name, help_text in commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_name=name)
        if command is not None and name != command:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        mod = _load(name)
        if mod is not None:
            adder = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
            adder(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def commands() -> dict[str, str]:
    """Every subcommand -> its one-line help: the built-in ones, the known plugins (listed
    even where their entry points are missing: running one then says why) and any other
    plugin installed."""
    out = {name: help_text for name, (_, help_text) in SUBCOMMANDS.items()}
    out.update(PLUGIN_HELP)
    for name, ep in _plugins().items():
        out.setdefault(name, f"(from {ep.dist.name if ep.dist else ep.value})")
    return out


_PLUGINS: dict | None = None


def _plugins() -> dict:
    """name -> entry point of the `PLUGIN_GROUP` group (read from the installed metadata,
    nothing imported); built-in names cannot be taken over.

    Every distribution on the path is read, not only the first of each name as
    `entry_points()` does: a stale `diffusion_lsp.egg-info` in the working directory (left by
    an older build) would otherwise hide the installed package's entry points."""
    global _PLUGINS
    if _PLUGINS is None:
        from importlib.metadata import distributions

        _PLUGINS = {}
        for dist in distributions():
            for ep in dist.entry_points.select(group=PLUGIN_GROUP):
                if ep.name not in SUBCOMMANDS:
                    _PLUGINS.setdefault(ep.name, ep)
    return _PLUGINS


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-lsp")
    except Exception:
        return "0+unknown"


_BROKEN: dict[str, str] = {}


def _load(name: str):
    """The subcommand's module, or None if it cannot be imported (the reason in _BROKEN).

    One broken subcommand must never take the others (the server above all) down with it:
    the failure is reported when that subcommand is run.
    """
    if name in SUBCOMMANDS:
        return _import(name, SUBCOMMANDS[name][0])
    ep = _plugins().get(name)
    if ep is None:
        _BROKEN[name] = (f"not installed (no entry point {name!r} in group {PLUGIN_GROUP!r}; "
                         "reinstall the package)")
        return None
    return _import(name, ep.module, ep.load)


def _import(name: str, module: str, load=None):
    try:
        return load() if load is not None else importlib.import_module(module)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name and module.startswith(e.name):
            _BROKEN[name] = "not built yet in this version"
        else:
            _BROKEN[name] = f"cannot be loaded: {e}"
        return None


def chosen_command(argv: list[str]) -> str:
    """The subcommand named on the command line ("" when none is: --help, --version)."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in commands() else ""
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    mod = _load(args._name)
    if mod is None:
        why = _BROKEN.get(args._name, "not built yet in this version")
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
