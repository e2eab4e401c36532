"""Run several detectors over several seeds on one task and collect tidy records.

Used by the notebooks and the benchmark scripts alike, so a figure in a notebook and the same
figure in a benchmark come from the same code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence


from .base import BaseDeepDetector, load_or_fit
from .metrics import evaluate_scores, summarize
from .utils import log, progress

__all__ = ["Comparison", "compare_detectors", "paper_table"]


@dataclass
class Comparison:
    """Per-seed ``records`` (dataset, method, seed, AUROC, AUPR, best_F1, F1_oracle, fit_s,
    score_s), the test ``scores`` of each method for the first seed, and its fitted ``detectors``."""

    records: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    detectors: dict = field(default_factory=dict)

    def summary(self, metrics: Sequence[str] = ("AUROC", "AUPR", "F1_oracle", "best_F1", "fit_s")):
        return summarize(self.records, by=("dataset", "method"), metrics=list(metrics))

    def table(self, metrics: Sequence[str] = ("AUROC", "AUPR", "F1_oracle", "fit_s"), digits: int = 3):
        """A display table: one row per method, ``mean ± std`` strings, best AUROC first."""
        import pandas as pd

        s = self.summary(metrics)
        s = s.sort_values("AUROC_mean", ascending=False) if "AUROC_mean" in s else s
        out = pd.DataFrame({"method": s["method"], "seeds": s["n_seeds"]})
        for m in metrics:
            out[m] = [f"{mu:.{digits}f} ± {sd:.{digits}f}" for mu, sd in zip(s[f"{m}_mean"], s[f"{m}_std"])]
        return out.reset_index(drop=True)

    def verdict(self, metric: str = "AUROC", focus: Sequence[str] = ()) -> str:
        """Plain-language ranking by ``metric`` (mean over seeds); differences smaller than the
        seeds' spread are called ties, so the text never over-claims."""
        s = self.summary([metric]).sort_values(f"{metric}_mean", ascending=False).reset_index(drop=True)
        best = s.iloc[0]
        lines = [f"Best {metric}: {best['method']} ({best[f'{metric}_mean']:.3f} ± {best[f'{metric}_std']:.3f}, "
                 f"{int(best['n_seeds'])} seed(s))."]
        for name in focus:
            if name not in set(s["method"]) or name == best["method"]:
                continue
            row = s[s["method"] == name].iloc[0]
            gap = best[f"{metric}_mean"] - row[f"{metric}_mean"]
            spread = max(best[f"{metric}_std"], row[f"{metric}_std"])
            word = "ties with" if gap <= spread else "trails"
            lines.append(f"{name} {word} {best['method']} by {gap:.3f} {metric} (seed spread {spread:.3f}).")
        return " ".join(lines)


def compare_detectors(task, factories: Mapping[str, Callable[[int], object]], seeds: Sequence[int],
                      checkpoint_dir: str | Path | None = None, verbose: int = 0) -> Comparison:
    """Fit ``factories[name](seed)`` on ``task.X_train`` for every seed and score ``task.X_test``.

    Deep detectors go through :func:`load_or_fit` when ``checkpoint_dir`` is given, so a rerun
    with the same parameters loads instead of training. Metrics never use the test labels for
    anything but evaluation."""
    if len(seeds) == 0:
        raise ValueError("seeds is empty: give at least one seed")
    result = Comparison()
    jobs = [(seed, name) for seed in seeds for name in factories]
    for seed, name in progress(jobs, verbose, desc=f"{task.name}", unit="fit"):
        det = factories[name](seed)
        t0 = time.perf_counter()
        if isinstance(det, BaseDeepDetector) and checkpoint_dir:
            path = Path(checkpoint_dir) / f"{task.name}_{name}_seed{seed}.pt".replace("/", "_").replace(" ", "_")
            det = load_or_fit(det, task.X_train, path)
        else:
            det.fit(task.X_train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = det.decision_function(task.X_test)
        score_s = time.perf_counter() - t0
        rec = {"dataset": task.name, "method": name, "seed": int(seed),
               **evaluate_scores(task.y_test, scores), "fit_s": fit_s, "score_s": score_s}
        result.records.append(rec)
        log(f"{task.name} {name} seed {seed}: AUROC {rec['AUROC']:.4f} F1(oracle) {rec['F1_oracle']:.4f} "
            f"fit {fit_s:.1f}s", verbose)
        if seed == seeds[0]:
            result.scores[name] = scores
            result.detectors[name] = det
    return result


def paper_table(comparison: Comparison, paper: Mapping[str, Mapping[str, tuple]], metric: str = "F1_oracle",
                scale: float = 100.0):
    """Our ``metric`` (×``scale``) beside the paper's figures for the methods and data sets both have.
    ``paper`` maps method → dataset → (mean, std or None)."""
    import pandas as pd

    rows = []
    summary = comparison.summary([metric])
    for _, r in summary.iterrows():
        for paper_method, by_data in paper.items():
            ours_name = {"OC-SVM": "OCSVM"}.get(paper_method, paper_method)
            if r["method"] != ours_name or r["dataset"] not in by_data:
                continue
            mu, sd = by_data[r["dataset"]]
            rows.append({"dataset": r["dataset"], "method": r["method"],
                         f"paper {metric}": f"{mu:.1f}" + (f" ± {sd:.1f}" if sd is not None else ""),
                         f"ours {metric}": f"{scale * r[f'{metric}_mean']:.1f} ± {scale * r[f'{metric}_std']:.1f}",
                         "ours ≥ paper": bool(scale * r[f"{metric}_mean"] >= mu)})
    return pd.DataFrame(rows)
