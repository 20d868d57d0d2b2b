"""`diffusion-lsp average`: the mean of the weights of model directories of one network,
for example a run's last snapshots (see diffusion_core.averaging):

    diffusion-lsp average RUN/snapshots/step2000 RUN/snapshots/step2400 RUN/model --out RUN/avg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffusion_core.errors import ModelLoadError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL_DIR",
                   help="model directories with the same config and tokenizer (two or more)")
    p.add_argument("--out", required=True, type=Path,
                   help="new model directory for the average (must not exist, or be empty)")


def run(args: argparse.Namespace) -> int:
    from diffusion_core.averaging import average_model_dirs

    try:
        average_model_dirs(args.models, args.out)
    except (ValueError, ModelLoadError) as e:
        print(f"diffusion-lsp average: {e}", file=sys.stderr)
        return 2
    print(f"averaged {len(args.models)} model directories into {args.out}")
    return 0
