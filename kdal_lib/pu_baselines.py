"""Deep PU / semi-supervised baselines for AngularDINO: Deep SAD and PU-SVDD.

* **Deep SAD** (Ruff et al., ICLR 2020, Eq. 4): distance ``d(x) = ‖φ(x) − c‖²`` to a centre;
  unlabelled samples minimise ``d``, labelled anomalies minimise ``η (d + ε)^{-1}``.
* **PU-SVDD** (Takahashi et al., arXiv 2405.18929; research notes §3.4): with anomaly prior ``α``,
  ``R⁺ = α mean_P ℓ⁺``, ``R⁻ = mean_U ℓ⁻ − α mean_P ℓ⁻``, loss ``R⁺ + |R⁻|`` with ``ℓ⁻ = s²``
  and ``ℓ⁺ = 1/s²`` where ``s = ‖φ(x) − c‖``.

Both use a bias-free CNN encoder as Deep SVDD (LeNet type, BatchNorm without affine parameters),
an optional autoencoder pretraining, and the centre ``c`` = mean encoding of the training data with
``|c_i| < 0.1`` pushed to ±0.1. Score: ``d(x)`` (higher = more anomalous; Takahashi's
``1 − e^{−s}`` ranks the same way).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import DetectorMixin
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_features, check_param

__all__ = ["SVDDEncoder", "DeepSAD", "deepsad_loss", "pusvdd_loss"]


class SVDDEncoder(nn.Module):
    """Bias-free LeNet-type encoder (Deep SVDD): no bias terms and no affine BatchNorm, so the
    trivial "all samples on c" solution is not reachable by a constant output."""

    def __init__(self, in_channels: int = 1, rep_dim: int = 32, width: int = 8):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(w, eps=1e-4, affine=False)
        self.conv2 = nn.Conv2d(w, 2 * w, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w, eps=1e-4, affine=False)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(2 * w * 16, rep_dim, bias=False)

    def forward(self, x):
        x = F.max_pool2d(F.leaky_relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.leaky_relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.pool(x).flatten(1))


class _Decoder(nn.Module):
    def __init__(self, out_channels: int, size: int, rep_dim: int):
        super().__init__()
        self.size, self.out_channels = size, out_channels
        self.net = nn.Sequential(nn.Linear(rep_dim, 128, bias=False), nn.LeakyReLU(),
                                 nn.Linear(128, out_channels * size * size, bias=False))

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, self.out_channels, self.size, self.size)


def deepsad_loss(dist: torch.Tensor, s: torch.Tensor, eta: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Deep SAD (Eq. 4): mean of ``d`` over unlabelled and ``η (d + ε)^{-1}`` over labelled anomalies."""
    per = torch.where(s == 1, eta / (dist + eps), dist)
    return per.mean()


def pusvdd_loss(dist: torch.Tensor, s: torch.Tensor, alpha: float = 0.1, eps: float = 1e-6) -> torch.Tensor:
    """PU-SVDD: ``R⁺ + |R⁻|`` with ``R⁺ = α mean_P 1/d`` and ``R⁻ = mean_U d − α mean_P d``."""
    u, p = s == 0, s == 1
    zero = dist.new_zeros(())
    mean_u = dist[u].mean() if u.any() else zero
    r_pos = alpha * (1.0 / (dist[p] + eps)).mean() if p.any() else zero
    r_neg = mean_u - (alpha * dist[p].mean() if p.any() else zero)
    return r_pos + r_neg.abs()


