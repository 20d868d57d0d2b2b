"""The model behind `check`: a `Repairer` (`lsp_server.repair.RepairModel`) proposes a
replacement for one block.

The check logic runs the shared repair job (`lsp_server.repair.repair_block`) with it, so it
runs the same with the real engine (`Service.model()`, what `EngineRepairerFactory` builds)
and with any other implementation a caller passes (tests plant known proposals that way).
Worker processes receive a picklable factory, not a repairer, and call it once: each
worker loads the model once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lsp_server.repair import Proposal, RepairModel

Repairer = RepairModel
RepairerFactory = Callable[[], Repairer]  # must be picklable for --jobs > 1

__all__ = ["EngineRepairerFactory", "Proposal", "Repairer", "RepairerFactory"]


@dataclass(frozen=True)
class EngineRepairerFactory:
    """Loads a model directory (None: the shipped default model) into the service's
    `EngineModel`."""

    model_dir: str | None = None
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads in this process; 0 leaves torch's default
    max_change: float | None = None  # SamplerConfig.repair_max_change; None: the default

    def __call__(self) -> Repairer:
        import torch

        from diffusion_core.config import SamplerConfig
        from diffusion_core.engine import Engine
        from lsp_server.service import Service

        if self.threads > 0:
            torch.set_num_threads(self.threads)
        sampler = None if self.max_change is None else SamplerConfig(repair_max_change=self.max_change)
        return Service(Engine.from_path(self.model_dir, device=self.device, sampler=sampler)).model()
