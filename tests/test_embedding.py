"""t-SNE wrapper: both backends embed separated clusters apart and name themselves."""
import numpy as np
import pytest

from kdal_lib.embedding import tsne, tsne_backend


@pytest.mark.parametrize("prefer", ["multicore", "sklearn"])
def test_tsne_keeps_clusters_apart_and_reports_backend(prefer):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 5)), rng.normal(loc=8.0, size=(40, 5))])
    Y, backend = tsne(X, perplexity=10, n_iter=300, prefer=prefer)
    assert Y.shape == (80, 2)
    assert backend == tsne_backend(prefer)
    a, b = Y[:40].mean(0), Y[40:].mean(0)
    spread = max(Y[:40].std(0).max(), Y[40:].std(0).max())
    assert np.linalg.norm(a - b) > 2 * spread


def test_installed_multicore_is_used_when_present():
    try:
        import MulticoreTSNE  # noqa: F401
    except ImportError:
        assert tsne_backend() == "sklearn"
    else:
        assert tsne_backend() == "MulticoreTSNE"
    with pytest.raises(ValueError, match="prefer"):
        tsne_backend("umap")
