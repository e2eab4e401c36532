"""The anomaly-score hand-off between notebook 03 (DRAEM) and notebook 04 (ASAL).

Layout, as the ASAL seed reads it::

    <root>/loss_batch/<loss_type>/<class>/batch.txt     every pool path, highest score first
    <root>/loss_batch/<loss_type>/<class>/batch0.txt    stratum 0 = the highest scores
    ...                                   batch4.txt    stratum 4 = the lowest scores
    <root>/loss_batch/<loss_type>/<class>/scores.csv    path,score (same order as batch.txt)

Strata are contiguous slices of the ranking of (nearly) equal size: with N paths and K strata the
first N mod K strata hold one path more (``numpy.array_split``).
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["DEFAULT_LOSS_TYPE", "ScoreFiles", "rank_and_stratify", "write_score_files", "read_score_files",
           "score_folder"]

DEFAULT_LOSS_TYPE = "anomaly_scores_draem"


@dataclass
class ScoreFiles:
    """Paths ranked by score (highest first), their scores, and the strata (lists of paths)."""

    paths: list
    scores: np.ndarray
    strata: list
    folder: Path


def score_folder(root: str | os.PathLike, class_name: str, loss_type: str = DEFAULT_LOSS_TYPE) -> Path:
    return Path(root) / "loss_batch" / loss_type / class_name


def rank_and_stratify(paths: Sequence[str], scores, n_strata: int = 5):
    """Sort ``paths`` by ``scores`` (descending; ties keep the input order) and cut the ranking into
    ``n_strata`` contiguous strata. Returns (ranked paths, ranked scores, strata)."""
    paths = [str(p) for p in paths]
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(paths) != s.size:
        raise ValueError(f"{len(paths)} paths but {s.size} scores")
    if len(set(paths)) != len(paths):
        raise ValueError("paths must be unique: each pool item is written once")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if not isinstance(n_strata, (int, np.integer)) or n_strata < 1:
        raise ValueError(f"n_strata must be a positive integer, got {n_strata!r}")
    if len(paths) < n_strata:
        raise ValueError(f"cannot cut {len(paths)} paths into {n_strata} strata")
    order = np.argsort(-s, kind="stable")
    ranked = [paths[i] for i in order]
    strata = [list(chunk) for chunk in np.array_split(np.array(ranked, dtype=object), n_strata)]
    return ranked, s[order], strata


def write_score_files(paths: Sequence[str], scores, root: str | os.PathLike, class_name: str,
                      loss_type: str = DEFAULT_LOSS_TYPE, n_strata: int = 5) -> Path:
    """Write ``batch.txt``, ``batch0.txt`` … and ``scores.csv`` for one class. The folder is built
    beside the target and swapped in at the end, so readers never see a half-written set."""
    ranked, ranked_scores, strata = rank_and_stratify(paths, scores, n_strata)
    folder = score_folder(root, class_name, loss_type)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{class_name}."))
    try:
        (tmp / "batch.txt").write_text("\n".join(ranked) + "\n")
        for k, chunk in enumerate(strata):
            (tmp / f"batch{k}.txt").write_text("\n".join(chunk) + "\n")
        with open(tmp / "scores.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "score"])
            w.writerows([p, repr(float(v))] for p, v in zip(ranked, ranked_scores))
        if folder.exists():
            old = folder.with_name(f".{class_name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_score_files(root: str | os.PathLike, class_name: str, loss_type: str = DEFAULT_LOSS_TYPE) -> ScoreFiles:
    """Read what :func:`write_score_files` wrote (or the seed's own files: ``batch*.txt`` without
    ``scores.csv`` give the ranking and strata, with scores as NaN)."""
    folder = score_folder(root, class_name, loss_type)
    if not (folder / "batch.txt").is_file():
        raise FileNotFoundError(f"no score files at {str(folder)!r}: run notebook 03 (DRAEM) first, "
                                f"or point the root at a folder holding loss_batch/{loss_type}/{class_name}/batch.txt")
    ranked = [line for line in (folder / "batch.txt").read_text().splitlines() if line]
    strata, k = [], 0
    while (folder / f"batch{k}.txt").is_file():
        strata.append([line for line in (folder / f"batch{k}.txt").read_text().splitlines() if line])
        k += 1
    if strata and [p for s in strata for p in s] != ranked:
        raise ValueError(f"{folder}: batch0..{k - 1}.txt do not add up to batch.txt in order")
    scores = np.full(len(ranked), np.nan)
    if (folder / "scores.csv").is_file():
        with open(folder / "scores.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        if [r["path"] for r in rows] != ranked:
            raise ValueError(f"{folder}: scores.csv and batch.txt list different paths")
        scores = np.array([float(r["score"]) for r in rows])
    return ScoreFiles(ranked, scores, strata, folder)
