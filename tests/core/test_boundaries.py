"""The invariants of ARCHITECTURE.md that the import graph decides, read from the sources.

Every module's imports are collected with `ast` (top-level and function-local imports,
and `importlib.import_module("...")` / `__import__("...")` with a constant name), so a
lazy import inside a function counts as much as one at the top of the file.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = ("diffusion_core", "cache", "lsp_server", "benchmarks")  # the folders
# The folders cache/ and benchmarks/ install as these import names (pyproject.toml's
# [tool.setuptools] package-dir); the folder names themselves must never be imported: from
# the repository root they would load a second copy of the same modules.
IMPORT_NAMES = {"diffusion_core": "diffusion_core", "lsp_server": "lsp_server",
                "cache": "dlsp_cache", "benchmarks": "dlsp_benchmarks"}
FOLDER_NAMES = {"cache", "benchmarks"}
LSP = {"pygls", "lsprotocol"}

# package folder -> top-level modules it must never import
FORBIDDEN = {
    "diffusion_core": {"lsp_server", "dlsp_cache", "dlsp_benchmarks", *LSP},
    "cache": {"lsp_server", "dlsp_benchmarks", *LSP},
    "lsp_server": {"dlsp_benchmarks"},
    "benchmarks": set(LSP),
}
# The benchmark's client plays the editor: the one module outside lsp_server that speaks LSP.
LSP_CLIENTS = {"benchmarks/lsp_client.py"}
# The modules of lsp_server that speak LSP; every other one (the service, the jobs, check,
# the CLI) is LSP-free.
LSP_MODULES = (
    "lsp_server/server.py", "lsp_server/session.py", "lsp_server/loading.py",
    "lsp_server/rpc.py", "lsp_server/features/*.py",
)
UNPICKLERS = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def imports_of(source: str) -> set[str]:
    """Dotted names of every module `source` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                out.add(arg.value)
    return out


def top(name: str) -> str:
    return name.split(".", 1)[0]


def sources(pattern: str = "*.py", folders: tuple[str, ...] = PACKAGES) -> list[tuple[str, str]]:
    files = []
    for pkg in folders:
        for path in sorted((ROOT / pkg).rglob(pattern)):
            files.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
    return files


def crossings(files: list[tuple[str, str]]) -> list[str]:
    bad = []
    for rel, src in files:
        pkg = rel.split("/", 1)[0]
        forbidden = FORBIDDEN.get(pkg, set()) | FOLDER_NAMES
        if rel in LSP_CLIENTS:
            forbidden = forbidden - LSP
        if pkg == "lsp_server" and not any(Path(rel).match(p) for p in LSP_MODULES):
            forbidden = forbidden | LSP
        for name in sorted(imports_of(src)):
            if top(name) in forbidden:
                bad.append(f"{rel} imports {name}")
        if pkg == "lsp_server":  # a module path in a string is an import waiting to happen
            # (the `eval` and `bench` subcommands come in as entry points, by name only)
            for node in ast.walk(ast.parse(src)):
                v = getattr(node, "value", None) if isinstance(node, ast.Constant) else None
                if isinstance(v, str) and top(v) in {"dlsp_benchmarks", "benchmarks"} \
                        and v.isidentifier() is False and " " not in v:
                    bad.append(f"{rel} names {v}")
    return bad


def unpickling(files: list[tuple[str, str]]) -> list[str]:
    """Imports of pickle-family modules, `torch.load` without `weights_only=True`, and any
    call with `allow_pickle=True` or `weights_only=False`."""
    bad = []
    for rel, src in files:
        for name in sorted(imports_of(src)):
            if top(name) in UNPICKLERS:
                bad.append(f"{rel} imports {name}")
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "load" and \
                    isinstance(f.value, ast.Name) and f.value.id == "torch":
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    bad.append(f"{rel}:{node.lineno} torch.load without weights_only=True")
            for key, value in (("allow_pickle", True), ("weights_only", False)):
                v = kw.get(key)
                if isinstance(v, ast.Constant) and v.value is value:
                    bad.append(f"{rel}:{node.lineno} {key}={value}")
    return bad


def test_the_sources_are_found():
    files = sources()
    assert len(files) > 60
    assert {rel.split("/", 1)[0] for rel, _ in files} == set(PACKAGES)


