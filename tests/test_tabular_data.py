"""Tabular data layer: real-file counts for the papers' protocols, scaling, and bad input."""
from __future__ import annotations

import gzip
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.io

from kdal_lib.data import (
    KDD_SYMBOLIC,
    TabularTask,
    load_adbench_npz,
    load_embedded,
    load_kddcup99,
    load_odds_mat,
    load_task,
    scale_task,
    split_goad_half,
    split_kdd,
    split_stratified,
)

KDD_FILE = "kddcup.data_10_percent.gz"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _toy(n=60, d=4, n_anom=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, n_anom, replace=False)] = 1
    return X, y


_SYM_POS = {1: ("tcp", "udp", "icmp"), 2: ("http", "smtp", "ftp"), 3: ("SF", "REJ"), 6: ("0", "1"),
            11: ("0", "1"), 20: ("0",), 21: ("0", "1")}


def _tiny_kdd_lines(n_normal=20, n_attack=12):
    """Synthetic rows in the UCI KDD layout (41 features + label with a trailing dot)."""
    lines = []
    for i in range(n_normal + n_attack):
        row = [str((i * 7) % 13 + 0.5) for _ in range(41)]
        for pos, vals in _SYM_POS.items():
            row[pos] = vals[i % len(vals)]
        label = "normal." if i < n_normal else ("smurf." if i % 2 else "neptune.")
        lines.append(",".join(row + [label]))
    return ("\n".join(lines) + "\n").encode()


# ----------------------------------------------------------------------------------------------
# ODDS / GOAD protocol
# ----------------------------------------------------------------------------------------------
def test_thyroid_mat_raw(shared_data):
    X, y = load_odds_mat(shared_data / "odds" / "thyroid.mat")
    assert X.shape == (3772, 6) and X.dtype == np.float32
    assert y.dtype == np.int64 and int(y.sum()) == 93


def test_goad_half_thyroid(shared_data):
    X, y = load_odds_mat(shared_data / "odds" / "thyroid.mat")
    task = split_goad_half(X, y, name="thyroid")
    assert (len(task.X_train), len(task.X_test), int(task.y_test.sum())) == (1839, 1933, 93)
    # deterministic: the FIRST half of the normals, in file order
    np.testing.assert_array_equal(task.X_train, X[y == 0][:1839])
    np.testing.assert_array_equal(task.X_test[task.y_test == 1], X[y == 1])
    assert task.y_train is not None and not task.y_train.any()
    assert task.meta["protocol"] == "goad_half" and task.meta["scaler"] == "none"
    assert task.contamination == pytest.approx(93 / 1933)


def test_goad_half_arrhythmia(shared_data):
    task = load_task("arrhythmia", data_dir=shared_data)
    assert (len(task.X_train), len(task.X_test), int(task.y_test.sum())) == (193, 259, 66)
    assert task.X_train.shape[1] == 274 and task.meta["protocol"] == "goad_half"


def test_load_task_thyroid_data_dir_and_env(shared_data, monkeypatch):
    a = load_task("thyroid", data_dir=shared_data)
    monkeypatch.setenv("KDAL_DATA", str(shared_data))
    b = load_task("thyroid")
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    d = a.describe()
    assert d == {"name": "thyroid", "n_train": 1839, "n_test": 1933, "d": 6, "n_test_anomalies": 93,
                 "contamination": round(93 / 1933, 4), "protocol": "goad_half", "scaler": "standard"}
    assert a.meta["source_sha256"].startswith("49155d78")
    # the same file by direct path, and an explicit protocol override
    c = load_task(str(shared_data / "odds" / "thyroid.mat"), data_dir=shared_data)
    np.testing.assert_array_equal(a.X_test, c.X_test)
    s = load_task("thyroid", protocol="stratified", data_dir=shared_data)
    assert s.meta["protocol"] == "stratified" and not s.y_train.any()


# ----------------------------------------------------------------------------------------------
# ADBench / stratified
# ----------------------------------------------------------------------------------------------
def test_adbench_38_thyroid(shared_data):
    X, y = load_adbench_npz(shared_data / "adbench_classical" / "38_thyroid.npz")
    assert X.shape == (3772, 6) and int(y.sum()) == 93
    task = load_task("38_thyroid", data_dir=shared_data)
    assert task.meta["protocol"] == "stratified"
    n_test_anom = int(task.y_test.sum())
    assert n_test_anom == 28  # round(0.3 * 93), stratified
    assert task.meta["dropped_train_anomalies"] == 93 - n_test_anom
    assert len(task.X_train) + len(task.X_test) + task.meta["dropped_train_anomalies"] == 3772
    assert not task.y_train.any()
    keep = split_stratified(X, y, train_normals_only=False)
    assert int(keep.y_train.sum()) == 65 and keep.meta["dropped_train_anomalies"] == 0


