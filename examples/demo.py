"""A small file to try diffusion-lsp on: complete line 12, or repair lines 16-18."""

import os


def list_python_files(root):
    """Return the paths of all .py files under root, sorted."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                
    return sorted(found)


def mean(values):
    if not values
        return 0.0
    return sum(values) / len(values)
