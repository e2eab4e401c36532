"""Deep SVDD (Ruff et al., "Deep One-Class Classification", ICML 2018), one-class variant, for images.

A bias-free convolutional network φ maps images to ``rep_dim`` features; the centre ``c`` is the
mean of φ over the training data at initialisation (before any update), with coordinates closer
than ``eps`` to 0 pushed to ±eps (as the authors' code, to avoid the trivial solution); the loss is
``mean ||φ(x) − c||²`` (Ruff Eq. 4) plus weight decay; the anomaly score is ``||φ(x) − c||²``.
Bias terms and bounded activations are left out because they allow the collapse φ ≡ c (Ruff §3.3).
Differences from the paper: no autoencoder pre-training, no BatchNorm (it has a bias-like shift),
a few epochs of Adam for CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import BaseDeepDetector
from .validation import check_features, check_param

__all__ = ["DeepSVDDNet", "DeepSVDDDetector"]


class DeepSVDDNet(nn.Module):
    """Bias-free LeNet-style net: conv(5×5)-LeakyReLU-pool twice (once for ≤ 8 px images), then a
    bias-free linear layer to ``rep_dim``."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, rep_dim: int = 32, width: int = 8):
        super().__init__()
        n_pool = 1 if image_size <= 8 else 2
        layers, ch, s = [], in_channels, image_size
        for i in range(n_pool):
            out = width * (2 ** i)
            layers += [nn.Conv2d(ch, out, 5, padding=2, bias=False), nn.LeakyReLU(0.1), nn.MaxPool2d(2)]
            ch, s = out, s // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(ch * s * s, rep_dim, bias=False)

    def forward(self, x):
        return self.fc(self.features(x))


class DeepSVDDDetector(BaseDeepDetector):
    """One-class Deep SVDD on images ``(N, C, H, W)``; PyOD-style API of :class:`BaseDeepDetector`."""

    input_ndim = 4

    def __init__(self, rep_dim: int = 32, width: int = 8, epochs: int = 20, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 1e-6, centre_eps: float = 0.1, contamination: float = 0.1,
                 validation_fraction: float = 0.0, device: str = "auto", random_state: int = 0, verbose: int = 0,
                 checkpoint_dir: str | None = None):
        super().__init__(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         contamination=contamination, validation_fraction=validation_fraction, device=device,
                         random_state=random_state, verbose=verbose, checkpoint_dir=checkpoint_dir)
        self.rep_dim, self.width, self.centre_eps = rep_dim, width, centre_eps

    def fit(self, X, y=None):
        X = check_features(X, "X", ndim=4, min_samples=2)
        check_param("rep_dim", self.rep_dim, low=1, integer=True)
        check_param("centre_eps", self.centre_eps, low=0)
        self.image_hw_ = tuple(int(v) for v in X.shape[2:])
        self._centre_data = X
        self.c_ = None
        try:
            return super().fit(X, y)
        finally:
            self._centre_data = None

    def _build(self, n_features: int) -> nn.Module:
        return DeepSVDDNet(n_features, self.image_hw_[0], self.rep_dim, self.width)

    @torch.no_grad()
    def _init_centre(self) -> None:
        self.model_.eval()
        X = torch.from_numpy(self._centre_data)
        feats = torch.cat([self.model_(X[i:i + 1024].to(self.device_)) for i in range(0, len(X), 1024)])
        c = feats.mean(0)
        small = c.abs() < self.centre_eps
        c[small & (c < 0)] = -self.centre_eps
        c[small & (c >= 0)] = self.centre_eps
        self.c_ = c
        self.model_.train()

    def _on_epoch_start(self, epoch: int) -> None:
        if self.c_ is None:  # first epoch of a fresh fit (a resumed fit restores c_ from the checkpoint)
            self._init_centre()

    def _loss(self, xb):
        d = ((self.model_(xb) - self.c_) ** 2).sum(1)
        return d.mean(), {}

    def _score(self, xb):
        return ((self.model_(xb) - self.c_) ** 2).sum(1)

    def _extra_state(self) -> dict:
        return {"c": self.c_.detach().cpu() if self.c_ is not None else None, "image_hw": list(self.image_hw_)}

    def _load_extra_state(self, state: dict) -> None:
        self.image_hw_ = tuple(state["image_hw"])
        self.c_ = None if state.get("c") is None else state["c"].to(getattr(self, "device_", "cpu"))
