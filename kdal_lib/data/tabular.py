"""Tabular anomaly-detection data: raw loaders, the papers' train/test protocols, scaling.

Conventions everywhere: ``X`` is float32 ``(n, d)``; ``y`` is int64 with 0 = normal, 1 = anomaly.
The one-class protocols train on normal rows only and test on the held-out normals plus
all (or sampled) anomalies; scaling statistics always come from the training rows only.

Protocols
---------
``goad_half``
    Bergman & Hoshen, *Classification-Based Anomaly Detection for General Data* (GOAD), ICLR 2020,
    §5.2 (Thyroid, Arrhythmia): train on the first half of the normals in file order, test on the
    other half plus all anomalies, z-normalise with the training mean/std.
``kdd``
    Zong et al., *Deep Autoencoding Gaussian Mixture Model* (DAGMM), ICLR 2018, §4.1, also used by
    GOAD §5.2: on KDDCUP99 the ``normal.`` traffic is the *anomaly* class (20 %); train on a random
    50 % of the normal class, test on the rest plus all anomalies. KDDCUP-Rev keeps ``normal.`` as
    the normal class and samples attacks as anomalies at a 4:1 ratio (24,319 rows).
``stratified``
    ADBench (Han et al., NeurIPS 2022): stratified 70/30 split; with ``train_normals_only`` the
    training anomalies are dropped (novelty-detection setting).

No function here downloads anything: a missing file raises FileNotFoundError saying where to get it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils import atomic_save_npz, cache_dir, data_root
from ..validation import check_binary_labels, check_features, check_param

__all__ = [
    "TabularTask",
    "KNOWN_SHA256",
    "KDD_COLUMNS",
    "KDD_SYMBOLIC",
    "PROTOCOLS",
    "SCALERS",
    "load_odds_mat",
    "load_adbench_npz",
    "load_kddcup99",
    "load_embedded",
    "split_goad_half",
    "split_kdd",
    "split_stratified",
    "scale_task",
    "load_task",
    "file_sha256",
]

PROTOCOLS = ("goad_half", "kdd", "stratified")
SCALERS = ("standard", "minmax", "none")
EMBEDDED = ("breast_cancer", "wine")

#: sha256 of the reference copies listed in shared/data/MANIFEST.md, by file name. A file with one
#: of these names but another hash only triggers a warning (users may hold a different copy).
KNOWN_SHA256 = {
    "kddcup.data_10_percent.gz": "7bfaa8cef1350f72842018c32893e2fa4539d57efbb22f998eb74ecefc3da3b4",
    "kddcup.names": "fab3e5c771a72ae472c9dae56d62138dd95b9f880e36e8ea5a72f6ceb10efeb9",
    "thyroid.mat": "49155d7861b977e90808faf68343ff67a67f63090c2744d514dbb67ac68e7e33",
    "arrhythmia.mat": "e4d47e499591ae31e5d7f0cd983367092353eac240f48e14c9b36457edb3460d",
    "38_thyroid.npz": "8de161b3f235b7647bb0b39a836d983ff61d67bf234edac461da2d71e889cb87",
}

#: The 41 KDD Cup 99 features (UCI ``kddcup.names``), used when that file is not beside the data.
KDD_COLUMNS = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)
#: The 7 columns typed ``symbolic.`` in ``kddcup.names`` (one-hot encoded, as GOAD/DAGMM do).
KDD_SYMBOLIC = ("protocol_type", "service", "flag", "land", "logged_in", "is_host_login", "is_guest_login")

_KDD_FILES = ("kddcup.data_10_percent.gz", "kddcup.data_10_percent")
_KDD_CACHE_VERSION = 1

_HOW_TO_GET = {
    "kdd": "download the UCI 10% subset from http://kdd.ics.uci.edu/databases/kddcup99/kddcup.data_10_percent.gz "
    "(https://doi.org/10.24432/C51C7N) into <data root>/kddcup99/ (no need to decompress)",
    "odds": "download the .mat file from the ODDS library, http://odds.cs.stonybrook.edu, into <data root>/odds/",
    "adbench": "download the .npz file from ADBench, https://github.com/Minqi824/ADBench "
    "(adbench/datasets/Classical/), into <data root>/adbench_classical/",
}

#: ODDS names that ``load_task`` accepts even before looking at the folder.
ODDS_NAMES = (
    "annthyroid", "arrhythmia", "breastw", "cardio", "cover", "glass", "heart", "http", "ionosphere",
    "letter", "lympho", "mammography", "mnist", "musk", "optdigits", "pendigits", "pima", "satellite",
    "satimage-2", "seismic", "shuttle", "smtp", "speech", "thyroid", "vertebral", "vowels", "wbc",
    "wine", "yeast",
)
_KDD_NAMES = {"kdd": "kdd", "kddcup99": "kdd", "kddcup": "kdd", "kdd99": "kdd", "kddrev": "kddrev",
              "kddcup99rev": "kddrev", "kdd_rev": "kddrev", "kddcuprev": "kddrev"}

_NOTES = {
    "goad_half": "GOAD (Bergman & Hoshen, ICLR 2020) §5.2: train = first half of the normals in file order; "
    "test = other normals + all anomalies",
    "kdd": "DAGMM (Zong et al., ICLR 2018) / GOAD §5.2: train = random 50% of the normal class; "
    "test = the rest + all anomalies",
    "stratified": "ADBench (Han et al., NeurIPS 2022): stratified split",
}


# ----------------------------------------------------------------------------------------------
# the task container
# ----------------------------------------------------------------------------------------------
@dataclass
class TabularTask:
    """One train/test problem. ``X_train`` holds normal rows only under the one-class protocols
    (``y_train`` is then all 0); ``y_test`` is 0 normal / 1 anomaly. ``meta`` records the protocol,
    source file, scaler, and the notes needed to reproduce the split."""

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    y_train: np.ndarray | None = None
    feature_names: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.X_train = check_features(self.X_train, name="X_train")
        self.X_test = check_features(self.X_test, name="X_test")
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ValueError(
                f"X_train has {self.X_train.shape[1]} features but X_test has {self.X_test.shape[1]}"
            )
        self.y_test = check_binary_labels(self.y_test, name="y_test", n_samples=len(self.X_test), need_both=False)
        if self.y_train is not None:
            self.y_train = check_binary_labels(
                self.y_train, name="y_train", n_samples=len(self.X_train), need_both=False
            )
        if self.feature_names is not None:
            self.feature_names = [str(f) for f in self.feature_names]
            if len(self.feature_names) != self.X_train.shape[1]:
                raise ValueError(
                    f"feature_names has {len(self.feature_names)} entries but X has {self.X_train.shape[1]} features"
                )

    @property
    def contamination(self) -> float:
        """Anomaly fraction of the test set."""
        return float(np.mean(self.y_test)) if len(self.y_test) else 0.0

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def describe(self) -> dict:
        """One row for a notebook table."""
        return {
            "name": self.name,
            "n_train": int(len(self.X_train)),
            "n_test": int(len(self.X_test)),
            "d": self.n_features,
            "n_test_anomalies": int(np.sum(self.y_test)),
            "contamination": round(self.contamination, 4),
            "protocol": self.meta.get("protocol"),
            "scaler": self.meta.get("scaler", "none"),
        }


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _check_known_sha(path: Path, sha: str) -> None:
    expected = KNOWN_SHA256.get(path.name)
    if expected is not None and sha != expected:
        warnings.warn(
            f"{path} has sha256 {sha[:12]}..., not the reference {expected[:12]}... listed in "
            "shared/data/MANIFEST.md: results may differ from the papers' numbers",
            UserWarning,
            stacklevel=3,
        )


def _require_file(path, kind: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} not found: {_HOW_TO_GET[kind]}")
    return path


def _features(X, name: str = "X") -> np.ndarray:
    """``check_features`` plus a clear message for pandas string/category columns."""
    if isinstance(X, pd.DataFrame):
        bad = [
            str(c)
            for c, t in X.dtypes.items()
            if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))
        ]
        if bad:
            raise TypeError(f"{name} has non-numeric columns {bad}: encode them (e.g. one-hot) first")
        X = X.to_numpy()
    return check_features(X, name=name)


def _xy(X, y, need_both: bool = True):
    names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None
    X = _features(X)
    y = check_binary_labels(y, n_samples=len(X), need_both=need_both)
    return X, y, names


def _merge_meta(meta: dict | None, **kw) -> dict:
    out = dict(meta or {})
    out.update(kw)
    return out


# ----------------------------------------------------------------------------------------------
# raw loaders
# ----------------------------------------------------------------------------------------------
def load_odds_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """Load an ODDS ``.mat`` file (keys ``X`` and ``y``, y == 1 outlier; Rayana 2016,
    http://odds.cs.stonybrook.edu). Returns ``(X float32, y int64)``."""
    import scipy.io
    import scipy.sparse

    path = _require_file(path, "odds")
    _check_known_sha(path, file_sha256(path))
    try:
        d = scipy.io.loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 = HDF5
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read: use the ADBench .npz copy "
            "of this data set instead (e.g. 34_smtp.npz, 16_http.npz)"
        ) from exc
    except Exception as exc:
        raise ValueError(f"could not read {path} as a MATLAB .mat file (corrupt or not ODDS?): {exc!r}") from exc
    for key in ("X", "y"):
        if key not in d:
            keys = sorted(k for k in d if not k.startswith("__"))
            raise ValueError(f"{path} has no key {key!r} (found {keys}): ODDS files hold 'X' and 'y'")
    X = d["X"]
    if scipy.sparse.issparse(X):
        X = X.toarray()
    y = d["y"]
    if scipy.sparse.issparse(y):
        y = y.toarray()
    X = check_features(X, name=f"X of {path.name}")
    y = check_binary_labels(np.asarray(y).ravel(), name=f"y of {path.name}", n_samples=len(X))
    return X, y


