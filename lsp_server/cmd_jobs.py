"""`diffusion-lsp complete` and `diffusion-lsp repair`: the server's jobs on one file, run
by the same `lsp_server.service.Service` the server uses.

Both print their result and never touch the file. Lines are 1-based (as editors show
them); `--character` is a 0-based count of Unicode code points into the line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsp_server.positions import UTF32, LineIndex
from lsp_server.settings import Settings

MIN_PROBABILITY = Settings().min_probability
CANDIDATES = Settings().completion_candidates
LINES_NOTE = "lines are 1-based (--line 12 is the 12th line); --character is 0-based, in code points"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="source file (read only, never modified)")
    p.add_argument("--model", metavar="DIR", help="model directory (default: the embedded model)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--quantize", choices=("none", "int8"), default=None,
                   help="int8: dynamic int8 Linear layers (CPU only; faster for big models, "
                        "docs/byo-model.md); default: the model directory's diffusion-lsp.json, else none")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def add_complete_arguments(p: argparse.ArgumentParser) -> None:
    p.description = f"Complete the code at a position of FILE and print it ({LINES_NOTE})."
    _common(p)
    p.add_argument("--line", type=int, required=True, help="1-based line of the cursor")
    p.add_argument("--character", type=int, default=None,
                   help="0-based column of the cursor in code points (default: end of line)")
    p.add_argument("--max-tokens", type=int, default=None, help="most tokens to generate")
    p.add_argument("--threshold", type=float, default=None,
                   help="confidence needed to commit a token in a step, 0..1")
    p.add_argument("--block-size", type=int, default=None,
                   help="tokens per denoising block (default: the model's trained block size, else 32)")
    p.add_argument("--budget-ms", type=float, default=None,
                   help="time budget in ms; when it runs out, print the part decided so far")
    p.add_argument("--min-probability", type=float, default=MIN_PROBABILITY, metavar="P",
                   help="stop where the model's probability of the whole suggestion falls below P, "
                        f"as the server does (default {MIN_PROBABILITY}, the server's minProbability; "
                        "0: run to the end of the line or --max-tokens)")
    p.add_argument("--no-token-healing", dest="heal", action="store_false",
                   help="continue from the cursor's exact token split instead of letting the model "
                        "rewrite the word the cursor is in (token healing, the default)")
    p.add_argument("--decoder", choices=["auto", "threshold", "greedy", "draft"], default=None,
                   help="auto (default): draft and verify for joint models, greedy for "
                        "autoregressive ones, the confidence-threshold sampler for diffusion ones")
    p.add_argument("--mode", choices=["auto", "single", "multi"], default="auto",
                   help="single line, multi line, or chosen from the cursor context (default)")
    p.add_argument("--candidates", type=int, default=CANDIDATES, metavar="K",
                   help="single-line completions of joint and AR models: rank the greedy line and K "
                        "more (continuations of the line's likely first words) by the code after the "
                        "cursor, print the best and list the others on stderr (--json: "
                        "\"alternatives\"), as the server answers an explicit request (default "
                        f"{CANDIDATES}, the server's completionCandidates; 0: the greedy line)")


def add_repair_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Propose a repair of lines START..END of FILE and print it as a diff "
                     "(lines are 1-based, both ends inclusive).")
    _common(p)
    p.add_argument("--start-line", type=int, required=True, help="first line (1-based)")
    p.add_argument("--end-line", type=int, required=True, help="last line (1-based, inclusive)")


def _read(path: Path) -> str:
    """The file's text, decoded as `check` decodes it (a Python file's PEP 263 coding
    cookie and a UTF-8 BOM are honoured, so a latin-1 module completes like it lints)."""
    from lsp_server.blocks import language_of
    from lsp_server.check.analyze import Skipped, decode

    try:
        data = path.read_bytes()
    except OSError as e:
        raise SystemExit(f"diffusion-lsp: cannot read {path}: {e.strerror or e}") from None
    try:
        return decode(data, language_of(str(path)))[0]
    except Skipped as e:
        raise SystemExit(f"diffusion-lsp: cannot read {path}: {e}") from None


def _device(text: str) -> str:
    """`--device` checked before the model loads: cpu, cuda or cuda:N, and CUDA only where
    this torch build and machine have it (instead of a traceback from deep in torch)."""
    import torch

    if text != "cpu" and text != "cuda" and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise SystemExit(f"diffusion-lsp: --device {text!r}: expected cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise SystemExit(f"diffusion-lsp: --device {text}: {why}; use --device cpu")
        if ":" in text and int(text[5:]) >= torch.cuda.device_count():
            raise SystemExit(f"diffusion-lsp: --device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return text


def _engine(args, **sampler):
    """The engine of --model/--device with the sampler options given on the command line on
    top of the model's own sampler (its trained block size when --block-size is not given)."""
    from diffusion_core.checkpoint import ModelLoadError
    from diffusion_core.config import SamplerConfig
    from diffusion_core.engine import Engine

    given = {k: v for k, v in sampler.items() if v is not None}
    try:
        SamplerConfig().replace(**given)  # bad values are a usage error before the model loads
    except ValueError as e:
        raise SystemExit(f"diffusion-lsp: {e}") from None
    device = _device(args.device)
    try:
        engine = Engine.from_path(args.model, device=device, quantize=getattr(args, "quantize", None))
    except ModelLoadError as e:
        raise SystemExit(f"diffusion-lsp: cannot load the model: {e}") from None
    cfg = engine.sampler.replace(**given)
    engine.sampler = cfg
    try:
        cfg.decoder_for(engine.model.cfg.kind)
    except ValueError as e:
        raise SystemExit(f"diffusion-lsp: --decoder {cfg.decoder}: {e}") from None
    return engine


