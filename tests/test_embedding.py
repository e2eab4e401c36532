"""t-SNE wrapper: both backends embed separated clusters apart, repeat themselves, and name themselves."""
import numpy as np
import pytest

from kdal_lib.embedding import tsne, tsne_backend


def _two_blobs():
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(size=(40, 5)), rng.normal(loc=8.0, size=(40, 5))])


def _knn_purity(Y, labels, k=5):
    d = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


@pytest.mark.parametrize("prefer", ["multicore", "sklearn"])
def test_tsne_keeps_clusters_apart_and_reports_backend(prefer):
    X = _two_blobs()
    labels = np.repeat([0, 1], 40)
    Y, backend = tsne(X, perplexity=10, n_iter=500, prefer=prefer)
    assert Y.shape == (80, 2)
    assert backend == tsne_backend(prefer)
    assert _knn_purity(Y, labels) == 1.0
    # every point is nearer its own cluster's centre than the other one's
    centres = np.stack([Y[:40].mean(0), Y[40:].mean(0)])
    nearest = np.argmin(((Y[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).all()


@pytest.mark.parametrize("prefer", ["multicore", "sklearn"])
def test_same_seed_gives_same_embedding_on_repeated_calls(prefer):
    X = _two_blobs()
    Y1, _ = tsne(X, perplexity=10, n_iter=300, random_state=3, prefer=prefer)
    Y2, _ = tsne(X, perplexity=10, n_iter=300, random_state=3, prefer=prefer)
    Y3, _ = tsne(X, perplexity=10, n_iter=300, random_state=4, prefer=prefer)
    np.testing.assert_array_equal(Y1, Y2)
    if prefer == "multicore":  # random start: the seed matters (scikit-learn starts from PCA)
        assert not np.allclose(Y1, Y3)


def test_too_few_iterations_is_refused():
    with pytest.raises(ValueError, match="n_iter"):
        tsne(_two_blobs(), n_iter=100)


def test_installed_multicore_is_used_when_present():
    try:
        import MulticoreTSNE  # noqa: F401
    except ImportError:
        assert tsne_backend() == "sklearn"
    else:
        assert tsne_backend() == "MulticoreTSNE"
    with pytest.raises(ValueError, match="prefer"):
        tsne_backend("umap")


def test_multicore_runs_are_identical_on_a_larger_set():
    """With two threads MulticoreTSNE 0.1 raced in its neighbour search (random results, crashes)."""
    if tsne_backend() != "MulticoreTSNE":
        pytest.skip("MulticoreTSNE is not installed")
    X = np.random.default_rng(0).normal(size=(300, 10))
    runs = [tsne(X, n_iter=300)[0] for _ in range(3)]
    for Y in runs[1:]:
        np.testing.assert_array_equal(runs[0], Y)


def test_a_crashing_multicore_run_falls_back_to_sklearn(monkeypatch):
    import kdal_lib.embedding as emb

    def crash(*args, **kwargs):
        raise RuntimeError("MulticoreTSNE failed (exit -11): ")

    monkeypatch.setattr(emb, "tsne_backend", lambda prefer="multicore": "MulticoreTSNE")
    monkeypatch.setattr(emb, "_multicore_tsne", crash)
    with pytest.warns(RuntimeWarning, match="falling back to scikit-learn"):
        Y, backend = emb.tsne(_two_blobs(), perplexity=10, n_iter=300)
    assert backend == "sklearn" and Y.shape == (80, 2)
