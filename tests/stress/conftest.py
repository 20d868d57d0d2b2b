"""The stress tests use the language-server tests' tiny model fixture."""

from tests.lsp.conftest import tiny_model  # noqa: F401
