"""diffusion_core: pure computation for the block-diffusion code model.

Model, corruption processes, noise schedule, sampler and training. No I/O beyond
loading and saving weights; no knowledge of documents, editors or LSP.
"""

from diffusion_core.config import ModelConfig, SamplerConfig
from diffusion_core.kv_cache import KVCache

__all__ = ["KVCache", "ModelConfig", "SamplerConfig"]
