"""`diffusion-lsp serve`: run the language server over stdio (default) or TCP.

Settings precedence: built-in defaults < command-line flags < the client's
initializationOptions < later workspace/didChangeConfiguration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lsp_server.settings import LOG_LEVELS, Settings


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="HOST:PORT", type=_host_port,
                   help="listen on TCP instead of stdio (e.g. 127.0.0.1:2087)")
    p.add_argument("--model", metavar="DIR",
                   help="model directory (default: the embedded model); the client's "
                        "diffusionLsp.modelPath overrides it")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where the model runs (default cpu)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="level of window/logMessage lines and of the stderr log (default info)")


def run(args: argparse.Namespace) -> int:
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lsp_server").setLevel(args.log_level.upper())
    from lsp_server.server import build_server

    base = Settings(model_path=args.model, device=args.device or "cpu", log_level=args.log_level)
    server = build_server(base)
    if args.tcp:
        host, port = args.tcp

        @server.feature("exit")
        def _exit(ls, *_):
            # pygls ends a TCP session with sys.exit inside an asyncio callback, which
            # asyncio reports as a traceback; leave quietly with the same exit code.
            logging.shutdown()
            os._exit(0 if ls.protocol._shutdown else 1)

        print(f"diffusion-lsp: listening on {host}:{port}", file=sys.stderr, flush=True)
        server.start_tcp(host, port)
    else:
        server.start_io()
    return 0