def load_adbench_npz(path) -> tuple[np.ndarray, np.ndarray]:
    """Load an ADBench ``.npz`` (keys ``X``, ``y``, y == 1 anomaly; Han et al., NeurIPS 2022,
    https://github.com/Minqi824/ADBench). Read with ``allow_pickle=False``: a file that needs
    pickling is refused rather than unpickled. Returns ``(X float32, y int64)``."""
    path = _require_file(path, "adbench")
    _check_known_sha(path, file_sha256(path))
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path} is not a valid .npz archive (corrupt or truncated file?)")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:  # own the handle: no leak on error
            missing = [k for k in ("X", "y") if k not in d.files]
            if missing:
                raise ValueError(f"{path} has no key {missing[0]!r} (found {list(d.files)}): ADBench files hold 'X' and 'y'")
            X, y = d["X"], d["y"]
    except ValueError as exc:
        if "has no key" in str(exc):
            raise
        raise ValueError(
            f"could not read {path} with allow_pickle=False (corrupt, or it stores object arrays): {exc}"
        ) from exc
    except Exception as exc:
        raise ValueError(f"could not read {path} as a .npz archive (corrupt or truncated?): {exc!r}") from exc
    X = check_features(X, name=f"X of {path.name}")
    y = check_binary_labels(y, name=f"y of {path.name}", n_samples=len(X))
    return X, y


