"""``kdal-run``: execute the notebooks with papermill, collect their ``metrics.json`` into one run folder.

Layout of one run (``--out runs`` by default)::

    runs/20250101-120000/            # "-1", "-2", ... appended if the folder already exists
        01_goad_tabular.ipynb        # the executed copy (the source notebook is never written)
        01_goad_tabular/metrics.json # written by the notebook: OUT_DIR is injected as <run>/<stem>
        results.csv                  # every notebook's records, led by the columns notebook, status
        summary.json                 # per notebook: status, seconds, paths, parameters, error

Parameters, lowest precedence first: ``--preset NAME`` (``params/NAME/<stem>.yaml``), then each
``-f FILE`` in order, then each ``-p NAME VALUE``. In a YAML file a top-level key that is a notebook
stem and holds a mapping applies to that notebook only (and beats the file's other keys); every
other key applies to all notebooks. Names are checked against each notebook's ``parameters`` cell
before anything runs.

``kdal-run --check`` runs :func:`check_notebook` (the hygiene rules the tests enforce) instead.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import logging
import math
import os
import re
import sys
import time
import tokenize
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "RunnerError",
    "NotebookResult",
    "RunSummary",
    "run_notebooks",
    "resolve_notebooks",
    "load_parameter_file",
    "parse_param_value",
    "collect_parameters",
    "notebook_parameters",
    "check_notebook",
    "format_table",
    "format_failure",
    "build_parser",
    "main",
]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_AUTO = object()


class RunnerError(Exception):
    """A usage or set-up problem found before anything ran (``kdal-run`` exits with 2)."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# Locating notebooks and parameter files
# --------------------------------------------------------------------------------------------

def _default_dir(name: str) -> Path:
    """``./<name>`` if it exists, else ``<repo root>/<name>`` (repo root = where kdal_lib lives)."""
    local = Path.cwd() / name
    return local if local.is_dir() else _REPO_ROOT / name


def default_notebooks_dir() -> Path:
    return _default_dir("notebooks")


def default_params_dir() -> Path:
    return _default_dir("params")


def _numbered(notebooks_dir: Path) -> list[Path]:
    return sorted(notebooks_dir.glob(NOTEBOOK_GLOB)) if notebooks_dir.is_dir() else []


def _available(notebooks_dir: Path) -> str:
    found = sorted(p.stem for p in notebooks_dir.glob("*.ipynb")) if notebooks_dir.is_dir() else []
    return ", ".join(found) if found else f"none (no *.ipynb in {notebooks_dir})"


