"""KDAL: anomaly scores as soft labels for active learning (Kim & Bae, KIIE Spring 2024).

The original (github.com/jeewonkimm2/KDAL) ships a README only; this is a first implementation of what
the README states, with everything it leaves open exposed as a parameter (documented as our assumption):

1. fit an unsupervised detector on the **unlabelled pool** (OCSVM by default; any object with
   ``decision_function`` works) and score every pool item;
2. **soft labels**: normalise and sign-transform the scores to ``s(x) in [0, 1]`` with 1 = most
   anomalous (min-max with the pool's min and max; for scikit-learn's OneClassSVM the score is
   ``-decision_function``), soft target ``q(x) = [1 - s, s]``  (:class:`ScoreNormalizer`);
3. **cycle 0**: train the classifier on the soft loss only, over all pool items;
4. query the K **least-confident** items, label them;
5. **cycles n >= 1**: ``L = w_soft * L_soft(all pool, q) + L_hard(labelled, CE)``; query K more; repeat
   until the label budget is spent.

The loop itself is :class:`kdal_lib.active.ActiveLoop` with ``init=None`` and a
:class:`kdal_lib.active.ClassifierLearner` carrying ``soft_targets`` (its ``soft_loss`` gives the
``ce`` / ``kl`` / ``mse`` forms and the temperature). This module adds the soft labels, a Nyström
one-class SVM for large pools, the KDAL data protocol (merge, stratified 80/20 split, anomalies kept in
the unlabelled pool) and the comparison with the baselines of notebook 05:

* ``KDAL`` — the method above;
* ``Random`` — random cold start of K labels, random queries, no soft loss;
* ``LeastConfident`` — random cold start of K labels, least-confidence queries, no soft loss;
* ``ASAL-style`` — cold start from the same detector scores cut into strata (ASAL/PT4AL,
  :func:`kdal_lib.active.stratified_top`), then least-confidence queries, no soft loss;
* the detector alone, as a reference line.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .active import (ActiveLoop, ClassifierLearner, CycleRecord, Oracle, RandomSampling, UncertaintySampling,
                     curve_frame, labels_to_reach, mlp_classifier, plot_learning_curves, random_init, stratified_top)
from .base import DetectorMixin
from .baselines import IsolationForestDetector, OCSVMDetector, PCADetector
from .metrics import aupr, auroc
from .utils import data_root, log, progress, seed_everything
from .validation import check_binary_labels, check_features, check_param

__all__ = [
    "METHODS",
    "EXTRA_METHODS",
    "ScoreNormalizer",
    "soft_targets_from_scores",
    "detector_scores",
    "NystroemOCSVMDetector",
    "make_detector",
    "load_kdal_task",
    "KDALSettings",
    "settings_for",
    "distillation_fidelity",
    "choose_epochs0",
    "soft_trust",
    "run_method",
    "run_comparison",
    "KDALComparison",
]

METHODS = ("KDAL", "Random", "LeastConfident", "ASAL-style")
#: optional variants: ``KDAL-trust`` = KDAL with ``soft_trust="labelled_auroc"`` (our extension)
EXTRA_METHODS = ("KDAL-trust",)
DETECTORS = ("auto", "ocsvm", "ocsvm_nystroem", "iforest", "pca")
SOFT_TRUST = ("none", "labelled_auroc")


# ----------------------------------------------------------------------------- soft labels
class ScoreNormalizer:
    """Anomaly scores -> soft labels ``s in [0, 1]``, 1 = most anomalous (KDAL README, "Anomaly Score").

    ``s = clip((a - lo) / (hi - lo), 0, 1)`` with ``a = score`` when ``higher_is_anomalous`` and
    ``a = -score`` otherwise (scikit-learn's ``OneClassSVM.decision_function`` is positive for inliers);
    ``lo`` / ``hi`` are the min / max over the pool given to :meth:`fit` (other data, e.g. a test split,
    is clipped into [0, 1] with the pool's statistics). Constant pool scores carry no information:
    every item gets ``s = 0.5`` and a warning is issued."""

    def __init__(self, higher_is_anomalous: bool = True):
        self.higher_is_anomalous = bool(higher_is_anomalous)

    def _signed(self, scores, what: str) -> np.ndarray:
        a = np.asarray(scores, dtype=np.float64)
        if a.ndim != 1:
            a = a.reshape(-1) if a.ndim == 2 and 1 in a.shape else a
        if a.ndim != 1:
            raise ValueError(f"{what} must be one score per item (1-D), got shape {np.shape(scores)}")
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ValueError(f"{what} contain {bad} NaN or inf value(s): the detector failed on some items "
                             "(check the features for NaN/inf or extreme values)")
        return a if self.higher_is_anomalous else -a

    def fit(self, scores) -> "ScoreNormalizer":
        a = self._signed(scores, "pool anomaly scores")
        if a.size < 2:
            raise ValueError(f"need at least 2 pool scores to normalise, got {a.size}")
        self.lo_, self.hi_ = float(a.min()), float(a.max())
        self.constant_ = not (self.hi_ - self.lo_ > 1e-12 * max(1.0, abs(self.hi_), abs(self.lo_)))
        if self.constant_:
            warnings.warn("the anomaly scores are constant over the pool: the soft labels carry no information "
                          "(all set to 0.5)", UserWarning, stacklevel=2)
        return self

    def transform(self, scores) -> np.ndarray:
        if not hasattr(self, "lo_"):
            raise RuntimeError("ScoreNormalizer is not fitted: call fit(pool_scores) first")
        a = self._signed(scores, "anomaly scores")
        if self.constant_:
            return np.full(a.size, 0.5)
        return np.clip((a - self.lo_) / (self.hi_ - self.lo_), 0.0, 1.0)

    def fit_transform(self, scores) -> np.ndarray:
        return self.fit(scores).transform(scores)


def soft_targets_from_scores(scores, higher_is_anomalous: bool = True) -> np.ndarray:
    """Two-class soft targets ``q = [1 - s, s]`` (rows sum to 1) from pool anomaly scores."""
    s = ScoreNormalizer(higher_is_anomalous).fit_transform(scores)
    return np.stack([1.0 - s, s], axis=1)


def _higher_is_anomalous(detector) -> bool:
    """kdal_lib and PyOD detectors: higher = more anomalous; scikit-learn's (OneClassSVM, IsolationForest,
    LocalOutlierFactor, SGDOneClassSVM, EllipticEnvelope): higher = more normal."""
    module = type(detector).__module__ or ""
    return not module.startswith("sklearn.")


def detector_scores(detector, X, higher_is_anomalous="auto") -> np.ndarray:
    """``decision_function(X)`` turned so that higher = more anomalous. ``higher_is_anomalous="auto"``
    flips scikit-learn estimators (inlier-positive) and keeps kdal_lib / PyOD detectors as they are."""
    if not hasattr(detector, "decision_function"):
        raise TypeError(f"{type(detector).__name__} has no decision_function: KDAL needs a detector that scores items")
    if higher_is_anomalous == "auto":
        higher_is_anomalous = _higher_is_anomalous(detector)
    s = np.asarray(detector.decision_function(X), dtype=np.float64).ravel()
    return s if higher_is_anomalous else -s


# ----------------------------------------------------------------------------- detectors
class NystroemOCSVMDetector(DetectorMixin):
    """Linear one-class SVM on a Nyström approximation of the RBF kernel (scikit-learn ``Nystroem`` +
    ``SGDOneClassSVM``): O(n * n_components) instead of the kernel OCSVM's O(n^2), so it fits every row of
    a large pool. ``gamma="scale"``: ``1 / (d * Var(X))`` as ``OneClassSVM``. Score = ``-decision_function``
    of the linear SVM (higher = more anomalous)."""

    def __init__(self, n_components: int = 300, gamma="scale", nu: float = 0.1, max_iter: int = 20,
                 contamination: float = 0.1, random_state: int = 0):
        self.n_components, self.gamma, self.nu, self.max_iter = n_components, gamma, nu, max_iter
        self.contamination, self.random_state = contamination, random_state

    def fit(self, X, y=None):
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import SGDOneClassSVM

        check_param("nu", self.nu, low=0, high=1, inclusive=(False, True))
        check_param("n_components", self.n_components, low=1, integer=True)
        X = check_features(X, "X", min_samples=2).astype(np.float64)
        self.n_features_in_ = X.shape[1]
        gamma = self.gamma
        if gamma == "scale":
            var = X.var()
            gamma = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        self.gamma_ = float(gamma)
        self.map_ = Nystroem(kernel="rbf", gamma=self.gamma_, n_components=min(self.n_components, len(X)),
                             random_state=self.random_state).fit(X)
        Z = self.map_.transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at a small max_iter is expected
            self.model_ = SGDOneClassSVM(nu=self.nu, max_iter=self.max_iter, tol=None,
                                         random_state=self.random_state).fit(Z)
        self._set_threshold(-self.model_.decision_function(Z))
        return self

    def decision_function(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("NystroemOCSVMDetector is not fitted: call fit(X) first")
        X = check_features(X, "X").astype(np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the detector was fitted on {self.n_features_in_}")
        out = np.empty(len(X))
        for i in range(0, len(X), 50000):  # bounded memory on large pools
            out[i:i + 50000] = -self.model_.decision_function(self.map_.transform(X[i:i + 50000]))
        return out


def make_detector(name: str = "auto", n_pool: int | None = None, max_samples: int = 10000, nu: float = 0.1,
                  gamma="scale", n_components: int = 300, random_state: int = 0):
    """The unsupervised scorer. ``"ocsvm"``: kernel RBF OneClassSVM fitted on at most ``max_samples``
    random pool rows (every pool row is scored); ``"ocsvm_nystroem"``: :class:`NystroemOCSVMDetector` on
    all rows; ``"auto"``: the kernel OCSVM when the pool has at most ``max_samples`` rows, else Nyström;
    ``"iforest"``, ``"pca"``: the kdal_lib baselines. Returns ``(detector, resolved name)``."""
    check_param("detector", name, choices=DETECTORS)
    if name == "auto":
        name = "ocsvm" if n_pool is None or n_pool <= max_samples else "ocsvm_nystroem"
    if name == "ocsvm":
        return OCSVMDetector(nu=nu, gamma=gamma, max_samples=max_samples, random_state=random_state), name
    if name == "ocsvm_nystroem":
        return NystroemOCSVMDetector(n_components=n_components, gamma=gamma, nu=nu, random_state=random_state), name
    if name == "iforest":
        return IsolationForestDetector(random_state=random_state), name
    return PCADetector(random_state=random_state), name


# ----------------------------------------------------------------------------- data
def _resolve_cv(spec: str, data_dir) -> Path | None:
    """``"cv:MVTec-AD_bottle"`` / ``"mvtec:bottle"`` -> ``<data root>/adbench_cv_resnet18/<name>.npz``."""
    low = spec.lower()
    if low.startswith("mvtec:"):
        name = "MVTec-AD_" + spec.split(":", 1)[1]
    elif low.startswith("cv:"):
        name = spec.split(":", 1)[1]
    else:
        return None
    path = data_root(data_dir) / "adbench_cv_resnet18" / f"{name}.npz"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.npz"))
        raise FileNotFoundError(f"{str(path)!r} not found; ADBench CV embeddings there: {found}")
    return path


def load_kdal_task(data="embedded", data_dir=None, test_size: float = 0.2, random_state: int = 0,
                   scaler: str = "standard"):
    """The KDAL protocol (README §"Data"): the data set's rows merged and split ``1 - test_size`` /
    ``test_size`` (80/20), **stratified and seeded**; the anomalies stay in the training part, which is
    the **unlabelled pool** (``task.y_train`` holds its hidden labels, revealed only by the oracle).
    Scaling statistics come from the pool only; for KDD only the continuous columns are scaled.

    ``data``: as :func:`kdal_lib.data.tabular.load_task` (``"embedded"``, ``"thyroid"``, ``"arrhythmia"``,
    ``"kdd"`` = all 494,021 rows of the 10 % file with ``normal.`` as the anomaly class (DAGMM convention),
    ``"kddrev"``, ADBench names, file paths) plus ``"cv:MVTec-AD_bottle"`` or ``"mvtec:bottle"`` for the
    ADBench ResNet-18 image embeddings."""
    from .data import tabular as tab

    check_param("test_size", test_size, low=0, high=1, inclusive=(False, False))
    columns, feature_names = None, None
    cv = _resolve_cv(data, data_dir) if isinstance(data, str) else None
    if cv is not None:
        X, y = tab.load_adbench_npz(cv)
        name, meta = cv.stem, {"source": str(cv), "dataset_kind": "adbench_cv"}
    else:
        src = tab._resolve(data, data_dir)
        kind, name = src["kind"], src["name"]
        meta = {"dataset_kind": kind, "source": str(src["path"]) if src["path"] else f"sklearn {name}"}
        if kind == "embedded":
            X, y = tab.load_embedded(name)
        elif kind == "odds":
            X, y = tab.load_odds_mat(src["path"])
        elif kind == "adbench":
            X, y = tab.load_adbench_npz(src["path"])
        else:
            X, y, info = tab.load_kddcup99(src["path"], variant=src["variant"], random_state=random_state)
            columns, feature_names = info["continuous"], info["feature_names"]
            meta["variant"] = info["variant"]
    meta.update(data=str(data), protocol="kdal_80_20", test_size=float(test_size))
    task = tab.split_stratified(X, y, test_size=test_size, random_state=random_state, train_normals_only=False,
                                name=name, feature_names=feature_names, meta=meta)
    task.meta["notes"] = (f"KDAL (Kim & Bae 2024): merged, stratified {1 - test_size:.0%}/{test_size:.0%} split "
                          "(seeded); the pool keeps its anomalies, unlabelled")
    return tab.scale_task(task, scaler=scaler, columns=columns)


# ----------------------------------------------------------------------------- settings
@dataclass
class KDALSettings:
    """Everything the KDAL README leaves open (our assumptions; the same classifier for every method).

    ``k`` items labelled per query round, ``n_rounds`` rounds: label budget ``k * n_rounds``. KDAL trains
    ``n_rounds + 1`` times (0, k, ..., budget labels); the cold-start baselines ``n_rounds`` times (k ..
    budget). Classifier: MLP ``hidden``, Adam(``lr``, ``weight_decay``), ``epochs`` per cycle, warm
    start between cycles, last epoch kept (no labelled validation split: too few labels).
    ``epochs0``: epochs of KDAL's cycle 0 (soft loss only, the distillation of the detector); 0 = chosen
    among ``epochs0_grid`` without labels, by how well the student ranks held-out POOL items like the
    detector (:func:`distillation_fidelity`), never on the test split. ``balance``: class-balanced hard cross-entropy. Soft loss: ``soft_form`` (``ce``/``kl``/``mse``),
    ``soft_weight``, ``temperature``; ``soft_samples``: random pool items per epoch for the soft loss
    (None = all; large pools). ``soft_trust``: ``"none"`` = the README's fixed ``w_soft``;
    ``"labelled_auroc"`` = in cycle n >= 1 scale ``w_soft`` by ``clip(2 * AUROC_L - 1, 0, 1)``, where
    AUROC_L is the detector's AUROC on the items labelled so far (its Gini coefficient on the labelled
    pool; full weight while the labelled set holds one class only): a detector the labels contradict stops
    teaching (see :func:`soft_trust`). ``init_strata``: strata of the ASAL-style cold start."""

    k: int = 5
    n_rounds: int = 10
    hidden: tuple = (64, 64)
    epochs: int = 30
    epochs0: int = 0
    epochs0_grid: tuple = (30, 100, 300)
    lr: float = 1e-3
    weight_decay: float = 5e-4
    batch_size: int = 16
    soft_batch_size: int = 256
    soft_samples: int | None = None
    soft_form: str = "ce"
    soft_weight: float = 1.0
    temperature: float = 1.0
    soft_trust: str = "none"
    balance: bool = True
    warm_start: bool = True
    query: str = "least_confident"
    init_strata: int = 5
    device: str = "cpu"

    def check(self, n_pool: int) -> "KDALSettings":
        check_param("k", self.k, low=1, integer=True)
        check_param("n_rounds", self.n_rounds, low=1, integer=True)
        check_param("soft_form", self.soft_form, choices=("ce", "kl", "mse"))
        check_param("soft_weight", self.soft_weight, low=0)
        check_param("temperature", self.temperature, low=0, inclusive=(False, True))
        check_param("soft_trust", self.soft_trust, choices=SOFT_TRUST)
        check_param("query", self.query, choices=("least_confident", "margin", "entropy"))
        if self.k > n_pool:
            raise ValueError(f"K = {self.k} items per cycle is larger than the pool ({n_pool} items)")
        if self.k * self.n_rounds > n_pool:
            raise ValueError(f"the label budget K * n_rounds = {self.k} * {self.n_rounds} = {self.k * self.n_rounds} "
                             f"exceeds the pool ({n_pool} items): lower K or n_rounds")
        return self


def settings_for(n_pool: int, **overrides) -> KDALSettings:
    """Defaults by pool size (our choice): K = 1.5 % of the pool, clipped to [5, 100]; above 20,000 items
    the soft loss runs on 4,096 random pool items per epoch and 10 epochs per cycle (KDD: 395k items)."""
    k = int(min(100, max(5, round(0.015 * n_pool))))
    base = KDALSettings(k=k)
    if n_pool > 20000:
        base = replace(base, soft_samples=4096, epochs=10, epochs0=30, batch_size=64)
    return replace(base, **overrides)


# ----------------------------------------------------------------------------- one run
def _evaluator(X_test, y_test):
    def evaluate(learner):
        s = learner.anomaly_score(X_test)
        out = {"AUROC": auroc(y_test, s), "AUPR": aupr(y_test, s)}
        if learner.history_:
            last = learner.history_[-1]
            out["hard_loss"], out["soft_loss"] = last.get("hard_loss", 0.0), last.get("soft_loss", 0.0)
        trust = getattr(learner, "soft_trust_", None)
        if trust:
            out["soft_trust"] = trust[max(trust)]
        return out
    return evaluate


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return h.hexdigest()[:10]


def _distil_longer(learner: ClassifierLearner, epochs0: int) -> None:
    """Train cycle 0 (the soft-only distillation) for ``epochs0`` epochs, later cycles as configured."""
    check_param("epochs0", epochs0, low=1, integer=True)
    fit, epochs = learner.fit, learner.epochs

    def fit_with_epochs0(idx, labels, cycle=0):
        if cycle != 0:
            return fit(idx, labels, cycle)
        learner.epochs = epochs0
        try:
            return fit(idx, labels, cycle)
        finally:
            learner.epochs = epochs

    learner.fit = fit_with_epochs0


def soft_trust(pool_scores, labelled_idx, labels) -> float:
    """Trust in the detector from the labels gathered so far: ``clip(2 * AUROC - 1, 0, 1)`` of the pool
    scores on the labelled items (1 = ranks them perfectly, 0 = no better than chance or backwards);
    1.0 while the labelled items hold one class only (no evidence against the detector yet). Labelled
    POOL items only: no test item is used."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0 or np.unique(labels).size < 2:
        return 1.0
    a = auroc(labels, np.asarray(pool_scores, dtype=np.float64)[np.asarray(labelled_idx, dtype=np.int64)])
    return float(np.clip(2.0 * a - 1.0, 0.0, 1.0))


