"""OC-NN: one-class neural network (Chalapathy, Menon & Chawla, "Anomaly Detection using One-Class
Neural Networks", arXiv:1802.06360, 2018), written from the paper's equations.

One hidden layer: ``ŷ(x) = <w, g(V x)>`` with ``g`` = sigmoid (or linear). The parameters minimise
(paper Eq. 2)

    1/2 ||w||² + 1/2 ||V||_F² + 1/ν · mean_i max(0, r − ŷ(x_i)) − r

by alternating minimisation (paper Eq. 4 and its theorem): with ``r`` fixed, one epoch of Adam on
mini-batches over ``w, V``; then ``r`` ← the ν-quantile of ``{ŷ(x_i)}`` on the training data, which
minimises Eq. 2 over ``r`` for fixed ``w, V``. ``r`` starts as the ν-quantile at initialisation.
Anomaly score (higher = more anomalous, the package convention): ``r − ŷ(x)`` (paper's decision
``S = ŷ − r < 0`` ⇒ anomaly), so about a share ν of the training data scores above 0.

Like the OC-SVM it is derived from (Schölkopf et al.), OC-NN separates the data from the *origin*
of its feature space: points whose features lie towards the origin score high. There is no hidden
bias (Eq. 2 has none): with a bias, the constant network ``V = 0``, ``g(b) → 1`` minimises Eq. 2
for any data (tried: AUROC ≈ 0.5); and the bias-free sigmoid net has ``ŷ(x) + ŷ(−x) = 2 ŷ(0)``, so
on centred inputs it cannot score the centre of the data above both sides (hence the uncentred
PCA below: digits CUR AUROC 0.76 against 0.62 with centred PCA scores).

Input: the paper feeds the encoder of a pretrained autoencoder. Here ``features="pca"`` (default)
projects onto the first ``n_components`` principal axes of a scikit-learn PCA fitted on the
training data, *without* subtracting the mean (``X @ components_.T``), so the origin stays the
origin of the input (e.g. a blank image) instead of the training mean; ``features="raw"`` uses the
flattened input as is. Images ``(N, C, H, W)`` are flattened. Default ``lr = 1e-3``, not the paper's
1e-4: with 1e-4 the network barely moves in 50 epochs of a few mini-batches on small data (digits
CUR AUROC 0.59 against 0.76; a synthetic blob scored upside down).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .base import DetectorMixin
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_features, check_param

__all__ = ["OCNNNet", "OCNNDetector"]


class OCNNNet(nn.Module):
    """``ŷ(x) = <w, g(V x)>``: V (hidden × d) and w (hidden), no bias terms (paper Eq. 2)."""

    def __init__(self, n_features: int, hidden: int = 32, activation: str = "sigmoid"):
        super().__init__()
        self.V = nn.Linear(n_features, hidden, bias=False)
        self.w = nn.Linear(hidden, 1, bias=False)
        self.activation = activation

    def forward(self, x):
        h = self.V(x)
        if self.activation == "sigmoid":
            h = torch.sigmoid(h)
        return self.w(h).squeeze(1)

    def penalty(self) -> torch.Tensor:
        """1/2 ||w||² + 1/2 ||V||_F²."""
        return 0.5 * (self.w.weight.pow(2).sum() + self.V.weight.pow(2).sum())


class OCNNDetector(DetectorMixin):
    """OC-NN with the PyOD-style API: ``fit(X)`` on normal data ``(N, d)`` or images ``(N, C, H, W)``;
    ``decision_function(X)`` = ``r_ − ŷ(x)``. Fitted: ``r_``, ``history_`` (per-epoch ``objective``
    = Eq. 2 on all training data after the r update, ``r``, ``epoch_seconds``), ``pca_`` (or None),
    ``decision_scores_``, ``threshold_`` (``contamination``)."""

    def __init__(self, hidden: int = 32, nu: float = 0.1, epochs: int = 50, lr: float = 1e-3, batch_size: int = 128,
                 activation: str = "sigmoid", features: str = "pca", n_components: int = 32,
                 contamination: float = 0.1, device: str = "auto", random_state: int = 0, verbose: int = 0):
        self.hidden, self.nu, self.epochs, self.lr, self.batch_size = hidden, nu, epochs, lr, batch_size
        self.activation, self.features, self.n_components = activation, features, n_components
        self.contamination, self.device, self.random_state, self.verbose = contamination, device, random_state, verbose

    # -- checks -------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_param("hidden", self.hidden, low=1, integer=True)
        check_param("nu", self.nu, low=0, high=1, inclusive=(False, True))
        check_param("epochs", self.epochs, low=1, integer=True)
        check_param("lr", self.lr, low=0, inclusive=(False, True))
        check_param("batch_size", self.batch_size, low=1, integer=True)
        check_param("activation", self.activation, choices=("sigmoid", "linear"))
        check_param("features", self.features, choices=("pca", "raw"))
        check_param("n_components", self.n_components, low=1, integer=True)
        check_param("contamination", self.contamination, low=0, high=0.5, inclusive=(False, True))
        check_param("verbose", self.verbose, choices=(0, 1, 2))

    @staticmethod
    def _flatten(X, name: str = "X") -> np.ndarray:
        ndim = np.ndim(X)
        if ndim not in (2, 4):
            raise ValueError(f"{name} must be 2-D (n, d) or 4-D images (n, C, H, W), got shape {np.shape(X)}")
        X = check_features(X, name, ndim=ndim)
        return X.reshape(len(X), -1)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.pca_ is None:
            return X
        return (X @ self.pca_.components_.T).astype(np.float32)

    # -- fit ----------------------------------------------------------------------------------
    def _outputs(self, Z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.model_(Z[i:i + 4096].to(self.device_)).cpu() for i in range(0, len(Z), 4096)])

    def _objective(self, y_hat: torch.Tensor, r: float) -> float:
        """Eq. 2 on all training outputs ``y_hat`` for the current w, V and r."""
        with torch.no_grad():
            hinge = torch.clamp(r - y_hat, min=0).mean()
            return float(self.model_.penalty().cpu() + hinge / self.nu - r)

    def fit(self, X, y=None):
        """Train on normal data ``X`` (``y`` is ignored)."""
        self._check_params()
        X = self._flatten(X)
        if len(X) < 2:
            raise ValueError(f"X is too small: {len(X)} sample(s), OC-NN needs at least 2")
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.n_features_in_ = X.shape[1]
        self.pca_ = None
        if self.features == "pca":
            from sklearn.decomposition import PCA

            k = min(self.n_components, X.shape[0], X.shape[1])
            self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(X)
        Z = torch.from_numpy(self._transform(X))
        n = len(Z)
        self.model_ = OCNNNet(Z.shape[1], self.hidden, self.activation).to(self.device_)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        self.r_ = float(torch.quantile(self._outputs(Z).double(), self.nu))
        self.history_ = {"objective": [], "r": [], "epoch_seconds": []}
        self.initial_objective_ = self._objective(self._outputs(Z), self.r_)
        for epoch in progress(range(self.epochs), self.verbose, desc="OC-NN", unit="epoch"):
            t0 = time.perf_counter()
            self.model_.train()
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, self.batch_size):
                zb = Z[order[i:i + self.batch_size]].to(self.device_)
                hinge = torch.clamp(self.r_ - self.model_(zb), min=0).mean()
                loss = self.model_.penalty() + hinge / self.nu - self.r_
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            y_hat = self._outputs(Z)
            self.r_ = float(torch.quantile(y_hat.double(), self.nu))  # r-step: the nu-quantile minimises Eq. 2 in r
            obj = self._objective(y_hat, self.r_)
            if not np.isfinite(obj):
                raise FloatingPointError(f"OC-NN objective became {obj} at epoch {epoch}: lower lr or scale X")
            self.history_["objective"].append(obj)
            self.history_["r"].append(self.r_)
            self.history_["epoch_seconds"].append(time.perf_counter() - t0)
            log(f"OC-NN epoch {epoch + 1}/{self.epochs} objective {obj:.5f} r {self.r_:.5f}", self.verbose)
        self.model_.eval()
        self._set_threshold(self.r_ - self._outputs(Z).double().numpy())
        return self

    # -- scoring ------------------------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """Anomaly score ``r − <w, g(V x)>``; > 0 outside the learned region (higher = more anomalous)."""
        if not hasattr(self, "model_"):
            raise RuntimeError("OCNNDetector is not fitted: call fit(X) first")
        X = self._flatten(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the detector was fitted on {self.n_features_in_}")
        self.model_.eval()
        y_hat = self._outputs(torch.from_numpy(self._transform(X)))
        return self.r_ - y_hat.double().numpy()
