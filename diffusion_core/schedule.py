"""Noise schedule of the masked diffusion process.

Linear schedule alpha_t = 1 - t: each token is masked with probability t. The
continuous-time ELBO weight of a masked token is -alpha'_t / (1 - alpha_t) = 1/t
(MDLM, Sahoo et al. 2024, eq. 10). t is clipped to [t_min, 1] to tame the variance of
the 1/t weight (BD3-LM's "clipped" schedule).
"""

from __future__ import annotations

import torch


def sample_t(n: int, generator: torch.Generator, t_min: float = 0.05) -> torch.Tensor:
    """(n,) mask rates, stratified over [t_min, 1] (low-discrepancy sampling, MDLM sec. 3.5)."""
    u = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=generator, dtype=torch.float64)) / n
    u = u[torch.randperm(n, generator=generator)]
    return (t_min + (1.0 - t_min) * u).float()


def loss_weight(t: torch.Tensor) -> torch.Tensor:
    """ELBO weight of a masked token at mask rate t under the linear schedule."""
    return 1.0 / t
