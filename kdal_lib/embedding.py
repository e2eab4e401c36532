"""2-D embeddings for plots: t-SNE through MulticoreTSNE when it is installed, else scikit-learn.

MulticoreTSNE 0.1 needs a special build (scripts/install_tsne.sh); the import is guarded and the
backend that ran is returned, so figures and metrics can name it.

Two defects of MulticoreTSNE 0.1 are worked around here:

* it keeps hidden native state between calls in one process (a second call with the same seed gives
  another embedding), so each call runs in a fresh child interpreter;
* its nearest-neighbour search shares one variable between OpenMP threads (the vantage-point tree's
  search radius), so with ``n_jobs > 1`` it finds wrong neighbours at random and sometimes crashes
  (segmentation fault). ``n_jobs`` therefore defaults to 1, which is exact and repeatable.

If the child still fails, scikit-learn's t-SNE runs instead (with a warning) and the returned backend
says so.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .validation import check_features

__all__ = ["tsne", "tsne_backend"]

_CHILD = """
import sys
import numpy as np
from MulticoreTSNE import MulticoreTSNE
src, dst, perplexity, n_iter, seed, n_jobs = sys.argv[1:]
X = np.load(src)
Y = MulticoreTSNE(n_components=2, perplexity=float(perplexity), n_iter=int(n_iter),
                  random_state=int(seed), n_jobs=int(n_jobs)).fit_transform(X)
np.save(dst, Y)
"""


def tsne_backend(prefer: str = "multicore") -> str:
    """``"MulticoreTSNE"`` when importable and preferred, else ``"sklearn"``."""
    if prefer not in ("multicore", "sklearn"):
        raise ValueError(f"prefer must be 'multicore' or 'sklearn', got {prefer!r}")
    if prefer == "multicore":
        try:
            import MulticoreTSNE  # noqa: F401
            return "MulticoreTSNE"
        except ImportError:
            pass
    return "sklearn"


def _multicore_tsne(X: np.ndarray, perplexity: float, n_iter: int, random_state: int, n_jobs: int) -> np.ndarray:
    """MulticoreTSNE in a fresh interpreter (its seed only holds for the first call in a process);
    RuntimeError with the child's stderr when it fails or crashes."""
    with tempfile.TemporaryDirectory(prefix="kdal_tsne_") as tmp:
        src, dst = Path(tmp) / "X.npy", Path(tmp) / "Y.npy"
        np.save(src, X)
        done = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(dst), repr(perplexity), str(n_iter),
                               str(random_state), str(n_jobs)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"MulticoreTSNE failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return np.load(dst)


def tsne(X, perplexity: float = 30.0, n_iter: int = 1000, random_state: int = 0, n_jobs: int = 1,
         prefer: str = "multicore") -> tuple[np.ndarray, str]:
    """Embed ``X`` in 2-D with t-SNE. Returns ``(Y, backend)``; ``backend`` names the library that ran.

    Same ``random_state`` → same embedding, with either backend. ``n_jobs > 1`` makes MulticoreTSNE
    faster but not repeatable (see the module docstring).
    """
    X = check_features(X, "X", min_samples=3).astype(np.float64)
    if n_iter < 250:
        raise ValueError(f"n_iter must be >= 250 (t-SNE spends 250 iterations on early exaggeration), got {n_iter}")
    perplexity = float(min(perplexity, max(1.0, (X.shape[0] - 1) / 3)))
    backend = tsne_backend(prefer)
    if backend == "MulticoreTSNE":
        try:
            return _multicore_tsne(X, perplexity, int(n_iter), int(random_state), int(n_jobs)), backend
        except RuntimeError as exc:
            warnings.warn(f"{exc}; falling back to scikit-learn's t-SNE", RuntimeWarning, stacklevel=2)
    from sklearn.manifold import TSNE

    Y = TSNE(n_components=2, perplexity=perplexity, max_iter=n_iter, random_state=random_state,
             init="pca").fit_transform(X)
    return np.asarray(Y), "sklearn"
