"""Anomaly-detection metrics with the field's names, and the results record each notebook writes.

Convention everywhere: label 1 = anomaly, and a higher score = more anomalous. AUROC is never
flipped: a detector worse than chance shows an AUROC below 0.5.
"""
from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from .utils import atomic_write
from .validation import check_binary_labels

__all__ = [
    "auroc",
    "auroc_or_nan",
    "aupr",
    "best_f1",
    "f1_at_threshold",
    "oracle_threshold",
    "oracle_f1",
    "evaluate_scores",
    "auroc_by_kind",
    "mean_std",
    "summarize",
    "save_results",
    "load_results",
    "notebook_parameters",
    "METRICS_FILE",
]

METRICS_FILE = "metrics.json"


def _check(y_true, scores):
    y = check_binary_labels(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.size} values but y_true has {y.size}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf: the detector diverged or got bad input")
    return y, s


def auroc(y_true, scores) -> float:
    """Area under the ROC curve, anomaly = positive class."""
    y, s = _check(y_true, scores)
    return float(roc_auc_score(y, s))


def auroc_or_nan(y_true, scores) -> float:
    """:func:`auroc`, or NaN when ``y_true`` holds one class only (small validation splits, PU labels)."""
    y = np.asarray(y_true).ravel()
    return auroc(y, scores) if np.unique(y).size == 2 else float("nan")


def aupr(y_true, scores) -> float:
    """Area under the precision-recall curve (average precision), anomaly = positive class."""
    y, s = _check(y_true, scores)
    return float(average_precision_score(y, s))


def best_f1(y_true, scores) -> float:
    """Best F1 of the anomaly class over all thresholds (an optimistic, threshold-free summary)."""
    y, s = _check(y_true, scores)
    p, r, _ = precision_recall_curve(y, s)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return float(f.max())


def f1_at_threshold(y_true, scores, threshold: float) -> float:
    """F1 of the anomaly class when ``score > threshold`` is called anomalous."""
    y, s = _check(y_true, scores)
    pred = (s > threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


def oracle_threshold(scores, contamination: float) -> float:
    """Threshold at the ``1 - contamination`` percentile of ``scores``.

    This is the "oracle" protocol of DAGMM and GOAD: it assumes the test set's anomaly fraction
    is known. It inflates F1 (Fourure et al., 2021); show it labelled as oracle, next to AUROC."""
    if not 0 < contamination < 1:
        raise ValueError(f"contamination must be in (0, 1), got {contamination!r}")
    return float(np.percentile(np.asarray(scores, dtype=np.float64), 100 * (1 - contamination)))


def oracle_f1(y_true, scores) -> float:
    """F1 at the threshold set from the true test contamination (GOAD/DAGMM protocol)."""
    y, s = _check(y_true, scores)
    return f1_at_threshold(y, s, oracle_threshold(s, y.mean()))


def evaluate_scores(y_true, scores, prefix: str = "", oracle: bool = True) -> dict:
    """AUROC first, then AUPR, best-F1 and (if ``oracle``) the oracle-threshold F1.

    ``prefix`` is prepended to each key, e.g. ``"image_"`` or ``"pixel_"``."""
    out = {f"{prefix}AUROC": auroc(y_true, scores), f"{prefix}AUPR": aupr(y_true, scores),
           f"{prefix}best_F1": best_f1(y_true, scores)}
    if oracle:
        out[f"{prefix}F1_oracle"] = oracle_f1(y_true, scores)
    return out


def auroc_by_kind(y_true, scores, kinds) -> dict:
    """AUROC of every normal item against the anomalies of each kind (e.g. MVTec defect types):
    ``{kind: AUROC}`` in sorted order, plus ``"all"``. ``kinds`` names each item (normals' names are
    ignored). Shows which anomaly kinds a detector misses when the overall AUROC hides it."""
    y, s = _check(y_true, scores)
    kinds = np.asarray([str(k) for k in kinds])
    if kinds.shape != y.shape:
        raise ValueError(f"kinds has {kinds.size} entries but y_true has {y.size}")
    normal = y == 0
    out = {}
    for kind in sorted(set(kinds[~normal])):
        pick = normal | ((kinds == kind) & ~normal)
        out[kind] = auroc(y[pick], s[pick])
    out["all"] = auroc(y, s)
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(records: list[Mapping], by: tuple[str, ...] = ("dataset", "method"), metrics: Iterable[str] | None = None):
    """Aggregate per-seed records into mean±std rows (a pandas DataFrame)."""
    import pandas as pd

    df = pd.DataFrame(list(records))
    if df.empty:
        return df
    if metrics is None:
        metrics = [c for c in df.columns if c not in by and c != "seed" and pd.api.types.is_numeric_dtype(df[c])]
    rows = []
    for key, grp in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_seeds"] = len(grp)
        for m in metrics:
            mu, sd = mean_std(grp[m].dropna())
            row[f"{m}_mean"], row[f"{m}_std"] = mu, sd
        rows.append(row)
    return pd.DataFrame(rows)


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_results(out_dir: str | os.PathLike, notebook: str, records: list[Mapping], summary: Mapping | None = None,
                 params: Mapping | None = None) -> Path:
    """Write ``<out_dir>/metrics.json``: the per-run ``records`` (one dict per dataset × method ×
    seed), a ``summary`` dict of headline figures, the ``params`` used and the environment.
    The write is atomic, so a crash never leaves a half-written file. Returns the path."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "notebook": notebook,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "machine": platform.machine(), "cpu_count": os.cpu_count()},
        "params": _jsonable(dict(params or {})),
        "summary": _jsonable(dict(summary or {})),
        "records": _jsonable([dict(r) for r in records]),
    }
    return atomic_write(out / METRICS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2)))


def notebook_parameters(namespace: Mapping) -> dict:
    """The notebook's parameters as a JSON-friendly dict: the UPPER_CASE names of ``namespace``
    (pass ``globals()``) whose values are plain literals, as papermill's parameters cell holds."""
    return {k: v for k, v in namespace.items()
            if k.isupper() and isinstance(v, (int, float, str, bool, list)) and not k.startswith("_")}


def load_results(path: str | os.PathLike) -> dict:
    """Read a metrics file written by :func:`save_results` (a folder or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no metrics file at {str(p)!r}: did the notebook reach its save_results cell?")
    with open(p) as fh:
        return json.load(fh)
