"""Every notebook in notebooks/ is stored clean and runnable by kdal-run (see kdal_lib.runner.check_notebook).

With no notebooks yet the parametrised test reports one explicit skip; test_every_numbered_notebook_is_checked
makes sure the list it runs over misses none of notebooks/NN_*.ipynb, and the fixture and negative tests
exercise the checker itself either way.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kdal_lib.runner import check_notebook, main

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
SMOKE_DIR = REPO / "params" / "smoke"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runner"

_params = [pytest.param(p, id=p.name) for p in NOTEBOOKS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no notebooks/*.ipynb in the repo yet"), id="no-notebooks")]


@pytest.mark.parametrize("path", _params)
def test_notebook_is_clean(path):
    problems = check_notebook(path, smoke_dir=SMOKE_DIR)
    assert not problems, f"{path.name}:\n  - " + "\n  - ".join(problems)


def test_every_numbered_notebook_is_checked():
    numbered = set(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert numbered <= set(NOTEBOOKS), sorted(p.name for p in numbered - set(NOTEBOOKS))


def _smoke(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "smoke"
    d.mkdir(parents=True, exist_ok=True)
    for stem, text in files.items():
        (d / f"{stem}.yaml").write_text(text)
    return d


@pytest.mark.parametrize("name", ["ok", "fails"])
def test_runner_fixtures_are_clean(name, tmp_path):
    smoke = _smoke(tmp_path, {"ok": "SEED: 1\nSCALE: 0.5\n", "fails": "SEED: 1\n"})
    assert check_notebook(FIXTURES / f"{name}.ipynb", smoke_dir=smoke) == []


def _dirty(tmp_path: Path, how: str) -> Path:
    nb = nbformat.read(str(FIXTURES / "ok.ipynb"), as_version=4)
    params, work = nb.cells[1], nb.cells[2]
    if how == "output":
        work.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    elif how == "execution_count":
        work.execution_count = 3
    elif how == "two_parameters_cells":
        work.metadata["tags"] = ["parameters"]
    elif how == "no_parameters_cell":
        params.metadata["tags"] = []
    elif how == "non_literal":
        params.source += "\nN: int = len([1, 2])  # not a literal"
    elif how == "no_comment":
        params.source += "\nN: int = 2"
    elif how == "not_an_assignment":
        params.source += "\nprint(SEED)  # side effect"
    elif how == "papermill_disagrees":
        params.source += '\nQUERY: str = "a=b"  # papermill skips lines with two ='
    elif how == "sys_path":
        work.source = "import sys\nsys.path.insert(0, '..')\n" + work.source
    elif how == "kernelspec":
        nb.metadata.kernelspec.name = "kdal"
    elif how == "no_save_results":
        work.source = "print(SEED)"
    elif how == "no_out_dir":
        params.source = "SEED: int = 0  # seed"
        work.source = "from kdal_lib.metrics import save_results\nsave_results('x', 'ok', records=[])"
    elif how == "injected_cell":
        cell = nbformat.v4.new_code_cell("SEED = 1")
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(2, cell)
    path = tmp_path / "ok.ipynb"  # same stem, so the smoke preset below applies
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("how, expect", [
    ("output", "outputs"),
    ("execution_count", "execution_count"),
    ("two_parameters_cells", "2 cells tagged 'parameters'"),
    ("no_parameters_cell", "0 cells tagged 'parameters'"),
    ("non_literal", "not set to a literal"),
    ("no_comment", "no trailing"),
    ("not_an_assignment", "not a plain"),
    ("papermill_disagrees", "papermill reads"),
    ("sys_path", "sys.path"),
    ("kernelspec", "kernelspec"),
    ("no_save_results", "save_results"),
    ("no_out_dir", "OUT_DIR"),
    ("injected_cell", "injected-parameters"),
])
def test_dirty_notebook_is_reported(how, expect, tmp_path):
    path = _dirty(tmp_path, how)
    problems = check_notebook(path, smoke_dir=_smoke(tmp_path, {"ok": "SEED: 1\n"}))
    assert any(expect in p for p in problems), problems


def test_smoke_preset_rules(tmp_path):
    ok = FIXTURES / "ok.ipynb"
    assert any("no smoke preset" in p for p in check_notebook(ok, smoke_dir=tmp_path / "empty"))
    problems = check_notebook(ok, smoke_dir=_smoke(tmp_path, {"ok": "SEED: 1\nEPOCHS: 3\nOUT_DIR: x\n"}))
    assert any("'EPOCHS'" in p for p in problems) and any("sets OUT_DIR" in p for p in problems), problems
    assert check_notebook(ok, smoke_dir=None) == []


def test_check_cli(tmp_path, capsys):
    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    (nbs / "01_ok.ipynb").write_bytes((FIXTURES / "ok.ipynb").read_bytes())
    _smoke(params, {"01_ok": "SEED: 2\n"})
    args = ["--check", "--notebooks-dir", str(nbs), "--params-dir", str(params)]
    assert main(args) == 0
    assert "01_ok: clean" in capsys.readouterr().out
    dirty = _dirty(tmp_path, "output")
    (nbs / "02_dirty.ipynb").write_bytes(dirty.read_bytes())
    _smoke(params, {"02_dirty": "SEED: 2\n"})
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "02_dirty: 1 problem(s)" in out and "outputs" in out