def resolve_notebooks(specs: Iterable[str] | None, notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Turn NOTEBOOK arguments into notebook paths (absolute, in order, no duplicates).

    Each spec is ``all`` (every ``NN_*.ipynb`` in ``notebooks_dir``, sorted), a path to an
    ``.ipynb``, a stem (``01_goad_tabular``), a number prefix (``01`` or ``1``) or a unique prefix
    of a stem (``01_goad``). No specs means ``all``. Raises :class:`RunnerError` for an unknown one."""
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    specs = list(specs or []) or ["all"]
    out: list[Path] = []
    for spec in specs:
        spec = str(spec)
        if spec == "all":
            out.extend(_numbered(nb_dir))
            continue
        as_path = Path(spec)
        if spec.endswith(".ipynb") and as_path.is_file():
            out.append(as_path)
            continue
        candidates: list[Path] = []
        stem = spec[:-6] if spec.endswith(".ipynb") else spec
        if (nb_dir / f"{stem}.ipynb").is_file():
            candidates = [nb_dir / f"{stem}.ipynb"]
        elif stem.isdigit():
            candidates = sorted(nb_dir.glob(f"{int(stem):02d}_*.ipynb")) if nb_dir.is_dir() else []
        elif nb_dir.is_dir():
            candidates = sorted(p for p in nb_dir.glob("*.ipynb") if p.stem.startswith(stem))
        if len(candidates) == 1:
            out.append(candidates[0])
        elif not candidates:
            raise RunnerError(f"unknown notebook {spec!r} in {nb_dir}; available: {_available(nb_dir)}")
        else:
            raise RunnerError(f"notebook {spec!r} is ambiguous in {nb_dir}: matches "
                              + ", ".join(p.stem for p in candidates))
    seen: dict[Path, None] = {}
    for p in out:
        seen.setdefault(p.resolve(), None)
    paths = list(seen)
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise RunnerError(f"two notebooks share the name {p.stem!r} ({stems[p.stem]} and {p}); "
                              "their outputs would collide in the run folder")
        stems[p.stem] = p
    return paths


def parse_param_value(text: str) -> Any:
    """Parse a ``-p`` value like YAML (``3`` -> int, ``0.5`` -> float, ``true`` -> bool,
    ``[1, 2]`` -> list, ``thyroid`` -> str); also accepts Python's ``1e-3`` as a float."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and value == text:
        try:  # YAML 1.1 reads "1e-3" as a string; Python reads it as a float
            lit = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        if isinstance(lit, (int, float)) and not isinstance(lit, bool):
            return lit
    return value


def load_parameter_file(path: str | os.PathLike) -> dict:
    """Read a YAML parameter file: a mapping, or nothing at all (an empty file is ``{}``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise RunnerError(f"parameters file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise RunnerError(f"parameters file {str(p)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunnerError(f"parameters file {str(p)!r} must hold a mapping NAME: value, "
                          f"not a {type(data).__name__}")
    return data


def _for_notebook(data: Mapping, stem: str, known_stems: Iterable[str]) -> dict:
    """The parameters of one file that apply to ``stem``: the global keys, then its own section."""
    known = set(known_stems) | {stem}
    own = data.get(stem)
    out = {k: v for k, v in data.items() if not (k in known and isinstance(v, Mapping))}
    if isinstance(own, Mapping):
        out.update(own)
    return out


def collect_parameters(stem: str, *, preset_file: Path | None = None, files: Sequence[tuple[Path, dict]] = (),
                       overrides: Mapping | None = None, known_stems: Iterable[str] = ()) -> tuple[dict, dict]:
    """Merge the parameters for one notebook: preset < files (in order) < overrides.

    Returns ``(params, origin)`` where ``origin[name]`` says where each value came from."""
    params: dict = {}
    origin: dict = {}
    layers: list[tuple[str, Mapping]] = []
    if preset_file is not None and preset_file.is_file():
        layers.append((f"preset {preset_file}", _for_notebook(load_parameter_file(preset_file), stem, known_stems)))
    for path, data in files:
        layers.append((f"file {path}", _for_notebook(data, stem, known_stems)))
    if overrides:
        layers.append(("-p", dict(overrides)))
    for where, layer in layers:
        for k, v in layer.items():
            params[str(k)] = v
            origin[str(k)] = where
    return params, origin


# --------------------------------------------------------------------------------------------
# The parameters cell
# --------------------------------------------------------------------------------------------

def _read_nb(path: Path):
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse error is the same problem for the user
        raise RunnerError(f"cannot read notebook {path}: {type(exc).__name__}: {exc}") from None


def _parameters_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if "parameters" in (c.get("metadata", {}).get("tags") or [])]


def _ast_parameters(source: str) -> tuple[dict[str, str | None], list[str]]:
    """Names assigned in a parameters cell with their annotation, and the hygiene problems found."""
    problems: list[str] = []
    names: dict[str, str | None] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return names, [f"parameters cell is not valid Python: {exc.msg} (line {exc.lineno})"]
    comment_lines: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comment_lines.add(tok.start[0])
    except (tokenize.TokenError, IndentationError):
        pass
    for stmt in tree.body:
        line = ast.get_source_segment(source, stmt) or ""
        first = line.splitlines()[0] if line else f"line {stmt.lineno}"
        if isinstance(stmt, ast.AnnAssign):
            target, value = stmt.target, stmt.value
            annotation = ast.get_source_segment(source, stmt.annotation)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value, annotation = stmt.targets[0], stmt.value, None
        else:
            problems.append(f"parameters cell: {first!r} is not a plain `NAME = literal` assignment")
            continue
        if not isinstance(target, ast.Name):
            problems.append(f"parameters cell: {first!r} must assign a single plain name")
            continue
        if value is None:
            problems.append(f"parameters cell: {target.id} has an annotation but no value")
            continue
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            problems.append(f"parameters cell: {target.id} is not set to a literal "
                            f"({ast.get_source_segment(source, value)!r})")
        if stmt.end_lineno not in comment_lines:
            problems.append(f"parameters cell: {target.id} has no trailing `# comment` saying what it is")
        if target.id in names:
            problems.append(f"parameters cell: {target.id} is assigned twice")
        names[target.id] = annotation
    return names, problems


@contextlib.contextmanager
def _papermill_quiet():
    """Silence papermill's INFO lines ("Input Notebook: ...") while only inspecting a notebook."""
    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """The parameters a notebook declares: ``{name: {name, inferred_type_name, default, help}}``.

    Uses ``papermill.inspect_notebook``; names papermill's line parser misses (e.g. a line with
    two ``=``) are added from the cell's Python syntax tree. Raises :class:`RunnerError` unless the
    notebook has exactly one cell tagged ``parameters``."""
    import papermill

    path = Path(path)
    nb = _read_nb(path)
    cells = _parameters_cells(nb)
    if len(cells) != 1:
        how = "no cell" if not cells else f"{len(cells)} cells (cells {', '.join(str(i + 1) for i in cells)})"
        raise RunnerError(f"notebook {path.stem} ({path}) has {how} tagged 'parameters'; it needs exactly one")
    with _papermill_quiet():
        declared = {k: dict(v) for k, v in papermill.inspect_notebook(str(path)).items()}
    names, _ = _ast_parameters(nb.cells[cells[0]].source)
    for name, annotation in names.items():
        declared.setdefault(name, {"name": name, "inferred_type_name": str(annotation), "default": None, "help": ""})
    return declared


def _coerce(name: str, value: Any, type_name: str | None, raw: str | None, stem: str) -> Any:
    """Fit ``value`` to a simple declared type (int, float, str, bool); a clear error otherwise."""
    t = (type_name or "").strip().strip("'\"")
    if value is None or t not in {"int", "float", "str", "bool"}:
        return value
    if t == "str":
        if isinstance(value, str):
            return value
        if raw is not None:  # from -p: keep what was typed, e.g. -p DATA 01
            return raw
    elif t == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif t == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif t == "bool":
        if isinstance(value, bool):
            return value
    raise RunnerError(f"parameter {name} of notebook {stem} is declared {t} but got "
                      f"{type(value).__name__} {value!r}")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class NotebookResult:
    """What happened to one notebook in a run."""

    notebook: str                      # the stem, e.g. "01_goad_tabular"
    source: str                        # the source notebook (never written)
    executed: str                      # the executed copy in the run folder
    params: dict = field(default_factory=dict)
    status: str = "pending"            # ok | failed | prepared | skipped | interrupted
    seconds: float = 0.0
    out_dir: str | None = None         # the OUT_DIR the notebook got
    metrics: str | None = None         # its metrics.json, when written
    error: dict | None = None          # notebook, cell, exec_count, source, ename, evalue
    note: str | None = None
    records: list = field(default_factory=list, repr=False)
    summary: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("records")
        d["n_records"] = len(self.records)
        return d


@dataclass
class RunSummary:
    """All notebooks of one run; ``exit_code`` is 0 when every one is ok (or prepared)."""

    run_dir: Path
    results: list[NotebookResult]
    started: str
    finished: str | None = None
    interrupted: bool = False

    @property
    def failed(self) -> list[NotebookResult]:
        return [r for r in self.results if r.status not in ("ok", "prepared")]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (0 if self.ok else 1)

    @property
    def results_csv(self) -> Path:
        return self.run_dir / "results.csv"

    @property
    def summary_json(self) -> Path:
        return self.run_dir / "summary.json"

    def __getitem__(self, stem: str) -> NotebookResult:
        for r in self.results:
            if r.notebook == stem:
                return r
        raise KeyError(stem)


def _new_run_dir(out_root: Path) -> Path:
    out_root.mkdir(parents=True, exist_ok=True)
    base = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(0, 10_000):
        cand = out_root / (base if n == 0 else f"{base}-{n}")
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
    raise RunnerError(f"could not create a fresh run folder under {out_root}")


def _write_json_atomic(path: Path, payload) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def _write_results_csv(summary: RunSummary) -> None:
    import pandas as pd

    rows = []
    for r in summary.results:
        if not r.records:  # every notebook shows up at least once, failed ones included
            rows.append({"notebook": r.notebook, "status": r.status})
        for rec in r.records:
            rec = dict(rec) if isinstance(rec, Mapping) else {"record": rec}
            row = {"notebook": r.notebook, "status": r.status}
            for k, v in rec.items():
                row[f"record_{k}" if k in ("notebook", "status") else k] = v
            rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else ["notebook", "status"])
    for col in df.columns:  # keep integer columns integer despite the gaps of failed notebooks' rows
        vals = [row[col] for row in rows if row.get(col) is not None]
        if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            df[col] = df[col].astype("Int64")
    tmp = summary.results_csv.with_name(".results.csv.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, summary.results_csv)


def _write_summary(summary: RunSummary) -> None:
    _write_results_csv(summary)
    _write_json_atomic(summary.summary_json, {
        "run_dir": str(summary.run_dir),
        "started": summary.started,
        "finished": summary.finished,
        "exit_code": summary.exit_code,
        "interrupted": summary.interrupted,
        "notebooks": {r.notebook: r.to_json() for r in summary.results},
    })


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def _source_cell_index(src_nb, exec_source: str, executed_index: int | None, injected_after: int | None) -> int | None:
    matches = [i for i, c in enumerate(src_nb.cells) if c.cell_type == "code" and c.source == exec_source]
    if len(matches) == 1:
        return matches[0]
    if executed_index is None:
        return None
    if injected_after is not None and executed_index > injected_after:
        return executed_index - 1
    return executed_index


def _error_info(stem: str, exc: BaseException, src_nb, injected_after: int | None, executed: Path) -> dict:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        idx = _source_cell_index(src_nb, exc.source, exc.cell_index, injected_after)
        return {"notebook": stem, "cell": None if idx is None else idx + 1, "cell_index": idx,
                "executed_cell_index": exc.cell_index, "exec_count": exc.exec_count,
                "source": exc.source, "ename": exc.ename, "evalue": exc.evalue}
    info = {"notebook": stem, "cell": None, "cell_index": None, "executed_cell_index": None, "exec_count": None,
            "source": "", "ename": type(exc).__name__, "evalue": str(exc).strip()}
    try:  # a timeout or a dead kernel: the last cell papermill started, in the saved copy
        import nbformat

        out_nb = nbformat.read(str(executed), as_version=4)
        started = [i for i, c in enumerate(out_nb.cells)
                   if c.get("metadata", {}).get("papermill", {}).get("start_time")]
        if started:
            i = started[-1]
            c = out_nb.cells[i]
            idx = _source_cell_index(src_nb, c.source, i, injected_after)
            info.update(cell=None if idx is None else idx + 1, cell_index=idx, executed_cell_index=i,
                        exec_count=c.get("execution_count"), source=c.source)
    except Exception:  # noqa: BLE001 - best effort only
        pass
    return info


def _prepare(notebooks, params_files, overrides, preset, params_dir, notebooks_dir):
    """Everything checked before anything runs: returns [(path, nb, params, inject_out_dir)]."""
    known_stems = {p.stem for p in notebooks}
    if notebooks_dir is not None and Path(notebooks_dir).is_dir():
        known_stems |= {p.stem for p in Path(notebooks_dir).glob("*.ipynb")}
    preset_dir = None
    if preset:
        preset_dir = Path(params_dir) / preset
        if not preset_dir.is_dir():
            have = sorted(p.name for p in Path(params_dir).iterdir() if p.is_dir()) if Path(params_dir).is_dir() else []
            raise RunnerError(f"preset {preset!r}: no folder {preset_dir}; presets there: "
                              + (", ".join(have) if have else "none"))
    files = [(Path(f), load_parameter_file(f)) for f in params_files]
    raw_overrides: dict[str, str] = {}
    parsed_overrides: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        if isinstance(v, str):
            raw_overrides[k] = v
            parsed_overrides[k] = parse_param_value(v)
        else:
            parsed_overrides[k] = v
    plan = []
    for path in notebooks:
        stem = path.stem
        nb = _read_nb(path)
        declared = notebook_parameters(path)
        preset_file = preset_dir / f"{stem}.yaml" if preset_dir is not None else None
        params, origin = collect_parameters(stem, preset_file=preset_file, files=files,
                                            overrides=parsed_overrides, known_stems=known_stems)
        unknown = [k for k in params if k not in declared]
        if unknown:
            accepted = ", ".join(declared) or "none"
            raise RunnerError("; ".join(
                f"unknown parameter {k!r} for notebook {stem} (from {origin[k]}); it accepts: {accepted}"
                for k in unknown))
        for k in list(params):
            raw = raw_overrides.get(k) if origin[k] == "-p" else None
            params[k] = _coerce(k, params[k], declared[k].get("inferred_type_name"), raw, stem)
        plan.append((path, nb, params, "OUT_DIR" in declared and "OUT_DIR" not in params))
    return plan


def run_notebooks(notebooks: Iterable[str | os.PathLike] | None, params_files: Sequence[str | os.PathLike] = (),
                  overrides: Mapping[str, Any] | None = None, preset: str | None = None,
                  out_root: str | os.PathLike = "runs", kernel: str = "python3", timeout: float | None = 1800,
                  prepare_only: bool = False, cwd: str | os.PathLike | None = None, *,
                  notebooks_dir: str | os.PathLike | None = None, params_dir: str | os.PathLike | None = None,
                  fail_fast: bool = False, log_output: bool = False, progress_bar: bool = False,
                  echo: bool = True) -> RunSummary:
    """Execute ``notebooks`` (specs as for :func:`resolve_notebooks`) into a fresh run folder.

    ``overrides`` values that are strings are parsed like ``-p`` values (``"3"`` -> 3); other values
    are used as given. ``timeout`` is per cell (None or <= 0: no limit). ``cwd`` defaults to each
    notebook's folder. Raises :class:`RunnerError` before running anything for an unknown notebook,
    parameter or preset; a notebook that fails is recorded (status "failed") and the others still run
    unless ``fail_fast``. ``RunSummary.exit_code`` is what ``kdal-run`` exits with."""
    import papermill

    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    p_dir = Path(params_dir) if params_dir is not None else default_params_dir()
    paths = resolve_notebooks([str(n) for n in notebooks] if notebooks else None, nb_dir)
    if not paths:
        raise RunnerError(f"no notebooks to run: none match {NOTEBOOK_GLOB} in {nb_dir}")
    # Validate everything first; only then create the run folder and fill in OUT_DIR.
    plan = _prepare(paths, params_files, overrides, preset, p_dir, nb_dir)
    run_dir = _new_run_dir(Path(out_root).resolve())

    say = print if echo else (lambda *a, **k: None)
    summary = RunSummary(run_dir=run_dir, results=[], started=datetime.now().isoformat(timespec="seconds"))
    for path, _nb, params, inject_out_dir in plan:
        executed = run_dir / f"{path.stem}.ipynb"
        if executed.resolve() == path.resolve():
            raise RunnerError(f"refusing to write the executed copy over the source notebook {path}")
        if inject_out_dir:
            params = {**params, "OUT_DIR": str(run_dir / path.stem)}
        summary.results.append(NotebookResult(notebook=path.stem, source=str(path), executed=str(executed),
                                              params=params))
    say(f"kdal-run: {len(plan)} notebook(s) -> {run_dir}")
    timeout = None if timeout is None or timeout <= 0 else timeout
    try:
        stop = False
        for i, ((path, src_nb, _p, _o), res) in enumerate(zip(plan, summary.results), 1):
            if stop:
                res.status, res.note = "skipped", "not run: --fail-fast after an earlier failure"
                continue
            executed = Path(res.executed)
            run_cwd = Path(cwd).resolve() if cwd is not None else path.parent
            pshow = ", ".join(f"{k}={v!r}" for k, v in res.params.items() if k != "OUT_DIR")
            say(f"[{i}/{len(plan)}] {path.stem}" + (f" ({pshow})" if pshow else ""), flush=True)
            res.status = "interrupted"
            t0 = time.time()
            exc: BaseException | None = None
            try:
                papermill.execute_notebook(str(path), str(executed), parameters=res.params, kernel_name=kernel,
                                           execution_timeout=timeout, cwd=str(run_cwd), prepare_only=prepare_only,
                                           log_output=log_output, progress_bar=progress_bar)
            except Exception as e:  # noqa: BLE001 - every failure is recorded, the run goes on
                exc = e
            res.seconds = round(time.time() - t0, 2)
            if "OUT_DIR" in res.params and res.params["OUT_DIR"] is not None:
                od = Path(str(res.params["OUT_DIR"]))
                res.out_dir = str(od if od.is_absolute() else (run_cwd / od).resolve())
            injected_after = _parameters_cells(src_nb)[0] if res.params else None
            if exc is not None:
                res.status = "failed"
                res.error = _error_info(path.stem, exc, src_nb, injected_after, executed)
            elif prepare_only:
                res.status, res.note = "prepared", "parameters injected, not executed (--prepare-only)"
            else:
                res.status = "ok"
            if not prepare_only:
                _collect_metrics(res, t0)
            if res.status == "failed" and fail_fast:
                stop = True
            say(f"    {res.status} in {res.seconds:.1f} s" + (f": {res.note}" if res.note and res.status != "ok" else ""))
    except KeyboardInterrupt:
        summary.interrupted = True
        for r in summary.results:
            if r.status == "pending":
                r.status = "skipped"
        summary.finished = datetime.now().isoformat(timespec="seconds")
        _write_summary(summary)
        raise
    summary.finished = datetime.now().isoformat(timespec="seconds")
    _write_summary(summary)
    return summary


def _collect_metrics(res: NotebookResult, t0: float) -> None:
    from .metrics import METRICS_FILE, load_results

    if res.out_dir is None:
        if res.status == "ok":
            res.note = "the notebook has no OUT_DIR parameter, so no metrics.json was collected"
        return
    mpath = Path(res.out_dir) / METRICS_FILE
    if not mpath.is_file() or mpath.stat().st_mtime < t0 - 2:
        if res.status == "ok":
            res.status = "failed"
            res.note = f"no metrics written (expected {mpath})"
            res.error = {"notebook": res.notebook, "cell": None, "cell_index": None, "executed_cell_index": None,
                         "exec_count": None, "source": "", "ename": "NoMetrics",
                         "evalue": f"the notebook ran but wrote no {mpath}: does it call save_results(OUT_DIR, ...)?"}
        return
    try:
        data = load_results(mpath)
    except Exception as exc:  # noqa: BLE001
        res.status = "failed"
        res.note = f"unreadable metrics file {mpath}"
        res.error = res.error or {"notebook": res.notebook, "cell": None, "cell_index": None,
                                  "executed_cell_index": None, "exec_count": None, "source": "",
                                  "ename": type(exc).__name__, "evalue": str(exc)}
        return
    res.metrics = str(mpath)
    res.records = list(data.get("records") or [])
    res.summary = dict(data.get("summary") or {})


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def format_table(summary: RunSummary) -> str:
    rows = [("notebook", "status", "seconds", "records", "summary")]
    for r in summary.results:
        head = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.summary.items())[:3])
        if len(r.summary) > 3:
            head += ", ..."
        rows.append((r.notebook, r.status, f"{r.seconds:.1f}", str(len(r.records)), head))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines)