def _trust_scaled(learner: ClassifierLearner, pool_scores) -> None:
    """Scale ``learner.soft_weight`` in cycles n >= 1 by :func:`soft_trust` of the labelled items; the
    configured weight is restored after each fit (checkpoint fingerprints stay stable), the factors used
    are kept in ``learner.soft_trust_`` (cycle -> factor)."""
    fit, weight = learner.fit, learner.soft_weight
    learner.soft_trust_ = {}

    def fit_with_trust(idx, labels, cycle=0):
        trust = 1.0 if cycle == 0 else soft_trust(pool_scores, idx, labels)
        learner.soft_trust_[int(cycle)] = trust
        learner.soft_weight = weight * trust
        try:
            return fit(idx, labels, cycle)
        finally:
            learner.soft_weight = weight

    learner.fit = fit_with_trust


def distillation_fidelity(X_pool, pool_scores, epochs_grid: Sequence[int] = (30, 100, 300),
                          settings: KDALSettings | None = None, val_fraction: float = 0.2, seed: int = 0):
    """Label-free choice of the cycle-0 epochs: train the student on the soft labels of ``1 - val_fraction``
    of the POOL and report, for each number of epochs, the Spearman rank correlation between the student's
    ``p(anomaly)`` and the detector's score on the held-out pool items (1 = the detector's ranking is
    reproduced). No label and no test item is used. Returns a DataFrame (epochs, spearman, seconds)."""
    import pandas as pd
    from scipy.stats import spearmanr

    X_pool = check_features(X_pool, "X_pool", min_samples=10)
    scores = np.asarray(pool_scores, dtype=np.float64).ravel()
    s = settings or settings_for(len(X_pool))
    perm = np.random.default_rng(seed).permutation(len(X_pool))
    n_val = max(2, int(round(val_fraction * len(X_pool))))
    va, tr = perm[:n_val], perm[n_val:]
    q = soft_targets_from_scores(scores[tr])
    rows = []
    for ep in epochs_grid:
        t0 = time.perf_counter()
        seed_everything(seed)  # the choice must not depend on the global RNG state
        learner = ClassifierLearner(lambda: mlp_classifier(X_pool.shape[1], tuple(s.hidden)), X_pool[tr], epochs=int(ep),
                                    lr=s.lr, weight_decay=s.weight_decay, select="last", soft_targets=q,
                                    soft_form=s.soft_form, temperature=s.temperature, soft_batch_size=s.soft_batch_size,
                                    soft_samples=s.soft_samples, device=s.device, random_state=seed)
        learner.fit([], [], 0)
        p = learner.predict_proba(X=X_pool[va])[:, 1]
        rows.append({"epochs": int(ep), "spearman": float(spearmanr(p, scores[va]).correlation),
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def choose_epochs0(X_pool, pool_scores, settings: KDALSettings, seed: int = 0) -> int:
    """``settings.epochs0`` when set, else the grid value with the best held-out pool fidelity."""
    if settings.epochs0:
        return int(settings.epochs0)
    table = distillation_fidelity(X_pool, pool_scores, settings.epochs0_grid, settings, seed=seed)
    return int(table.loc[table["spearman"].fillna(-1).idxmax(), "epochs"])


def run_method(method: str, X_pool, y_pool, X_test, y_test, pool_scores, settings: KDALSettings | None = None,
               seed: int = 0, checkpoint_dir=None, verbose: int = 0, learner_hook: Callable | None = None
               ) -> list[CycleRecord]:
    """One active-learning run of ``method`` (see :data:`METHODS`) on one split; returns a
    :class:`CycleRecord` per cycle (metrics on the test split: reported only, never used to choose).

    ``pool_scores``: the detector's pool scores (higher = more anomalous); KDAL turns them into soft
    labels, ASAL-style stratifies them, the others ignore them. ``y_pool`` is only read by the oracle.
    ``learner_hook(learner)`` lets tests wrap the learner."""
    check_param("method", method, choices=METHODS + EXTRA_METHODS)
    X_pool = check_features(X_pool, "X_pool", min_samples=2)
    X_test = check_features(X_test, "X_test")
    y_pool = check_binary_labels(y_pool, name="y_pool", n_samples=len(X_pool), need_both=False)
    if y_pool.sum() == 0:
        raise ValueError("the pool holds no anomaly (all items normal): there is nothing for active learning "
                         "to find and no anomaly class to train; use a data set whose pool contains anomalies")
    if y_pool.sum() == len(y_pool):
        raise ValueError("the pool holds no normal item (all anomalies)")
    y_test = check_binary_labels(y_test, name="y_test", n_samples=len(X_test))
    scores = np.asarray(pool_scores, dtype=np.float64).ravel()
    if scores.size != len(X_pool):
        raise ValueError(f"pool_scores has {scores.size} entries but the pool has {len(X_pool)} items")
    normalizer = ScoreNormalizer(True).fit(scores)  # raises on NaN scores
    s = settings or settings_for(len(X_pool))
    if method == "KDAL-trust":
        method, s = "KDAL", replace(s, soft_trust="labelled_auroc")
    s.check(len(X_pool))
    soft = None
    if method == "KDAL":
        q = normalizer.transform(scores)
        soft = np.stack([1.0 - q, q], axis=1)
    d = X_pool.shape[1]
    learner = ClassifierLearner(
        lambda: mlp_classifier(d, tuple(s.hidden)), X_pool, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
        weight_decay=s.weight_decay, warm_start=s.warm_start, val_fraction=0.0, select="last", balance=s.balance,
        soft_targets=soft, soft_weight=s.soft_weight, soft_form=s.soft_form, temperature=s.temperature,
        soft_batch_size=s.soft_batch_size, soft_samples=s.soft_samples, device=s.device, random_state=seed)
    if method == "KDAL" and s.epochs0 == 0:
        s = replace(s, epochs0=choose_epochs0(X_pool, scores, s, seed))
    if method == "KDAL" and s.epochs0 != s.epochs:
        _distil_longer(learner, s.epochs0)
    if method == "KDAL" and s.soft_trust == "labelled_auroc":
        _trust_scaled(learner, scores)
    if learner_hook is not None:
        learner = learner_hook(learner)
    if method == "KDAL":
        init, n_cycles = None, s.n_rounds + 1
    elif method == "ASAL-style":
        per = int(math.ceil(s.k / s.init_strata))
        order = stratified_top(scores, n_strata=s.init_strata, per_stratum=per)[: s.k]
        init, n_cycles = (lambda rng, order=order: order), s.n_rounds
    else:
        init, n_cycles = (lambda rng: random_init(len(X_pool), s.k, rng)), s.n_rounds
    query = (RandomSampling(random_state=seed) if method == "Random"
             else UncertaintySampling(s.query, random_state=seed))
    # the checkpoint name covers the scores, the test split and every setting: a changed parameter never resumes
    settings_code = [float(b) for b in repr(sorted(asdict(s).items(), key=lambda kv: kv[0])).encode()]
    tag = _digest(scores if method in ("KDAL", "ASAL-style") else [0.0], X_test.ravel()[:1000], settings_code)
    loop = ActiveLoop(learner, Oracle(y_pool), len(X_pool), init=init, query=query,
                      evaluate=_evaluator(X_test, y_test), n_cycles=n_cycles, batch_size=s.k,
                      checkpoint_dir=checkpoint_dir, random_state=seed, verbose=verbose,
                      name=f"{method.replace('-', '_').lower()}_seed{seed}_{tag}")
    return loop.run()


# ----------------------------------------------------------------------------- the comparison
@dataclass
class KDALComparison:
    """Curves of every method and seed, the detector's reference figures and timings."""

    frame: object  # pandas DataFrame: method, seed, cycle, n_labels, n_anomalies, AUROC, AUPR, seconds
    reference: object  # pandas DataFrame: seed, detector, AUROC, AUPR, pool_AUROC, fit_s, n_fit
    settings: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)

    @property
    def detector_name(self) -> str:
        return str(self.reference["detector"].iloc[0])

    def reference_auroc(self, metric: str = "AUROC") -> float:
        return float(self.reference[metric].mean())

    def budget_table(self, metric: str = "AUROC"):
        """Mean ± std of ``metric`` per method (rows) and labels used (columns)."""
        g = self.frame.groupby(["method", "n_labels"], sort=False)[metric].agg(["mean", "std"]).fillna(0.0)
        tab = g.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1).unstack("n_labels")
        return tab.reindex(columns=sorted(tab.columns))

    def mean_curve(self, method: str, metric: str = "AUROC"):
        return self.frame[self.frame["method"] == method].groupby("n_labels")[metric].mean()

    def labels_saved(self, targets: Mapping[str, float], metric: str = "AUROC"):
        """Labels each method needs for its mean curve to reach each target (NaN: never within budget)."""
        import pandas as pd

        return pd.DataFrame({name: labels_to_reach(self.frame, t, metric) for name, t in targets.items()})

    def cycle_seconds(self):
        """Mean seconds per cycle (train + evaluate + query) per method."""
        return self.frame.groupby("method", sort=False)["seconds"].mean()

    def plot(self, metric: str = "AUROC", title: str | None = None, ax=None):
        ref = {f"{self.detector_name} alone": self.reference_auroc(metric)}
        return plot_learning_curves(self.frame, metric, ref, title=title, ax=ax)

    def plot_labels_saved(self, targets: Mapping[str, float], metric: str = "AUROC"):
        from matplotlib.figure import Figure

        table = self.labels_saved(targets, metric)
        budget = float(self.frame["n_labels"].max())
        fig = Figure(figsize=(6, 3.4), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / max(len(table.columns), 1)
        x = np.arange(len(table.index))
        for j, col in enumerate(table.columns):
            vals = table[col].to_numpy(dtype=float)
            shown = np.where(np.isnan(vals), budget * 1.05, vals)
            bars = ax.bar(x + j * width, shown, width, label=col, color=f"C{j}")
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, b.get_height(), "never" if np.isnan(v) else f"{v:.0f}",
                        ha="center", va="bottom", fontsize=7)
                if np.isnan(v):
                    b.set_hatch("//")
                    b.set_alpha(0.4)
        ax.set_xticks(x + width * (len(table.columns) - 1) / 2, table.index, fontsize=8)
        ax.set(ylabel="labels needed (mean curve)", title=f"labels needed to reach a {metric} target")
        ax.legend(fontsize=7)
        return fig

    def wins_over(self, other: str = "Random", method: str = "KDAL", metric: str = "AUROC"):
        """Per shared budget: mean ``metric`` of ``method`` minus that of ``other`` (>= 0: method wins)."""
        a, b = self.mean_curve(method, metric), self.mean_curve(other, metric)
        common = a.index.intersection(b.index)
        return (a[common] - b[common]).rename(f"{method} - {other}")

    def verdict(self, metric: str = "AUROC") -> str:
        """Plain-language reading of the curves (means over seeds; test metrics, reported only)."""
        lines = []
        ref = self.reference_auroc(metric)
        if "KDAL" in set(self.frame["method"]):
            kd = self.mean_curve("KDAL", metric)
            c0 = float(kd.iloc[0])
            lines.append(f"KDAL with no label (cycle 0): {metric} {c0:.3f} vs the {self.detector_name} alone {ref:.3f} "
                         f"({'reaches' if c0 >= ref - 1e-9 else 'below'} the detector, {c0 - ref:+.3f}).")
            for other in [m for m in dict.fromkeys(self.frame["method"]) if m != "KDAL"]:
                diff = self.wins_over(other, "KDAL", metric)
                if len(diff) == 0:
                    continue
                wins = int((diff >= 0).sum())
                lines.append(f"KDAL vs {other}: ahead at {wins}/{len(diff)} budgets; mean gap {diff.mean():+.3f}, "
                             f"at {int(diff.index[0])} labels {diff.iloc[0]:+.3f}, at {int(diff.index[-1])} labels "
                             f"{diff.iloc[-1]:+.3f}.")
        finals = self.frame.groupby("method", sort=False).apply(
            lambda g: g[g["n_labels"] == g["n_labels"].max()][metric].mean())
        lines.append("at the full budget: " + ", ".join(f"{m} {v:.3f}" for m, v in finals.items()) + ".")
        return "\n".join(lines)

    def records(self) -> list[dict]:
        """Per-seed rows for ``save_results``: one per method x seed x cycle, plus the detector's."""
        rows = [{"dataset": self.dataset.get("name"), **r} for r in self.frame.to_dict("records")]
        for r in self.reference.to_dict("records"):
            rows.append({"dataset": self.dataset.get("name"), "method": r["detector"], "seed": r["seed"],
                         "cycle": -1, "n_labels": 0, "AUROC": r["AUROC"], "AUPR": r["AUPR"],
                         "pool_AUROC": r["pool_AUROC"], "seconds": r["fit_s"]})
        return rows


