"""CLAD (notebook 02): DEC maths, stopping rule, ODIN, scenarios, data loaders, t-SNE fallback,
bad inputs, Deep SVDD, and a papermill smoke run of notebook 02."""
from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
import torch

from kdal_lib.clad import (
    CLADDetector,
    cluster_purity,
    confidence_scores,
    dec_kl_loss,
    dec_should_stop,
    label_change_fraction,
    latent_tsne,
    load_scenario,
    make_scenario,
    plot_tsne_panels,
    resnet18_small,
    resolve_normal_classes,
    run_scenario,
    soft_assignment,
    target_distribution,
)
from kdal_lib.data.digits import (
    load_cifar10,
    load_classification_split,
    load_digits_images,
    read_idx,
)
from kdal_lib.deep_svdd import DeepSVDDDetector
from kdal_lib.metrics import auroc


# ---------------------------------------------------------------------------- DEC
def _entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1)


def test_dec_soft_assignment_and_target_rows_sum_to_one_and_target_is_sharper():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(200, 5, generator=g), torch.randn(4, 5, generator=g)
    q = soft_assignment(z, mu, alpha=1.0)
    p = target_distribution(q)
    assert q.shape == p.shape == (200, 4)
    assert torch.allclose(q.sum(1), torch.ones(200, dtype=q.dtype), atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(200, dtype=p.dtype), atol=1e-6)
    assert (q > 0).all() and (p > 0).all()
    # p squares q (then divides by cluster frequency): sharper on average, and row by row when the
    # clusters are balanced
    assert _entropy(p).mean() < _entropy(q).mean()
    assert (_entropy(p) < _entropy(q)).float().mean() > 0.9
    qb = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    pb = target_distribution(qb)
    assert torch.allclose(pb, torch.tensor([[0.49 / 0.58, 0.09 / 0.58], [0.09 / 0.58, 0.49 / 0.58]]), atol=1e-6)
    assert (pb.max(1).values > qb.max(1).values).all()
    # the Student-t kernel by hand for one pair
    d2 = ((z[0] - mu) ** 2).sum(1)
    k = 1.0 / (1.0 + d2)
    assert torch.allclose(q[0], k / k.sum(), atol=1e-6)
    # KL(P||Q) >= 0 and 0 for P == Q
    assert float(dec_kl_loss(q, p)) > 0
    assert abs(float(dec_kl_loss(q, q))) < 1e-6


def test_dec_stopping_rule_is_strictly_below_tol():
    prev = np.zeros(1000, dtype=int)
    assert dec_should_stop(prev, prev.copy(), 0.001)  # nothing changed
    one = prev.copy()
    one[0] = 1  # exactly 0.1 % changed: not below tol, keep going
    assert label_change_fraction(prev, one) == pytest.approx(0.001)
    assert not dec_should_stop(prev, one, 0.001)
    prev2 = np.zeros(2000, dtype=int)
    one2 = prev2.copy()
    one2[5] = 3  # 0.05 % changed
    assert dec_should_stop(prev2, one2, 0.001)
    with pytest.raises(ValueError, match="shape"):
        label_change_fraction(prev, prev2)


