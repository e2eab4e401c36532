"""Strong simple baselines with the same PyOD-style API (higher score = more anomalous).

Every comparison in the collection includes these, even where they beat the paper's method.
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM

from .base import DetectorMixin
from .validation import check_features, check_param

__all__ = ["OCSVMDetector", "IsolationForestDetector", "PCADetector", "make_baseline", "BASELINES"]


class _SklearnDetector(DetectorMixin):
    def _fit_model(self, X: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def _raw_score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y=None):
        X = check_features(X, "X", min_samples=2).astype(np.float64)
        self.n_features_in_ = X.shape[1]
        self.model_ = self._fit_model(X)
        self._set_threshold(self._raw_score(X))
        return self

    def decision_function(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X) first")
        X = check_features(X, "X").astype(np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the detector was fitted on {self.n_features_in_}")
        return self._raw_score(X)


class OCSVMDetector(_SklearnDetector):
    """scikit-learn OneClassSVM (RBF); score = −decision_function. ``max_samples`` caps the fit set
    (kernel SVMs are O(n²)): a seeded random subsample is used above it."""

    def __init__(self, kernel: str = "rbf", nu: float = 0.1, gamma="scale", max_samples: int | None = 20000,
                 contamination: float = 0.1, random_state: int = 0):
        self.kernel, self.nu, self.gamma, self.max_samples = kernel, nu, gamma, max_samples
        self.contamination, self.random_state = contamination, random_state

    def _fit_model(self, X):
        check_param("nu", self.nu, low=0, high=1, inclusive=(False, True))
        if self.max_samples is not None and X.shape[0] > self.max_samples:
            idx = np.random.default_rng(self.random_state).choice(X.shape[0], self.max_samples, replace=False)
            X = X[idx]
        return OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma).fit(X)

    def _raw_score(self, X):
        return -self.model_.decision_function(X)


class IsolationForestDetector(_SklearnDetector):
    """scikit-learn IsolationForest; score = −score_samples (higher = more anomalous)."""

    def __init__(self, n_estimators: int = 100, max_samples="auto", contamination: float = 0.1, random_state: int = 0,
                 n_jobs: int | None = None):
        self.n_estimators, self.max_samples, self.n_jobs = n_estimators, max_samples, n_jobs
        self.contamination, self.random_state = contamination, random_state

    def _fit_model(self, X):
        return IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                               random_state=self.random_state, n_jobs=self.n_jobs).fit(X)

    def _raw_score(self, X):
        return -self.model_.score_samples(X)


class PCADetector(_SklearnDetector):
    """PCA reconstruction error: keep the components explaining ``n_components`` of the variance
    (a float) or that many components (an int); score = squared distance to the subspace."""

    def __init__(self, n_components=0.9, contamination: float = 0.1, random_state: int = 0):
        self.n_components, self.contamination, self.random_state = n_components, contamination, random_state

    def _fit_model(self, X):
        n = self.n_components
        if isinstance(n, int):
            n = min(n, X.shape[1] - 1, X.shape[0] - 1) or 1
        return PCA(n_components=n, svd_solver="full", random_state=self.random_state).fit(X)

    def _raw_score(self, X):
        recon = self.model_.inverse_transform(self.model_.transform(X))
        return ((X - recon) ** 2).sum(1)


BASELINES = {"OCSVM": OCSVMDetector, "IsolationForest": IsolationForestDetector, "PCA": PCADetector}


def make_baseline(name: str, random_state: int = 0, **kwargs):
    """``"OCSVM"``, ``"IsolationForest"`` or ``"PCA"`` with their defaults."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[name](random_state=random_state, **kwargs)
