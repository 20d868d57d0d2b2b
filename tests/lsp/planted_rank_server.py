"""The real server (`python -m lsp_server`) with a planted DL003 ranker, for
tests/lsp/test_name_diagnostics.py. A tiny random model chooses arbitrarily between a
name and its near names; this ranker always prefers the first near name (log-likelihood
10 against 0 for the name as written), and for a block that mentions `slow_` it holds the
model worker until its job is cancelled (as the engine does, between forward passes)."""

from __future__ import annotations

import sys
import time

from diffusion_core.sampler import Cancelled
from lsp_server.__main__ import main
from lsp_server.service import EngineModel


def planted_rank(self, prefix: str, block: str, suffix: str, variants: list[str]) -> list[float]:
    if "slow_" in block:
        while not (self.cancel is not None and self.cancel()):
            time.sleep(0.01)
        raise Cancelled()
    return [0.0, 10.0] + [-10.0] * (len(variants) - 2)


EngineModel.rank = planted_rank

if __name__ == "__main__":
    sys.exit(main())