def test_import_boundaries():
    """Only lsp_server (and the benchmark's LSP client) imports pygls or lsprotocol;
    diffusion_core imports neither lsp_server nor the cache; the cache imports no LSP;
    nothing in the application imports the benchmarks; the shared jobs are LSP-free."""
    bad = crossings(sources())
    assert not bad, "\n".join(bad)


def folder_name_imports(files: list[tuple[str, str]]) -> list[str]:
    return [f"{rel} imports {name}" for rel, src in files for name in sorted(imports_of(src))
            if top(name) in FOLDER_NAMES]


def test_nothing_imports_the_folder_names():
    """`cache` and `benchmarks` are folders, not import names: every module (the tests
    too) imports them as dlsp_cache and dlsp_benchmarks."""
    files = sources(folders=(*PACKAGES, "tests"))
    assert any(rel.startswith("tests/") for rel, _ in files)
    bad = folder_name_imports(files)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("line", [
    "from cache import spill",
    "import cache.store",
    "from benchmarks.soak import frame",
    "def f():\n    import benchmarks\n",
    "import importlib\nimportlib.import_module('benchmarks.cli')",
])
def test_a_folder_name_import_is_caught(line):
    assert folder_name_imports([("tests/core/x.py", line)])
    assert crossings([("lsp_server/x.py", line)])


def test_folder_name_lookalikes_pass():
    assert not folder_name_imports([("tests/x.py", "import cachetools\nfrom dlsp_cache import spill\n"
                                                   "cache = {}\ncache.clear()")])


def test_pyproject_maps_the_folders_to_the_import_names():
    """pyproject.toml installs each folder under its import name and lists every package
    (a subpackage left out would be missing from the wheel)."""
    st = PYPROJECT["tool"]["setuptools"]
    assert st["package-dir"] == {IMPORT_NAMES[f]: f for f in FOLDER_NAMES}
    want = set()
    for folder in PACKAGES:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            want.add(".".join((IMPORT_NAMES[folder], *rel)))
    listed = set(st["packages"])
    assert want <= listed, sorted(want - listed)
    assert not {top(p) for p in listed} & FOLDER_NAMES
    for p in listed:  # every listed package is a folder of the tree
        folder = {v: k for k, v in IMPORT_NAMES.items()}[top(p)]
        assert (ROOT / folder / Path(*p.split(".")[1:])).is_dir(), p