# ----------------------------------------------------------------------------------------------
# embedded (scikit-learn) data
# ----------------------------------------------------------------------------------------------
def test_embedded_counts():
    X, y = load_embedded("breast_cancer")
    assert X.shape == (378, 30) and int(y.sum()) == 21
    X2, y2 = load_embedded("breast_cancer")
    np.testing.assert_array_equal(X, X2)
    Xw, yw = load_embedded("wine")
    assert Xw.shape == (129, 13) and int(yw.sum()) == 10
    task = load_task("embedded")
    assert task.name == "breast_cancer" and task.meta["protocol"] == "stratified"
    assert len(task.X_test) == 114 and int(task.y_test.sum()) == 6
    assert len(task.X_train) == 378 - 114 - 15 and task.meta["dropped_train_anomalies"] == 15
    assert task.feature_names[0] == "mean radius"
    wine = load_task("embedded:wine", scaler="minmax")
    assert wine.describe()["n_test_anomalies"] == 3


# ----------------------------------------------------------------------------------------------
# scaling
# ----------------------------------------------------------------------------------------------
def test_scale_task_standard_and_minmax(shared_data):
    raw = load_task("thyroid", scaler="none", data_dir=shared_data)
    st = scale_task(raw, "standard")
    np.testing.assert_allclose(st.X_train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(st.X_train.std(0), 1, atol=1e-3)
    assert st.meta["scaler"] == "standard" and raw.meta["scaler"] == "none"
    # statistics from the training rows only
    mu, sd = raw.X_train.astype(np.float64).mean(0), raw.X_train.astype(np.float64).std(0)
    np.testing.assert_allclose(st.X_test, (raw.X_test - mu) / sd, rtol=1e-4, atol=1e-4)
    mm = scale_task(raw, "minmax")
    np.testing.assert_allclose(mm.X_train.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(mm.X_train.max(0), 1, atol=1e-6)
    # only some columns
    cols = np.array([True, False, True, False, False, True])
    part = scale_task(raw, "standard", columns=cols)
    np.testing.assert_array_equal(part.X_train[:, ~cols], raw.X_train[:, ~cols])
    np.testing.assert_array_equal(part.X_test[:, ~cols], raw.X_test[:, ~cols])
    np.testing.assert_allclose(part.X_train[:, cols].mean(0), 0, atol=1e-4)
    assert part.meta["n_scaled_columns"] == 3


def test_scale_task_constant_column():
    X, y = _toy()
    X[:, 1] = 5.0
    for scaler in ("standard", "minmax"):
        t = scale_task(split_stratified(X, y), scaler)
        assert np.isfinite(t.X_train).all() and np.isfinite(t.X_test).all()
        np.testing.assert_array_equal(t.X_train[:, 1], 0.0)


# ----------------------------------------------------------------------------------------------
# KDD Cup 99 (parsed once per module, cached in a temporary folder)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kdd(shared_data, tmp_path_factory):
    path = shared_data / "kddcup99" / KDD_FILE
    cache = tmp_path_factory.mktemp("kdd_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDAL_CACHE", str(cache))
        t0 = time.perf_counter()
        X, y, info = load_kddcup99(path)
        t_parse = time.perf_counter() - t0
        t0 = time.perf_counter()
        X2, y2, info2 = load_kddcup99(path)
        t_cached = time.perf_counter() - t0
        same = np.array_equal(X, X2) and np.array_equal(y, y2) and info["feature_names"] == info2["feature_names"]
        del X2, y2
        Xr, yr, info_r = load_kddcup99(path, variant="kddrev", random_state=0)
        rev_task = load_task("kddrev", data_dir=shared_data)
        cache_files = sorted(p.name for p in (cache / "tabular").iterdir())
    return dict(path=path, X=X, y=y, info=info, info2=info2, t_parse=t_parse, t_cached=t_cached, same=same,
                Xr=Xr, yr=yr, info_r=info_r, rev_task=rev_task, cache_files=cache_files)


def test_kdd_dagmm_variant(kdd):
    X, y, info = kdd["X"], kdd["y"], kdd["info"]
    assert X.shape == (494021, 121) and X.dtype == np.float32
    assert int(y.sum()) == 97278 and int((y == 0).sum()) == 396743
    assert int(info["continuous"].sum()) == 34 and len(info["feature_names"]) == 121
    assert info["source_sha256"].startswith("7bfaa8ce")
    onehot = X[:, ~info["continuous"]]
    assert ((onehot == 0) | (onehot == 1)).all()
    # each of the 7 symbolic columns is one-hot: exactly 7 ones per row
    np.testing.assert_array_equal(onehot.sum(1), len(KDD_SYMBOLIC))
    assert "protocol_type_tcp" in info["feature_names"] and "service_http" in info["feature_names"]


def test_kdd_cache(kdd):
    assert kdd["info"]["from_cache"] is False and kdd["info2"]["from_cache"] is True
    assert kdd["same"]
    assert kdd["t_cached"] < kdd["t_parse"]
    assert len(kdd["cache_files"]) == 1 and kdd["cache_files"][0].endswith(".npz")
    assert kdd["info"]["source_sha256"] in kdd["cache_files"][0]


def test_kddrev_variant(kdd):
    yr = kdd["yr"]
    assert kdd["Xr"].shape == (97278 + 24319, 121)
    assert int((yr == 0).sum()) == 97278 and int(yr.sum()) == 24319
    task = kdd["rev_task"]
    assert task.meta["protocol"] == "kdd" and task.meta["variant"] == "kddrev"
    assert (len(task.X_train), len(task.X_test), int(task.y_test.sum())) == (48639, 48639 + 24319, 24319)


def test_kdd_split_and_continuous_scaling(kdd):
    X, y, cont = kdd["X"], kdd["y"], kdd["info"]["continuous"]
    raw = split_kdd(X, y, random_state=0)
    assert (len(raw.X_train), len(raw.X_test), int(raw.y_test.sum())) == (198371, 198372 + 97278, 97278)
    assert not raw.y_train.any()
    again = split_kdd(X, y, 0)
    np.testing.assert_array_equal(raw.X_train[:50], again.X_train[:50])
    t = scale_task(raw, "standard", columns=cont)
    np.testing.assert_array_equal(t.X_train[:, ~cont], raw.X_train[:, ~cont])
    np.testing.assert_array_equal(t.X_test[:, ~cont], raw.X_test[:, ~cont])
    mean = t.X_train[:, cont].astype(np.float64).mean(0)
    std = t.X_train[:, cont].astype(np.float64).std(0)
    np.testing.assert_allclose(mean, 0, atol=1e-3)
    constant = raw.X_train[:, cont].std(0) == 0  # e.g. num_outbound_cmds is always 0
    np.testing.assert_allclose(std[~constant], 1, atol=1e-3)
    assert t.meta["n_scaled_columns"] == 34


def test_tiny_kdd_file_and_sha_warning(tmp_path, tmp_cache):
    f = tmp_path / KDD_FILE
    f.write_bytes(gzip.compress(_tiny_kdd_lines()))
    with pytest.warns(UserWarning, match="sha256"):
        X, y, info = load_kddcup99(f)
    assert X.shape[0] == 32 and int(y.sum()) == 20  # normal. traffic = anomaly (DAGMM)
    with pytest.warns(UserWarning, match="sha256"):
        Xr, yr, _ = load_kddcup99(tmp_path, variant="kddrev", random_state=1)  # folder works too
    assert int((yr == 0).sum()) == 20 and int(yr.sum()) == 5
    # a corrupt cache file is rebuilt, not trusted
    (cache_file,) = (tmp_cache / "tabular").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        X2, _, info2 = load_kddcup99(f)
    assert info2["from_cache"] is False and np.array_equal(X, X2)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [split_goad_half, split_kdd, split_stratified])
def test_nan_and_inf(split):
    X, y = _toy()
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        split(Xn, y)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        split(Xi, y)


def test_non_numeric():
    X, y = _toy(n=4, n_anom=1)
    obj = np.array([[1.0, "a"], [2.0, "b"], [3.0, "c"], [4.0, "d"]], dtype=object)
    with pytest.raises(TypeError, match="numeric"):
        split_goad_half(obj, y)
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "z", "w"]})
    with pytest.raises(TypeError, match=r"non-numeric columns \['b'\]"):
        split_goad_half(df, y)


