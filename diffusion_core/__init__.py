"""diffusion_core: pure computation for the block-diffusion code model.

Model, corruption processes, noise schedule, sampler and training. No I/O beyond
loading and saving weights; no knowledge of documents, editors or LSP.

Importing the package (and `config`, `errors`) does not import torch: the language
server answers `initialize` while torch and the model load in the background.
"""

from diffusion_core.config import ModelConfig, SamplerConfig

__all__ = ["KVCache", "ModelConfig", "SamplerConfig"]


def __getattr__(name: str):
    if name == "KVCache":  # torch: only when asked for
        from diffusion_core.kv_cache import KVCache

        return KVCache
    raise AttributeError(f"module 'diffusion_core' has no attribute {name!r}")
