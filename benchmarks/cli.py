"""`diffusion-lsp bench {latency,speed,scaling,all}`: the latency and speed benchmarks.

Each writes NAME.json and NAME*.png under --out-dir (default docs/benchmarks):
  latency  real client over stdio, simulated typing: warm / cold / cursor-jump percentiles
  speed    diffusion vs the same-size autoregressive model: tokens/s, ratio, pass@1, Pareto
  scaling  latency against document length and block size, warm and cold
Every module also runs alone: python -m dlsp_benchmarks.latency|speed|scaling [options].
The options all of them share live in `dlsp_benchmarks.options` (this module imports the
benchmarks; they never import it).
`--smoke` shrinks every size so that a run takes seconds (a check, not a measurement).
"""

from __future__ import annotations

import argparse
import sys

from dlsp_benchmarks.options import add_common_arguments, prepare

BENCHMARKS = ("latency", "speed", "scaling")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dlsp_benchmarks import latency, scaling, speed

    p.add_argument("which", choices=[*BENCHMARKS, "all"], help="benchmark to run")
    add_common_arguments(p)
    latency.add_arguments(p)
    speed.add_arguments(p)
    scaling.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    import importlib

    prepare(args)
    names = BENCHMARKS if args.which == "all" else (args.which,)
    for name in names:
        print(f"bench: {name}", file=sys.stderr, flush=True)
        rc = importlib.import_module(f"dlsp_benchmarks.{name}").run(args)
        if rc:
            return rc
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dlsp_benchmarks.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