def test_wrong_ndim():
    X, y = _toy()
    with pytest.raises(ValueError, match="2 dimensions"):
        split_stratified(X[:, 0], y)
    with pytest.raises(ValueError, match="2 dimensions"):
        split_stratified(X.reshape(len(X), 2, 2), y)


def test_single_class_and_empty():
    X, y = _toy()
    with pytest.raises(ValueError, match="single class"):
        split_stratified(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ValueError, match="single class"):
        split_goad_half(X, np.ones(len(X), dtype=int))
    with pytest.raises(ValueError, match="empty"):
        split_kdd(np.empty((0, 4)), np.empty(0, dtype=int))
    with pytest.raises(ValueError, match="3 labels but X has 60"):
        split_kdd(X, [0, 1, 0])


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.mat.*odds\.cs\.stonybrook\.edu"):
        load_odds_mat(tmp_path / "nope.mat")
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*github\.com/Minqi824/ADBench"):
        load_adbench_npz(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match=r"kddcup\.data_10_percent\.gz.*kdd\.ics\.uci\.edu"):
        load_kddcup99(tmp_path / KDD_FILE)
    with pytest.raises(FileNotFoundError, match=r"thyroid\.mat.*odds\.cs\.stonybrook\.edu"):
        load_task("thyroid", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"kddcup\.data_10_percent\.gz.*kdd\.ics\.uci\.edu"):
        load_task("kdd", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="embedded:wine"):
        load_task("wine", data_dir=tmp_path)


