import pytest
import torch

from diffusion_core.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def model64(tok):
    """A tiny diffusion model in float64, so cached and uncached paths compare exactly."""
    torch.manual_seed(0)
    return tiny_model(tok).double()


@pytest.fixture(scope="session")
def ar64(tok):
    return tiny_model(tok, kind="ar").double()
