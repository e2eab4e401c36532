"""PyOD-style detector base classes and the one training loop every deep detector uses.

API (as PyOD/DeepOD): ``fit(X, y=None)``; ``decision_function(X)`` where higher = more
anomalous; ``predict(X)`` thresholds at the ``contamination`` percentile of the training
scores; after ``fit``: ``decision_scores_``, ``threshold_``, ``labels_``, ``history_``.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import checkpoint_matches, load_checkpoint, read_metadata, save_checkpoint
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_features, check_param

__all__ = ["DetectorMixin", "BaseDeepDetector", "load_or_fit"]


class DetectorMixin:
    """Thresholding and parameter plumbing shared by deep and scikit-learn based detectors."""

    contamination: float

    @classmethod
    def _param_names(cls) -> list[str]:
        names = []
        for klass in cls.__mro__:
            if "__init__" in klass.__dict__:
                sig = inspect.signature(klass.__init__)
                names += [p for p in sig.parameters if p != "self" and sig.parameters[p].kind not in
                          (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
                break
        return names

    def get_params(self) -> dict:
        """Constructor arguments (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"{type(self).__name__} has no parameter {k!r}; valid: {self._param_names()}")
            setattr(self, k, v)
        return self

    def _set_threshold(self, train_scores: np.ndarray) -> None:
        check_param("contamination", self.contamination, low=0, high=0.5, inclusive=(False, True))
        self.decision_scores_ = np.asarray(train_scores, dtype=np.float64)
        self.threshold_ = float(np.percentile(self.decision_scores_, 100 * (1 - self.contamination)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)

    def predict(self, X) -> np.ndarray:
        """1 = anomaly where the score exceeds ``threshold_`` (set from ``contamination`` at fit)."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X) first")
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).labels_


class BaseDeepDetector(DetectorMixin):
    """Base of the torch detectors. Subclasses implement ``_build(n_features)`` (returns the
    nn.Module), ``_loss(batch) -> (loss, parts dict)``, and ``_score(batch) -> tensor``;
    optionally ``_after_fit(X)`` (e.g. GOAD's centres) and ``_extra_state()`` /
    ``_load_extra_state(state)`` for tensors that are not module parameters.

    ``checkpoint_dir`` makes training resumable: the state after every completed epoch is saved
    there, and a later ``fit`` with the same parameters and data resumes after the last epoch.
    ``validation_fraction`` holds out part of the (normal) training data to draw a validation
    loss curve; it is never used to look at anomaly labels.
    """

    #: dimensions of one input array: 2 for tabular (N, d), 4 for images (N, C, H, W)
    input_ndim = 2

    def __init__(self, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 contamination: float = 0.1, validation_fraction: float = 0.0, device: str = "auto",
                 random_state: int = 0, verbose: int = 0, checkpoint_dir: str | None = None):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir

    # -- hooks --------------------------------------------------------------------------------
    def _build(self, n_features: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(self, xb: torch.Tensor) -> tuple[torch.Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, xb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _make_scheduler(self):
        """An LR scheduler stepped once per epoch, or None."""
        return None

    def _on_epoch_start(self, epoch: int) -> None:
        pass

    def _after_fit(self, X: torch.Tensor) -> None:
        pass

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    # -- checks -------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_param("epochs", self.epochs, low=1, integer=True)
        check_param("batch_size", self.batch_size, low=1, integer=True)
        check_param("lr", self.lr, low=0, inclusive=(False, True))
        check_param("validation_fraction", self.validation_fraction, low=0, high=0.9)
        check_param("verbose", self.verbose, choices=(0, 1, 2))

    def _fingerprint(self, X: np.ndarray) -> dict:
        """What a checkpoint must match to be reused: parameters (minus run-time knobs) and data."""
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "device", "checkpoint_dir")}
        stride = max(1, X.shape[0] // 1000)
        probe = X[::stride]
        return {"class": type(self).__name__, "params": params, "n_samples": int(X.shape[0]),
                "n_features": int(X.shape[1]), "data_probe": round(float(np.float64(probe).sum()), 4)}

    # -- fit / score --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on ``X`` (normal data, or unlabelled data with few anomalies). ``y`` is ignored."""
        self._check_params()
        X = check_features(X, "X", ndim=self.input_ndim, min_samples=2)
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        n = X.shape[0]
        perm = torch.randperm(n, generator=gen).numpy()
        n_val = int(round(self.validation_fraction * n))
        X_fit, X_val = X[perm[n_val:]], X[perm[:n_val]]
        if X_fit.shape[0] < 1:
            raise ValueError("validation_fraction leaves no training samples")

        self.n_features_in_ = X.shape[1]
        self.model_ = self._build(self.n_features_in_).to(self.device_)
        self.optimizer_ = self._make_optimizer()
        self.scheduler_ = self._make_scheduler()
        self.history_ = {"loss": [], "val_loss": [], "epoch_seconds": []}
        start_epoch = 0

        ckpt = Path(self.checkpoint_dir) / "last.pt" if self.checkpoint_dir else None
        fingerprint = self._fingerprint(X)
        self.fingerprint_ = fingerprint
        if ckpt is not None and checkpoint_matches(ckpt, fingerprint):
            state = load_checkpoint(ckpt, map_location=self.device_)
            self.model_.load_state_dict(state["model"])
            self.optimizer_.load_state_dict(state["optimizer"])
            if self.scheduler_ is not None and "scheduler" in state:
                self.scheduler_.load_state_dict(state["scheduler"])
            self._load_extra_state(state.get("extra", {}))
            self.history_ = {k: list(v) for k, v in state["history"].items()}
            gen.set_state(state["generator"])
            start_epoch = int(state["epoch"]) + 1
            log(f"resuming from {ckpt} after epoch {start_epoch}", self.verbose, level=1)

        Xt = torch.from_numpy(X_fit)
        Xv = torch.from_numpy(X_val) if n_val else None
        bar = progress(range(start_epoch, self.epochs), self.verbose, desc=type(self).__name__, unit="epoch",
                       initial=start_epoch, total=self.epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            self.model_.train()
            self.epoch_ = epoch
            self._on_epoch_start(epoch)
            order = torch.randperm(Xt.shape[0], generator=gen)
            total, count = 0.0, 0
            for i in range(0, Xt.shape[0], self.batch_size):
                xb = Xt[order[i:i + self.batch_size]].to(self.device_)
                loss, _ = self._loss(xb)
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
                total += float(loss.detach()) * xb.shape[0]
                count += xb.shape[0]
            train_loss = total / count
            if not np.isfinite(train_loss):
                raise FloatingPointError(f"{type(self).__name__}: training loss became {train_loss} at epoch {epoch}; "
                                         "lower lr or check input scaling")
            if self.scheduler_ is not None:
                self.scheduler_.step()
            self.history_["loss"].append(train_loss)
            self.history_["val_loss"].append(self._eval_loss(Xv) if Xv is not None else float("nan"))
            self.history_["epoch_seconds"].append(time.perf_counter() - t0)
            if self.verbose == 1 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{train_loss:.4f}")
            log(f"epoch {epoch + 1}/{self.epochs} loss {train_loss:.5f} val {self.history_['val_loss'][-1]:.5f}",
                self.verbose)
            if ckpt is not None:
                sched = {"scheduler": self.scheduler_.state_dict()} if self.scheduler_ is not None else {}
                save_checkpoint(ckpt, {"model": self.model_.state_dict(), "optimizer": self.optimizer_.state_dict(),
                                       **sched, "extra": self._extra_state(), "history": self.history_,
                                       "generator": gen.get_state(), "epoch": epoch},
                                {"fingerprint": fingerprint, "params": self.get_params(), "epoch": epoch})
        self.model_.eval()
        self._after_fit(torch.from_numpy(X_fit))
        self._set_threshold(self.decision_function(X))
        return self

    @torch.no_grad()
    def _eval_loss(self, X: torch.Tensor) -> float:
        self.model_.eval()
        total = 0.0
        for i in range(0, X.shape[0], max(self.batch_size, 256)):
            xb = X[i:i + max(self.batch_size, 256)].to(self.device_)
            total += float(self._loss(xb)[0]) * xb.shape[0]
        return total / X.shape[0]

    @torch.no_grad()
    def decision_function(self, X, batch_size: int = 1024) -> np.ndarray:
        """Anomaly score per row; higher = more anomalous."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X) first")
        X = check_features(X, "X", ndim=self.input_ndim)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the detector was fitted on {self.n_features_in_}")
        self.model_.eval()
        out = [self._score(torch.from_numpy(X[i:i + batch_size]).to(self.device_)).cpu()
               for i in range(0, X.shape[0], batch_size)]
        return torch.cat(out).numpy().astype(np.float64)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save the fitted detector (weights, extra state, threshold, history) and its parameters."""
        if not hasattr(self, "model_"):
            raise RuntimeError("nothing to save: the detector is not fitted")
        state = {"model": self.model_.state_dict(), "extra": self._extra_state(), "history": self.history_,
                 "decision_scores": torch.from_numpy(self.decision_scores_), "threshold": self.threshold_,
                 "n_features": self.n_features_in_}
        return save_checkpoint(path, state, {"class": type(self).__name__, "params": self.get_params(),
                                             "fingerprint": getattr(self, "fingerprint_", None)})

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Rebuild a detector saved with :meth:`save` (``torch.load(weights_only=True)``)."""
        meta = read_metadata(path)
        if meta is None:
            raise FileNotFoundError(f"no complete checkpoint at {str(path)!r} (the file or its .json sidecar is missing)")
        if meta.get("class") != cls.__name__:
            raise ValueError(f"checkpoint {str(path)!r} holds a {meta.get('class')}, not a {cls.__name__}")
        params = dict(meta["params"])
        params["device"] = device
        det = cls(**params)
        det.device_ = resolve_device(device)
        state = load_checkpoint(path, map_location=det.device_)
        det.n_features_in_ = int(state["n_features"])
        det._load_extra_state(state["extra"])  # before _build: the network may depend on it
        det.model_ = det._build(det.n_features_in_).to(det.device_)
        det.model_.load_state_dict(state["model"])
        det.model_.eval()
        det.history_ = state["history"]
        det.decision_scores_ = state["decision_scores"].numpy()
        det.threshold_ = float(state["threshold"])
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        return det


def load_or_fit(detector: BaseDeepDetector, X, path: str | Path | None):
    """uvadlc-style load-or-train: reuse the model saved at ``path`` when it was trained with the
    same parameters on data of the same shape; otherwise fit and save it. ``path=None`` just fits."""
    if path is None:
        return detector.fit(X)
    X = check_features(X, "X", ndim=detector.input_ndim)
    if checkpoint_matches(path, detector._fingerprint(X)):
        loaded = type(detector).load(path, device=detector.device)
        loaded.verbose = detector.verbose
        log(f"loaded trained {type(detector).__name__} from {path}", detector.verbose, level=1)
        return loaded
    detector.fit(X)
    detector.save(path)
    return detector
