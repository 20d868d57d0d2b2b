import pytest
import torch

from diffusion_core.testing import sample_code, tiny_model, tiny_tokenizer


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


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small source tree (stdlib modules) to train on."""
    d = tmp_path_factory.mktemp("src")
    for i, text in enumerate(sample_code()):
        (d / f"m{i}.py").write_text(text)
    return d
