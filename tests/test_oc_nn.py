"""OC-NN (Chalapathy et al. 2018): r is the nu-quantile, the Eq. 2 objective decreases, anomalies
score higher on a synthetic set, seeding, images, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdal_lib.metrics import auroc
from kdal_lib.oc_nn import OCNNDetector


@pytest.fixture(autouse=True)
def _one_thread():
    """The networks are tiny: a second intra-op thread only adds overhead (seconds on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _blob(seed=0, d=10):
    """Normals: a Gaussian blob centred 6 units from the origin; anomalies: a blob at the origin
    (OC-NN, like the OC-SVM, separates the data from the origin of its feature space)."""
    rng = np.random.default_rng(seed)
    mu = np.full(d, 6.0 / np.sqrt(d))
    X = (mu + rng.normal(0, 1, (400, d))).astype(np.float32)
    X_test = np.concatenate([mu + rng.normal(0, 1, (200, d)), rng.normal(0, 1, (50, d))]).astype(np.float32)
    y_test = np.r_[np.zeros(200, int), np.ones(50, int)]
    return X, X_test, y_test


@pytest.mark.parametrize("features", ["raw", "pca"])
def test_ocnn_r_is_the_nu_quantile_objective_decreases_and_anomalies_score_higher(features):
    X, X_test, y_test = _blob()
    det = OCNNDetector(nu=0.1, epochs=50, features=features, n_components=5, device="cpu", random_state=0).fit(X)
    # r = nu-quantile of <w, g(Vx)> on the training data: about nu of the training scores are > 0
    assert abs((det.decision_scores_ > 0).mean() - 0.1) <= 0.05
    y_hat = det.r_ - det.decision_scores_
    assert det.r_ == pytest.approx(float(np.quantile(y_hat, 0.1)), abs=1e-5)
    h = det.history_["objective"]
    assert len(h) == 50 and len(det.history_["r"]) == 50
    assert h[-1] < h[0] < det.initial_objective_
    assert np.mean(np.diff(h) <= 1e-6) > 0.9  # (almost) monotone: each epoch is a descent step plus an exact r-step
    s = det.decision_function(X_test)
    assert s.shape == (250,) and auroc(y_test, s) > 0.9
    assert det.predict(X_test).shape == (250,)


def test_ocnn_same_seed_same_scores_and_images_are_flattened():
    X, X_test, _ = _blob(1)
    kw = dict(epochs=5, device="cpu", random_state=3, n_components=4)
    a, b = OCNNDetector(**kw).fit(X), OCNNDetector(**kw).fit(X)
    np.testing.assert_array_equal(a.decision_function(X_test), b.decision_function(X_test))
    c = OCNNDetector(**{**kw, "random_state": 4}).fit(X)
    assert not np.allclose(a.decision_function(X_test), c.decision_function(X_test))
    imgs = np.random.default_rng(0).random((30, 1, 4, 4)).astype(np.float32)
    det = OCNNDetector(epochs=2, features="raw", activation="linear", device="cpu").fit(imgs)
    assert det.n_features_in_ == 16
    np.testing.assert_allclose(det.decision_function(imgs), det.decision_function(imgs.reshape(30, -1)))
    with pytest.raises(ValueError, match="features"):
        det.decision_function(np.zeros((2, 9), np.float32))


def test_ocnn_bad_inputs_raise():
    X, _, _ = _blob()
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        OCNNDetector(epochs=1, device="cpu").fit(bad)
    for nu in (0, 0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="nu"):
            OCNNDetector(nu=nu, epochs=1, device="cpu").fit(X)
    with pytest.raises(ValueError, match="too small"):
        OCNNDetector(epochs=1, device="cpu").fit(X[:1])
    with pytest.raises(ValueError, match="2-D"):
        OCNNDetector(epochs=1, device="cpu").fit(X[0])
    with pytest.raises(ValueError, match="activation"):
        OCNNDetector(activation="relu", device="cpu").fit(X)
    with pytest.raises(ValueError, match="features"):
        OCNNDetector(features="ae", device="cpu").fit(X)
    with pytest.raises(RuntimeError, match="not fitted"):
        OCNNDetector().decision_function(X)
    full = OCNNDetector(nu=1.0, epochs=1, device="cpu").fit(X)  # nu = 1 allowed: r = largest output, scores >= 0
    assert full.decision_scores_.min() >= -1e-6 and full.decision_scores_.max() > 0


def test_ocnn_runs_on_the_shared_loop_checkpoints_resume_and_save_load(tmp_path):
    X, X_test, _ = _blob(2)
    kw = dict(epochs=6, n_components=4, device="cpu", random_state=1, checkpoint_dir=str(tmp_path / "ckpt"))
    first = OCNNDetector(**kw).fit(X)
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    again = OCNNDetector(**kw).fit(X)  # every epoch is in the checkpoint: nothing is retrained
    np.testing.assert_allclose(again.decision_function(X_test), first.decision_function(X_test), rtol=1e-6)
    assert again.history_["objective"] == first.history_["objective"] and len(again.history_["objective"]) == 6
    assert again.r_ == first.r_
    path = first.save(tmp_path / "ocnn.pt")
    loaded = OCNNDetector.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.decision_function(X_test), first.decision_function(X_test))
    assert loaded.r_ == first.r_ and loaded.threshold_ == first.threshold_