def format_failure(r: NotebookResult, max_lines: int = 3) -> str:
    e = r.error or {}
    where = []
    if e.get("cell") is not None:
        where.append(f"cell #{e['cell']} of {r.source}")
    if e.get("exec_count") is not None:
        where.append(f"In [{e['exec_count']}]")
    out = [f"FAILED {r.notebook}" + (f": {', '.join(where)}" if where else "")]
    src = [ln for ln in (e.get("source") or "").splitlines() if ln.strip()]
    for ln in src[:max_lines]:
        out.append(f"    | {ln}")
    if len(src) > max_lines:
        out.append(f"    | ... ({len(src) - max_lines} more line(s))")
    if e:
        value = (e.get("evalue") or "").strip().splitlines() or [""]
        out.append(f"    {e.get('ename')}: {value[0]}")
        out.extend(f"    {ln}" for ln in value[1:2])
        if len(value) > 2:
            out.append("    ...")
    elif r.note:
        out.append(f"    {r.note}")
    out.append(f"    executed copy: {r.executed}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Hygiene
# --------------------------------------------------------------------------------------------

def check_notebook(path: str | os.PathLike, smoke_dir: str | os.PathLike | None = _AUTO) -> list[str]:  # type: ignore[assignment]
    """The hygiene problems of one source notebook (an empty list when it is clean).

    Rules: valid nbformat 4; kernelspec ``python3``; code cells stored without outputs or execution
    counts; exactly one cell tagged ``parameters`` whose statements are each ``NAME[: type] = literal
    # comment`` and which papermill parses to the same names; OUT_DIR among them; no leftover
    ``injected-parameters`` cell; no ``sys.path`` anywhere; a call to ``save_results`` (or use of
    ``kdal_lib.metrics``); and ``<smoke_dir>/<stem>.yaml`` exists and sets only declared parameters
    (never OUT_DIR). ``smoke_dir`` defaults to ``params/smoke`` beside the notebook's folder; pass
    None to skip the smoke-preset rule."""
    import nbformat

    path = Path(path)
    if smoke_dir is _AUTO:
        smoke_dir = path.resolve().parent.parent / "params" / "smoke"
    try:
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    except Exception as exc:  # noqa: BLE001
        return [f"not a readable notebook: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    if nb.get("nbformat") != 4:
        problems.append(f"nbformat {nb.get('nbformat')} (need 4)")
        return problems
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(f"invalid nbformat: {str(exc).splitlines()[0]}")
    ks = (nb.metadata.get("kernelspec") or {}).get("name")
    if ks != "python3":
        problems.append(f"kernelspec name is {ks!r}, need 'python3'")
    for i, cell in enumerate(nb.cells, 1):
        tags = cell.get("metadata", {}).get("tags") or []
        if "injected-parameters" in tags:
            problems.append(f"cell {i} is a papermill 'injected-parameters' cell (an executed copy saved as source?)")
        if "sys.path" in cell.source:
            problems.append(f"cell {i} mentions sys.path (kdal_lib is pip-installed; import it directly)")
        if cell.cell_type == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has stored outputs (clear them before committing)")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has execution_count {cell.execution_count} (clear it)")
    pcells = _parameters_cells(nb)
    declared: dict[str, str | None] = {}
    if len(pcells) != 1:
        problems.append(f"{len(pcells)} cells tagged 'parameters' (need exactly one)"
                        + (f": cells {', '.join(str(i + 1) for i in pcells)}" if pcells else ""))
    else:
        cell = nb.cells[pcells[0]]
        if cell.cell_type != "code":
            problems.append("the 'parameters' cell is not a code cell")
        declared, cell_problems = _ast_parameters(cell.source)
        problems.extend(cell_problems)
        if not declared:
            problems.append("the parameters cell declares no parameters")
        if "OUT_DIR" not in declared:
            problems.append("the parameters cell does not declare OUT_DIR (kdal-run sets it to <run>/<stem>)")
        try:
            import papermill

            with _papermill_quiet():
                seen = set(papermill.inspect_notebook(str(path)))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"papermill cannot inspect the parameters: {type(exc).__name__}: {exc}")
        else:
            if seen != set(declared):
                problems.append("papermill reads the parameters cell as declaring "
                                f"{sorted(seen)} but it assigns {sorted(declared)} (avoid '=' in values and comments)")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if not re.search(r"\bsave_results\s*\(", code) and "kdal_lib.metrics" not in code:
        problems.append("no call to kdal_lib.metrics.save_results (the notebook must write OUT_DIR/metrics.json)")
    if smoke_dir is not None:
        smoke = Path(smoke_dir) / f"{path.stem}.yaml"
        if not smoke.is_file():
            problems.append(f"no smoke preset {smoke}")
        else:
            try:
                data = _for_notebook(load_parameter_file(smoke), path.stem, ())
            except RunnerError as exc:
                problems.append(str(exc))
            else:
                for k in data:
                    if k not in declared:
                        problems.append(f"smoke preset {smoke.name} sets {k!r}, which the parameters cell "
                                        f"does not declare (declared: {', '.join(declared) or 'none'})")
                if "OUT_DIR" in data:
                    problems.append(f"smoke preset {smoke.name} sets OUT_DIR (leave it to kdal-run)")
    return problems


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="kdal-run",
        description="Execute kdal-lab notebooks with papermill into runs/<timestamp>/ and collect their "
                    "metrics.json into results.csv and summary.json.",
        epilog="Parameter precedence: --preset < -f files (in order) < -p. In a YAML file, a top-level key "
               "equal to a notebook stem holding a mapping applies to that notebook only. "
               "Exit status: 0 all ok, 1 a notebook failed (or --check found problems), 2 usage error.",
    )
    ap.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                    help="path, stem (01_goad_tabular), number (01 or 1) or 'all' (default): every "
                         f"{NOTEBOOK_GLOB} in the notebooks folder, sorted")
    ap.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                    help="YAML parameters file (repeatable; later files win)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="set one parameter; VALUE is parsed as YAML (-p EPOCHS 3 is an int)")
    ap.add_argument("--preset", metavar="NAME", help="load params/NAME/<stem>.yaml for each notebook, e.g. smoke")
    ap.add_argument("--out", default="runs", metavar="DIR",
                    help="root of the run folders (default: runs); each run gets DIR/<YYYYmmdd-HHMMSS>/")
    ap.add_argument("--notebooks-dir", metavar="DIR",
                    help="where NOTEBOOK names are looked up (default: ./notebooks, else the repo's)")
    ap.add_argument("--params-dir", metavar="DIR",
                    help="where presets live (default: ./params, else the repo's)")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    ap.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                    help="per-cell execution timeout (default: 1800; 0 = none)")
    ap.add_argument("--cwd", metavar="DIR", help="working directory of the kernel (default: the notebook's folder)")
    ap.add_argument("--prepare-only", action="store_true",
                    help="write the parameterised copies without executing them")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first failed notebook")
    ap.add_argument("--log-output", action="store_true", help="echo the notebooks' output while they run")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--check", action="store_true",
                    help="check the notebooks' hygiene (no outputs, one literal parameters cell, smoke preset, ...) "
                         "instead of running them; exit 1 on any problem")
    return ap