def run_complete(args: argparse.Namespace) -> int:
    from lsp_server.service import Service

    text = _read(args.file)
    index = LineIndex(text)
    if not 1 <= args.line <= index.line_count:
        print(f"diffusion-lsp: --line {args.line} is outside 1..{index.line_count}", file=sys.stderr)
        return 2
    line = args.line - 1
    n_chars = len(index.line_text(line))
    character = n_chars if args.character is None else args.character
    if not 0 <= character <= n_chars:
        print(f"diffusion-lsp: --character {character} is outside 0..{n_chars} for line "
              f"{args.line}", file=sys.stderr)
        return 2
    offset = index.offset(line, character, UTF32)
    engine = _engine(args, max_tokens=args.max_tokens, threshold=args.threshold,
                     block_size=args.block_size, budget_ms=args.budget_ms, heal=args.heal,
                     min_prob=args.min_probability,
                     decoder=args.decoder)
    mode = None if args.mode == "auto" else args.mode
    if args.candidates < 0:
        print("diffusion-lsp: --candidates must be 0 or more", file=sys.stderr)
        return 2
    res = Service(engine).complete(text, offset, mode=mode, rerank=args.candidates)
    if args.json:
        out = {"file": str(args.file), "line": args.line, "character": character, **res.to_json()}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(res.text + ("\n" if res.text and not res.text.endswith("\n") else ""))
        if not res.text.strip():
            print(f"diffusion-lsp: no completion at {args.file}:{args.line}:{character} "
                  f"({res.timings.steps} denoising steps, {res.timings.total_ms:.0f} ms)",
                  file=sys.stderr)
        for alt in res.alternatives:
            print(f"diffusion-lsp: also: {alt}", file=sys.stderr)
    return 0


def run_repair(args: argparse.Namespace) -> int:
    import difflib

    from lsp_server.service import Service

    text = _read(args.file)
    n = LineIndex(text).line_count
    if not 1 <= args.start_line <= args.end_line <= n:
        print(f"diffusion-lsp: need 1 <= --start-line <= --end-line <= {n}", file=sys.stderr)
        return 2
    engine = _engine(args)
    try:
        from lsp_server.blocks import language_of

        res = Service(engine).repair(text, args.start_line - 1, args.end_line - 1,
                                     language=language_of(str(args.file)))
    except ValueError as e:  # block longer than the repair limit
        print(f"diffusion-lsp: {e}", file=sys.stderr)
        return 2
    if args.json:
        out = {"file": str(args.file), **res.to_json(),
               "start_line": res.start_line + 1, "end_line": res.end_line + 1}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif not res.changed:
        print(f"no change proposed for lines {args.start_line}-{args.end_line}", file=sys.stderr)
    else:
        from lsp_server.edits import apply_edits

        name = str(args.file)
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), apply_edits(text, list(res.edits)).splitlines(keepends=True),
            fromfile=f"a/{name}", tofile=f"b/{name}", n=1))
    return 0
