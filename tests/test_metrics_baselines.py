"""Metrics with known values, the results file, and the scikit-learn baselines' API."""
import json

import numpy as np
import pytest

from kdal_lib.baselines import IsolationForestDetector, OCSVMDetector, PCADetector, make_baseline
from kdal_lib.metrics import (auroc, aupr, best_f1, evaluate_scores, f1_at_threshold, load_results, mean_std,
                              oracle_f1, oracle_threshold, save_results, summarize)


def test_metric_values_on_a_hand_checked_example():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.3])
    # pairs (anomaly, normal) ranked correctly: 0.8 beats all 3, 0.3 beats only 0.1 → 4/6
    assert auroc(y, s) == pytest.approx(4 / 6)
    assert auroc(y, -s) == pytest.approx(2 / 6)  # never flipped
    assert aupr(y, s) == pytest.approx((1 / 1 + 2 / 4) / 2)  # positives at ranks 1 and 4
    # oracle threshold at the 60th percentile flags the top 2 scores: 0.8 (TP) and 0.4 (FP) → F1 = 0.5
    assert oracle_threshold(s, 0.4) == pytest.approx(np.percentile(s, 60))
    assert oracle_f1(y, s) == pytest.approx(0.5)
    assert f1_at_threshold(y, s, 0.2) == pytest.approx(2 * 2 / (2 * 2 + 2 + 0))
    assert best_f1(y, s) == pytest.approx(2 / 3)
    out = evaluate_scores(y, s, prefix="image_")
    assert list(out) == ["image_AUROC", "image_AUPR", "image_best_F1", "image_F1_oracle"]


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="single class"):
        auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN or inf"):
        auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="2 values but y_true has 3"):
        auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 \\(normal\\) and 1"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="contamination"):
        oracle_threshold([1, 2], 0.0)


def test_summarize_and_mean_std():
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, np.sqrt(2.0)))
    assert mean_std([5.0]) == (5.0, 0.0)
    recs = [{"dataset": "d", "method": "a", "seed": s, "AUROC": v} for s, v in enumerate([0.8, 0.9])]
    table = summarize(recs)
    assert table.loc[0, "AUROC_mean"] == pytest.approx(0.85) and table.loc[0, "n_seeds"] == 2


def test_results_file_roundtrip_is_atomic_json(tmp_path):
    path = save_results(tmp_path / "out", "01_x", [{"method": "m", "AUROC": np.float32(0.5), "n": np.int64(3)}],
                        summary={"AUROC": 0.5, "bad": float("nan")}, params={"SEED": 0})
    data = load_results(path.parent)
    assert data["notebook"] == "01_x" and data["records"][0]["AUROC"] == 0.5 and data["records"][0]["n"] == 3
    assert data["summary"]["bad"] is None and data["params"]["SEED"] == 0
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left
    json.loads(path.read_text())
    with pytest.raises(FileNotFoundError, match="save_results"):
        load_results(tmp_path / "nowhere")


@pytest.mark.parametrize("cls", [OCSVMDetector, IsolationForestDetector, PCADetector])
def test_baselines_follow_the_detector_api(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    X[:, 4] = X[:, 0] + 0.01 * rng.normal(size=300)  # a correlated pair, so PCA has structure to learn
    X_test = np.vstack([rng.normal(size=(100, 5)), rng.normal(loc=5.0, size=(20, 5))])
    X_test[:100, 4] = X_test[:100, 0]
    y = np.r_[np.zeros(100), np.ones(20)]
    det = cls(contamination=0.05).fit(X)
    s = det.decision_function(X_test)
    assert auroc(y, s) > 0.95  # higher = more anomalous
    assert det.labels_.mean() == pytest.approx(0.05, abs=0.02)
    assert set(det.predict(X_test)) <= {0, 1}
    with pytest.raises(ValueError, match="features"):
        det.decision_function(X_test[:, :3])


def test_make_baseline_and_ocsvm_subsample_cap():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("LOF")
    X = np.random.default_rng(1).normal(size=(500, 3))
    det = make_baseline("OCSVM", max_samples=100).fit(X)
    assert det.model_.support_vectors_.shape[0] <= 100
    assert len(det.decision_scores_) == 500


def test_notebook_parameters_keeps_only_literal_upper_case_names():
    from kdal_lib.metrics import notebook_parameters

    ns = {"SEED": 0, "DATA": "embedded", "METHODS": ["GOAD"], "PAPER_F1": {"x": 1}, "task": object(), "_X": 1}
    assert notebook_parameters(ns) == {"SEED": 0, "DATA": "embedded", "METHODS": ["GOAD"]}


def test_auroc_by_kind_scores_each_anomaly_kind_against_all_normals():
    from kdal_lib.metrics import auroc_by_kind

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.15, 0.25])  # "hole" found, "stain" hidden among the normals
    kinds = ["good"] * 4 + ["hole", "hole", "stain", "stain"]
    out = auroc_by_kind(y, s, kinds)
    assert list(out) == ["hole", "stain", "all"]
    assert out["hole"] == 1.0
    assert out["stain"] == pytest.approx(auroc([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.15, 0.25]))
    assert out["stain"] == pytest.approx(0.375)
    assert out["all"] == pytest.approx(auroc(y, s))
    with pytest.raises(ValueError, match="kinds has 3 entries"):
        auroc_by_kind(y, s, kinds[:3])
