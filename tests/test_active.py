"""The active-learning core (kdal_lib.active): scorers, selectors, cold starts, pool, loop, learner, curves."""
import numpy as np
import pytest
from scipy.stats import rankdata

from kdal_lib.active import (
    ActiveLoop,
    ClassifierLearner,
    Oracle,
    Pool,
    RandomSampling,
    UncertaintySampling,
    curve_frame,
    labels_to_reach,
    mlp_classifier,
    normalized_logit_confidence,
    plot_learning_curves,
    random_init,
    select_top,
    stratified_top,
    uncertainty_scores,
)


def _binary_probas(n, seed=0):
    p1 = np.random.default_rng(seed).random(n)
    return np.c_[1 - p1, p1]


# ----------------------------------------------------------------------------- cold starts
def test_stratified_top_takes_the_top_two_of_each_stratum_in_the_seed_order():
    scores = np.arange(20, dtype=float)[::-1].copy()  # item i has rank i
    rng = np.random.default_rng(0)
    perm = rng.permutation(20)
    shuffled = scores[perm]  # item perm^-1 ... : the rank of shuffled[j] is 19 - shuffled[j]
    got = stratified_top(shuffled, n_strata=5, per_stratum=2)
    ranks = (19 - shuffled[got]).astype(int)
    # strata of 4 ranks each: [0..3], [4..7], ...; order s0[0], s1[0], ..., s4[0], s0[1], ..., s4[1]
    assert ranks.tolist() == [0, 4, 8, 12, 16, 1, 5, 9, 13, 17]


def test_stratified_top_uneven_strata_follow_array_split():
    scores = -np.arange(12, dtype=float)  # item i has rank i
    assert stratified_top(scores, n_strata=5, per_stratum=1).tolist() == [0, 3, 6, 8, 10]  # sizes 3,3,2,2,2
    assert stratified_top(scores, n_strata=5, per_stratum=2).tolist() == [0, 3, 6, 8, 10, 1, 4, 7, 9, 11]


@pytest.mark.parametrize("n", [0, 4, 9])
def test_stratified_top_refuses_fewer_items_than_strata_times_per_stratum(n):
    with pytest.raises(ValueError, match="fewer than n_strata"):
        stratified_top(np.arange(n, dtype=float), 5, 2)


def test_stratified_top_rejects_nan_scores():
    s = np.arange(20, dtype=float)
    s[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stratified_top(s)


def test_random_init_is_seeded_and_without_replacement():
    a, b = random_init(50, 10, 3), random_init(50, 10, 3)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10 and a.max() < 50
    assert random_init(50, 10, 4).tolist() != a.tolist()
    with pytest.raises(ValueError):
        random_init(5, 10, 0)


# ----------------------------------------------------------------------------- scorers
def test_least_confidence_margin_and_entropy_rank_binary_problems_identically():
    p = _binary_probas(200, seed=1)
    ranks = [rankdata(uncertainty_scores(p, m)) for m in ("least_confident", "margin", "entropy")]
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[0], ranks[2])
    lc = UncertaintySampling("least_confident", random_state=0).query(p, batch_size=10)
    for m in ("margin", "entropy"):
        assert UncertaintySampling(m, random_state=0).query(p, batch_size=10).tolist() == lc.tolist()
    # and the known values
    q = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert np.allclose(uncertainty_scores(q, "least_confident"), [0.5, 0.1])
    assert np.allclose(uncertainty_scores(q, "margin"), [1.0, 0.2])
    assert np.allclose(uncertainty_scores(q, "entropy"), [np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))])


def test_the_legacy_normalised_logit_confidence_ranks_differently():
    # a: logits (0, 1) -> p_max = sigmoid(1) = 0.73; b: logits (5, 8) -> p_max = sigmoid(3) = 0.95
    logits = np.array([[0.0, 1.0], [5.0, 8.0]])
    probas = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert UncertaintySampling(random_state=0).query(probas).tolist() == [0]  # a is the least confident
    # normalised: sigmoid(|l1-l0| / ||l||): a -> sigmoid(1), b -> sigmoid(3 / 9.43): b looks *less* confident
    conf = normalized_logit_confidence(logits)
    assert np.allclose(conf, [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-3 / np.hypot(5, 8)))], atol=1e-6)
    assert UncertaintySampling(random_state=0, legacy_normalized_logits=True).query(logits).tolist() == [1]
    # and over many random logits the two rankings disagree
    z = np.random.default_rng(0).normal(0, 3, (300, 2))
    pz = np.exp(z - z.max(1, keepdims=True))
    pz /= pz.sum(1, keepdims=True)
    assert not np.array_equal(rankdata(uncertainty_scores(pz)), rankdata(1 - normalized_logit_confidence(z)))