def _main_check(args) -> int:
    nb_dir = Path(args.notebooks_dir) if args.notebooks_dir else default_notebooks_dir()
    p_dir = Path(args.params_dir) if args.params_dir else default_params_dir()
    paths = resolve_notebooks(args.notebooks or None, nb_dir)
    if not paths:
        print(f"kdal-run --check: no notebooks ({NOTEBOOK_GLOB}) in {nb_dir}")
        return 0
    bad = 0
    for p in paths:
        problems = check_notebook(p, smoke_dir=p_dir / "smoke")
        if problems:
            bad += 1
            print(f"{p.stem}: {len(problems)} problem(s)")
            for pr in problems:
                print(f"  - {pr}")
        else:
            print(f"{p.stem}: clean")
    print(f"{len(paths) - bad} of {len(paths)} notebook(s) clean")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            return _main_check(args)
        if args.log_output:
            pm_log = logging.getLogger("papermill")
            if not pm_log.handlers:
                handler = logging.StreamHandler(sys.stdout)
                handler.setFormatter(logging.Formatter("%(message)s"))
                pm_log.addHandler(handler)
            pm_log.setLevel(logging.INFO)
        overrides: dict[str, str] = {}
        for name, value in args.param:
            if not name.isidentifier():
                raise RunnerError(f"-p {name!r}: not a valid parameter name")
            overrides[name] = value
        summary = run_notebooks(
            args.notebooks or None, params_files=args.parameters_file, overrides=overrides, preset=args.preset,
            out_root=args.out, kernel=args.kernel, timeout=args.timeout, prepare_only=args.prepare_only,
            cwd=args.cwd, notebooks_dir=args.notebooks_dir, params_dir=args.params_dir, fail_fast=args.fail_fast,
            log_output=args.log_output, progress_bar=not args.quiet)
    except RunnerError as exc:
        print(f"kdal-run: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kdal-run: interrupted; partial results written", file=sys.stderr)
        return 130
    print()
    print(format_table(summary))
    failed = summary.failed
    if failed:
        print(f"\n{len(failed)} of {len(summary.results)} notebook(s) failed:", file=sys.stderr)
        for r in failed:
            if r.status == "skipped":
                print(f"SKIPPED {r.notebook}: {r.note}", file=sys.stderr)
            else:
                print(format_failure(r), file=sys.stderr)
    print(f"\nrun folder: {summary.run_dir}")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
