"""ASAL (kdal_lib.asal): score files → pool, cold start, legacy switches, checkpoints, CLI, notebook 04."""
import json
from pathlib import Path

import numpy as np
import pytest

from kdal_lib.active import UncertaintySampling, mlp_classifier, stratified_top
from kdal_lib.asal import (
    ASALLearner,
    RequeryLabelled,
    align_scores,
    asal_data_from_arrays,
    compare_inits,
    initial_set_table,
    main,
    run_active,
    scores_from_files,
    strata_table,
    verdict,
)
from kdal_lib.score_files import write_score_files


def _features(n=150, d=6, rate=0.2, seed=0, shift=2.5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    X = rng.normal(0, 1, (n, d)) + shift * y[:, None]
    return X.astype(np.float32), y


@pytest.fixture
def feat_data():
    X, y = _features()
    return asal_data_from_arrays(X, y, "blobs", split_seed=0)


FAST = dict(model="mlp", epochs=4, batch_size=5, device="cpu", n_cycles=4, k=2)


# ----------------------------------------------------------------------------- data and score files
def test_split_follows_the_seed_protocol(feat_data):
    d = feat_data
    n_anom = int(d.y_pool.sum() + d.y_test.sum())
    assert len(d.y_pool) + len(d.y_test) == 150
    assert d.y_test.sum() == round(0.2 * n_anom) and len(d.y_test) == round(0.2 * (150 - n_anom)) + round(0.2 * n_anom)
    assert len(set(d.paths)) == len(d.paths)


def test_score_files_round_trip_in_pool_order(tmp_path, feat_data):
    d = feat_data
    s = np.random.default_rng(1).random(len(d.paths))
    write_score_files(d.paths, s, tmp_path, "blobs")
    assert np.allclose(scores_from_files(d, tmp_path), s)
    # ASAL's first set from the files is the stratified top of those scores
    assert stratified_top(scores_from_files(d, tmp_path)).tolist() == stratified_top(s).tolist()


def test_seed_style_paths_without_scores_are_matched_and_ranked(tmp_path):
    pool = [f"/data/DATA/cable/train/{'anomaly' if i % 4 == 0 else 'good'}/{i:03d}.png" for i in range(20)]
    ranked = [f"./DATA/cable/train/{'anomaly' if i % 4 == 0 else 'good'}/{i:03d}.png" for i in range(19, -1, -1)]
    s = align_scores(pool, ranked)  # the seed's files: paths only, highest first
    assert np.argsort(-s).tolist() == list(range(19, -1, -1))


def test_a_score_file_naming_a_missing_image_is_a_clear_error(tmp_path, feat_data):
    d = feat_data
    paths = list(d.paths)
    paths[5] = "blobs/does_not_exist.png"
    write_score_files(paths, np.arange(len(paths), dtype=float), tmp_path, "blobs")
    with pytest.raises(ValueError, match=r"does_not_exist.png.*not an image of the pool"):
        scores_from_files(d, tmp_path)
    with pytest.raises(ValueError, match="no score for 1 of the"):
        align_scores(d.paths, d.paths[:-1], np.arange(len(d.paths) - 1.0))
    with pytest.raises(ValueError, match="twice"):
        align_scores(["a/b/c.png", "a/b/d.png"], ["x/a/b/c.png", "a/b/c.png"], [1.0, 2.0])
    with pytest.raises(FileNotFoundError, match="run notebook 03"):
        scores_from_files(d, tmp_path / "nowhere")


def test_strata_table_counts_anomalies_per_stratum():
    y = np.r_[np.ones(4, int), np.zeros(16, int)]
    s = np.r_[np.linspace(10, 9, 4), np.linspace(5, 0, 16)]
    t = strata_table(s, y, 5, 2)
    assert t["anomalies"].tolist() == [4, 0, 0, 0, 0] and t["size"].tolist() == [4] * 5
    assert t["ASAL picks (labels)"].iloc[0] == [1, 1]


# ----------------------------------------------------------------------------- bad inputs
def test_fewer_pool_items_than_strata_is_a_clear_error():
    X, y = _features(14, seed=3)
    d = asal_data_from_arrays(X, y, "tiny", test_fraction=0.5)
    assert len(d.y_pool) < 10
    with pytest.raises(ValueError, match="fewer than n_strata"):
        run_active(d, np.arange(len(d.y_pool), dtype=float), init="ASAL", **FAST)
    with pytest.raises(ValueError, match="fewer than the 10 initial labels"):
        run_active(d, init="Random", **FAST)
    with pytest.raises(ValueError, match="needs the pool's anomaly scores"):
        run_active(d, None, init="ASAL", **FAST)


def test_a_labelled_set_with_one_class_errors_where_it_matters(feat_data):
    d = feat_data
    normals = np.flatnonzero(d.y_pool == 0)[:10]
    lrn = ASALLearner(lambda: mlp_classifier(6), d.X_pool, balance=True, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="balance=True needs both classes.*all normal"):
        lrn.fit(normals, d.y_pool[normals])
    lrn = ASALLearner(lambda: mlp_classifier(6), d.X_pool, select="val_auroc", val_fraction=0.3, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="both classes in the validation split"):
        lrn.fit(normals, d.y_pool[normals])
    # a score that puts every anomaly last: ASAL's 10 labels then hold one class, and val_auroc says so
    s = -d.y_pool.astype(float) + np.linspace(0, 0.1, len(d.y_pool))
    with pytest.raises(ValueError, match="AUROC is undefined"):
        run_active(d, s, init="ASAL", select="val_auroc", **FAST)
    # the default (val_loss) trains on it, as the original would
    recs, _, _ = run_active(d, s, init="ASAL", **{**FAST, "n_cycles": 1})
    assert recs[0].n_anomalies == 0


def test_bad_parameters():
    X, y = _features()
    d = asal_data_from_arrays(X, y, "b")
    with pytest.raises(ValueError, match="init"):
        run_active(d, init="PT4AL", **FAST)
    with pytest.raises(ValueError, match="needs images"):
        run_active(d, init="Random", **{**FAST, "model": "small_cnn"})
    with pytest.raises(ValueError, match="legacy switches"):
        run_active(d, init="Random", query_method="random", legacy_requery=True, **FAST)
    with pytest.raises(ValueError, match="anomaly scores for a pool"):
        run_active(d, np.zeros(3), init="ASAL", **FAST)


# ----------------------------------------------------------------------------- the runs
def test_asal_cold_start_holds_the_anomalies_a_good_score_finds(tmp_path):
    X, y = _features(200, rate=0.08, seed=2)
    d = asal_data_from_arrays(X, y, "blobs")  # ~8 % anomalies: 10 random labels hold ~0.8 of them
    score = d.X_pool.mean(1)  # a good unsupervised score on these blobs
    frame, runs = compare_inits(d, score, seeds=[0, 1, 2], checkpoint_dir=tmp_path, **FAST)
    t = initial_set_table(frame, d).set_index("method")
    first = stratified_top(score)
    assert (t.loc["ASAL", "anomalies_min"], t.loc["ASAL", "anomalies_max"]) == (d.y_pool[first].sum(),) * 2
    assert t.loc["ASAL", "anomalies_mean"] >= 2 and t.loc["ASAL", "anomalies_mean"] > t.loc["Random", "anomalies_mean"]
    assert sorted(frame["n_labels"].unique().tolist()) == [10, 12, 14, 16]
    assert frame["AUROC"].between(0, 1).all() and frame["accuracy"].between(0, 1).all()
    # every queried item is new, and the Random runs differ between seeds
    for method, seeds in runs.items():
        for recs in seeds:
            items = [i for r in recs for i in r.queried]
            assert len(items) == len(set(items)) == 16
    assert runs["Random"][0][0].queried != runs["Random"][1][0].queried
    # the seed's checkpoint/ models: best validation accuracy and AUROC, per cycle
    names = {p.name for p in tmp_path.glob("*.pt")}
    assert {f"blobs_ASAL_seed0_cycle{c:03d}_best_acc.pt" for c in range(4)} <= names
    assert "blobs_ASAL_seed0_cycle003_best_auroc.pt" in names
    meta = json.loads((tmp_path / "blobs_ASAL_seed0_cycle003_best_acc.pt.json").read_text())
    assert meta["criterion"] == "val_acc" and 0 <= meta["value"] <= 1
    assert "brick" not in verdict(frame) and "blobs: ASAL" in verdict(frame)


def test_asal_resume_gives_the_same_curve(feat_data, tmp_path):
    d = feat_data
    score = d.X_pool.mean(1)
    full, _, _ = run_active(d, score, init="ASAL", seed=1, **FAST)
    part, _, _ = run_active(d, score, init="ASAL", seed=1, checkpoint_dir=tmp_path, **{**FAST, "n_cycles": 2})
    # a second call with more cycles continues from the cycle-1 checkpoint
    resumed, _, _ = run_active(d, score, init="ASAL", seed=1, checkpoint_dir=tmp_path, **FAST)
    assert [r.queried for r in resumed] == [r.queried for r in full]
    assert np.allclose([r.metrics["AUROC"] for r in resumed], [r.metrics["AUROC"] for r in full], atol=1e-9)
    assert [r.metrics["AUROC"] for r in resumed[:2]] == [r.metrics["AUROC"] for r in part]


def test_legacy_requery_counts_wasted_labels():
    strategy = RequeryLabelled(UncertaintySampling(random_state=0))
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01]])
    mask = np.array([True, False, False, False])
    assert strategy.query(p, mask, 1).tolist() == []  # the labelled item 0 is the least confident: wasted
    assert strategy.query(p, mask, 2).tolist() == [2] and strategy.wasted == 2
    assert UncertaintySampling(random_state=0).query(p, mask, 1).tolist() == [2]  # the fix


