"""2-D embeddings for plots: t-SNE through MulticoreTSNE when it is installed, else scikit-learn.

MulticoreTSNE 0.1 needs a special build (scripts/install_tsne.sh); the import is guarded and the
backend that ran is returned, so figures and metrics can name it.
"""
from __future__ import annotations

import numpy as np

from .validation import check_features

__all__ = ["tsne", "tsne_backend"]


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


def tsne(X, perplexity: float = 30.0, n_iter: int = 1000, random_state: int = 0, n_jobs: int = 2,
         prefer: str = "multicore") -> tuple[np.ndarray, str]:
    """Embed ``X`` in 2-D with t-SNE. Returns ``(Y, backend)``; ``backend`` names the library used."""
    X = check_features(X, "X", min_samples=3).astype(np.float64)
    perplexity = float(min(perplexity, max(1.0, (X.shape[0] - 1) / 3)))
    backend = tsne_backend(prefer)
    if backend == "MulticoreTSNE":
        from MulticoreTSNE import MulticoreTSNE

        Y = MulticoreTSNE(n_components=2, perplexity=perplexity, n_iter=n_iter, random_state=random_state,
                          n_jobs=n_jobs).fit_transform(X)
    else:
        from sklearn.manifold import TSNE

        Y = TSNE(n_components=2, perplexity=perplexity, max_iter=n_iter, random_state=random_state,
                 init="pca").fit_transform(X)
    return np.asarray(Y), backend
