"""Build the extra training corpus of short, documented Python functions from PyPI.

    python tools/pypi_corpus.py OUT_DIR            # then: diffusion-lsp train ... --mix OUT_DIR=0.3

The default corpus (the Python installation's own library) is mostly large modules;
what a completion in a small function needs (loops, string and list helpers, a docstring
followed by its body) is rare in it. These pinned distributions are pure-Python
algorithm collections and utility libraries (about 5 MB of source). Each is fetched with
`pip download --no-deps` from the configured package index (nothing else is reached),
and only its `.py` files are kept, one directory per distribution, so that the package
cap of `--mix` applies per library.

Evaluation data is never training data: a file is dropped when it mentions HumanEval,
holds two or more lines (30+ characters) of a HumanEval canonical solution, or one
sentence (50+ characters) of a HumanEval prompt; the eval files are read from
../shared/eval when present (`--eval-dir`). The archives are only unpacked, never run
(no setup.py, no build).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# (distribution, version, only the .py members under this path prefix in the archive, or None)
PINNED: tuple[tuple[str, str, str | None], ...] = (
    ("algorithms", "1.0.1", None),
    ("algo", "1.3.1", None), ("allalgorithms", "0.0.0", None), ("bidict", "0.24.1", None),
    ("binarytree", "6.5.1", None), ("bintrees", "2.2.0", None), ("boltons", "26.2.0", None),
    ("dsa", "13.3.0", None), ("funcy", "2.1", None), ("graphlib_backport", "1.1.0", None),
    ("humanize", "4.17.0", None), ("inflect", "7.6.0", None), ("inflection", "0.5.1", None),
    ("jellyfish", "1.3.0", None), ("leetcode_solutions", "0.1.0", None),
    ("more_itertools", "11.2.1", None), ("natsort", "8.4.0", None), ("num2words", "0.5.14", None),
    ("primefac", "2.0.12", None), ("pydash", "8.1.0", None), ("pyds", "0.2.0", None),
    ("pydsa", "0.14", None), ("pygorithm", "1.0.4", None), ("pyllist", "0.3", None),
    ("pyprimes", "0.1", None), ("pyrsistent", "0.20.0", None), ("python_algorithms", "0.2.2", None),
    ("python_string_utils", "1.0.0", None), ("python_utils", "4.2.0", None),
    ("pythonds", "1.2.1", None), ("roman", "5.2", None), ("sortedcontainers", "2.4.0", None),
    ("stringcase", "1.2.0", None), ("textdistance", "4.6.3", None), ("toolz", "1.2.0", None),
)
EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"


class Contamination:
    """Lines and sentences of the HumanEval problems that must not be in training files."""

    def __init__(self, eval_dir: Path) -> None:
        self.lines: set[str] = set()
        self.sentences: set[str] = set()
        path = eval_dir / "HumanEval.jsonl.gz"
        if not path.exists():
            return
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for row in f:
                task = json.loads(row)
                self.add(task["prompt"], task["canonical_solution"])

    def add(self, prompt: str, solution: str) -> None:
        self.lines.update(s.strip() for s in solution.splitlines() if len(s.strip()) >= 30)
        flat = re.sub(r"\s+", " ", prompt)
        self.sentences.update(s.strip() for s in re.split(r"(?<=[.!?])\s|\"\"\"|'''|>>>", flat) if len(s.strip()) >= 50)

    def flags(self, text: str) -> bool:
        if "humaneval" in text.lower():
            return True
        if sum(1 for s in text.splitlines() if s.strip() in self.lines) >= 2:
            return True
        flat = re.sub(r"\s+", " ", text)
        return any(s in flat for s in self.sentences)


def python_members(archive: Path, prefix: str | None) -> list[tuple[str, bytes]]:
    """(name, bytes) of the .py files in a wheel, zip or .tar.gz, without extracting to disk."""
    out = []
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if info.filename.endswith(".py") and not info.is_dir():
                    out.append((info.filename, z.read(info)))
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith(".py"):
                    f = t.extractfile(m)
                    if f is not None:
                        out.append((m.name, f.read()))
    return [(n, b) for n, b in out if prefix is None or n.startswith(prefix)]


def _safe(name: str) -> Path | None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts:
        return None
    return p


def write_distribution(archive: Path, prefix: str | None, dest: Path, contamination: Contamination) -> tuple[int, int]:
    """Write the archive's kept .py files under dest; returns (kept, dropped)."""
    kept = dropped = 0
    for name, data in python_members(archive, prefix):
        rel = _safe(name)
        text = data.decode("utf-8", "replace")
        if rel is None or contamination.flags(text):
            dropped += 1
            continue
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        kept += 1
    return kept, dropped


def download(dist: str, version: str, into: Path) -> Path:
    """The one archive pip downloads for dist==version, in an empty directory of its own."""
    into.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(into),
         f"{dist}=={version}"],
        check=True,
    )
    archives = sorted(into.iterdir())
    if len(archives) != 1:
        raise FileNotFoundError(f"pip download {dist}=={version} left {len(archives)} files, expected one")
    return archives[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory to write (one subdirectory per distribution)")
    ap.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help="HumanEval files to keep out")
    args = ap.parse_args(argv)
    contamination = Contamination(args.eval_dir)
    if not contamination.lines:
        print(f"warning: no HumanEval data under {args.eval_dir}; nothing is filtered", file=sys.stderr)
    total_kept = total_dropped = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (dist, version, prefix) in enumerate(PINNED, 1):
            archive = download(dist, version, Path(tmp) / dist)
            kept, dropped = write_distribution(archive, prefix, args.out / dist, contamination)
            total_kept, total_dropped = total_kept + kept, total_dropped + dropped
            print(f"[{i}/{len(PINNED)}] {dist}=={version}: {kept} files ({dropped} dropped)")
    print(f"{total_kept} files in {args.out} ({total_dropped} dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
