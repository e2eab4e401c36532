"""GOAD: shapes and invariants of the transforms, losses and scores; separation; reproducibility."""
import numpy as np
import pytest
import torch

from kdal_lib.goad import GOAD, GOADAE, AutoEncoderDetector, PAPER_PRESETS, _sq_dists
from kdal_lib.metrics import auroc


def blobs(n_train=400, n_test=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X_train = rng.normal(size=(n_train, d)).astype(np.float32)
    X_test = np.vstack([rng.normal(size=(n_test, d)), rng.normal(loc=4.0, size=(n_test // 4, d))]).astype(np.float32)
    y_test = np.r_[np.zeros(n_test), np.ones(n_test // 4)].astype(int)
    return X_train, X_test, y_test


def small_goad(**kw):
    return GOAD(**{"n_transforms": 16, "transform_dim": 8, "hidden_dim": 8, "epochs": 3, **kw})


def test_transform_shapes_and_linearity():
    det = small_goad()
    net = det._build(5)
    x = torch.randn(7, 5)
    tx = net.transform(x)
    assert tx.shape == (7, 16, 8)
    # T_m is linear with zero bias: T(a x + b y) = a T(x) + b T(y), T(0) = 0
    y = torch.randn(7, 5)
    assert torch.allclose(net.transform(2 * x - 3 * y), 2 * tx - 3 * net.transform(y), atol=1e-4)
    assert torch.count_nonzero(net.transform(torch.zeros(1, 5))) == 0
    # W_m = W[:, m, :] matches the per-transform product
    assert torch.allclose(tx[:, 3], x @ net.W[:, 3, :], atol=1e-5)
    tx2, z, logits, recon = net(x)
    assert z.shape == (7, 16, 8) and logits.shape == (7, 16, 16) and recon is None


def test_sq_dists_matches_bruteforce():
    z, c = torch.randn(4, 5, 3), torch.randn(5, 3)
    brute = ((z[:, :, None, :] - c[None, None]) ** 2).sum(-1)
    assert torch.allclose(_sq_dists(z, c), brute, atol=1e-5)


def test_triplet_centre_loss_zero_when_clusters_far_apart_and_positive_when_collapsed():
    det = small_goad(n_transforms=4, margin=1.0)
    det.device_ = torch.device("cpu")
    far = torch.eye(4)[None].repeat(6, 1, 1) * 10.0  # each transform's features sit at its own corner
    assert det.triplet_centre_loss(far).item() == pytest.approx(0.0)
    collapsed = torch.zeros(6, 4, 4)  # all features equal: distance 0 to every centre → loss = margin
    assert det.triplet_centre_loss(collapsed).item() == pytest.approx(1.0)


def test_score_is_sum_of_negative_log_probabilities():
    X_train, X_test, _ = blobs()
    det = small_goad(epochs=1).fit(X_train)
    s = det.decision_function(X_test[:5])
    # every P(m|T_m x) ≤ 1, so each term is ≥ 0; with M transforms a uniform guess gives M log M
    assert (s >= 0).all()
    with torch.no_grad():
        z = det.model_(torch.from_numpy(X_test[:5]))[1]
    logp = torch.log_softmax(-_sq_dists(z, det.centres_), -1)
    manual = -torch.diagonal(logp, dim1=1, dim2=2).sum(-1).double().numpy()
    np.testing.assert_allclose(s, manual, rtol=1e-4)


def test_goad_separates_clearly_separable_data():
    X_train, X_test, y_test = blobs()
    det = small_goad(epochs=5).fit(X_train)
    assert auroc(y_test, det.decision_function(X_test)) > 0.95
    assert det.decision_scores_.shape == (len(X_train),)
    # predict thresholds at the contamination percentile of the training scores
    assert det.labels_.mean() == pytest.approx(0.1, abs=0.02)
    assert det.predict(X_test)[y_test == 1].mean() > 0.9


def test_same_seed_same_scores_and_other_seed_other_scores():
    X_train, X_test, _ = blobs()
    a = small_goad(random_state=3).fit(X_train).decision_function(X_test)
    b = small_goad(random_state=3).fit(X_train).decision_function(X_test)
    c = small_goad(random_state=4).fit(X_train).decision_function(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_epsilon_and_centre_options_change_scores_consistently():
    X_train, X_test, y_test = blobs()
    base = small_goad().fit(X_train)
    s0 = base.decision_function(X_test)
    # Eq. 4: P~ = (exp(-d) + ε) / (Σ exp(-d) + M ε); checked against a float64 reference
    base.eps = 1e-3
    with torch.no_grad():
        d = _sq_dists(base.model_(torch.from_numpy(X_test[:7]))[1], base.centres_).double()
    e = torch.exp(-d)
    p = (torch.diagonal(e, dim1=1, dim2=2) + 1e-3) / (e.sum(-1) + 16 * 1e-3)
    np.testing.assert_allclose(base.decision_function(X_test[:7]), -torch.log(p).sum(-1).numpy(), rtol=1e-5)
    # ε bounds each term: -log P~ ≤ log((1 + Mε)/ε), so the score is bounded (unlike Eq. 2)
    assert base.decision_function(X_test).max() <= 16 * np.log((1 + 16e-3) / 1e-3) + 1e-6
    base.eps = 0.0
    np.testing.assert_array_equal(base.decision_function(X_test), s0)
    orig = small_goad(centres="epoch_average").fit(X_train)
    assert not np.allclose(orig.centres_, base.centres_)
    assert auroc(y_test, orig.decision_function(X_test)) > 0.9


def test_goad_ae_adds_reconstruction_loss_and_plain_ae_scores():
    X_train, X_test, y_test = blobs()
    gae = GOADAE(n_transforms=16, transform_dim=8, hidden_dim=8, epochs=3).fit(X_train)
    assert gae.model_.decoder is not None
    _, parts = gae._loss(torch.from_numpy(X_train[:32]))
    assert set(parts) == {"ce", "tc", "recon"}
    ae = AutoEncoderDetector(hidden_dims=(16, 4), epochs=20).fit(X_train)
    assert auroc(y_test, ae.decision_function(X_test)) > 0.95
    assert ae.history_["loss"][-1] < ae.history_["loss"][0]


def test_paper_presets_match_the_original_readme():
    assert PAPER_PRESETS["kdd"] == dict(n_transforms=64, transform_dim=64, hidden_dim=32, n_layers=5, epochs=25)
    thy = GOAD.paper_preset("thyroid")
    assert (thy.n_transforms, thy.transform_dim, thy.hidden_dim, thy.n_layers, thy.epochs) == (256, 32, 8, 1, 1)
    assert (thy.lmbda, thy.margin, tuple(thy.betas), thy.batch_size, thy.lr) == (0.1, 1.0, (0.5, 0.999), 64, 1e-3)
    with pytest.raises(ValueError, match="no GOAD paper preset"):
        GOAD.paper_preset("cifar")


def test_memory_stays_small_for_kdd_sized_transforms():
    # KDD preset: the transformed batch is B×M×r floats, never N×M×r
    det = GOAD.paper_preset("kdd", epochs=1)
    net = det._build(121)
    assert net.W.numel() * 4 < 3e6  # the maps themselves: ~2 MB
    assert net.transform(torch.zeros(64, 121)).numel() * 4 < 2e6


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_transforms=1), "n_transforms"), (dict(epochs=0), "epochs"), (dict(lr=-1.0), "lr"),
    (dict(centres="median"), "centres"), (dict(contamination=0.7), "contamination"), (dict(verbose=5), "verbose"),
])
def test_bad_parameters_are_named(kwargs, match):
    X_train, _, _ = blobs(n_train=50)
    with pytest.raises(ValueError, match=match):
        small_goad(**kwargs).fit(X_train)


def test_bad_input_is_named():
    det = small_goad(epochs=1)
    X = np.ones((10, 3), dtype=np.float32)
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.fit(X)
    with pytest.raises(ValueError, match="2 dimensions"):
        det.fit(np.ones(10))
    with pytest.raises(TypeError, match="numeric"):
        det.fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(RuntimeError, match="not fitted"):
        det.decision_function(np.ones((2, 3)))
    det.fit(np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(ValueError, match="3 features|fitted on 3"):
        det.decision_function(np.ones((2, 4)))
