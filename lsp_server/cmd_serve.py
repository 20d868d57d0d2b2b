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


MAX_DEFAULT_THREADS = 4


def default_threads(env: dict[str, str], cpu_count: int | None) -> int | None:
    """Torch threads when --threads is not given: None (leave torch alone) if the user set
    OMP_NUM_THREADS, else min(4, cores). A 32-token block over a small model is too little
    work to spread over many cores, and the editor needs the rest of the machine."""
    if env.get("OMP_NUM_THREADS"):
        return None
    return max(1, min(MAX_DEFAULT_THREADS, cpu_count or 1))


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
                        f"the number of cores up to {MAX_DEFAULT_THREADS})")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="level of window/logMessage lines and of the stderr log (default info)")


def run(args: argparse.Namespace) -> int:
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lsp_server").setLevel(args.log_level.upper())
    threads = args.threads or default_threads(dict(os.environ), os.cpu_count())
    if threads:
        import torch

        torch.set_num_threads(threads)
    from lsp_server.server import build_server

    base = Settings(model_path=args.model, device=args.device or "cpu", log_level=args.log_level)
    server = build_server(base)
    if args.tcp:
        server.start_tcp(*args.tcp)
    else:
        server.start_io()
    return 0