def test_no_data_root(monkeypatch):
    monkeypatch.delenv("KDAL_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="KDAL_DATA"):
        load_task("thyroid")


def test_mat_without_y(tmp_path):
    f = tmp_path / "noy.mat"
    scipy.io.savemat(f, {"X": np.ones((5, 2))})
    with pytest.raises(ValueError, match=r"noy\.mat has no key 'y'"):
        load_odds_mat(f)


def test_unknown_names(tmp_path, shared_data):
    with pytest.raises(ValueError, match=r"unknown dataset 'nosuchset'.*accepted names.*'thyroid'.*'kddrev'"):
        load_task("nosuchset", data_dir=shared_data)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_task("nosuchset", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown embedded data set 'iris'"):
        load_task("embedded:iris")
    with pytest.raises(ValueError, match="protocol must be one of"):
        load_task("embedded", protocol="goad")
    with pytest.raises(ValueError, match="scaler must be one of"):
        load_task("embedded", scaler="robust")
    X, y = _toy()
    with pytest.raises(ValueError, match="scaler must be one of"):
        scale_task(split_stratified(X, y), "zscore")
    with pytest.raises(ValueError, match="variant must be one of"):
        load_kddcup99(tmp_path, variant="rev")
    with pytest.raises(ValueError, match="name must be one of"):
        load_embedded("iris")


def test_corrupt_npz(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=r"broken\.npz.*(corrupt|truncated)"):
        load_adbench_npz(bad)
    good = tmp_path / "cut.npz"
    np.savez(good, X=np.random.rand(200, 5), y=np.r_[np.zeros(190), np.ones(10)])
    good.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        load_adbench_npz(good)
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, X=np.random.rand(5, 2))
    with pytest.raises(ValueError, match=r"nokey\.npz has no key 'y'"):
        load_adbench_npz(nokey)


def test_corrupt_mat(tmp_path):
    bad = tmp_path / "broken.mat"
    bad.write_bytes(b"\x00garbage" * 20)
    with pytest.raises(ValueError, match=r"broken\.mat"):
        load_odds_mat(bad)


@pytest.mark.parametrize("content", [b"definitely not gzip data\n" * 10, "truncated"])
def test_corrupt_kdd_gz_leaves_no_cache(tmp_path, tmp_cache, content):
    f = tmp_path / KDD_FILE
    if content == "truncated":
        content = gzip.compress(_tiny_kdd_lines() * 50)[:200]
    f.write_bytes(content)
    with pytest.warns(UserWarning, match="sha256"):
        with pytest.raises(ValueError, match=r"kddcup\.data_10_percent\.gz.*corrupt"):
            load_kddcup99(f)
    assert list((tmp_cache / "tabular").iterdir()) == []


def test_kdd_wrong_columns(tmp_path, tmp_cache):
    f = tmp_path / "kddcup.data_10_percent"
    f.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="3 columns"):
        load_kddcup99(f)
    assert list((tmp_cache / "tabular").iterdir()) == []


def test_task_container_checks():
    X, y = _toy()
    with pytest.raises(ValueError, match="features"):
        TabularTask("t", X_train=X, X_test=X[:, :3], y_test=y)
    with pytest.raises(ValueError, match="0 \\(normal\\) and 1"):
        TabularTask("t", X_train=X, X_test=X, y_test=y * 2)
