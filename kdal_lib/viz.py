"""Plot helpers that return matplotlib Figures, so notebook cells stay one line long."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve



def _register_ipython_png() -> None:
    """Show the Figures these helpers return as PNG in Jupyter without pyplot (so a figure is
    drawn once, where a cell returns it, and never twice)."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # plain Python: nothing to register
        return
    ip = get_ipython()
    if ip is not None:
        ip.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png", dpi=100))


_register_ipython_png()

__all__ = ["plot_loss_curves", "plot_score_hist", "plot_score_grid", "plot_roc", "plot_metric_bars", "plot_image_rows"]


def _fig(figsize=(5, 3.5), ncols=1):
    fig = Figure(figsize=(figsize[0] * ncols, figsize[1]), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def plot_loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = "Training loss",
                     logy: bool = False) -> Figure:
    """One line per model (``{name: detector.history_}``), validation loss dashed when present."""
    fig, (ax,) = _fig()
    for i, (name, hist) in enumerate(histories.items()):
        color = f"C{i}"
        loss = np.asarray(hist.get("loss", []), dtype=float)
        ax.plot(np.arange(1, len(loss) + 1), loss, "-o", ms=3, color=color, label=f"{name} train")
        val = np.asarray(hist.get("val_loss", []), dtype=float)
        if val.size and np.isfinite(val).any():
            ax.plot(np.arange(1, len(val) + 1), val, "--", color=color, label=f"{name} validation")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return fig


def plot_score_hist(scores, y_true, title: str = "Anomaly scores", bins: int = 50, threshold: float | None = None,
                    ax=None) -> Figure:
    """Histograms of the scores of normal (0) and anomalous (1) test samples."""
    fig, (ax,) = _fig() if ax is None else (ax.figure, (ax,))
    s, y = np.asarray(scores, dtype=float), np.asarray(y_true).ravel()
    lo, hi = np.percentile(s, [0.5, 99.5])
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    ax.hist(np.clip(s[y == 0], lo, hi), bins=edges, alpha=0.6, density=True, label=f"normal (n={int((y == 0).sum())})")
    ax.hist(np.clip(s[y == 1], lo, hi), bins=edges, alpha=0.6, density=True, label=f"anomaly (n={int((y == 1).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    ax.set(xlabel="score (higher = more anomalous)", ylabel="density", title=title)
    ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4))
    ax.legend(fontsize=8)
    return fig


def plot_roc(y_true, scores_by_method: Mapping[str, np.ndarray], title: str = "ROC") -> Figure:
    """ROC curves, AUROC in the legend. ``y_true``: one label array shared by every method, or a
    mapping name → labels when each curve has its own test set (e.g. one per category)."""
    from .metrics import auroc

    fig, (ax,) = _fig(figsize=(4.5, 4))
    for name, s in scores_by_method.items():
        y = np.asarray(y_true[name] if isinstance(y_true, Mapping) else y_true).ravel()
        fpr, tpr, _ = roc_curve(y, np.asarray(s, dtype=float))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_metric_bars(summary, metric: str = "AUROC", by: str = "method", title: str | None = None) -> Figure:
    """Bars of ``<metric>_mean`` with ``<metric>_std`` error bars from :func:`kdal_lib.metrics.summarize`."""
    fig, (ax,) = _fig(figsize=(max(4.0, 0.9 * len(summary)), 3.5))
    names = [str(v) for v in summary[by]]
    ax.bar(names, summary[f"{metric}_mean"], yerr=summary[f"{metric}_std"], capsize=4,
           color=[f"C{i}" for i in range(len(names))])
    ax.set(ylabel=metric, title=title or f"{metric} (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", rotation=20)
    return fig


def plot_score_grid(y_true, scores_by_method: Mapping[str, np.ndarray], ncols: int = 3) -> Figure:
    """One normal-vs-anomaly score histogram per method, in a grid."""
    names = list(scores_by_method)
    nrows = int(np.ceil(len(names) / ncols))
    fig = Figure(figsize=(4 * min(ncols, len(names)), 3 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, min(ncols, len(names)), squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        plot_score_hist(scores_by_method[name], y_true, title=name, bins=40, ax=ax)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return fig


def _show(ax, img, title=None):
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_image_rows(rows: Mapping[str, Sequence], titles: Sequence[str] | None = None, overlay_masks=None,
                    cell: float = 1.6) -> Figure:
    """A grid with one row per entry of ``rows`` (label → list of (C, H, W) or (H, W) images);
    anomaly maps (H, W) are drawn with a heat colour map. ``overlay_masks``: masks contoured in red
    on every row."""
    names = list(rows)
    n = max(len(v) for v in rows.values())
    fig = Figure(figsize=(cell * n, cell * len(names) + 0.3), layout="constrained")
    axes = fig.subplots(len(names), n, squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r, c]
            if c >= len(rows[name]):
                ax.set_visible(False)
                continue
            img = np.asarray(rows[name][c])
            if img.ndim == 2 and name.lower().startswith(("map", "anomaly map")):
                ax.imshow(img, cmap="inferno", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                _show(ax, img)
            if overlay_masks is not None and np.asarray(overlay_masks[c]).max() > 0:
                ax.contour(np.asarray(overlay_masks[c]).squeeze(), levels=[0.5], colors="red", linewidths=0.7)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    return fig
