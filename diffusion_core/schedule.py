"""Noise schedule of the masked diffusion process.

Linear schedule alpha_t = 1 - t: each token is masked with probability t. The
continuous-time ELBO weight of a masked token is -alpha'_t / (1 - alpha_t) = 1/t
(MDLM, Sahoo et al. 2024, eq. 10). t is clipped to [t_min, 1] to tame the variance of
the 1/t weight (BD3-LM's "clipped" schedule); the data pipeline draws it uniformly there
(`diffusion_core.data`).
"""

from __future__ import annotations

import torch


def loss_weight(t: torch.Tensor) -> torch.Tensor:
    """ELBO weight of a masked token at mask rate t under the linear schedule."""
    return 1.0 / t