def run_comparison(data="embedded", seeds: Sequence[int] = (0, 1, 2), methods: Sequence[str] = METHODS,
                   detector: str = "auto", settings: KDALSettings | Mapping | None = None, data_dir=None,
                   test_size: float = 0.2, max_samples: int = 10000, nu: float = 0.1, gamma="scale",
                   n_components: int = 300, checkpoint_dir=None, verbose: int = 0, task_loader=None
                   ) -> KDALComparison:
    """Every method on the same splits (one split per seed: ``load_kdal_task(random_state=seed)``), the
    detector fitted on each seed's pool (never on test) and shown as a reference line."""
    import pandas as pd

    for m in methods:
        check_param("method", m, choices=METHODS + EXTRA_METHODS)
    if len(seeds) == 0:
        raise ValueError("need at least one seed")
    load = task_loader or (lambda seed: load_kdal_task(data, data_dir=data_dir, test_size=test_size,
                                                       random_state=seed))
    runs: dict[str, list] = {m: [] for m in methods}
    refs, info, used = [], {}, None
    for seed in progress(list(seeds), verbose, desc="seeds"):
        task = load(seed)
        X_pool, y_pool = task.X_train, task.y_train
        if y_pool is None:
            raise ValueError("the task has no pool labels (y_train): use load_kdal_task, not a one-class protocol")
        if isinstance(settings, KDALSettings):
            used = settings
        else:
            used = settings_for(len(X_pool), **dict(settings or {}))
        used.check(len(X_pool))
        det, det_name = make_detector(detector, len(X_pool), max_samples=max_samples, nu=nu, gamma=gamma,
                                      n_components=n_components, random_state=seed)
        t0 = time.perf_counter()
        det.fit(X_pool)
        pool_scores = detector_scores(det, X_pool)
        fit_s = time.perf_counter() - t0
        test_scores = detector_scores(det, task.X_test)
        t1 = time.perf_counter()
        kdal_like = {"KDAL", "KDAL-trust"} & set(methods)
        seed_settings = replace(used, epochs0=choose_epochs0(X_pool, pool_scores, used, seed)) if kdal_like else used
        tune_s = time.perf_counter() - t1
        refs.append({"seed": seed, "detector": "OCSVM" if det_name == "ocsvm" else
                     {"ocsvm_nystroem": "OCSVM-Nystroem", "iforest": "IsolationForest", "pca": "PCA"}[det_name],
                     "AUROC": auroc(task.y_test, test_scores), "AUPR": aupr(task.y_test, test_scores),
                     "pool_AUROC": auroc(y_pool, pool_scores), "fit_s": fit_s,
                     "n_fit": int(min(len(X_pool), max_samples)) if det_name == "ocsvm" else len(X_pool),
                     "epochs0": seed_settings.epochs0, "epochs0_tune_s": tune_s})
        log(f"seed {seed}: {refs[-1]['detector']} test AUROC {refs[-1]['AUROC']:.4f} ({fit_s:.1f}s)", verbose, 2)
        info = {"name": task.name, "n_pool": len(X_pool), "pool_anomalies": int(y_pool.sum()),
                "n_test": len(task.X_test), "test_anomalies": int(task.y_test.sum()), "d": task.n_features}
        for m in methods:
            recs = run_method(m, X_pool, y_pool, task.X_test, task.y_test, pool_scores, seed_settings, seed=seed,
                              checkpoint_dir=checkpoint_dir, verbose=0)
            runs[m].append(recs)
            log(f"seed {seed} {m}: AUROC " + " ".join(f"{r.metrics['AUROC']:.3f}" for r in recs), verbose, 2)
    frame = curve_frame(runs)
    # curve_frame numbers seeds 0..n-1 per method: put the real seed and the cycle time back
    seconds = [r.seconds for m in methods for recs in runs[m] for r in recs]
    real_seed = [s for m in methods for s, recs in zip(seeds, runs[m]) for _ in recs]
    frame["seed"], frame["seconds"] = real_seed, seconds
    return KDALComparison(frame, pd.DataFrame(refs), settings=asdict(used), dataset=info)
