"""`python -m lsp_server` starts the language server (same as `diffusion-lsp serve`)."""

import sys

from lsp_server.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
