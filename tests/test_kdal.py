"""KDAL (notebook 05): soft labels from anomaly scores, the KDAL loop and its comparison methods."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdal_lib.active import ClassifierLearner, mlp_classifier, soft_loss
from kdal_lib.baselines import OCSVMDetector
from dataclasses import replace

from kdal_lib.kdal import (METHODS, KDALSettings, NystroemOCSVMDetector, ScoreNormalizer, choose_epochs0,
                           detector_scores, distillation_fidelity, load_kdal_task, make_detector, run_comparison,
                           run_method, settings_for, soft_targets_from_scores, soft_trust)
from kdal_lib.metrics import auroc


def blobs(n=200, n_anom=12, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.zeros(n, dtype=np.int64)
    y[:n_anom] = 1
    direction = rng.normal(size=(n_anom, d))
    X[:n_anom] = 6.0 * direction / np.linalg.norm(direction, axis=1, keepdims=True)  # scattered, far out
    perm = rng.permutation(n)
    return X[perm], y[perm]


@pytest.fixture(scope="module")
def split():
    X, y = blobs(240, 16, seed=1)
    Xt, yt = blobs(80, 6, seed=2)
    det = OCSVMDetector(random_state=0).fit(X)
    return X, y, Xt, yt, det.decision_function(X)


SMALL = KDALSettings(k=4, n_rounds=3, epochs=5, hidden=(16,))


# ----------------------------------------------------------------------------- soft labels
def test_normalisation_range_and_direction():
    scores = np.array([3.0, -1.0, 0.0, 7.0, 1.0])
    s = ScoreNormalizer(higher_is_anomalous=True).fit_transform(scores)
    assert s.min() == 0.0 and s.max() == 1.0 and s[3] == 1.0 and s[1] == 0.0
    np.testing.assert_allclose(s, (scores + 1) / 8)
    flipped = ScoreNormalizer(higher_is_anomalous=False).fit_transform(scores)  # e.g. sklearn decision_function
    assert flipped[1] == 1.0 and flipped[3] == 0.0
    q = soft_targets_from_scores(scores)
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[:, 1], s)
    # other data uses the POOL's min/max, clipped into [0, 1]
    norm = ScoreNormalizer().fit(scores)
    np.testing.assert_allclose(norm.transform([-5.0, 3.0, 100.0]), [0.0, 0.5, 1.0])


def test_sklearn_ocsvm_is_sign_flipped_so_outliers_get_high_soft_labels():
    from sklearn.svm import OneClassSVM

    X, y = blobs()
    raw = OneClassSVM(gamma="scale", nu=0.1).fit(X)
    s = detector_scores(raw, X)  # auto: sklearn is inlier-positive -> flipped
    np.testing.assert_allclose(s, -raw.decision_function(X))
    assert auroc(y, s) > 0.95
    ours = OCSVMDetector().fit(X)  # kdal_lib: already higher = more anomalous, kept
    np.testing.assert_allclose(detector_scores(ours, X), ours.decision_function(X))
    q = soft_targets_from_scores(s)
    assert q[y == 1, 1].mean() > 0.8 > 0.4 > q[y == 0, 1].mean()
    with pytest.raises(TypeError, match="decision_function"):
        detector_scores(object(), X)


def test_constant_scores_give_half_and_a_warning():
    with pytest.warns(UserWarning, match="constant"):
        s = ScoreNormalizer().fit_transform(np.full(10, 2.5))
    np.testing.assert_array_equal(s, 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_scores_raise(bad):
    with pytest.raises(ValueError, match="NaN or inf"):
        ScoreNormalizer().fit(np.array([0.1, bad, 0.3]))


# ----------------------------------------------------------------------------- soft losses
@pytest.mark.parametrize("form", ["ce", "kl", "mse"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_loss_gradient_points_towards_the_target(form, temperature):
    for s in (0.8, 0.1):
        logits = torch.zeros(1, 2, requires_grad=True)  # p = [0.5, 0.5]
        q = torch.tensor([[1 - s, s]])
        soft_loss(logits, q, form, temperature).sum().backward()
        g = logits.grad[0]
        # gradient descent moves the anomaly logit up when s > 0.5 and down when s < 0.5
        assert (g[1] < 0) == (s > 0.5) and (g[0] > 0) == (s > 0.5), (form, s, g)
    # zero gradient when the output already equals the target
    q = torch.tensor([[0.3, 0.7]])
    logits = (temperature * torch.log(q)).clone().requires_grad_(True)
    soft_loss(logits, q, form, temperature).sum().backward()
    assert logits.grad.abs().max() < 1e-5


def test_kl_is_zero_at_the_optimum_and_ce_is_the_entropy():
    q = torch.tensor([[0.25, 0.75]])
    logits = torch.log(q)
    assert soft_loss(logits, q, "kl").item() == pytest.approx(0.0, abs=1e-6)
    assert soft_loss(logits, q, "ce").item() == pytest.approx(-(q * q.log()).sum().item(), rel=1e-5)
    assert soft_loss(logits, q, "mse").item() == pytest.approx(0.0, abs=1e-10)


def test_soft_samples_limits_the_soft_items_per_epoch():
    X, _ = blobs(300)
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp_classifier(4, (8,))

        def forward(self, x):
            seen.append(len(x))
            return self.net(x)

    q = soft_targets_from_scores(X[:, 0])
    ClassifierLearner(Spy, X, epochs=2, soft_targets=q, soft_batch_size=50, soft_samples=100, device="cpu").fit([], [])
    assert seen == [50, 50, 50, 50]  # 2 epochs x 100 items in batches of 50, not 300 per epoch
    seen.clear()
    ClassifierLearner(Spy, X, epochs=1, soft_targets=q, soft_batch_size=100, device="cpu").fit([], [])
    assert seen == [100, 100, 100]  # default: every pool item


# ----------------------------------------------------------------------------- the loop
def test_cycle_zero_is_soft_only_and_later_cycles_use_both(split):
    X, y, Xt, yt, scores = split
    calls = []

    def hook(learner):
        fit = learner.fit

        def spy(idx, labels, cycle=0):
            calls.append((cycle, len(idx), learner.soft_targets is not None and learner.soft_weight > 0))
            return fit(idx, labels, cycle)

        learner.fit = spy
        return learner

    recs = run_method("KDAL", X, y, Xt, yt, scores, SMALL, seed=0, learner_hook=hook)
    assert [c[:2] for c in calls] == [(0, 0), (1, 4), (2, 8), (3, 12)]
    assert all(c[2] for c in calls)
    assert recs[0].n_labels == 0 and recs[0].metrics["hard_loss"] == 0.0 and recs[0].metrics["soft_loss"] > 0
    for r in recs[1:]:
        assert r.metrics["hard_loss"] > 0 and r.metrics["soft_loss"] > 0
    for method in ("Random", "LeastConfident", "ASAL-style"):
        base = run_method(method, X, y, Xt, yt, scores, SMALL, seed=0)
        assert [r.n_labels for r in base] == [4, 8, 12]
        assert all(r.metrics["soft_loss"] == 0.0 and r.metrics["hard_loss"] > 0 for r in base)


def test_soft_trust_is_the_detectors_gini_on_the_labelled_items():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.7])
    labels_all = np.array([0, 0, 1, 1, 0, 1])
    idx = np.arange(6)
    assert soft_trust(scores, idx, labels_all) == 1.0  # ranks every labelled anomaly first
    assert soft_trust(-scores, idx, labels_all) == 0.0  # backwards: clipped to 0, never negative
    assert soft_trust(scores, [0, 1], [0, 0]) == 1.0  # one class only: no evidence yet
    assert soft_trust(scores, [], []) == 1.0
    # AUROC 0.75 on the items [0, 2, 3, 5] with labels [0, 1, 0, 1] -> 2 * 0.75 - 1
    assert soft_trust(scores, [0, 2, 3, 5], [0, 1, 0, 1]) == pytest.approx(2 * auroc([0, 1, 0, 1], scores[[0, 2, 3, 5]]) - 1)
    assert soft_trust(scores, [0, 2, 3, 5], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_kdal_trust_silences_a_detector_the_labels_contradict(split, tmp_path):
    _, _, Xt, yt, _ = split
    # features without structure and half the pool anomalous, so the queries meet both classes at once;
    # the detector ranks every anomaly last (on separable blobs a backwards start rarely queries an anomaly)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (rng.random(200) < 0.5).astype(np.int64)
    backwards = -y + 0.1 * rng.random(200)
    s = replace(SMALL, n_rounds=3, k=8)
    recs = run_method("KDAL-trust", X, y, Xt, yt, backwards, s, seed=0, checkpoint_dir=tmp_path)
    labelled = []
    for r in recs:
        labelled += list(r.queried)
        expected = 1.0 if r.cycle == 0 else soft_trust(backwards, labelled, y[labelled])
        assert r.metrics["soft_trust"] == pytest.approx(expected)
        if r.metrics["soft_trust"] == 0.0:
            assert r.metrics["soft_loss"] == 0.0  # weight 0: the soft loss is not trained
    assert [r.metrics["soft_trust"] for r in recs] == [1.0, 0.0, 0.0, 0.0]
    # the configured weight is restored after every fit, so the run resumes from its checkpoints
    again = run_method("KDAL-trust", X, y, Xt, yt, backwards, s, seed=0, checkpoint_dir=tmp_path)
    assert [r.metrics["AUROC"] for r in again] == [r.metrics["AUROC"] for r in recs]
    # plain KDAL keeps the fixed weight and never reports a trust factor
    plain = run_method("KDAL", X, y, Xt, yt, backwards, s, seed=0)
    assert all("soft_trust" not in r.metrics and r.metrics["soft_loss"] > 0 for r in plain)
    with pytest.raises(ValueError, match="soft_trust"):
        run_method("KDAL", X, y, Xt, yt, backwards, replace(SMALL, soft_trust="always"))


@pytest.mark.parametrize("method", METHODS)
def test_budget_respected_and_no_item_labelled_twice(split, method):
    X, y, Xt, yt, scores = split
    recs = run_method(method, X, y, Xt, yt, scores, SMALL, seed=3)
    queried = [i for r in recs for i in r.queried]
    assert len(queried) == len(set(queried)) == SMALL.k * SMALL.n_rounds
    assert recs[-1].n_labels == SMALL.k * SMALL.n_rounds
    assert all(0 <= i < len(X) for i in queried)
    assert recs[-1].n_anomalies == int(y[queried].sum())


def test_asal_style_cold_start_takes_each_score_stratum(split):
    X, y, Xt, yt, scores = split
    s = KDALSettings(k=5, n_rounds=1, epochs=2, hidden=(8,))
    first = run_method("ASAL-style", X, y, Xt, yt, scores, s, seed=0)[0].queried
    ranks = np.argsort(np.argsort(-scores))  # 0 = most anomalous
    strata = sorted(int(r) // (len(X) // 5) for r in ranks[first])
    assert strata == [0, 1, 2, 3, 4]


def test_kdal_cycle_zero_learns_the_detector_ranking(split):
    X, y, Xt, yt, scores = split
    det = OCSVMDetector(random_state=0).fit(X)
    recs = run_method("KDAL", X, y, Xt, yt, scores, KDALSettings(k=4, n_rounds=1, epochs=40), seed=0)
    ref = auroc(yt, det.decision_function(Xt))
    assert recs[0].metrics["AUROC"] >= ref - 0.03 and recs[0].metrics["AUROC"] > 0.9


def test_same_seed_same_curve(split):
    X, y, Xt, yt, scores = split
    a = run_method("KDAL", X, y, Xt, yt, scores, SMALL, seed=5)
    torch.manual_seed(999)  # the global RNG state must not matter (cycle-0 epochs are tuned inside)
    torch.rand(10)
    b = run_method("KDAL", X, y, Xt, yt, scores, SMALL, seed=5)
    assert [r.metrics for r in a] == [r.metrics for r in b]
    assert [r.queried for r in a] == [r.queried for r in b]


def test_cycle_zero_epochs_are_chosen_on_the_pool_without_labels(split):
    X, y, Xt, yt, scores = split
    table = distillation_fidelity(X, scores, (2, 300), SMALL, seed=0)
    assert list(table["epochs"]) == [2, 300] and table["spearman"].iloc[1] > table["spearman"].iloc[0]
    assert table["spearman"].iloc[1] > 0.8  # measured 0.88 (held-out pool items, no labels)
    chosen = choose_epochs0(X, scores, replace(SMALL, epochs0_grid=(2, 300)), seed=0)
    assert chosen == 300 and choose_epochs0(X, scores, replace(SMALL, epochs0=7)) == 7
    learners = []
    run_method("KDAL", X, y, Xt, yt, scores, replace(SMALL, epochs0=7, n_rounds=1), seed=0,
               learner_hook=lambda lr: learners.append(lr) or lr)
    cycles = [h["cycle"] for h in learners[0].history_]
    assert cycles.count(0) == 7 and cycles.count(1) == SMALL.epochs


def test_resume_from_checkpoints_gives_the_same_curve(split, tmp_path):
    X, y, Xt, yt, scores = split
    full = run_method("KDAL", X, y, Xt, yt, scores, SMALL, seed=1, checkpoint_dir=tmp_path)
    again = run_method("KDAL", X, y, Xt, yt, scores, SMALL, seed=1, checkpoint_dir=tmp_path)  # all resumed
    assert [r.metrics for r in again] == [r.metrics for r in full]
    assert all(r.seconds == f.seconds for r, f in zip(again, full))  # records come from the checkpoint
    other = run_method("KDAL", X, y, Xt, yt, scores, replace(SMALL, soft_weight=0.5), seed=1, checkpoint_dir=tmp_path)
    assert [r.metrics for r in other] != [r.metrics for r in full]  # a changed setting never resumes


def test_bad_inputs_give_clear_errors(split):
    X, y, Xt, yt, scores = split
    with pytest.raises(ValueError, match="no anomaly"):
        run_method("KDAL", X, np.zeros_like(y), Xt, yt, scores, SMALL)
    nan_scores = scores.copy()
    nan_scores[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_method("KDAL", X, y, Xt, yt, nan_scores, SMALL)
    with pytest.raises(ValueError, match="larger than the pool"):
        run_method("KDAL", X, y, Xt, yt, scores, KDALSettings(k=len(X) + 1))
    with pytest.raises(ValueError, match="exceeds the pool"):
        run_method("Random", X, y, Xt, yt, scores, KDALSettings(k=100, n_rounds=3))
    with pytest.raises(ValueError, match="pool_scores has"):
        run_method("KDAL", X, y, Xt, yt, scores[:-1], SMALL)
    with pytest.raises(ValueError, match="method"):
        run_method("kdal", X, y, Xt, yt, scores, SMALL)
    with pytest.raises(ValueError, match="soft_form"):
        run_method("KDAL", X, y, Xt, yt, scores, KDALSettings(soft_form="l1"))


# ----------------------------------------------------------------------------- detectors and data
def test_nystroem_ocsvm_approximates_the_kernel_ocsvm():
    X, y = blobs(600, 30, d=6, seed=4)
    exact = OCSVMDetector().fit(X).decision_function(X)
    approx = NystroemOCSVMDetector(n_components=200, random_state=0).fit(X)
    s = approx.decision_function(X)
    assert auroc(y, s) > 0.95 and abs(auroc(y, s) - auroc(y, exact)) < 0.03
    assert approx.predict(X).sum() > 0
    det, name = make_detector("auto", n_pool=50000, max_samples=10000)
    assert name == "ocsvm_nystroem" and isinstance(det, NystroemOCSVMDetector)
    det, name = make_detector("auto", n_pool=500, max_samples=10000)
    assert name == "ocsvm" and det.max_samples == 10000


def test_settings_scale_with_the_pool():
    assert settings_for(302).k == 5 and settings_for(3017).k == 45 and settings_for(395216).k == 100
    big = settings_for(395216)
    assert big.soft_samples == 4096 and big.epochs == 10 and big.epochs0 == 30 and settings_for(302).epochs0 == 0
    assert settings_for(302, k=7).k == 7


def test_kdal_split_is_stratified_80_20_and_keeps_pool_anomalies():
    task = load_kdal_task("embedded", random_state=0)
    assert (len(task.X_train), int(task.y_train.sum()), len(task.X_test), int(task.y_test.sum())) == (302, 17, 76, 4)
    np.testing.assert_allclose(task.X_train.mean(0), 0, atol=1e-4)  # scaled with pool statistics
    other = load_kdal_task("embedded", random_state=1)
    assert not np.array_equal(task.X_test, other.X_test)


def test_comparison_on_embedded_data():
    c = run_comparison("embedded", seeds=[0], settings={"n_rounds": 2, "epochs": 10})
    assert set(c.frame["method"]) == set(METHODS)
    kdal = c.frame[c.frame.method == "KDAL"]
    assert list(kdal.n_labels) == [0, 5, 10]
    assert c.detector_name == "OCSVM" and 0.8 < c.reference_auroc() <= 1.0
    assert kdal.AUROC.iloc[0] > 0.8  # cycle 0 without any label
    saved = c.labels_saved({"OCSVM": c.reference_auroc()})
    assert saved.loc["KDAL", "OCSVM"] in (0.0, 5.0, 10.0) or np.isnan(saved.loc["KDAL", "OCSVM"])
    assert len(c.records()) == len(c.frame) + 1


def test_kdal_task_on_real_data(shared_data):
    task = load_kdal_task("thyroid", data_dir=shared_data, random_state=0)
    assert (len(task.X_train), int(task.y_train.sum()), len(task.X_test), int(task.y_test.sum())) == (3017, 74, 755, 19)
    cv = load_kdal_task("mvtec:bottle", data_dir=shared_data, random_state=0)
    assert cv.n_features == 512 and cv.y_train.sum() > 0
    with pytest.raises(FileNotFoundError, match="MVTec-AD_bottle"):
        load_kdal_task("cv:nope", data_dir=shared_data)


def test_kdal_beats_random_queries_early_on_thyroid(shared_data):
    c = run_comparison("thyroid", seeds=[0], methods=["KDAL", "Random"], data_dir=shared_data,
                       settings={"n_rounds": 2, "epochs": 10})
    gain = c.wins_over("Random")
    assert gain.index[0] == 45 and gain.iloc[0] > 0.1  # measured: KDAL 0.99 vs Random 0.6 at 45 labels
    assert c.mean_curve("KDAL").iloc[0] >= c.reference_auroc() - 0.03  # cycle 0 reaches the OCSVM


# ----------------------------------------------------------------------------- notebook
@pytest.mark.slow
def test_kdal_notebook_smoke(run_notebook):
    m = run_notebook("05_kdal")
    s = m["summary"]
    assert m["params"]["N_SEEDS"] == 1 and s["dataset"] == "breast_cancer"
    assert set(s["methods"]) == set(METHODS)
    assert 0.8 < s["OCSVM_AUROC"] <= 1.0
    assert s["KDAL_cycle0_AUROC"] > 0.8  # measured 0.94 (seed 0)
    assert s["budget"] == s["K"] * s["N_ROUNDS"]
    methods = {r["method"] for r in m["records"]}
    assert methods == set(METHODS) | {"OCSVM"}
    for r in m["records"]:
        assert 0.0 <= r["AUROC"] <= 1.0