def _kdd_names(data_path: Path) -> tuple[list[str], list[str]]:
    """(column names, symbolic column names) from ``kddcup.names`` beside the data, or the
    hard-coded UCI list when the file is missing or malformed."""
    names_file = data_path.parent / "kddcup.names"
    if names_file.is_file():
        try:
            lines = names_file.read_text(encoding="ascii", errors="replace").splitlines()
            cols, sym = [], []
            for line in lines[1:]:
                line = line.strip()
                if not line:
                    continue
                n, t = (s.strip() for s in line.split(":", 1))
                cols.append(n)
                if t.startswith("symbolic"):
                    sym.append(n)
            if len(cols) == 41:
                return cols, sym
            warnings.warn(f"{names_file} lists {len(cols)} features, not 41: using the built-in UCI column list")
        except ValueError:
            warnings.warn(f"could not parse {names_file}: using the built-in UCI column list")
    return list(KDD_COLUMNS), list(KDD_SYMBOLIC)


def _parse_kdd(path: Path) -> dict:
    """Parse the raw CSV into a compact form: continuous float32 block, symbolic codes, labels."""
    cols, sym = _kdd_names(path)
    try:
        df = pd.read_csv(path, header=None, compression="infer", low_memory=False)
    except Exception as exc:
        raise ValueError(
            f"could not read KDD Cup 99 file {path} ({type(exc).__name__}: {exc}): the file is corrupt, "
            f"truncated or not the UCI CSV; {_HOW_TO_GET['kdd']}"
        ) from exc
    if df.shape[1] != len(cols) + 1 or len(df) == 0:
        raise ValueError(
            f"{path} has {df.shape[1]} columns and {len(df)} rows; the UCI KDD Cup 99 file has "
            f"{len(cols) + 1} columns (41 features + label)"
        )
    df.columns = cols + ["label"]
    cont = [c for c in cols if c not in sym]
    try:
        X_cont = df[cont].to_numpy(dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: non-numeric values in continuous KDD columns ({exc})") from exc
    codes = np.empty((len(df), len(sym)), dtype=np.int16)
    cats = []
    for j, c in enumerate(sym):
        cat = pd.Categorical(df[c])  # categories sorted, as pd.get_dummies does
        if cat.codes.min() < 0:
            raise ValueError(f"{path}: missing values in symbolic column {c!r}")
        codes[:, j] = cat.codes
        cats.append(np.array([str(v) for v in cat.categories]))
    lab = pd.Categorical(df["label"].astype(str).str.strip())
    return {
        "X_cont": X_cont,
        "codes": codes,
        "cats": cats,
        "label_codes": lab.codes.astype(np.int16),
        "label_names": np.array([str(v) for v in lab.categories]),
        "cont_names": np.array(cont),
        "sym_names": np.array(sym),
    }


def _kdd_cache_path(sha: str) -> Path:
    return cache_dir("tabular") / f"kddcup99_v{_KDD_CACHE_VERSION}_{sha}.npz"


def _save_kdd_cache(parsed: dict, target: Path) -> None:
    arrays = {k: v for k, v in parsed.items() if k != "cats"}
    for j, c in enumerate(parsed["cats"]):
        arrays[f"cats_{j}"] = c
    atomic_save_npz(arrays, target)


def _load_kdd_cache(target: Path) -> dict | None:
    if not target.is_file():
        return None
    try:
        with open(target, "rb") as fh, np.load(fh, allow_pickle=False) as d:
            out = {k: d[k] for k in ("X_cont", "codes", "label_codes", "label_names", "cont_names", "sym_names")}
            out["cats"] = [d[f"cats_{j}"] for j in range(len(out["sym_names"]))]
        n = len(out["X_cont"])
        if out["codes"].shape != (n, len(out["sym_names"])) or out["label_codes"].shape != (n,):
            raise ValueError("inconsistent shapes")
        return out
    except Exception as exc:  # corrupt cache: rebuild it
        warnings.warn(f"ignoring unreadable KDD cache {target} ({exc!r}); re-parsing the source file")
        return None


def _assemble_kdd(parsed: dict, rows: np.ndarray | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Dense X = [continuous | one-hot(symbolic)], the column order of
    ``pd.get_dummies(df, columns=symbolic)``."""
    X_cont = parsed["X_cont"] if rows is None else parsed["X_cont"][rows]
    codes = parsed["codes"] if rows is None else parsed["codes"][rows]
    n, n_cont = X_cont.shape
    widths = [len(c) for c in parsed["cats"]]
    X = np.zeros((n, n_cont + sum(widths)), dtype=np.float32)
    X[:, :n_cont] = X_cont
    names = [str(c) for c in parsed["cont_names"]]
    offset = n_cont
    ar = np.arange(n)
    for j, (col, cats) in enumerate(zip(parsed["sym_names"], parsed["cats"])):
        X[ar, offset + codes[:, j].astype(np.int64)] = 1.0
        names += [f"{col}_{c}" for c in cats]
        offset += len(cats)
    continuous = np.zeros(X.shape[1], dtype=bool)
    continuous[:n_cont] = True
    return X, names, continuous


def load_kddcup99(path, variant: str = "kdd", random_state: int = 0, cache: bool = True):
    """Load the raw UCI KDD Cup 99 10 % file (``kddcup.data_10_percent[.gz]``; ``path`` may also be
    the folder holding it) and one-hot encode its 7 symbolic columns with the categories of the
    file (494,021 rows -> 121 features, as GOAD/DAGMM do with ``pd.get_dummies``).

    ``variant="kdd"`` (DAGMM, Zong et al. ICLR 2018 §4.1): ``normal.`` traffic is the ANOMALY
    class (y=1, 97,278 rows), all attacks are normal (396,743).
    ``variant="kddrev"`` (KDDCUP-Rev, DAGMM/GOAD): ``normal.`` rows are normal (y=0) and
    ``n_normal // 4`` attack rows (24,319) drawn with ``RandomState(random_state)`` are anomalies.

    The parsed arrays are cached in ``cache_dir("tabular")`` under the source file's sha256
    (written atomically). Returns ``(X float32, y int64, info)`` with ``info`` keys
    ``feature_names``, ``continuous`` (bool mask), ``source_sha256``, ``source``, ``variant``,
    ``from_cache``, ``n_rows_file``.
    """
    check_param("variant", variant, choices=("kdd", "kddrev"))
    p = Path(path).expanduser()
    if p.is_dir():
        found = [p / f for f in _KDD_FILES if (p / f).is_file()]
        if not found:
            raise FileNotFoundError(f"no {' or '.join(_KDD_FILES)} in folder {str(p)!r}: {_HOW_TO_GET['kdd']}")
        p = found[0]
    p = _require_file(p, "kdd")
    sha = file_sha256(p)
    _check_known_sha(p, sha)

    parsed = None
    target = _kdd_cache_path(sha) if cache else None
    if cache:
        parsed = _load_kdd_cache(target)
    from_cache = parsed is not None
    if parsed is None:
        parsed = _parse_kdd(p)
        if cache:
            try:
                _save_kdd_cache(parsed, target)
            except OSError as exc:
                warnings.warn(f"could not write the KDD cache {target}: {exc}")

    label_names = [str(s).rstrip(".") for s in parsed["label_names"]]
    if "normal" not in label_names:
        raise ValueError(f"{p} has no 'normal.' rows: not the KDD Cup 99 file? labels found: {label_names[:10]}")
    is_normal_traffic = parsed["label_codes"] == label_names.index("normal")

    if variant == "kdd":
        rows = None
        y = is_normal_traffic.astype(np.int64)
    else:
        normal_idx = np.flatnonzero(is_normal_traffic)
        attack_idx = np.flatnonzero(~is_normal_traffic)
        n_anom = min(len(normal_idx) // 4, len(attack_idx))
        rng = np.random.RandomState(random_state)
        chosen = rng.choice(attack_idx, size=n_anom, replace=False)
        rows = np.sort(np.concatenate([normal_idx, chosen]))
        y = (~is_normal_traffic[rows]).astype(np.int64)
    X, names, continuous = _assemble_kdd(parsed, rows)
    X = check_features(X, name=f"X of {p.name}")
    y = check_binary_labels(y, name=f"y of {p.name}", n_samples=len(X))
    info = {
        "feature_names": names,
        "continuous": continuous,
        "source_sha256": sha,
        "source": str(p),
        "variant": variant,
        "from_cache": from_cache,
        "n_rows_file": int(len(parsed["label_codes"])),
    }
    return X, y, info


def load_embedded(name: str = "breast_cancer") -> tuple[np.ndarray, np.ndarray]:
    """Real data shipped inside scikit-learn (no files needed).

    ``"breast_cancer"``: the ODDS-WBC construction (Rayana 2016) on sklearn's Wisconsin
    diagnostic data: all 357 benign rows are normal, 21 malignant rows drawn with a fixed
    ``RandomState(0)`` are anomalies -> 378 rows, 5.6 % anomalies.
    ``"wine"``: the ODDS-wine construction: classes 1 and 2 (sklearn targets) are normal (119
    rows), 10 rows of class 0 drawn with ``RandomState(0)`` are anomalies -> 129 rows.
    Rows keep sklearn's order. Returns ``(X float32, y int64)``.
    """
    from sklearn import datasets

    check_param("name", name, choices=EMBEDDED)
    rng = np.random.RandomState(0)
    if name == "breast_cancer":
        X, t = datasets.load_breast_cancer(return_X_y=True)
        normal = np.flatnonzero(t == 1)  # benign
        anom = rng.choice(np.flatnonzero(t == 0), size=21, replace=False)
    else:
        X, t = datasets.load_wine(return_X_y=True)
        normal = np.flatnonzero(t != 0)
        anom = rng.choice(np.flatnonzero(t == 0), size=10, replace=False)
    rows = np.sort(np.concatenate([normal, anom]))
    y = np.isin(rows, anom).astype(np.int64)
    return check_features(X[rows], name=f"X of embedded {name}"), check_binary_labels(y)


def _embedded_feature_names(name: str) -> list[str]:
    from sklearn import datasets

    loader = datasets.load_breast_cancer if name == "breast_cancer" else datasets.load_wine
    return [str(f) for f in loader().feature_names]


# ----------------------------------------------------------------------------------------------
# protocols
# ----------------------------------------------------------------------------------------------
def _one_class_task(X, y, train_idx, test_norm_idx, anom_idx, name, protocol, feature_names, meta, **extra):
    test_idx = np.concatenate([test_norm_idx, anom_idx])
    y_test = np.concatenate([np.zeros(len(test_norm_idx), np.int64), np.ones(len(anom_idx), np.int64)])
    return TabularTask(
        name=name,
        X_train=X[train_idx],
        X_test=X[test_idx],
        y_test=y_test,
        y_train=np.zeros(len(train_idx), np.int64),
        feature_names=feature_names,
        meta=_merge_meta(meta, protocol=protocol, scaler="none", notes=_NOTES[protocol],
                         contamination=float(y_test.mean()), **extra),
    )


def split_goad_half(X, y, name: str = "data", feature_names=None, meta: dict | None = None) -> TabularTask:
    """GOAD protocol for Thyroid/Arrhythmia (Bergman & Hoshen, ICLR 2020, §5.2; GOAD's
    ``data_loader``): train = the FIRST ``n_normal // 2`` normal rows in file order (no shuffle),
    test = the remaining normals followed by all anomalies. Unscaled (see :func:`scale_task`)."""
    X, y, names = _xy(X, y)
    norm = np.flatnonzero(y == 0)
    anom = np.flatnonzero(y == 1)
    n_train = len(norm) // 2
    if n_train == 0:
        raise ValueError(f"only {len(norm)} normal sample(s): goad_half needs at least 2")
    return _one_class_task(X, y, norm[:n_train], norm[n_train:], anom, name, "goad_half",
                           feature_names or names, meta)


def split_kdd(X, y, random_state: int = 0, name: str = "data", feature_names=None,
              meta: dict | None = None) -> TabularTask:
    """DAGMM/GOAD KDDCUP protocol (Zong et al., ICLR 2018, §4.1; GOAD §5.2): train = a random
    ``n_normal // 2`` of the normal class (``y == 0``; ``RandomState(random_state)``), test = the
    other normals followed by all anomalies. Rows keep file order within each part. Unscaled."""
    check_param("random_state", random_state, low=0, integer=True)
    X, y, names = _xy(X, y)
    norm = np.flatnonzero(y == 0)
    anom = np.flatnonzero(y == 1)
    n_train = len(norm) // 2
    if n_train == 0:
        raise ValueError(f"only {len(norm)} normal sample(s): the kdd protocol needs at least 2")
    perm = np.random.RandomState(random_state).permutation(len(norm))
    train = np.sort(norm[perm[:n_train]])
    test_norm = np.sort(norm[perm[n_train:]])
    return _one_class_task(X, y, train, test_norm, anom, name, "kdd", feature_names or names, meta,
                           random_state=int(random_state))


def split_stratified(X, y, test_size: float = 0.3, random_state: int = 0, train_normals_only: bool = True,
                     name: str = "data", feature_names=None, meta: dict | None = None) -> TabularTask:
    """ADBench-style stratified split (Han et al., NeurIPS 2022; 70/30 by default). With
    ``train_normals_only`` the anomalies that fall in the training part are dropped from
    ``X_train`` (novelty setting) and counted in ``meta["dropped_train_anomalies"]``. Unscaled."""
    from sklearn.model_selection import train_test_split

    check_param("test_size", test_size, low=0, high=1, inclusive=(False, False))
    check_param("random_state", random_state, low=0, integer=True)
    X, y, names = _xy(X, y)
    idx = np.arange(len(y))
    try:
        tr, te = train_test_split(idx, test_size=test_size, random_state=random_state, stratify=y)
    except ValueError as exc:
        raise ValueError(
            f"cannot make a stratified split with test_size={test_size} of {len(y)} samples "
            f"({int(y.sum())} anomalies): {exc}"
        ) from exc
    tr, te = np.sort(tr), np.sort(te)
    dropped = 0
    if train_normals_only:
        dropped = int(y[tr].sum())
        tr = tr[y[tr] == 0]
    if len(tr) == 0:
        raise ValueError("the training part of the split is empty: use more samples or a smaller test_size")
    y_test = y[te]
    return TabularTask(
        name=name,
        X_train=X[tr],
        X_test=X[te],
        y_test=y_test,
        y_train=y[tr],
        feature_names=feature_names or names,
        meta=_merge_meta(meta, protocol="stratified", scaler="none", notes=_NOTES["stratified"],
                         test_size=float(test_size), random_state=int(random_state),
                         train_normals_only=bool(train_normals_only), dropped_train_anomalies=dropped,
                         contamination=float(y_test.mean())),
    )


def scale_task(task: TabularTask, scaler: str = "standard", columns=None) -> TabularTask:
    """Fit a scaler on ``task.X_train`` and apply it to train and test; returns a new task.

    ``"standard"``: (x - mean) / std (population std, as GOAD; std 0 -> 1). ``"minmax"``:
    (x - min) / (max - min) (range 0 -> 1). ``"none"``: unchanged copy. ``columns``: bool mask
    (or integer indices) of the columns to scale; the others are left untouched (KDD: only the
    continuous columns, one-hot columns untouched, as GOAD's ``norm_kdd_data``). ``meta`` gains
    ``scaler``, ``n_scaled_columns``, ``scaler_center`` and ``scaler_scale`` (lists, length d)."""
    check_param("scaler", scaler, choices=SCALERS)
    if not isinstance(task, TabularTask):
        raise TypeError(f"task must be a TabularTask, got {type(task).__name__}")
    d = task.X_train.shape[1]
    if columns is None:
        mask = np.ones(d, dtype=bool)
    else:
        columns = np.asarray(columns)
        if columns.dtype == bool:
            if columns.shape != (d,):
                raise ValueError(f"columns mask has shape {columns.shape}, expected ({d},)")
            mask = columns.copy()
        elif np.issubdtype(columns.dtype, np.integer):
            if columns.size and (columns.min() < -d or columns.max() >= d):
                raise ValueError(f"columns indices out of range for {d} features")
            mask = np.zeros(d, dtype=bool)
            mask[columns] = True
        else:
            raise ValueError(f"columns must be a bool mask or integer indices, got dtype {columns.dtype}")
    center = np.zeros(d, dtype=np.float64)
    scale = np.ones(d, dtype=np.float64)
    Xtr = task.X_train[:, mask].astype(np.float64) if mask.any() else None
    if scaler == "standard" and Xtr is not None:
        sd = Xtr.std(axis=0)
        sd[sd == 0] = 1.0
        center[mask], scale[mask] = Xtr.mean(axis=0), sd
    elif scaler == "minmax" and Xtr is not None:
        lo, hi = Xtr.min(axis=0), Xtr.max(axis=0)
        rng = hi - lo
        rng[rng == 0] = 1.0
        center[mask], scale[mask] = lo, rng
    n_scaled = int(mask.sum()) if scaler != "none" else 0

    def apply(X):
        out = X.copy()
        if n_scaled:
            out[:, mask] = ((X[:, mask].astype(np.float64) - center[mask]) / scale[mask]).astype(np.float32)
        return out

    meta = dict(task.meta)
    previous = meta.get("scaler", "none")
    meta.update(scaler=scaler, n_scaled_columns=n_scaled,
                scaler_center=center.tolist(), scaler_scale=scale.tolist())
    if previous not in (None, "none") and scaler != "none":
        meta["scaler"] = f"{previous}+{scaler}"
    return dataclasses.replace(
        task,
        X_train=apply(task.X_train),
        X_test=apply(task.X_test),
        y_test=task.y_test.copy(),
        y_train=None if task.y_train is None else task.y_train.copy(),
        feature_names=None if task.feature_names is None else list(task.feature_names),
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------
# one call for notebooks
# ----------------------------------------------------------------------------------------------
def _accepted_names(root: Path | None) -> str:
    odds = set(ODDS_NAMES)
    adb = []
    if root is not None:
        odds |= {p.stem for p in (root / "odds").glob("*.mat")}
        adb = sorted(p.stem for p in (root / "adbench_classical").glob("*.npz"))
    adb_txt = ", ".join(repr(a) for a in adb) if adb else "ADBench names such as '38_thyroid'"
    return (
        "'embedded', 'embedded:breast_cancer', 'embedded:wine', "
        + ", ".join(repr(o) for o in sorted(odds))
        + " (ODDS, also as 'odds:NAME'), 'kdd', 'kddcup99', 'kddrev', "
        + adb_txt
        + " (ADBench, also as 'adbench:NAME'), or a path to a .mat / .npz / kddcup.data_10_percent[.gz] file"
    )


def _try_root(data_dir):
    try:
        return data_root(data_dir)
    except FileNotFoundError:
        return None


def _find_ci(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, matching the stem case-insensitively when the exact name is absent."""
    exact = folder / f"{stem}{suffix}"
    if exact.is_file() or not folder.is_dir():
        return exact
    for p in folder.glob(f"*{suffix}"):
        if p.stem.lower() == stem.lower():
            return p
    return exact


def _resolve(data, data_dir) -> dict:
    """Map a ``data`` argument to {kind, name, path, variant}."""
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    if not isinstance(data, str) or not data.strip():
        raise ValueError(f"data must be a non-empty string or path, got {data!r}")
    spec = data.strip()
    low = spec.lower()

    if low == "embedded" or low.startswith("embedded:"):
        sub = low.split(":", 1)[1] if ":" in low else "breast_cancer"
        if sub not in EMBEDDED:
            raise ValueError(f"unknown embedded data set {sub!r}: accepted names are {list(EMBEDDED)}")
        return {"kind": "embedded", "name": sub, "path": None}

    base = os.path.basename(spec)
    looks_like_path = (
        os.sep in spec or "/" in spec or low.endswith((".mat", ".npz", ".gz")) or base.startswith("kddcup.data")
    )
    if looks_like_path:
        p = Path(spec).expanduser()
        if p.suffix.lower() == ".mat":
            return {"kind": "odds", "name": p.stem, "path": p}
        if p.suffix.lower() == ".npz":
            return {"kind": "adbench", "name": p.stem, "path": p}
        if p.name.startswith("kddcup") or (p.is_dir() and any((p / f).is_file() for f in _KDD_FILES)):
            return {"kind": "kdd", "name": "kddcup99", "path": p, "variant": "kdd"}
        raise ValueError(
            f"cannot tell the format of {spec!r}: expected a .mat (ODDS), .npz (ADBench) or "
            "kddcup.data_10_percent[.gz] file"
        )

    if low in _KDD_NAMES:
        variant = _KDD_NAMES[low]
        folder = data_root(data_dir) / "kddcup99"
        path = next((folder / f for f in _KDD_FILES if (folder / f).is_file()), folder / _KDD_FILES[0])
        return {"kind": "kdd", "name": "kddcup99" if variant == "kdd" else "kddcup99_rev", "path": path,
                "variant": variant}

    prefix = None
    if ":" in low:
        prefix, spec = spec.split(":", 1)
        prefix, low = prefix.lower(), spec.lower()
        if prefix not in ("odds", "adbench"):
            raise ValueError(f"unknown data prefix {prefix!r} in {data!r}: use 'embedded:', 'odds:' or 'adbench:'")

    if prefix == "adbench" or (prefix is None and re.match(r"^\d+_", spec)):
        folder = data_root(data_dir) / "adbench_classical"
        path = _find_ci(folder, spec, ".npz")
        if not path.is_file() and prefix == "adbench":
            # allow 'adbench:thyroid' for '38_thyroid'
            hits = [p for p in folder.glob("*.npz") if p.stem.split("_", 1)[-1].lower() == low]
            if len(hits) == 1:
                path = hits[0]
        return {"kind": "adbench", "name": path.stem, "path": path}

    if prefix == "odds" or low in ODDS_NAMES:
        path = _find_ci(data_root(data_dir) / "odds", low, ".mat")
        return {"kind": "odds", "name": low, "path": path}

    root = _try_root(data_dir)
    if root is not None:
        odds = _find_ci(root / "odds", low, ".mat")
        if odds.is_file():
            return {"kind": "odds", "name": odds.stem, "path": odds}
    raise ValueError(f"unknown dataset {data!r}: accepted names are {_accepted_names(root)}")


def load_task(data="embedded", protocol: str = "auto", scaler: str = "standard", random_state: int = 0,
              data_dir=None) -> TabularTask:
    """Load a data set, split it by a paper protocol and scale it: the one call a notebook makes.

    ``data``: ``"embedded"`` (= ``"embedded:breast_cancer"``), ``"embedded:wine"``; an ODDS name
    (``"thyroid"``, ``"arrhythmia"``, any ``odds/NAME.mat``); ``"kdd"``/``"kddcup99"`` (DAGMM
    variant) or ``"kddrev"``; an ADBench name such as ``"38_thyroid"``; or a path to a .mat / .npz /
    kddcup file. Names resolve under :func:`kdal_lib.utils.data_root` (``data_dir`` or ``$KDAL_DATA``).

    ``protocol="auto"``: ODDS -> ``"goad_half"`` (GOAD §5.2), KDD/KDD-Rev -> ``"kdd"`` (DAGMM),
    embedded and ADBench -> ``"stratified"`` (ADBench, 70/30, normals-only training).
    ``scaler`` is fitted on the training rows; for KDD only the continuous columns are scaled.
    """
    check_param("protocol", protocol, choices=("auto",) + PROTOCOLS)
    check_param("scaler", scaler, choices=SCALERS)
    check_param("random_state", random_state, low=0, integer=True)
    src = _resolve(data, data_dir)
    kind = src["kind"]
    meta = {"data": str(data), "dataset_kind": kind, "random_state": int(random_state)}
    feature_names = None
    columns = None
    if kind == "embedded":
        X, y = load_embedded(src["name"])
        feature_names = _embedded_feature_names(src["name"])
        meta["source"] = f"sklearn.datasets.load_{src['name']}"
        name = src["name"]
    elif kind == "odds":
        if not Path(src["path"]).is_file() and src["name"] in ("wine", "wbc"):
            alt = "embedded:wine" if src["name"] == "wine" else "embedded:breast_cancer"
            raise FileNotFoundError(
                f"data file {str(src['path'])!r} not found: {_HOW_TO_GET['odds']} (or use data={alt!r}, "
                "an offline construction of the same data set)"
            )
        X, y = load_odds_mat(src["path"])
        name = src["name"]
    elif kind == "adbench":
        X, y = load_adbench_npz(src["path"])
        name = src["name"]
    else:
        X, y, info = load_kddcup99(src["path"], variant=src["variant"], random_state=random_state)
        feature_names = info["feature_names"]
        columns = info["continuous"]
        name = src["name"]
        meta.update(variant=info["variant"], n_continuous=int(columns.sum()),
                    continuous=[bool(c) for c in columns], source_sha256=info["source_sha256"])
    if src["path"] is not None:
        meta["source"] = str(src["path"])
        meta.setdefault("source_sha256", file_sha256(src["path"]) if kind != "kdd" else None)

    if protocol == "auto":
        protocol = {"embedded": "stratified", "adbench": "stratified", "odds": "goad_half", "kdd": "kdd"}[kind]
    if protocol == "goad_half":
        task = split_goad_half(X, y, name=name, feature_names=feature_names, meta=meta)
    elif protocol == "kdd":
        task = split_kdd(X, y, random_state=random_state, name=name, feature_names=feature_names, meta=meta)
    else:
        task = split_stratified(X, y, random_state=random_state, name=name, feature_names=feature_names, meta=meta)
    return scale_task(task, scaler=scaler, columns=columns)
