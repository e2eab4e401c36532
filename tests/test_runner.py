"""kdal-run (kdal_lib.runner) on the two fixture notebooks in tests/fixtures/runner.

Each kernel start costs a few seconds, so the suite executes notebooks only three times: the
module-scoped CLI run (ok + fails) and one Python-API run of ok. Everything else (parameter
parsing, precedence, validation errors, --prepare-only) runs no kernel.
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from kdal_lib.metrics import load_results
from kdal_lib.runner import (RunnerError, collect_parameters, main, notebook_parameters, parse_param_value,
                             resolve_notebooks, run_notebooks)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runner"
OK, FAILS = FIXTURES / "ok.ipynb", FIXTURES / "fails.ipynb"


def _common(tmp: Path) -> list[str]:
    return ["--notebooks-dir", str(FIXTURES), "--params-dir", str(tmp / "params"), "--out", str(tmp / "runs"), "-q"]


def _params_tree(tmp: Path) -> Path:
    """A smoke preset for ok, and a -f file with a global SEED and an ok-only section."""
    (tmp / "params" / "smoke").mkdir(parents=True, exist_ok=True)
    (tmp / "params" / "smoke" / "ok.yaml").write_text("SEED: 1\nSCALE: 3.0\n")
    f = tmp / "extra.yaml"
    f.write_text("SEED: 3\nok:\n  SEED: 5\n  SCALE: 2.0\n")
    return f


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """kdal-run ok fails --preset smoke -f extra.yaml -p SEED 7 (two executions, shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("cli")
    extra = _params_tree(tmp)
    before = {p: p.read_bytes() for p in (OK, FAILS)}
    # capsys is function-scoped: capture this module-scoped run by hand
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["ok", "fails", *_common(tmp), "--preset", "smoke", "-f", str(extra), "-p", "SEED", "7"])
    runs = sorted((tmp / "runs").iterdir())
    assert len(runs) == 1, runs
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "run": runs[0], "before": before}


