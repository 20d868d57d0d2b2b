"""Request counters and the `diffusion-lsp.status` answer.

`Metrics.recent` keeps the typed timings of the last completions by request id; the status
command returns them when asked (`{"recentCompletions": true}` as its argument), so a
client (the latency benchmark) reads them there, not from log text.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lsp_server.service import Completion

RECENT = 2048  # completions whose timings the status command reports


@dataclass
class Metrics:
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    served: int = 0
    cancelled: int = 0
    superseded: int = 0
    stale: int = 0
    errors: int = 0
    repairs: int = 0
    name_jobs: int = 0  # DL003 model jobs submitted (`features.sync.names_job`)

    def completed(self, rid: Any, res: Completion, ms: float) -> None:
        self.served += 1
        self.latencies_ms.append(ms)
        self.recent.append({"id": str(rid), "mode": res.mode, "chars": len(res.text),
                            "server_ms": round(ms, 2), **res.timings.to_json()})

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        xs = sorted(self.latencies_ms)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_served": self.served, "requests_cancelled": self.cancelled,
            "requests_superseded": self.superseded, "stale_results_dropped": self.stale,
            "errors": self.errors, "repairs": self.repairs,
            "name_jobs": self.name_jobs,
            "completion_latency_ms": {"p50": self.percentile(0.5), "p95": self.percentile(0.95),
                                      "n": len(self.latencies_ms)},
        }


def status(ls, recent: bool = False) -> dict[str, Any]:
    """The status command's answer for the server `ls` (`recent`: with the timings of the
    last completions)."""
    import torch

    e = ls.engine
    out: dict[str, Any] = {
        "server": {"name": ls.name, "version": ls.version},
        "model": None if e is None else {
            "path": str(e.loaded.path), "hash": e.model_hash, "kind": e.model.cfg.kind,
            "parameters": sum(x.numel() for x in e.model.parameters()),
            "device": str(next(e.model.parameters()).device),
        },
        "torch_threads": torch.get_num_threads(),
        "model_error": ls.load_error,
        "loading": ls._loading is not None,
        "settings": ls.settings.to_json(),
        "position_encoding": ls.session.encoding,
        "open_documents": len(ls.docs),
        "worker": {"running": ls.worker.running, "queued": ls.worker.queued},
        "cache": ls.store.stats() if ls.store is not None else None,
    }
    out.update(ls.metrics.to_json())
    if recent:
        out["recent_completions"] = list(ls.metrics.recent)
    return out