def test_scorers_reject_logits_and_bad_shapes():
    with pytest.raises(ValueError, match="sum to 1"):
        uncertainty_scores(np.array([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="shape"):
        uncertainty_scores(np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="method"):
        uncertainty_scores(np.array([[0.2, 0.8]]), "bald")


# ----------------------------------------------------------------------------- selectors and pool
def test_select_top_breaks_ties_at_random_but_reproducibly():
    u = np.zeros(100)
    a = select_top(u, 5, random_state=1)
    assert a.tolist() == select_top(u, 5, random_state=1).tolist()
    assert a.tolist() != select_top(u, 5, random_state=2).tolist()
    picks = {int(select_top(u, 1, random_state=s)[0]) for s in range(30)}
    assert len(picks) > 10  # not always the first index
    u[[7, 42]] = 1.0
    assert sorted(select_top(u, 2, random_state=3).tolist()) == [7, 42]


def test_queries_never_return_labelled_items():
    rng = np.random.default_rng(0)
    n = 40
    for strategy in (UncertaintySampling("least_confident", random_state=0), UncertaintySampling("entropy", random_state=1),
                     RandomSampling(random_state=0)):
        pool = Pool(n)
        pool.label(rng.choice(n, 5, replace=False), 0)
        for cycle in range(1, 8):
            p = _binary_probas(n, seed=cycle)
            p[pool.labeled] = 0.5  # labelled items are the most uncertain: they must still not come back
            q = strategy.query(p if not isinstance(strategy, RandomSampling) else n, pool.labeled_mask, batch_size=5)
            assert not pool.labeled_mask[q].any()
            pool.label(q, cycle)
        assert len(pool) == 40 and pool.labeled_mask.all()
        with pytest.raises(ValueError, match="only 0 unlabelled"):
            strategy.query(_binary_probas(n) if not isinstance(strategy, RandomSampling) else n, pool.labeled_mask)


def test_pool_refuses_a_second_label_and_bad_indices():
    pool = Pool(10)
    pool.label([1, 2], 0)
    with pytest.raises(ValueError, match="already labelled"):
        pool.label([2], 1)
    with pytest.raises(ValueError, match="twice"):
        pool.label([3, 3], 1)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        pool.label([10], 1)
    assert pool.labeled.tolist() == [1, 2] and pool.cycle_of == [0, 0] and pool.unlabeled.size == 8


def test_oracle_reveals_labels_and_counts_queries():
    oracle = Oracle([0, 1, 0, 1])
    assert oracle.reveal([1, 2]).tolist() == [1, 0] and oracle.reveal([3]).tolist() == [1]
    assert oracle.n_queries == 3


# ----------------------------------------------------------------------------- the loop
def _blobs(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    y[:2] = 1
    X = rng.normal(0, 1, (n, d)) + 2.0 * y[:, None]
    return X.astype(np.float32), y


def _loop(X, y, ckpt, query, n_cycles=5, evaluate=None, seed=0):
    learner = ClassifierLearner(lambda: mlp_classifier(X.shape[1], (16,)), X, epochs=5, batch_size=4, val_fraction=0.25,
                                random_state=seed, device="cpu")
    ev = evaluate or (lambda lrn: {"mean_p1": float(lrn.predict_proba()[:, 1].mean())})
    return ActiveLoop(learner, Oracle(y), len(y), init=lambda rng: stratified_top(X[:, 0], 2, 3), query=query,
                      evaluate=ev, n_cycles=n_cycles, batch_size=2, checkpoint_dir=ckpt, random_state=seed, verbose=0)


@pytest.mark.parametrize("make_query", [lambda: UncertaintySampling(random_state=5), lambda: RandomSampling(random_state=5)])
def test_resume_after_interruption_gives_the_same_curve(tmp_path, make_query):
    X, y = _blobs()
    full = _loop(X, y, None, make_query()).run()

    calls = {"n": 0}

    def crash_at_cycle_3(lrn):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        return {"mean_p1": float(lrn.predict_proba()[:, 1].mean())}

    with pytest.raises(KeyboardInterrupt):
        _loop(X, y, tmp_path, make_query(), evaluate=crash_at_cycle_3).run()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [f"active_cycle{c:03d}.pt" for c in range(3)]
    resumed = _loop(X, y, tmp_path, make_query()).run()
    assert [r.queried for r in resumed] == [r.queried for r in full]
    assert [r.n_labels for r in resumed] == [6, 8, 10, 12, 14]
    assert np.allclose([r.metrics["mean_p1"] for r in resumed], [r.metrics["mean_p1"] for r in full], atol=1e-6)
    # a third run finds every cycle done and trains nothing
    again = _loop(X, y, tmp_path, make_query(), evaluate=lambda lrn: pytest.fail("retrained a finished cycle")).run()
    assert [r.queried for r in again] == [r.queried for r in full]


def test_loop_records_labels_anomalies_and_queried_items():
    X, y = _blobs()
    recs = _loop(X, y, None, UncertaintySampling(random_state=0), n_cycles=3).run()
    first = stratified_top(X[:, 0], 2, 3)
    assert recs[0].queried == first.tolist() and recs[0].n_anomalies == int(y[first].sum())
    labelled = [i for r in recs for i in r.queried]
    assert len(set(labelled)) == len(labelled) == 10
    assert recs[2].n_anomalies == int(y[labelled].sum())


def test_a_loop_needs_a_query_for_more_than_one_cycle():
    X, y = _blobs()
    with pytest.raises(ValueError, match="query strategy"):
        _loop(X, y, None, None)


# ----------------------------------------------------------------------------- the learner
def test_learner_selects_on_validation_and_keeps_each_criterion_best():
    X, y = _blobs(200)
    idx = np.arange(40)
    for select in ("val_loss", "val_acc", "val_auroc", "last"):
        lrn = ClassifierLearner(lambda: mlp_classifier(5, (16,)), X, epochs=6, batch_size=8, val_fraction=0.3,
                                select=select, device="cpu", random_state=0).fit(idx, y[idx])
        if select == "last":  # no validation split is held out: all labelled items train
            assert lrn.best_ == {} and "val_loss" not in lrn.history_[-1]
            continue
        assert set(lrn.best_) == {"val_loss", "val_acc", "val_auroc"}
        hist = lrn.history_
        assert all({"val_loss", "val_acc", "val_auroc"} <= set(h) for h in hist)
        best_acc = max(h["val_acc"] for h in hist)
        assert lrn.best_["val_acc"]["value"] == best_acc
        assert lrn.best_["val_loss"]["value"] == min(h["val_loss"] for h in hist)
    with pytest.raises(ValueError, match="select"):
        ClassifierLearner(lambda: mlp_classifier(5), X, select="test_auroc")


def test_val_auroc_selection_with_one_class_gives_a_clear_error():
    X, y = _blobs(100)
    normals = np.flatnonzero(y == 0)[:12]
    lrn = ClassifierLearner(lambda: mlp_classifier(5), X, epochs=2, val_fraction=0.25, select="val_auroc", device="cpu")
    with pytest.raises(ValueError, match="both classes in the validation split"):
        lrn.fit(normals, y[normals])
    # val_loss selection trains on a one-class set (Random cold starts can hit one) and records NaN AUROC
    lrn = ClassifierLearner(lambda: mlp_classifier(5), X, epochs=2, val_fraction=0.25, device="cpu").fit(normals, y[normals])
    assert np.isnan(lrn.history_[-1]["val_auroc"]) and "val_auroc" not in lrn.best_


def test_warm_start_keeps_weights_and_cold_start_resets_them():
    X, y = _blobs(80)
    idx = np.arange(30)
    warm = ClassifierLearner(lambda: mlp_classifier(5), X, epochs=1, device="cpu", random_state=0).fit(idx, y[idx], 0)
    w0 = {k: v.clone() for k, v in warm.state_dict().items()}
    model_before = warm.model
    warm.fit(idx, y[idx], 1)
    assert warm.model is model_before
    cold = ClassifierLearner(lambda: mlp_classifier(5), X, epochs=1, warm_start=False, device="cpu").fit(idx, y[idx], 0)
    m0 = cold.model
    cold.fit(idx, y[idx], 1)
    assert cold.model is not m0
    assert any(not np.allclose(w0[k].numpy(), v.numpy()) for k, v in warm.state_dict().items())


# ----------------------------------------------------------------------------- curves
def test_curve_frame_plot_and_labels_to_reach():
    from matplotlib.figure import Figure

    from kdal_lib.active import CycleRecord

    def recs(vals):
        return [CycleRecord(c, 10 + c, 1, [c], {"AUROC": v}) for c, v in enumerate(vals)]

    frame = curve_frame({"ASAL": [recs([0.5, 0.7, 0.9]), recs([0.6, 0.8, 0.9])], "Random": [recs([0.5, 0.5, 0.6])] * 2})
    assert len(frame) == 12 and set(frame["method"]) == {"ASAL", "Random"}
    reach = labels_to_reach(frame, 0.75)
    assert reach["ASAL"] == 11 and np.isnan(reach["Random"])
    fig = plot_learning_curves(frame, "AUROC", reference_lines={"DRAEM_mixed": 0.8})
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "labels used" and len(ax.collections) == 2  # one mean±std band per method
    assert np.allclose(ax.lines[0].get_ydata(), [0.55, 0.75, 0.9])


def test_small_cnn_group_norm_has_no_running_statistics():
    import torch

    from kdal_lib.active import small_cnn_classifier

    x = torch.rand(3, 1, 32, 32)
    gn = small_cnn_classifier(1, norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    gn.train()
    a = gn(x)
    gn.eval()
    assert torch.allclose(a, gn(x), atol=1e-6)  # same output in train and eval mode
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in small_cnn_classifier(1).modules())  # default unchanged
    with pytest.raises(ValueError, match="norm"):
        small_cnn_classifier(1, norm="layer")