def test_cli_run_layout_and_sources_untouched(cli_run):
    run = cli_run["run"]
    assert cli_run["rc"] == 1  # fails failed
    for stem in ("ok", "fails"):
        executed = nbformat.read(str(run / f"{stem}.ipynb"), as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    for path, data in cli_run["before"].items():
        assert path.read_bytes() == data, f"{path.name} was modified by the run"
    assert (run / "ok" / "metrics.json").is_file()
    assert not (run / "fails" / "metrics.json").exists()
    assert str(run) in cli_run["out"]


def test_cli_precedence_preset_file_param(cli_run):
    # preset SEED=1 SCALE=3.0 < file (SEED=3, ok: SEED=5 SCALE=2.0) < -p SEED 7
    m = load_results(cli_run["run"] / "ok")
    assert m["params"] == {"SEED": 7, "SCALE": 2.0}
    assert m["records"] == [{"dataset": "toy", "method": "m", "seed": 7, "AUROC": 1.0}]


def test_cli_results_csv_and_summary(cli_run):
    run = cli_run["run"]
    df = pd.read_csv(run / "results.csv")
    assert list(df.columns[:2]) == ["notebook", "status"]
    assert df["notebook"].tolist() == ["ok", "fails"]
    ok = df[df.notebook == "ok"].iloc[0]
    assert ok.status == "ok" and ok.seed == 7 and ok.AUROC == pytest.approx(1.0)
    assert df[df.notebook == "fails"].iloc[0].status == "failed"

    summary = json.loads((run / "summary.json").read_text())
    nbs = summary["notebooks"]
    assert summary["exit_code"] == 1
    assert nbs["ok"]["status"] == "ok" and nbs["ok"]["metrics"] == str(run / "ok" / "metrics.json")
    assert nbs["ok"]["params"]["OUT_DIR"] == str(run / "ok")
    assert nbs["ok"]["seconds"] > 0 and nbs["ok"]["executed"] == str(run / "ok.ipynb")
    err = nbs["fails"]["error"]
    assert nbs["fails"]["status"] == "failed" and nbs["fails"]["metrics"] is None
    assert err["ename"] == "ValueError" and err["evalue"] == "boom from fixture"
    assert err["cell"] == 4 and "raise ValueError" in err["source"]  # 4th cell of fails.ipynb, counting from 1


def test_cli_failure_message(cli_run):
    err = cli_run["err"]
    assert "FAILED fails" in err
    assert "cell #4" in err and "In [" in err
    assert 'raise ValueError("boom from fixture")' in err
    assert "ValueError: boom from fixture" in err
    assert "FAILED ok" not in err


def test_api_run_explicit_out_dir_and_string_overrides(tmp_path):
    custom = tmp_path / "custom"
    summary = run_notebooks([str(OK)], overrides={"SEED": "11", "SCALE": 1, "OUT_DIR": str(custom)},
                            out_root=tmp_path / "runs", notebooks_dir=FIXTURES, params_dir=tmp_path, echo=False)
    assert summary.exit_code == 0 and summary.ok
    res = summary["ok"]
    assert res.status == "ok" and res.metrics == str(custom / "metrics.json")
    assert not (summary.run_dir / "ok").exists()  # the user's OUT_DIR wins over <run>/<stem>
    m = load_results(custom)
    assert m["params"] == {"SEED": 11, "SCALE": 1.0}  # "11" parsed as int; int 1 fitted to the float SCALE
    assert isinstance(m["params"]["SCALE"], float)
    assert pd.read_csv(summary.results_csv)["status"].tolist() == ["ok"]


def test_prepare_only_does_not_execute(tmp_path):
    rc = main(["ok", *_common(tmp_path), "--prepare-only", "-p", "SEED", "9"])
    assert rc == 0
    (run,) = (tmp_path / "runs").iterdir()
    nb = nbformat.read(str(run / "ok.ipynb"), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "SEED = 9" in injected[0].source and str(run / "ok") in injected[0].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert not (run / "ok").exists()
    assert json.loads((run / "summary.json").read_text())["notebooks"]["ok"]["status"] == "prepared"


def test_unknown_parameter_rejected_before_running(tmp_path, capsys):
    rc = main(["ok", *_common(tmp_path), "-p", "NOPE", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "'NOPE'" in err and "ok" in err and "SEED" in err and "SCALE" in err
    assert not (tmp_path / "runs").exists()  # nothing ran, no run folder

    f = tmp_path / "typo.yaml"
    f.write_text("ok:\n  SEEED: 2\n")
    assert main(["ok", "fails", *_common(tmp_path), "-f", str(f)]) == 2
    assert "SEEED" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_wrong_type_rejected(tmp_path, capsys):
    assert main(["ok", *_common(tmp_path), "-p", "SEED", "abc"]) == 2
    assert "SEED" in capsys.readouterr().err


def test_unknown_notebook_and_preset(tmp_path, capsys):
    assert main(["nope", *_common(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "ok" in err and "fails" in err
    assert main(["ok", *_common(tmp_path), "--preset", "smoke"]) == 2  # no params/smoke in tmp_path
    assert "smoke" in capsys.readouterr().err
    assert main([*_common(tmp_path)]) == 2  # 'all' finds no NN_*.ipynb among the fixtures
    assert not (tmp_path / "runs").exists()


def test_parameters_cell_count_checked(tmp_path):
    nb = nbformat.read(str(OK), as_version=4)
    nb.cells[2].metadata["tags"] = ["parameters"]
    two = tmp_path / "two.ipynb"
    nbformat.write(nb, str(two))
    with pytest.raises(RunnerError, match="2 cells"):
        notebook_parameters(two)
    for c in nb.cells:
        c.metadata.pop("tags", None)
    nbformat.write(nb, str(two))
    with pytest.raises(RunnerError, match="no cell"):
        notebook_parameters(two)
    assert set(notebook_parameters(OK)) == {"SEED", "SCALE", "OUT_DIR"}


def test_resolve_notebooks(tmp_path):
    for name in ("01_alpha", "02_beta", "10_gamma", "scratch"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    names = lambda specs: [p.stem for p in resolve_notebooks(specs, tmp_path)]  # noqa: E731
    assert names(None) == ["01_alpha", "02_beta", "10_gamma"]
    assert names(["all"]) == names([]) == ["01_alpha", "02_beta", "10_gamma"]
    assert names(["2", "01", "10_gamma", "scratch", "01_alpha"]) == ["02_beta", "01_alpha", "10_gamma", "scratch"]
    assert names([str(tmp_path / "02_beta.ipynb")]) == ["02_beta"]
    assert names(["01_al"]) == ["01_alpha"]
    with pytest.raises(RunnerError, match="03"):
        resolve_notebooks(["03"], tmp_path)


def test_parse_param_value():
    assert parse_param_value("3") == 3 and isinstance(parse_param_value("3"), int)
    assert parse_param_value("thyroid") == "thyroid"
    assert parse_param_value("0.5") == 0.5
    assert parse_param_value("1e-3") == pytest.approx(1e-3)
    assert parse_param_value("true") is True
    assert parse_param_value("[1, 2]") == [1, 2]
    assert parse_param_value("null") is None


def test_collect_parameters_precedence(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("A: 1\nB: 1\nC: 1\nD: 1\n")
    files = [(Path("f1"), {"B": 2, "C": 2, "D": 2, "nb": {"D": 3}, "other": {"B": 99}}), (Path("f2"), {"C": 4})]
    params, origin = collect_parameters("nb", preset_file=preset, files=files, overrides={"A": 5},
                                        known_stems={"nb", "other"})
    assert params == {"A": 5, "B": 2, "C": 4, "D": 3}
    assert origin["A"] == "-p" and origin["C"] == "file f2"


def test_python_m_entry_point(tmp_path):
    empty = tmp_path / "nbs"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "kdal_lib.runner", "--check", "--notebooks-dir", str(empty)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no notebooks" in proc.stdout