def test_the_cli_plugins_are_declared():
    """`eval` and `bench` plug into lsp_server's CLI as entry points of the benchmarks: each
    names a module of dlsp_benchmarks with `add_arguments` and `run`."""
    from lsp_server.cli import PLUGIN_GROUP, PLUGIN_HELP

    eps = PYPROJECT["project"]["entry-points"][PLUGIN_GROUP]
    assert set(eps) == set(PLUGIN_HELP) == {"eval", "bench"}
    folders = {v: k for k, v in IMPORT_NAMES.items()}
    for name, target in eps.items():
        module = target.split(":", 1)[0]
        assert top(module) == "dlsp_benchmarks", (name, target)
        path = ROOT / folders[top(module)] / (Path(*module.split(".")[1:]).as_posix() + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= defined, (name, path)


def test_nothing_is_unpickled():
    bad = unpickling(sources())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("rel, line", [
    ("diffusion_core/x.py", "from lsp_server.jobs import clean"),
    ("diffusion_core/x.py", "def f():\n    import dlsp_cache.store\n"),
    ("diffusion_core/x.py", "import importlib\nimportlib.import_module('lsp_server.server')"),
    ("cache/x.py", "from lsprotocol import types"),
    ("cache/x.py", "import pygls.server"),
    ("lsp_server/service.py", "from lsprotocol import types as t"),
    ("lsp_server/check/analyze.py", "import pygls"),
    ("lsp_server/cli.py", "import dlsp_benchmarks.quality"),
    ("lsp_server/cli.py", "M = {'speed': 'dlsp_benchmarks.speed'}"),
    ("lsp_server/cli.py", "M = {'eval': ('dlsp_benchmarks.quality', 'help')}"),
    ("lsp_server/cli.py", "import importlib\nimportlib.import_module('dlsp_benchmarks.cli')"),
    ("lsp_server/jobs.py", "from pygls.workspace import Workspace"),
    ("benchmarks/latency.py", "from pygls.lsp.client import LanguageClient"),
])
def test_a_crossing_is_caught(rel, line):
    assert crossings([(rel, line)])


@pytest.mark.parametrize("line", [
    "import pickle",
    "from pickle import loads",
    "def f(p):\n    import dill\n",
    "import torch\ntorch.load(p)",
    "import torch\ntorch.load(p, weights_only=False)",
    "import numpy as np\nnp.load(p, allow_pickle=True)",
])
def test_an_unpickler_is_caught(line):
    assert unpickling([("cache/x.py", line)])


def test_allowed_code_passes():
    assert not crossings([("lsp_server/server.py", "from lsprotocol import types as t")])
    assert not crossings([("benchmarks/lsp_client.py", "from pygls.lsp.client import C")])
    assert not crossings([("benchmarks/cli.py", "from dlsp_benchmarks import latency")])
    assert not crossings([("lsp_server/loading.py", "from dlsp_cache import DocumentCacheStore")])
    assert not unpickling([("cache/x.py", "import torch\ntorch.load(p, weights_only=True)")])


def import_graph(files: list[tuple[str, str]]) -> dict[str, set[str]]:
    """module -> the modules of `files` it imports (a package's own `__init__` not counted
    for its submodules: `from dlsp_cache import spill` is an import of dlsp_cache.spill).
    Modules are named by their import names (cache/store.py is dlsp_cache.store)."""
    mods = {}
    for rel, src in files:
        folder, _, rest = rel.partition("/")
        m = f"{IMPORT_NAMES.get(folder, folder)}/{rest}"[:-3].replace("/", ".").removesuffix(".__init__")
        mods[m] = src
    graph: dict[str, set[str]] = {}
    for m, src in mods.items():
        deps = set()
        for name in imports_of(src):
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in mods:
                    if cand != m and not m.startswith(cand + "."):
                        deps.add(cand)
                    break
        graph[m] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


KNOWN_CYCLES: list[list[str]] = []  # none


def test_no_import_cycles():
    """No circle of imports (lazy ones included): `dlsp_benchmarks.cli` imports the
    benchmarks, they import `dlsp_benchmarks.options`, never the cli; the server imports its
    handlers."""
    found = [c for c in cycles(import_graph(sources())) if c not in KNOWN_CYCLES]
    assert not found, found


def test_a_cycle_is_caught():
    files = [("benchmarks/cli.py", "from dlsp_benchmarks import latency"),
             ("benchmarks/latency.py", "def f():\n    from dlsp_benchmarks.cli import prepare\n")]
    assert cycles(import_graph(files)) == [["dlsp_benchmarks.cli", "dlsp_benchmarks.latency"]]


def test_the_import_graph_sees_the_real_edges():
    """The graph is built on import names: the benchmarks' cli reaches its benchmarks and
    the server's loading reaches the cache (were the names wrong, no edge would be found
    and no cycle could ever be)."""
    graph = import_graph(sources())
    assert {"dlsp_benchmarks.options", "dlsp_benchmarks.latency"} <= graph["dlsp_benchmarks.cli"]
    assert "dlsp_cache" in graph["lsp_server.loading"]
    assert "dlsp_cache.spill" in graph["dlsp_cache.store"]


MAX_FILE_LINES = 400  # lsp_server/
MAX_FUNCTION_LINES = 80  # everywhere outside tests
# Longer functions kept for now (the decoding loops and the training loops, owned by the
# model work): each is one loop whose state would have to travel between helpers.
# The exceptions, and why: each is one loop whose state (the KV cache, the block being
# denoised, the stop and healing constraints; the optimizer, RNG and checkpoint clock)
# changes at every step, so cutting it up means threading that state through helpers
# and reading the decode or training step in several places. 85-102 lines each.
LONG_FUNCTIONS = {
    "diffusion_core/hf_prompts.py:resolve_prompt_tokens",  # one table of prompt formats, 88
    "diffusion_core/posttrain/loop.py:posttrain",  # the post-training loop, 102
    "diffusion_core/sampler.py:sample_blocks",  # the block diffusion decode loop, 98
    "diffusion_core/speculative.py:sample_draft_verify",  # the draft-and-verify loop, 85
    "diffusion_core/train.py:train",  # the training loop (resume, DDP, checkpoints), 102
}


def test_files_and_functions_stay_small():
    long_files = [rel for rel, src in sources() if rel.startswith("lsp_server/")
                  and src.count("\n") > MAX_FILE_LINES]
    long_functions = []
    for rel, src in sources():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    long_functions.append(f"{rel}:{node.name} ({n} lines)")
    assert not long_files and not long_functions, (long_files, long_functions)