def test_cluster_purity():
    assert cluster_purity([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert cluster_purity([0, 0, 0, 0], [1, 1, 2, 3]) == 0.5
    with pytest.raises(ValueError):
        cluster_purity([0, 1], [1])


# ---------------------------------------------------------------------------- ODIN
def _small_model(seed=0):
    torch.manual_seed(seed)
    m = resnet18_small(1, 5, 8)
    m.eval()
    return m


def test_resnet_stem_is_adapted():
    m = resnet18_small(1, 7, 8)
    assert m.conv1.in_channels == 1 and m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity) and m.fc.out_features == 7
    assert resnet18_small(1, 3, 28).conv1.stride == (2, 2)  # "auto": stride 2 above 16 px
    assert resnet18_small(3, 3, 32, stem="imagenet").conv1.kernel_size == (7, 7)
    with pytest.raises(ValueError, match="stem"):
        resnet18_small(1, 3, 8, stem="huge")


def test_odin_with_eps0_T1_equals_base_and_batching_does_not_change_odin():
    m = _small_model()
    x = torch.randn(37, 1, 8, 8)
    with torch.no_grad():
        base = torch.softmax(m(x).double(), 1).max(1).values.numpy()
    np.testing.assert_allclose(confidence_scores(m, x, temperature=1.0, epsilon=0.0), base, rtol=1e-6)
    batched = confidence_scores(m, x, temperature=1000.0, epsilon=0.01, batch_size=16)
    single = np.concatenate([confidence_scores(m, x[i:i + 1], 1000.0, 0.01, batch_size=1) for i in range(len(x))])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-9)
    # the perturbation moves every input towards a more confident prediction
    t_only = confidence_scores(m, x, temperature=1000.0, epsilon=0.0)
    assert (batched >= t_only - 1e-12).mean() > 0.9 and not np.allclose(batched, t_only)
    # the original's x161 scale is the same as a 161x larger epsilon
    np.testing.assert_allclose(confidence_scores(m, x, 1000.0, 1e-4, gradient_scale=161.0),
                               confidence_scores(m, x, 1000.0, 161e-4), rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        confidence_scores(m, x, temperature=0.0)


# ---------------------------------------------------------------------------- scenarios and data
def test_digits_images_and_scenario_construction():
    X, y = load_digits_images()
    assert X.shape == (1797, 1, 8, 8) and X.min() >= 0 and X.max() <= 1 and set(y) == set(range(10))
    task = load_scenario("digits", "CUR", random_state=0)
    assert task.normal_classes == (0, 3, 8)
    assert set(np.unique(task.train_classes)) == {0, 3, 8}
    split = load_classification_split("digits", random_state=0)
    assert len(task.X_train) == int(np.isin(split.y_train, [0, 3, 8]).sum())
    assert len(task.X_test) == len(split.y_test) == 899
    np.testing.assert_array_equal(task.y_test, (~np.isin(task.test_classes, [0, 3, 8])).astype(int))
    counts = task.class_counts()
    assert list(counts.loc[counts.role == "normal", "class"]) == [0, 3, 8]
    assert counts.loc[counts.role == "anomaly", "train"].sum() == 0
    assert counts["test"].sum() == 899
    d = task.describe()
    assert d["n_test_normal"] + d["n_test_anomalies"] == 899 and 0.6 < d["contamination"] < 0.8
    mix = load_scenario("digits", "mix", random_state=0, max_train=100)
    assert mix.normal_classes == (2, 5, 6, 9) and len(mix.X_train) == 100
    one = load_scenario("digits", "one-class:3", random_state=0)
    assert one.normal_classes == (3,) and one.scenario == "one-class:3" and set(one.train_classes) == {3}
    assert resolve_normal_classes("digits", [7, 1]) == ("classes:7+1", (1, 7))
    # seeded: same seed, same split; another seed, another split
    a, b = load_scenario("digits", "STR", random_state=1), load_scenario("digits", "STR", random_state=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, load_scenario("digits", "STR", random_state=2).X_train)


@pytest.mark.parametrize("scenario, match", [
    ([0, 12], "do not exist"),
    ("one-class:10", "do not exist"),
    ("NOPE", "unknown scenario"),
    (list(range(10)), "every class"),
    ([3, 3], "distinct"),
])
def test_bad_scenarios_raise(scenario, match):
    with pytest.raises(ValueError, match=match):
        load_scenario("digits", scenario)


def test_unknown_dataset_and_missing_cifar_name_what_to_download(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        load_classification_split("svhn")
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_classification_split("mnist", data_dir=tmp_path)


def _write_idx(path, arr):
    codes = {np.dtype("uint8"): 0x08}
    head = struct.pack(">HBB", 0, codes[arr.dtype], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


def test_idx_reader_and_mnist_loader_on_small_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 5)
    (tmp_path / "mnist").mkdir()
    _write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"), imgs)
    split = load_classification_split("mnist", data_dir=tmp_path, random_state=0)
    assert split.X_train.shape == (35, 1, 28, 28) and split.X_test.shape == (15, 1, 28, 28)
    both = np.bincount(split.y_train, minlength=10) + np.bincount(split.y_test, minlength=10)
    assert both.tolist() == [5] * 10 and len(split.y_test) == 15  # nothing lost, stratified 70/30
    originals = {im.tobytes() for im in imgs}
    assert all(np.round(x[0] * 255).astype(np.uint8).tobytes() in originals for x in split.X_test)
    assert split.X_train.max() <= 1.0 and split.X_train.dtype == np.float32
    assert "no training files" in split.meta["split"]
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad.gz")


def test_mnist_test_split_from_shared_data(shared_data):
    split = load_classification_split("mnist", data_dir=shared_data, random_state=0)
    assert len(split.X_train) == 7000 and len(split.X_test) == 3000
    assert split.X_train.shape[1:] == (1, 28, 28) and 0 <= split.X_train.min() and split.X_train.max() <= 1
    full = np.bincount(np.concatenate([split.y_train, split.y_test]), minlength=10)
    assert full.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MANIFEST counts
    task = make_scenario(split, "CUR")
    assert len(task.X_train) == int(np.isin(split.y_train, [0, 3, 8]).sum())
    assert abs(len(task.X_train) - 0.7 * (980 + 1010 + 974)) <= 3
    assert int((task.y_test == 0).sum()) == int(np.isin(split.y_test, [0, 3, 8]).sum())


# ---------------------------------------------------------------------------- t-SNE
def test_tsne_falls_back_to_sklearn_and_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "MulticoreTSNE", None)  # import now raises ImportError
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(6, 1, (40, 4))])
    emb, rows, backend = latent_tsne({"after AE": Z, "after DEC": Z * 2}, max_points=60, n_iter=250)
    assert backend == "sklearn" and len(rows) == 60 and emb["after AE"].shape == (60, 2)
    lab = (rows >= 40).astype(int)
    fig = plot_tsne_panels(emb, {"cluster": {"after AE": lab, "after DEC": 1 - lab}, "true class": lab}, backend)
    assert "sklearn" in fig._suptitle.get_text()
    assert len(fig.axes) == 4


