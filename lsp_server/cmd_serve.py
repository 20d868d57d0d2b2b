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


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def _device(value: str) -> str:
    if value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {value!r}")


DEFAULT_THREADS = 1


def default_threads(env: dict[str, str]) -> int | None:
    """Torch threads when --threads is not given: None (leave torch alone) if the user set
    OMP_NUM_THREADS, else 1. A 32-token block over a small model is too little work to
    spread over cores, and with any other busy process on the machine several threads wait
    on each other: on 2 cores beside a busy process one completion took 33.9 s with
    min(4, cores) threads against 0.86 s with one (issue 22)."""
    if env.get("OMP_NUM_THREADS"):
        return None
    return DEFAULT_THREADS


def apply_threads(threads: int | None, env=os.environ) -> None:
    """Use `threads` torch threads. torch is imported later, by the model loader in the
    worker (so `initialize` is answered without waiting ~2-3 s for it), and reads
    OMP_NUM_THREADS when it is; if it is loaded already, it is told directly."""
    if not threads:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)


class _NotSentToClient(logging.Filter):
    """Over stdio the editor reads stderr and logs every line again (Neovim tags them ERROR):
    keep off stderr the lines that already reached it as window/logMessage."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "sent_to_client", False)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="HOST:PORT", type=_host_port,
                   help="listen on TCP instead of stdio (e.g. 127.0.0.1:2087)")
    p.add_argument("--model", metavar="DIR",
                   help="model directory (default: the embedded model); the client's "
                        "diffusionLsp.modelPath overrides it")
    p.add_argument("--device", type=_device, metavar="DEVICE",
                   help="where the model runs: cpu (default), cuda or cuda:N, as the editor setting")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="CPU threads for the model (default: $OMP_NUM_THREADS if set, else "
                        f"{DEFAULT_THREADS}: more threads are slower when other work runs "
                        "on the machine)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="level of window/logMessage lines and of the stderr log (default info)")


def run(args: argparse.Namespace) -> int:
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lsp_server").setLevel(args.log_level.upper())
    if not args.tcp:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_NotSentToClient())
    apply_threads(args.threads or default_threads(dict(os.environ)))
    from lsp_server.server import build_server

    base = Settings(model_path=args.model, device=args.device or "cpu", log_level=args.log_level)
    server = build_server(base)
    if args.tcp:
        server.start_tcp(*args.tcp)
    else:
        server.start_io()
    return 0