def test_legacy_switches_run_and_report_labels_spent(feat_data):
    d = feat_data
    score = d.X_pool.mean(1)
    recs, _, info = run_active(d, score, init="ASAL", legacy_requery=True, legacy_normalized_logits=True,
                               **{**FAST, "n_cycles": 5})
    assert info["labels_spent"] == [10, 12, 14, 16, 18]
    assert [r.n_labels + sum(info["wasted"][: i + 1]) for i, r in enumerate(recs)] == info["labels_spent"]
    fixed, _, info2 = run_active(d, score, init="ASAL", **{**FAST, "n_cycles": 5})
    assert info2["wasted"] == [0] * 5 and [r.n_labels for r in fixed] == [10, 12, 14, 16, 18]


# ----------------------------------------------------------------------------- command line
def test_cli_with_the_seed_layout_and_seed_style_score_files(tmp_path, monkeypatch, capsys):
    from kdal_lib.data.defects import load_embedded_textures
    from kdal_lib.data.images import load_asal_layout, make_asal_layout

    task = load_embedded_textures("brick", image_size=16, n_train=40, n_test_good=10, n_test_defect=10, cache=False)
    make_asal_layout(task, tmp_path / "DATA", "brick", random_state=0)
    on_disk = load_asal_layout(tmp_path / "DATA", "brick", image_size=16, channels=1)
    # the seed's files: relative ./DATA/... paths, highest score first, no scores.csv
    rel = ["./DATA/brick/" + "/".join(Path(p).parts[-3:]) for p in on_disk.train.paths]
    order = np.argsort(-on_disk.train.labels - np.linspace(0, 0.5, len(rel)), kind="stable")
    folder = tmp_path / "loss_batch" / "anomaly_scores_draem" / "brick"
    folder.mkdir(parents=True)
    ranked = [rel[i] for i in order]
    (folder / "batch.txt").write_text("\n".join(ranked) + "\n")
    for k, chunk in enumerate(np.array_split(np.array(ranked), 5)):
        (folder / f"batch{k}.txt").write_text("\n".join(chunk) + "\n")
    monkeypatch.chdir(tmp_path)
    rc = main(["--loss_type", "anomaly_scores_draem", "--data", "DATA", "--model", "small_cnn", "--image_size", "16",
               "--channels", "1", "--cycles", "2", "--epochs", "1", "--device", "cpu", "--verbose", "0", "--out", "out"])
    assert rc == 0
    curves = __import__("pandas").read_csv(tmp_path / "out" / "curves.csv")
    assert set(curves["method"]) == {"ASAL", "Random"} and sorted(curves["n_labels"].unique()) == [10, 11]
    asal0 = curves[(curves["method"] == "ASAL") & (curves["cycle"] == 0)]
    assert int(asal0["n_anomalies"].iloc[0]) >= 2  # the files put the anomalies first
    assert any((tmp_path / "out" / "checkpoint").glob("brick_ASAL_seed0_cycle000_best_acc.pt"))
    assert "AUROC" in capsys.readouterr().out