class DeepSAD(DetectorMixin):
    """Deep SAD (``loss="deepsad"``) or PU-SVDD (``loss="pusvdd"``) on images ``X`` (N×C×H×W) with PU
    labels ``s`` (1 = labelled anomaly). Defaults are CPU-sized (Takahashi: Adam 1e-4, wd 1e-3,
    100 epochs, batch 128, AE pretraining)."""

    def __init__(self, loss: str = "deepsad", rep_dim: int = 32, width: int = 8, eta: float = 1.0, alpha: float = 0.1,
                 epochs: int = 30, pretrain_epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 1e-5, contamination: float = 0.05, device: str = "auto", random_state: int = 0,
                 verbose: int = 0):
        self.loss, self.rep_dim, self.width, self.eta, self.alpha = loss, rep_dim, width, eta, alpha
        self.epochs, self.pretrain_epochs, self.batch_size, self.lr = epochs, pretrain_epochs, batch_size, lr
        self.weight_decay, self.contamination, self.device = weight_decay, contamination, device
        self.random_state, self.verbose = random_state, verbose

    def fit(self, X, s=None):
        check_param("loss", self.loss, choices=("deepsad", "pusvdd"))
        check_param("epochs", self.epochs, low=1, integer=True)
        check_param("pretrain_epochs", self.pretrain_epochs, low=0, integer=True)
        X = check_features(X, "X", ndim=4, min_samples=2)
        s = np.zeros(len(X), dtype=np.int64) if s is None else np.asarray(s).astype(np.int64).ravel()
        if s.shape[0] != len(X):
            raise ValueError(f"s has {s.shape[0]} labels but X has {len(X)} samples")
        if self.loss == "pusvdd" and not (s == 1).any():
            raise ValueError("PU-SVDD needs labelled positives (s == 1)")
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.encoder_ = SVDDEncoder(X.shape[1], self.rep_dim, self.width).to(self.device_)
        Xt, st = torch.from_numpy(X), torch.from_numpy(s)
        n, bs = len(X), min(self.batch_size, len(X))
        self.history_ = {"pretrain_loss": [], "loss": []}
        if self.pretrain_epochs:
            dec = _Decoder(X.shape[1], X.shape[-1], self.rep_dim).to(self.device_)
            opt = torch.optim.Adam(list(self.encoder_.parameters()) + list(dec.parameters()), lr=self.lr,
                                   weight_decay=self.weight_decay)
            u_idx = torch.from_numpy(np.flatnonzero(s == 0))
            for _ in range(self.pretrain_epochs):
                order = u_idx[torch.randperm(len(u_idx), generator=gen)]
                tot = 0.0
                for i in range(0, len(order), bs):
                    xb = Xt[order[i:i + bs]].to(self.device_)
                    loss = F.mse_loss(dec(self.encoder_(xb)), xb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach()) * len(xb)
                self.history_["pretrain_loss"].append(tot / max(len(order), 1))
        with torch.no_grad():
            self.encoder_.eval()
            z = torch.cat([self.encoder_(Xt[i:i + 512].to(self.device_)) for i in range(0, n, 512)])
            c = z[st.to(self.device_) == 0].mean(0)
            c[(c.abs() < 0.1) & (c < 0)] = -0.1
            c[(c.abs() < 0.1) & (c >= 0)] = 0.1
            self.center_ = c
        opt = torch.optim.Adam(self.encoder_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for epoch in progress(range(self.epochs), self.verbose, desc=self.loss, unit="epoch"):
            self.encoder_.train()
            order = torch.randperm(n, generator=gen)
            tot = 0.0
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                if len(idx) < 2:
                    continue
                xb, sb = Xt[idx].to(self.device_), st[idx].to(self.device_)
                dist = ((self.encoder_(xb) - self.center_) ** 2).sum(1)
                loss = (deepsad_loss(dist, sb, self.eta) if self.loss == "deepsad"
                        else pusvdd_loss(dist, sb, self.alpha))
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(idx)
            self.history_["loss"].append(tot / n)
            log(f"{self.loss} epoch {epoch + 1}: loss {self.history_['loss'][-1]:.4f}", self.verbose)
            if not np.isfinite(self.history_["loss"][-1]):
                raise FloatingPointError(f"{self.loss}: loss became {self.history_['loss'][-1]}; lower lr")
        self.encoder_.eval()
        self.n_features_in_ = tuple(X.shape[1:])
        self._set_threshold(self.decision_function(X))
        return self

    @torch.no_grad()
    def decision_function(self, X) -> np.ndarray:
        """``‖φ(x) − c‖²``, higher = more anomalous."""
        if not hasattr(self, "encoder_"):
            raise RuntimeError("DeepSAD is not fitted: call fit(X, s) first")
        X = check_features(X, "X", ndim=4)
        self.encoder_.eval()
        out = [((self.encoder_(torch.from_numpy(X[i:i + 512]).to(self.device_)) - self.center_) ** 2).sum(1).cpu()
               for i in range(0, len(X), 512)]
        return torch.cat(out).numpy().astype(np.float64)