# ---------------------------------------------------------------------------- detectors
def test_clad_fit_on_digits_scores_and_bad_inputs():
    task = load_scenario("digits", "CUR", random_state=0)
    det = CLADDetector(ae_epochs=15, dec_epochs=5, clf_epochs=4, random_state=0, device="cpu").fit(task.X_train)
    n = len(task.X_train)
    assert det.pseudo_labels_.shape == (n,) and det.pseudo_labels_.max() < 10
    assert det.latent_ae_.shape == det.latent_dec_.shape == (n, 10)
    assert 1 <= det.dec_epochs_run_ <= 5 and len(det.history_["dec_changed"]) == det.dec_epochs_run_
    assert det.history_["ae_loss"][-1] < det.history_["ae_loss"][0]
    assert cluster_purity(det.pseudo_labels_, task.train_classes) > 0.8  # 3 digits in 10 clusters
    s = det.score_all(task.X_test)
    assert s["Base"].shape == s["ODIN"].shape == (899,)
    assert (s["Base"] <= -0.1).all() and (s["Base"] >= -1).all()  # -max softmax of 10 classes
    np.testing.assert_allclose(det.decision_function(task.X_test), s["ODIN"])
    assert auroc(task.y_test, s["ODIN"]) > 0.75 and auroc(task.y_test, s["Base"]) > 0.7
    assert det.predict(task.X_test[:20]).shape == (20,)
    with pytest.raises(ValueError, match="images of shape"):
        det.decision_function(np.zeros((3, 1, 9, 9), np.float32))
    with pytest.raises(ValueError, match="at least n_clusters"):
        CLADDetector(n_clusters=10).fit(task.X_train[:5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CLADDetector(ae_epochs=1).fit(task.X_train * 5)
    with pytest.raises(ValueError, match="target_update"):
        CLADDetector(target_update="sometimes").fit(task.X_train)
    with pytest.raises(RuntimeError, match="not fitted"):
        CLADDetector().decision_function(task.X_test)


def test_clad_is_reproducible_with_a_seed():
    X = load_scenario("digits", "STR", random_state=0, max_train=120).X_train
    kw = dict(ae_epochs=2, dec_epochs=2, clf_epochs=1, device="cpu", random_state=3)
    a, b = CLADDetector(**kw).fit(X), CLADDetector(**kw).fit(X)
    np.testing.assert_array_equal(a.pseudo_labels_, b.pseudo_labels_)
    np.testing.assert_allclose(a.decision_scores_, b.decision_scores_, rtol=1e-6)
    # a numeric epsilon is used as is and nothing is held out of the classifier
    assert a.epsilon_ == 0.002 and a.epsilon_table_ == [] and a.n_classifier_train_ == 120 and len(a.val_index_) == 0


def test_clad_epsilon_auto_is_chosen_on_held_out_normals_only():
    X = load_scenario("digits", "STR", random_state=0, max_train=120).X_train
    kw = dict(ae_epochs=2, dec_epochs=2, clf_epochs=1, device="cpu", random_state=3)
    det = CLADDetector(epsilon="auto", **kw).fit(X)
    grid = list(det.epsilon_grid)
    assert det.epsilon_ in grid
    assert [row["epsilon"] for row in det.epsilon_table_] == grid
    conf = [row["mean_confidence"] for row in det.epsilon_table_]
    assert det.epsilon_ == grid[int(np.argmax(conf))]
    # 10 % of the normals (seeded) are held out of the classifier and its input standardisation
    assert len(det.val_index_) == 12 and det.n_classifier_train_ == 120 - 12
    rest = np.setdiff1d(np.arange(120), det.val_index_)
    torch.testing.assert_close(det.mean_.flatten(), torch.from_numpy(X[rest]).mean(dim=(0, 2, 3)))
    np.testing.assert_allclose(det.confidence(X[det.val_index_], det.temperature, det.epsilon_).mean(), max(conf))
    # scoring uses the chosen epsilon_
    np.testing.assert_allclose(det.decision_function(X[:8]), -det.confidence(X[:8], det.temperature, det.epsilon_))
    np.testing.assert_allclose(det.score_all(X[:8])["ODIN"], det.decision_function(X[:8]))
    with pytest.raises(ValueError, match="epsilon"):
        CLADDetector(epsilon="best", **kw).fit(X)
    with pytest.raises(ValueError, match="epsilon"):
        CLADDetector(epsilon=-0.1, **kw).fit(X)
    with pytest.raises(ValueError, match="epsilon_grid"):
        CLADDetector(epsilon="auto", epsilon_grid=(), **kw).fit(X)
    with pytest.raises(ValueError, match="val_fraction"):
        CLADDetector(epsilon="auto", val_fraction=0.0, **kw).fit(X)


def test_run_scenario_with_ocnn_only():
    task = load_scenario("digits", "CUR", random_state=0, max_train=150)
    records, scores, dets = run_scenario(task, [0], methods=("OCNN",), ocnn_kwargs=dict(epochs=5), device="cpu")
    assert [r["method"] for r in records] == ["OCNN"] and np.isfinite(records[0]["AUROC"])
    assert scores["OCNN"].shape == (len(task.X_test),) and dets["OCNN"].epochs == 5
    with pytest.raises(ValueError, match="unknown method"):
        run_scenario(task, [0], methods=("OC-NN",))


def test_deep_svdd_centre_is_the_initial_mean_and_training_shrinks_the_distance():
    task = load_scenario("digits", "STR", random_state=0)
    frozen = DeepSVDDDetector(epochs=1, lr=1e-12, device="cpu", random_state=0).fit(task.X_train)
    with torch.no_grad():
        feats = frozen.model_(torch.from_numpy(task.X_train))
    c = feats.mean(0)
    c[(c.abs() < 0.1) & (c < 0)] = -0.1
    c[(c.abs() < 0.1) & (c >= 0)] = 0.1
    assert torch.allclose(frozen.c_, c, atol=1e-5)
    assert not any("bias" in name for name, _ in frozen.model_.named_parameters())
    det = DeepSVDDDetector(epochs=15, device="cpu", random_state=0).fit(task.X_train)
    assert det.history_["loss"][-1] < 0.5 * det.history_["loss"][0]
    assert auroc(task.y_test, det.decision_function(task.X_test)) > 0.7


# ---------------------------------------------------------------------------- notebook
@pytest.mark.slow
def test_clad_notebook_smoke_writes_metrics(run_notebook):
    m = run_notebook("02_clad_tsne")
    s = m["summary"]
    assert m["params"]["N_SEEDS"] == 1 and m["params"]["SCENARIO"] == "CUR"
    assert s["dataset"] == "digits" and s["normal_classes"] == [0, 3, 8] and s["n_test"] == 899
    assert s["tsne_backend"] in ("MulticoreTSNE", "sklearn")
    assert {r["method"] for r in m["records"]} == {"CLAD-Base", "CLAD-ODIN", "OCSVM", "DeepSVDD"}
    assert all(0.0 <= r["AUROC"] <= 1.0 for r in m["records"])
    # measured on this split: CLAD-ODIN 0.781, CLAD-Base 0.756, OCSVM 0.928, DeepSVDD 0.924
    assert s["CLAD-ODIN_AUROC"] > 0.7 and s["OCSVM_AUROC"] > 0.85
    assert s["DEC_purity"] > 0.8 and s["KMeans_purity"] > 0.8  # measured 0.944 and 0.944
