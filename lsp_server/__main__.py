"""`python -m lsp_server` starts the language server (same as `diffusion-lsp serve`).

It builds only the `serve` parser, so the server starts without importing the other
subcommands (and cannot be broken by them).
"""

import argparse
import sys

from lsp_server import cmd_serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsp_server", description="run the language server")
    cmd_serve.add_arguments(parser)
    return cmd_serve.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
