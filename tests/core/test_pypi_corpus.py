"""tools/pypi_corpus.py: archives are read without running anything, eval text stays out."""

import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("pypi_corpus", ROOT / "tools" / "pypi_corpus.py")
pypi_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pypi_corpus)

SOLUTION = "    return [x for x in strings if substring in x and len(x) > 0]\n    return sorted(set(result_list_values))\n"
PROMPT = 'def f(s):\n    """ Filter an input list of strings only for ones that contain given substring, as asked.\n    """\n'
CLEAN = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n"


def _contamination():
    c = pypi_corpus.Contamination(Path("/nonexistent"))
    assert not c.lines  # no eval dir: nothing to filter
    c.add(PROMPT, SOLUTION)
    return c


def test_files_with_eval_text_are_flagged():
    c = _contamination()
    assert not c.flags(CLEAN)
    assert c.flags(CLEAN + SOLUTION)  # two solution lines
    assert not c.flags(CLEAN + SOLUTION.splitlines()[0])  # one common line is not enough
    assert c.flags("# Filter an input list of strings only for ones that contain given substring, as asked.\n")
    assert c.flags("# from the HumanEval set\n")


def test_archives_keep_clean_python_files_only(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/__init__.py", CLEAN)
        z.writestr("pkg/leak.py", CLEAN + SOLUTION)
        z.writestr("pkg/data.json", "{}")
        z.writestr("../escape.py", CLEAN)
    kept, dropped = pypi_corpus.write_distribution(whl, None, tmp_path / "out", _contamination())
    assert (kept, dropped) == (1, 2)
    assert (tmp_path / "out" / "pkg" / "__init__.py").read_text() == CLEAN
    assert not (tmp_path / "escape.py").exists()

    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        for name in ("pkg-1.0/pkg/a.py", "pkg-1.0/setup.py"):
            info = tarfile.TarInfo(name)
            info.size = len(CLEAN)
            t.addfile(info, io.BytesIO(CLEAN.encode()))
    kept, dropped = pypi_corpus.write_distribution(sdist, "pkg-1.0/pkg/", tmp_path / "out2", _contamination())
    assert (kept, dropped) == (1, 0)  # only the members under the prefix; setup.py is not run or kept
    assert (tmp_path / "out2" / "pkg-1.0" / "pkg" / "a.py").exists()
