"""A repairer with planted proposals, so findings are known in advance.

Top-level and picklable: `--jobs N` sends the factory to spawned worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_server.check.repairer import Proposal

# (text in a block, its replacement, confidence of the proposal)
PLANTS: tuple[tuple[str, str, float], ...] = (
    ("total =+ ", "total += ", 0.97),  # DL002: parses, wrong, confident
    ("return (x + 1\n", "return (x + 1)\n", 0.55),  # DL001: syntax error, any confidence
    ("value == None", "value is None", 0.5),  # below the default threshold
    ("count =+ 1", "count += 1", 0.93),  # DL002 after non-ASCII text on a CRLF line
)


@dataclass(frozen=True)
class PlantedRepairer:
    plants: tuple[tuple[str, str, float], ...] = PLANTS
    max_chars: int = 4000
    fail_on: str = ""  # raise when a block contains this (an internal error)
    calls: list | None = None  # records (block,) when given (in-process only)

    def fits(self, block: str) -> bool:
        return len(block) <= self.max_chars

    def repair(self, prefix: str, block: str, suffix: str) -> Proposal:
        if self.calls is not None:
            self.calls.append(block)
        if self.fail_on and self.fail_on in block:
            raise RuntimeError("planted failure")
        conf, text = 0.99, block
        for old, new, c in self.plants:
            if old in text:
                text = text.replace(old, new, 1)
                conf = min(conf, c)
        return Proposal(text, conf)


@dataclass(frozen=True)
class PlantedFactory:
    plants: tuple[tuple[str, str, float], ...] = PLANTS
    fail_on: str = ""

    def __call__(self) -> PlantedRepairer:
        return PlantedRepairer(self.plants, fail_on=self.fail_on)


@dataclass(frozen=True)
class BrokenFactory:
    def __call__(self):
        raise OSError("model directory /nowhere does not exist")


@dataclass(frozen=True)
class RankingRepairer(PlantedRepairer):
    """Also ranks block variants (DL003): a variant scores `weight` nats per occurrence of
    a preferred name, and `suspects` flags only blocks holding one of `flag`."""

    preferred: tuple[tuple[str, float], ...] = ()
    flag: tuple[str, ...] | None = None  # None: no cheap pass at all
    scans: list | None = None  # records the spans each `suspects` call got

    def rank(self, prefix: str, block: str, suffix: str, variants: list[str]) -> list[float]:
        return [sum(w * v.count(name) for name, w in self.preferred) for v in variants]

    def suspects(self, text: str, spans, level: float) -> list[bool]:
        if self.scans is not None:
            self.scans.append(list(spans))
        return [self.flag is None or any(f in text[s:e] for f in self.flag) for s, e in spans]