# ----------------------------------------------------------------------------- notebook
@pytest.mark.slow
def test_asal_notebook_smoke_writes_curves_and_references(run_notebook):
    m = run_notebook("04_asal")
    s = m["summary"]
    assert m["params"]["N_SEEDS"] == 1 and m["params"]["N_CYCLES"] == 3  # the smoke preset reached the notebook
    assert s["brick_ASAL_init_anomalies_mean"] >= 1  # the score's top stratum holds anomalies
    assert abs(s["brick_pool_anomaly_rate"] - 32 / 240) < 1e-9
    for key in ("brick_ASAL_AUROC_last_mean", "brick_Random_AUROC_last_mean", "brick_DRAEM_mixed_AUROC",
                "brick_DRAEM_normal_AUROC", "brick_score_pool_AUROC"):
        assert 0.0 <= s[key] <= 1.0, key
    runs = [r for r in m["records"] if r["method"] in ("ASAL", "Random", "ASAL (legacy)")]
    assert {r["method"] for r in runs} == {"ASAL", "Random", "ASAL (legacy)"}
    for r in runs:
        assert r["n_labels_curve"] == [10, 11, 12][: len(r["n_labels_curve"])] or r["method"] == "ASAL (legacy)"
        assert len(r["AUROC_curve"]) == 3
    legacy = next(r for r in runs if r["method"] == "ASAL (legacy)")
    assert legacy["labels_spent_last"] == 12 and legacy["labels_last"] + legacy["wasted"] == 12
    assert {r["method"] for r in m["records"]} >= {"DRAEM_mixed", "DRAEM_normal"}
    assert "brick: ASAL" in s["verdict"]
