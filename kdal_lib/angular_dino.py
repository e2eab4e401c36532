"""AngularDINO: positive-unlabelled anomaly detection by DINO self-distillation with a prototype
layer and dual angular margins (seed ``003``; research notes ``methods_asal_kdal_dino.md`` §3).

Data: unlabelled U (mostly normal, a few hidden anomalies) and a few labelled anomalies P.
Training (§3.1 of the notes, equation names used in the docstrings below):

* DINO (Caron et al., ICCV 2021): a student and an EMA teacher see multi-crop views; the loss
  ``L_DINO`` is the cross-entropy between the centred, sharpened teacher distribution on the global
  crops and the student distribution on every other crop.
* Prototype layer: ``K`` unit-norm prototypes ``v_k``; the layer outputs ``cos(z, v_k)``. The same
  cross-view loss on these cosines (own centre ``C_p``) is ``L_ANG``; ``L = L_DINO + λ(t) L_ANG``
  with ``λ`` rising from 0 to 1 on a cosine ramp.
* Roles: after every epoch the teacher embeds the un-augmented U and P; each sample adds its cosine
  to its top-5 prototypes; ``normal(k) = U(k) − P(k)``; the top ``pt_num`` by ``normal(k)`` are the
  normal prototypes, the top ``pt_num`` by ``P(k)`` the anomaly prototypes.
* Dual angular margins after a warm-up, only on the pairs (U sample, normal prototype) and
  (P sample, anomaly prototype): student additive ``cos(θ + m)`` (ArcFace), teacher subtractive
  ``cos(θ − m)``.
* Score: mean cosine to the anomaly prototypes minus mean cosine to the normal prototypes (teacher).

Everything runs in one process on a CPU or one GPU; schedules are fractions of training so a short
run keeps the shape of the original 200 epochs. ``python -m kdal_lib.angular_dino --config c.yml``
runs the notebook's experiment from a YAML file holding the notebook's parameters.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import DetectorMixin
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_features, check_param

__all__ = [
    "PUTask", "PUSplit", "load_digit_images", "make_pu_task", "load_pu_task",
    "additive_margin", "subtractive_margin", "lambda_schedule", "cosine_schedule", "warmup_cosine_schedule",
    "class_balance_weights", "make_balanced_sampler", "assign_prototype_roles", "MultiCrop",
    "SmallCNN", "resnet18_backbone", "DINOHead", "PrototypeLayer", "AngularDINONet", "ema_update",
    "CentredCrossEntropy", "AngularDINO", "prototype_scores", "pu_auroc", "evaluate_pu",
    "DEFAULT_PARAMETERS", "resolve_parameters", "detector_from_parameters", "task_from_parameters", "fit_baseline",
    "run_experiment", "plot_margin_functions", "plot_training_history", "verdict", "main",
]


# ---------------------------------------------------------------------------------------------
# Data: digit images and the PU protocol (§3.3, §3.4)
# ---------------------------------------------------------------------------------------------
def load_digit_images(data: str = "embedded", data_dir: str | None = None, image_size: int = 0):
    """Digit images as ``(images N×1×H×W float32 in [0, 1], labels 0–9)``, read by :mod:`kdal_lib.data.digits`.

    ``data="embedded"``: scikit-learn's bundled ``load_digits`` (1,797 real 8×8 digits), upsampled
    bilinearly to ``image_size`` (default 16). ``data="mnist"``: the MNIST test split (10,000 digits,
    28×28) from the IDX files under ``data_dir`` or ``$KDAL_DATA``; the only MNIST split available
    offline, so the PU protocol splits it."""
    from .data.digits import load_digits_images, load_mnist, resize_images

    if data == "embedded":
        images, labels = load_digits_images()
        return resize_images(images, image_size or 16), labels
    if data == "mnist":
        from .utils import data_root

        images, labels = load_mnist(data_root(data_dir), "test")
        return resize_images(images, image_size or 28), labels
    raise ValueError(f"unknown DATA {data!r}: use 'embedded' (scikit-learn digits) or 'mnist' (IDX files)")


@dataclass
class PUSplit:
    """One part of a PU task. ``s`` = 1 for a labelled positive (anomaly) in P, 0 for unlabelled;
    ``y`` = the hidden truth (1 anomaly); ``group`` is ``normal``, ``seen`` or ``unseen``;
    ``digit`` the original class."""

    images: np.ndarray
    s: np.ndarray
    y: np.ndarray
    group: np.ndarray
    digit: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "PUSplit":
        return PUSplit(self.images[idx], self.s[idx], self.y[idx], self.group[idx], self.digit[idx])


@dataclass
class PUTask:
    """A PU anomaly-detection task: ``train`` (U ∪ P), ``val`` (a split of the training pool, with the
    same U/P labels: used for model selection, never the test set) and ``test`` (normals + seen +
    unseen anomalies)."""

    train: PUSplit
    val: PUSplit
    test: PUSplit
    normal_classes: list
    unseen_classes: list
    seen_classes: list
    name: str = "digits"

    def describe(self) -> dict:
        tr, te = self.train, self.test
        return {
            "dataset": self.name, "normal_classes": self.normal_classes, "unseen_classes": self.unseen_classes,
            "seen_classes": self.seen_classes, "image_size": int(tr.images.shape[-1]),
            "n_train": len(tr), "n_train_U": int((tr.s == 0).sum()), "n_train_P": int((tr.s == 1).sum()),
            "n_train_U_hidden_anomalies": int(((tr.s == 0) & (tr.y == 1)).sum()),
            "U_contamination": float(tr.y[tr.s == 0].mean()) if (tr.s == 0).any() else 0.0,
            "n_val": len(self.val), "n_val_P": int((self.val.s == 1).sum()),
            "n_test": len(te), "n_test_normal": int((te.group == "normal").sum()),
            "n_test_seen": int((te.group == "seen").sum()), "n_test_unseen": int((te.group == "unseen").sum()),
        }


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (int, np.integer)):
        return [int(v)]
    return [int(x) for x in v]


def make_pu_task(images, labels, normal_classes=(5,), unseen_classes=(0,), contamination: float = 0.05,
                 positive_fraction: float = 0.05, test_normal_fraction: float = 0.3, val_fraction: float = 0.1,
                 max_train_normals: int | None = None, random_state: int = 0, name: str = "digits") -> PUTask:
    """Build the PU split of Takahashi et al. / AngularDINO from a labelled image set.

    * The normal class(es) are split: ``test_normal_fraction`` to test, the rest (at most
      ``max_train_normals``) are the normals of U.
    * U gets hidden anomalies from the *seen* classes (all but normal and unseen) so that
      ``contamination`` of U is anomalous (original: 250 / 4750 = 5.3 %).
    * P (labelled anomalies, seen classes only) is ``positive_fraction`` of the training pool
      (original: 250 / 5000 = 5 %).
    * ``val_fraction`` of the pool (stratified on U/P) is held out as validation.
    * Test: the held-out normals, and half as many seen and half as many unseen anomalies
      (Takahashi: 1000 normal + 500 seen + 500 unseen)."""
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images must be N×C×H×W with one label each, got {images.shape} and {labels.shape}")
    normal, unseen = _as_list(normal_classes), _as_list(unseen_classes)
    present = set(np.unique(labels).tolist())
    if not normal:
        raise ValueError("normal_classes is empty: name at least one normal class")
    missing = [c for c in normal + unseen if c not in present]
    if missing:
        raise ValueError(f"class(es) {missing} do not exist in the data (classes present: {sorted(present)})")
    if set(normal) & set(unseen):
        raise ValueError(f"a class cannot be both normal and unseen: {sorted(set(normal) & set(unseen))}")
    seen = sorted(present - set(normal) - set(unseen))
    if not seen:
        raise ValueError("no seen anomaly class is left for P: the normal and unseen classes cover every class")
    check_param("contamination", contamination, low=0, high=0.5, inclusive=(True, False))
    check_param("positive_fraction", positive_fraction, low=0, high=0.5, inclusive=(False, False))
    check_param("test_normal_fraction", test_normal_fraction, low=0, high=0.9, inclusive=(False, True))
    check_param("val_fraction", val_fraction, low=0, high=0.5)
    rng = np.random.default_rng(random_state)
    is_norm = np.isin(labels, normal)
    idx_norm = rng.permutation(np.flatnonzero(is_norm))
    idx_seen = rng.permutation(np.flatnonzero(np.isin(labels, seen)))
    idx_unseen = rng.permutation(np.flatnonzero(np.isin(labels, unseen)))
    n_test_norm = max(2, int(round(test_normal_fraction * len(idx_norm))))
    test_norm, train_norm = idx_norm[:n_test_norm], idx_norm[n_test_norm:]
    if max_train_normals:
        train_norm = train_norm[:max_train_normals]
    n_un = len(train_norm)
    n_u_anom = int(round(contamination / (1 - contamination) * n_un))
    n_p = max(2, int(round(positive_fraction / (1 - positive_fraction) * (n_un + n_u_anom))))
    n_test_seen = max(1, n_test_norm // 2)
    n_test_unseen = max(1, n_test_norm // 2) if unseen else 0
    if n_u_anom + n_p + n_test_seen > len(idx_seen):
        raise ValueError(f"not enough seen-class images ({len(idx_seen)}) for {n_u_anom} hidden + {n_p} labelled "
                         f"+ {n_test_seen} test anomalies")
    if n_test_unseen > len(idx_unseen):
        n_test_unseen = len(idx_unseen)
    u_anom = idx_seen[:n_u_anom]
    p = idx_seen[n_u_anom:n_u_anom + n_p]
    test_seen = idx_seen[n_u_anom + n_p:n_u_anom + n_p + n_test_seen]
    test_unseen = idx_unseen[:n_test_unseen]

    def build(u_norm, u_an, pos):
        idx = np.concatenate([u_norm, u_an, pos]).astype(np.int64)
        s = np.r_[np.zeros(len(u_norm) + len(u_an)), np.ones(len(pos))].astype(np.int64)
        y = np.r_[np.zeros(len(u_norm)), np.ones(len(u_an) + len(pos))].astype(np.int64)
        group = np.array(["normal"] * len(u_norm) + ["seen"] * (len(u_an) + len(pos)))
        return PUSplit(images[idx], s, y, group, labels[idx])

    pool = build(train_norm, u_anom, p)
    # stratified validation split on s (U / P)
    val_idx = []
    for c in (0, 1):
        members = rng.permutation(np.flatnonzero(pool.s == c))
        k = int(round(val_fraction * len(members)))
        if c == 1 and val_fraction > 0:
            k = max(1, min(k, len(members) - 1))
        val_idx.append(members[:k])
    val_idx = np.sort(np.concatenate(val_idx))
    train_idx = np.setdiff1d(np.arange(len(pool)), val_idx)
    tidx = np.concatenate([test_norm, test_seen, test_unseen]).astype(np.int64)
    test = PUSplit(images[tidx], np.zeros(len(tidx), dtype=np.int64),
                   np.r_[np.zeros(len(test_norm)), np.ones(len(test_seen) + len(test_unseen))].astype(np.int64),
                   np.array(["normal"] * len(test_norm) + ["seen"] * len(test_seen) + ["unseen"] * len(test_unseen)),
                   labels[tidx])
    return PUTask(pool.subset(train_idx), pool.subset(val_idx), test, normal, unseen, seen, name)


def load_pu_task(data: str = "embedded", data_dir: str | None = None, image_size: int = 0, normal_classes=(5,),
                 unseen_classes=(0,), contamination: float = 0.05, positive_fraction: float = 0.05,
                 test_normal_fraction: float = 0.3, val_fraction: float = 0.1, max_train_normals: int | None = None,
                 random_state: int = 0) -> PUTask:
    """:func:`load_digit_images` + :func:`make_pu_task` (the split is drawn from ``random_state``)."""
    images, labels = load_digit_images(data, data_dir, image_size)
    return make_pu_task(images, labels, normal_classes, unseen_classes, contamination, positive_fraction,
                        test_normal_fraction, val_fraction, max_train_normals, random_state,
                        name="sklearn_digits" if data == "embedded" else "mnist_test_split")


# ---------------------------------------------------------------------------------------------
# Margins and schedules
# ---------------------------------------------------------------------------------------------
def _sin_from_cos(cos: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((1.0 - cos * cos).clamp_min(1e-7))


def additive_margin(cos: torch.Tensor, m: float, fallback: str = "continuous") -> torch.Tensor:
    """Student side, ArcFace additive angular margin: ``cos θ → cos(θ + m)`` (lowers the cosine).

    Where ``θ + m`` would pass π (``cos θ ≤ cos(π − m)``) the value continues linearly.
    ``fallback="continuous"`` (default): ``cos θ − (1 − cos m)``, equal to ``cos(π) = −1`` at the
    threshold, so the function is continuous and monotone. ``"arcface"``: the original
    ``cos θ − m sin(π − m)``, which jumps by about m²/2 at the threshold."""
    if m == 0:
        return cos
    cos = cos.clamp(-1.0, 1.0)
    phi = cos * math.cos(m) - _sin_from_cos(cos) * math.sin(m)
    th = math.cos(math.pi - m)
    if fallback == "continuous":
        alt = cos - (1.0 - math.cos(m))
    elif fallback == "arcface":
        alt = cos - m * math.sin(math.pi - m)
    else:
        raise ValueError(f"fallback must be 'continuous' or 'arcface', got {fallback!r}")
    return torch.where(cos > th, phi, alt)


def subtractive_margin(cos: torch.Tensor, m: float, fallback: str = "continuous") -> torch.Tensor:
    """Teacher side, subtractive angular margin: ``cos θ → cos(θ − m)`` (raises the cosine).

    Where ``θ < m`` (``cos θ ≥ cos m``) ``cos(θ − m)`` would fall again; there the value continues
    linearly: ``"continuous"`` (default) ``cos θ + (1 − cos m)`` (= 1 at the threshold),
    ``"arcface"`` the original's ``cos θ + m sin m`` (jumps at the threshold)."""
    if m == 0:
        return cos
    cos = cos.clamp(-1.0, 1.0)
    phi = cos * math.cos(m) + _sin_from_cos(cos) * math.sin(m)
    th = math.cos(m)
    if fallback == "continuous":
        alt = cos + (1.0 - math.cos(m))
    elif fallback == "arcface":
        alt = cos + m * math.sin(m)
    else:
        raise ValueError(f"fallback must be 'continuous' or 'arcface', got {fallback!r}")
    return torch.where(cos < th, phi, alt)


def lambda_schedule(step: int, ramp_steps: int, end: float = 1.0) -> float:
    """λ(t) = end · ½(1 − cos(π t / T)) for t < T, then ``end`` (cosine ramp 0 → end)."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return float(end)
    return float(end * 0.5 * (1.0 - math.cos(math.pi * max(step, 0) / ramp_steps)))


def cosine_schedule(start: float, end: float, total: int) -> np.ndarray:
    """``total`` values going from ``start`` to ``end`` on a half cosine (DINO's schedules)."""
    if total <= 1:
        return np.array([start] * max(total, 0) if total == 1 else [], dtype=np.float64)
    it = np.arange(total)
    return end + 0.5 * (start - end) * (1 + np.cos(np.pi * it / (total - 1)))


def warmup_cosine_schedule(base: float, final: float, total: int, warmup: int, warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base`` to ``final`` (DINO's LR)."""
    warmup = int(min(max(warmup, 0), total))
    head = np.linspace(warmup_start, base, warmup, endpoint=False) if warmup else np.array([])
    return np.concatenate([head, cosine_schedule(base, final, total - warmup)])


# ---------------------------------------------------------------------------------------------
# Class balance and prototype roles
# ---------------------------------------------------------------------------------------------
def class_balance_weights(s) -> np.ndarray:
    """Per-sample weights ``w_c = N / (2 N_c)`` for c ∈ {U, P} (so both halves weigh N/2)."""
    s = np.asarray(s).astype(np.int64).ravel()
    n = s.size
    n_p = int((s == 1).sum())
    n_u = n - n_p
    if n_p == 0:
        raise ValueError("no labelled positives (s == 1): the PU setting needs at least one labelled anomaly")
    if n_u == 0:
        raise ValueError("no unlabelled samples (s == 0): the PU setting needs unlabelled data")
    return np.where(s == 1, n / (2.0 * n_p), n / (2.0 * n_u))


def make_balanced_sampler(s, random_state: int = 0, num_samples: int | None = None):
    """``WeightedRandomSampler(weights=N/(2N_c), replacement=True, num_samples=N)``: about half of
    every batch is positive. Seeded, so the same ``random_state`` draws the same order."""
    from torch.utils.data import WeightedRandomSampler

    w = class_balance_weights(s)
    gen = torch.Generator().manual_seed(int(random_state))
    return WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), num_samples or len(w), replacement=True,
                                 generator=gen)


def assign_prototype_roles(cos_u: np.ndarray, cos_p: np.ndarray, pt_num: int, top_k: int = 5,
                           exclusive: bool = True) -> dict:
    """Prototype roles from teacher cosines (§3.1, "Prototype roles").

    ``cos_u`` (N_U × K), ``cos_p`` (N_P × K). Every sample adds ``cos / N`` of its set to the scores
    of its ``top_k`` most similar prototypes: ``U(k)`` and ``P(k)``. Normal prototypes are the top
    ``pt_num`` by ``U(k) − P(k)``, anomaly prototypes the top ``pt_num`` by ``P(k)``. With
    ``exclusive`` (default) a prototype that would get both roles stays normal and the next
    anomaly candidate is taken (the original may give one prototype both roles)."""
    cos_u, cos_p = np.asarray(cos_u, dtype=np.float64), np.asarray(cos_p, dtype=np.float64)
    if cos_u.ndim != 2 or cos_p.ndim != 2 or cos_u.shape[1] != cos_p.shape[1]:
        raise ValueError(f"cos_u and cos_p must be N×K with the same K, got {cos_u.shape} and {cos_p.shape}")
    k_total = cos_u.shape[1]
    if len(cos_p) == 0:
        raise ValueError("no labelled positives: prototype roles need P samples")
    check_param("pt_num", pt_num, low=1, high=k_total // 2 if exclusive else k_total, integer=True)
    top_k = int(min(top_k, k_total))

    def mass(c):
        out = np.zeros(k_total)
        if len(c):
            top = np.argpartition(-c, top_k - 1, axis=1)[:, :top_k]
            np.add.at(out, top.ravel(), np.take_along_axis(c, top, 1).ravel() / len(c))
        return out

    u_mass, p_mass = mass(cos_u), mass(cos_p)
    normal_score = u_mass - p_mass
    normal = np.argsort(-normal_score, kind="stable")[:pt_num]
    order = np.argsort(-p_mass, kind="stable")
    if exclusive:
        order = order[~np.isin(order, normal)]
    anomaly = order[:pt_num]
    return {"normal": np.sort(normal), "anomaly": np.sort(anomaly), "u_mass": u_mass, "p_mass": p_mass,
            "normal_score": normal_score}


# ---------------------------------------------------------------------------------------------
# Multi-crop augmentation (vectorised, torch)
# ---------------------------------------------------------------------------------------------
class MultiCrop:
    """DINO multi-crop on a batch: ``n_global`` crops of ``global_size`` px (area scale
    ``global_scale``) and ``n_local`` crops of ``local_size`` px (``local_scale``), each with a random
    rotation (±``rotation`` degrees), aspect ratio 3/4–4/3, and, as the original's MNIST pipeline,
    random 3×3 dilation (p ``dilation_p``) and Gaussian blur (p ``blur_p``). One ``affine_grid``
    + ``grid_sample`` per crop set, so it is cheap on CPU."""

    def __init__(self, global_size: int, local_size: int, n_global: int = 2, n_local: int = 4,
                 global_scale=(0.7, 1.0), local_scale=(0.2, 0.5), rotation: float = 15.0, dilation_p: float = 0.2,
                 blur_p: float = 0.2):
        if n_global < 2:
            raise ValueError(f"n_global must be >= 2 (DINO compares two global views), got {n_global}")
        check_param("n_local", n_local, low=0, integer=True)
        self.global_size, self.local_size = int(global_size), int(local_size)
        self.n_global, self.n_local = int(n_global), int(n_local)
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.rotation, self.dilation_p, self.blur_p = rotation, dilation_p, blur_p

    def _crop(self, x: torch.Tensor, size: int, scale, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)
        area = u(*scale)
        logr = u(math.log(3 / 4), math.log(4 / 3))
        ar = torch.exp(logr)
        w = torch.sqrt(area * ar).clamp(max=1.0)
        h = torch.sqrt(area / ar).clamp(max=1.0)
        cx = (1 - w) * (2 * torch.rand(b, generator=gen) - 1)
        cy = (1 - h) * (2 * torch.rand(b, generator=gen) - 1)
        ang = u(-self.rotation, self.rotation) * math.pi / 180
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack([torch.stack([w * cos, -h * sin, cx], 1), torch.stack([w * sin, h * cos, cy], 1)], 1)
        grid = F.affine_grid(theta.to(x), (b, x.shape[1], size, size), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.dilation_p > 0:
            sel = (torch.rand(b, generator=gen) < self.dilation_p).to(x.device).view(b, 1, 1, 1)
            out = torch.where(sel, F.max_pool2d(out, 3, 1, 1), out)
        if self.blur_p > 0:
            k = torch.tensor([0.25, 0.5, 0.25], device=x.device)
            k2 = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 3, 3)
            sel = (torch.rand(b, generator=gen) < self.blur_p).to(x.device).view(b, 1, 1, 1)
            out = torch.where(sel, F.conv2d(out, k2, padding=1, groups=x.shape[1]), out)
        return out

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        """Global crops first, then the local crops (the teacher sees the first ``n_global``)."""
        return ([self._crop(x, self.global_size, self.global_scale, gen) for _ in range(self.n_global)]
                + [self._crop(x, self.local_size, self.local_scale, gen) for _ in range(self.n_local)])


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """A 4-block CNN for small grey digits (CPU default). Adaptive pooling makes it accept the
    global and the local crop sizes; output: the L2-normalised embedding ``z`` (``emb_dim``)."""

    def __init__(self, in_channels: int = 1, emb_dim: int = 32, width: int = 16):
        super().__init__()
        w = width

        def block(i, o, pool=True):
            layers = [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*block(in_channels, w), *block(w, 2 * w), *block(2 * w, 4 * w, pool=False),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * w, emb_dim)
        self.emb_dim = emb_dim

    def forward(self, x):
        return F.normalize(self.fc(self.features(x)), dim=-1)


class _ResNetEmb(nn.Module):
    def __init__(self, net, emb_dim):
        super().__init__()
        self.net, self.emb_dim = net, emb_dim

    def forward(self, x):
        return F.normalize(self.net(x), dim=-1)


def resnet18_backbone(in_channels: int = 1, emb_dim: int = 64) -> nn.Module:
    """torchvision ResNet-18 (random init) as in the original: conv1 7×7 stride 1 for small
    images, fc → ``emb_dim``, L2-normalised output. Slow on CPU."""
    from .nets import resnet18_net

    return _ResNetEmb(resnet18_net(in_channels, emb_dim, "stride1"), emb_dim)


class _WNLinear(nn.Module):
    """Weight-normalised linear layer without bias: rows ``v_k / ‖v_k‖`` scaled by ``g`` (``g`` fixed to
    1 when ``fixed_norm``); its outputs on a unit ``z`` are (scaled) cosines."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool):
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.v, std=0.02 if not fixed_norm else 1.0)
        self.g = nn.Parameter(torch.ones(out_dim), requires_grad=not fixed_norm)

    def unit_rows(self) -> torch.Tensor:
        return F.normalize(self.v, dim=1)

    def forward(self, z):
        return F.linear(z, self.unit_rows() * self.g[:, None])


class DINOHead(nn.Module):
    """DINO projection head: MLP (``nlayers``, GELU) → bottleneck → L2-norm → weight-normed linear
    to ``out_dim`` logits (``norm_last_layer`` fixes its norm to 1, as DINO's option)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int = 64, bottleneck_dim: int = 32,
                 nlayers: int = 2, norm_last_layer: bool = False):
        super().__init__()
        layers, d = [], in_dim
        for _ in range(max(nlayers - 1, 0)):
            layers += [nn.Linear(d, hidden_dim), nn.GELU()]
            d = hidden_dim
        layers.append(nn.Linear(d, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = _WNLinear(bottleneck_dim, out_dim, fixed_norm=norm_last_layer)
        for mod in self.mlp:
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)

    def forward(self, z):
        return self.last_layer(F.normalize(self.mlp(z), dim=-1))


class PrototypeLayer(_WNLinear):
    """``K`` unit-norm prototypes (weight-normed ``Linear(emb_dim, K, bias=False)`` with g = 1):
    outputs ``cos(z, v_k)`` for a unit ``z``."""

    def __init__(self, emb_dim: int, n_prototypes: int):
        super().__init__(emb_dim, n_prototypes, fixed_norm=True)


class AngularDINONet(nn.Module):
    """Backbone + DINO head + prototype layer. ``forward(x) -> (z, head logits, prototype cosines)``."""

    def __init__(self, backbone: nn.Module, emb_dim: int, n_prototypes: int, head_kwargs: Mapping):
        super().__init__()
        self.backbone = backbone
        self.head = DINOHead(emb_dim, **head_kwargs)
        self.prototypes = PrototypeLayer(emb_dim, n_prototypes)

    def forward(self, x):
        z = self.backbone(x)
        return z, self.head(z), self.prototypes(z)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_t ← m θ_t + (1 − m) θ_s for every parameter (buffers such as BN statistics stay the teacher's own)."""
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)


class CentredCrossEntropy(nn.Module):
    """DINO's cross-view loss with centring and sharpening:
    ``mean over (t ∈ global, s ≠ t) of −Σ_k softmax((g_t − C)/τ_t)_k log softmax(g_s/τ_s)_k`` with
    per-sample weights, and the centre update ``C ← m C + (1 − m) mean(g_t)`` (a local mean: no
    ``all_reduce``)."""

    def __init__(self, dim: int, centre_momentum: float = 0.9):
        super().__init__()
        self.register_buffer("center", torch.zeros(1, dim))
        self.centre_momentum = centre_momentum

    def forward(self, student_out: Sequence[torch.Tensor], teacher_out: Sequence[torch.Tensor], tau_s: float,
                tau_t: float, weights: torch.Tensor | None = None, teacher_centred: Sequence[torch.Tensor] | None = None):
        """``teacher_centred`` (optional): teacher logits already centred (the margin variant), else
        ``teacher_out − C`` is used. Returns the loss; call :meth:`update_center` afterwards."""
        centred = teacher_centred if teacher_centred is not None else [t - self.center for t in teacher_out]
        t_probs = [F.softmax(tc / tau_t, dim=-1).detach() for tc in centred]
        s_logp = [F.log_softmax(s / tau_s, dim=-1) for s in student_out]
        total, n = 0.0, 0
        for it, q in enumerate(t_probs):
            for iv, lp in enumerate(s_logp):
                if iv == it:
                    continue
                ce = -(q * lp).sum(-1)
                total = total + ((ce * weights).mean() if weights is not None else ce.mean())
                n += 1
        return total / max(n, 1)

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[torch.Tensor]) -> None:
        batch_center = torch.cat(list(teacher_out)).mean(0, keepdim=True)
        self.center.mul_(self.centre_momentum).add_(batch_center, alpha=1 - self.centre_momentum)


# ---------------------------------------------------------------------------------------------
# Scores and validation metrics
# ---------------------------------------------------------------------------------------------
def prototype_scores(z: np.ndarray, prototypes: np.ndarray, normal, anomaly) -> np.ndarray:
    """Anomaly score = mean cos(z, anomaly prototypes) − mean cos(z, normal prototypes); higher =
    more anomalous (the original's ``1 − minmax(normal − anomaly)`` ranks the same way)."""
    cos = np.asarray(z) @ np.asarray(prototypes).T
    return cos[:, np.asarray(anomaly)].mean(1) - cos[:, np.asarray(normal)].mean(1)


def pu_auroc(s, scores) -> float:
    """AUROC of the scores for telling labelled positives (s = 1) from unlabelled (s = 0). It needs no
    hidden labels, so it can be computed on the validation split; under the SCAR assumption it is
    a monotone function of the true AUROC (Menon et al., 2015)."""
    from .metrics import auroc_or_nan

    return auroc_or_nan(s, scores)


def evaluate_pu(test: PUSplit, scores) -> dict:
    """AUROC overall, on seen anomalies vs normals and on unseen anomalies vs normals (Takahashi et
    al. report all three), plus AUPR overall."""
    from .metrics import aupr, auroc

    scores = np.asarray(scores, dtype=np.float64)
    out = {"AUROC": auroc(test.y, scores), "AUPR": aupr(test.y, scores)}
    for g in ("seen", "unseen"):
        m = (test.group == "normal") | (test.group == g)
        if (test.group == g).any():
            out[f"AUROC_{g}"] = auroc(test.y[m], scores[m])
        else:
            out[f"AUROC_{g}"] = float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------
class AngularDINO(DetectorMixin):
    """AngularDINO detector (PyOD-style): ``fit(X, s)`` with images ``X`` (N×C×H×W in [0, 1]) and
    ``s`` = 1 for labelled anomalies (P), 0 for unlabelled (U); ``decision_function(X)`` higher =
    more anomalous.

    Schedules are fractions of training (original at 200 epochs in brackets): LR warm-up
    ``warmup_fraction`` 0.15 (30 ep), λ reaches ``lambda_end`` at ``lambda_ramp_fraction`` 0.5
    (100 ep), margins from ``margin_start_fraction`` 0.25 (50 ep), last layer and prototypes frozen
    for ``freeze_last_layer_fraction`` 0.005 (1 ep).

    Switches for the original's behaviour (default = the fix):
    ``loss_weighting="none"`` (sampler balances; ``"original"`` also multiplies the loss by
    N/(2N_c), weighting positives twice), ``teacher_margin_on_centred=False`` (``True``: the margin
    acts on ``cos − C_p`` as in the code), ``margin_fallback="continuous"`` (``"arcface"``: the
    discontinuous ArcFace fallback), ``exclusive_roles=True``.

    Model selection (``select``): ``"last"`` (default) keeps the final epoch; ``"val_pu_auroc"``
    keeps the epoch whose teacher best separates P from U on the validation split (no test labels).
    ``snapshot_every`` epochs, the teacher's prototypes, roles and train embeddings are stored in
    ``snapshots_`` (for the prototype explorer).
    """

    def __init__(self, backbone: str = "small_cnn", emb_dim: int = 32, width: int = 16, out_dim: int = 128,
                 head_hidden: int = 64, head_bottleneck: int = 32, head_layers: int = 2, norm_last_layer: bool = False,
                 n_prototypes: int = 20, pt_num: int = 3, top_k: int = 5, margin: float = 0.5,
                 margin_start_fraction: float = 0.25, margin_type: str = "tea-stu", margin_fallback: str = "continuous",
                 teacher_margin_on_centred: bool = False, lambda_end: float = 1.0, lambda_ramp_fraction: float = 0.5,
                 teacher_temp: float = 0.04, student_temp: float = 0.1, proto_teacher_temp: float = 0.04,
                 proto_student_temp: float = 0.1, centre_momentum: float = 0.9, momentum_teacher: float = 0.99,
                 epochs: int = 30, batch_size: int = 64, lr: float = 5e-4, min_lr: float = 1e-6,
                 warmup_fraction: float = 0.15, weight_decay: float = 0.04, weight_decay_end: float = 0.4,
                 clip_grad: float = 3.0, freeze_last_layer_fraction: float = 0.005, n_global: int = 2,
                 n_local: int = 4, local_size_ratio: float = 0.75, global_scale=(0.7, 1.0), local_scale=(0.2, 0.5),
                 rotation: float = 15.0, balanced_sampler: bool = True, loss_weighting: str = "none",
                 exclusive_roles: bool = True, select: str = "last", snapshot_every: int = 1,
                 contamination: float = 0.05, device: str = "auto", random_state: int = 0, verbose: int = 0):
        self.backbone, self.emb_dim, self.width, self.out_dim = backbone, emb_dim, width, out_dim
        self.head_hidden, self.head_bottleneck, self.head_layers = head_hidden, head_bottleneck, head_layers
        self.norm_last_layer = norm_last_layer
        self.n_prototypes, self.pt_num, self.top_k = n_prototypes, pt_num, top_k
        self.margin, self.margin_start_fraction, self.margin_type = margin, margin_start_fraction, margin_type
        self.margin_fallback, self.teacher_margin_on_centred = margin_fallback, teacher_margin_on_centred
        self.lambda_end, self.lambda_ramp_fraction = lambda_end, lambda_ramp_fraction
        self.teacher_temp, self.student_temp = teacher_temp, student_temp
        self.proto_teacher_temp, self.proto_student_temp = proto_teacher_temp, proto_student_temp
        self.centre_momentum, self.momentum_teacher = centre_momentum, momentum_teacher
        self.epochs, self.batch_size, self.lr, self.min_lr = epochs, batch_size, lr, min_lr
        self.warmup_fraction, self.weight_decay, self.weight_decay_end = warmup_fraction, weight_decay, weight_decay_end
        self.clip_grad, self.freeze_last_layer_fraction = clip_grad, freeze_last_layer_fraction
        self.n_global, self.n_local, self.local_size_ratio = n_global, n_local, local_size_ratio
        self.global_scale, self.local_scale, self.rotation = global_scale, local_scale, rotation
        self.balanced_sampler, self.loss_weighting, self.exclusive_roles = balanced_sampler, loss_weighting, exclusive_roles
        self.select, self.snapshot_every = select, snapshot_every
        self.contamination, self.device, self.random_state, self.verbose = contamination, device, random_state, verbose

    # -- construction ----------------------------------------------------------------------------
    def _check_params(self):
        check_param("backbone", self.backbone, choices=("small_cnn", "resnet18"))
        check_param("epochs", self.epochs, low=1, integer=True)
        check_param("batch_size", self.batch_size, low=2, integer=True)
        check_param("n_prototypes", self.n_prototypes, low=2, integer=True)
        check_param("pt_num", self.pt_num, low=1, high=self.n_prototypes // 2, integer=True)
        check_param("margin", self.margin, low=0, high=math.pi / 2)
        check_param("margin_type", self.margin_type, choices=("tea-stu", "stu", "tea", "none"))
        check_param("margin_fallback", self.margin_fallback, choices=("continuous", "arcface"))
        check_param("loss_weighting", self.loss_weighting, choices=("none", "original"))
        check_param("select", self.select, choices=("last", "val_pu_auroc"))
        check_param("momentum_teacher", self.momentum_teacher, low=0, high=1)
        check_param("centre_momentum", self.centre_momentum, low=0, high=1)
        for n in ("teacher_temp", "student_temp", "proto_teacher_temp", "proto_student_temp", "lr"):
            check_param(n, getattr(self, n), low=0, inclusive=(False, True))
        for n in ("margin_start_fraction", "lambda_ramp_fraction", "warmup_fraction", "freeze_last_layer_fraction"):
            check_param(n, getattr(self, n), low=0, high=1)
        check_param("verbose", self.verbose, choices=(0, 1, 2))

    def _build(self, in_channels: int) -> AngularDINONet:
        if self.backbone == "small_cnn":
            bb = SmallCNN(in_channels, self.emb_dim, self.width)
        else:
            bb = resnet18_backbone(in_channels, self.emb_dim)
        head = dict(out_dim=self.out_dim, hidden_dim=self.head_hidden, bottleneck_dim=self.head_bottleneck,
                    nlayers=self.head_layers, norm_last_layer=self.norm_last_layer)
        return AngularDINONet(bb, self.emb_dim, self.n_prototypes, head)

    # -- embeddings ------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, X, which: str = "teacher", batch_size: int = 512) -> np.ndarray:
        """Un-augmented L2-normalised embeddings ``z`` of ``X`` by the teacher (default) or student."""
        net = self.teacher_ if which == "teacher" else self.student_
        X = check_features(X, "X", ndim=4)
        was = net.training
        net.eval()
        out = [net.backbone(torch.from_numpy(X[i:i + batch_size]).to(self.device_)).cpu()
               for i in range(0, len(X), batch_size)]
        net.train(was)
        return torch.cat(out).numpy()

    def prototypes(self, which: str = "teacher") -> np.ndarray:
        """The unit-norm prototype vectors (K × emb_dim)."""
        net = self.teacher_ if which == "teacher" else self.student_
        return net.prototypes.unit_rows().detach().cpu().numpy()

    def _roles(self, z: np.ndarray, s: np.ndarray) -> dict:
        """Roles from the teacher embeddings ``z`` of the un-augmented training set (``s``: U/P)."""
        cos = z @ self.prototypes("teacher").T
        return assign_prototype_roles(cos[s == 0], cos[s == 1], self.pt_num, self.top_k, self.exclusive_roles)

    # -- training --------------------------------------------------------------------------------
    def fit(self, X, s=None, X_val=None, s_val=None):
        """Train on images ``X`` with PU labels ``s`` (1 = labelled anomaly, 0 = unlabelled).
        ``X_val``/``s_val``: a validation split of the training pool (PU labels only) for the
        validation loss and P-vs-U AUROC curves and ``select="val_pu_auroc"``."""
        self._check_params()
        X = check_features(X, "X", ndim=4, min_samples=4)
        if s is None:
            raise ValueError("AngularDINO needs PU labels s (1 = labelled anomaly, 0 = unlabelled): fit(X, s)")
        s = np.asarray(s).astype(np.int64).ravel()
        if s.shape[0] != X.shape[0]:
            raise ValueError(f"s has {s.shape[0]} labels but X has {X.shape[0]} samples")
        if not set(np.unique(s).tolist()) <= {0, 1}:
            raise ValueError(f"s must hold 0 (unlabelled) and 1 (labelled anomaly) only, got {np.unique(s)[:10]}")
        weights_np = class_balance_weights(s)  # raises on no positives / no unlabelled
        if (s == 1).sum() < 1:
            raise ValueError("no labelled positives")
        if X_val is not None:
            X_val = check_features(X_val, "X_val", ndim=4)
            s_val = np.asarray(s_val).astype(np.int64).ravel()
        if self.select == "val_pu_auroc" and (X_val is None or len(np.unique(s_val)) < 2):
            raise ValueError("select='val_pu_auroc' needs X_val and s_val holding both U and P samples")

        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        size = X.shape[-1]
        self.crops_ = MultiCrop(size, max(4, int(round(self.local_size_ratio * size))), self.n_global, self.n_local,
                                self.global_scale, self.local_scale, self.rotation)
        self.student_ = self._build(X.shape[1]).to(self.device_)
        self.teacher_ = copy.deepcopy(self.student_)
        for p in self.teacher_.parameters():
            p.requires_grad_(False)
        self.dino_loss_ = CentredCrossEntropy(self.out_dim, self.centre_momentum).to(self.device_)
        self.ang_loss_ = CentredCrossEntropy(self.n_prototypes, self.centre_momentum).to(self.device_)

        # AdamW for backbone + head (no weight decay on biases / norms, as DINO), separate AdamW for prototypes
        reg, noreg = [], []
        for name, p in self.student_.named_parameters():
            if name.startswith("prototypes") or not p.requires_grad:
                continue
            (noreg if p.ndim <= 1 or name.endswith(".g") else reg).append(p)
        opt = torch.optim.AdamW([{"params": reg}, {"params": noreg, "weight_decay": 0.0}], lr=self.lr)
        proto_params = [p for p in self.student_.prototypes.parameters() if p.requires_grad]
        opt_p = torch.optim.AdamW([{"params": proto_params}], lr=self.lr)

        n = X.shape[0]
        bs = min(self.batch_size, n)
        iters_per_epoch = max(1, n // bs)
        total = self.epochs * iters_per_epoch
        lr_sched = warmup_cosine_schedule(self.lr, self.min_lr, total, int(round(self.warmup_fraction * total)))
        wd_sched = cosine_schedule(self.weight_decay, self.weight_decay_end, total)
        mom_sched = cosine_schedule(self.momentum_teacher, 1.0, total)
        ramp = int(round(self.lambda_ramp_fraction * total))
        margin_start_epoch = int(math.ceil(self.margin_start_fraction * self.epochs))  # original: epoch > 50 of 200
        freeze_iters = int(math.ceil(self.freeze_last_layer_fraction * total))

        Xt = torch.from_numpy(X)
        st = torch.from_numpy(s)
        loss_w = torch.from_numpy(weights_np).float()
        sampler = make_balanced_sampler(s, self.random_state) if self.balanced_sampler else None
        roles = self._roles(self.embed(X), s)
        self.history_ = {k: [] for k in ("loss", "loss_dino", "loss_ang", "lambda", "lr", "momentum", "margin_on",
                                         "val_loss", "val_pu_auroc", "train_pu_auroc", "epoch_seconds", "n_role_changes")}
        self.snapshots_ = []
        best = (-np.inf, None, None)
        step = 0
        bar = progress(range(self.epochs), self.verbose, desc="AngularDINO", unit="epoch")
        for epoch in bar:
            t0 = time.perf_counter()
            self.student_.train()
            self.teacher_.train()
            order = (torch.tensor(list(iter(sampler)), dtype=torch.long) if sampler is not None
                     else torch.randperm(n, generator=gen))
            margin_on = self.margin > 0 and self.margin_type != "none" and epoch >= margin_start_epoch
            normal_idx = torch.as_tensor(roles["normal"], device=self.device_)
            anom_idx = torch.as_tensor(roles["anomaly"], device=self.device_)
            sums = {"loss": 0.0, "loss_dino": 0.0, "loss_ang": 0.0}
            for i in range(iters_per_epoch):
                idx = order[i * bs:(i + 1) * bs]
                xb = Xt[idx].to(self.device_)
                sb = st[idx].to(self.device_)
                wb = loss_w[idx].to(self.device_) if self.loss_weighting == "original" else None
                for g in opt.param_groups + opt_p.param_groups:
                    g["lr"] = lr_sched[step]
                opt.param_groups[0]["weight_decay"] = wd_sched[step]
                opt_p.param_groups[0]["weight_decay"] = wd_sched[step]
                lam = lambda_schedule(step, ramp, self.lambda_end)
                loss, ld, la = self._step_loss(xb, sb, wb, gen, lam, margin_on, normal_idx, anom_idx, epoch)
                opt.zero_grad(set_to_none=True)
                opt_p.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad:
                    nn.utils.clip_grad_norm_([p for p in self.student_.parameters() if p.requires_grad], self.clip_grad)
                if step < freeze_iters:  # DINO's cancel_gradients_last_layer, also for the prototypes
                    for p in list(self.student_.head.last_layer.parameters()) + proto_params:
                        p.grad = None
                opt.step()
                opt_p.step()
                ema_update(self.teacher_, self.student_, float(mom_sched[step]))
                sums["loss"] += float(loss.detach())
                sums["loss_dino"] += float(ld)
                sums["loss_ang"] += float(la)
                step += 1
            if not np.isfinite(sums["loss"]):
                raise FloatingPointError(f"AngularDINO: training loss became {sums['loss']} at epoch {epoch}; lower lr")
            # roles recomputed with the teacher on un-augmented U and P
            z_all = self.embed(X)  # teacher, un-augmented: roles, train P-vs-U AUROC and the snapshot
            new_roles = self._roles(z_all, s)
            changes = int(len(set(new_roles["normal"]) ^ set(roles["normal"]))
                          + len(set(new_roles["anomaly"]) ^ set(roles["anomaly"])))
            roles = new_roles
            self.roles_ = roles
            h = self.history_
            for k in sums:
                h[k].append(sums[k] / iters_per_epoch)
            h["lambda"].append(lam)
            h["lr"].append(float(lr_sched[step - 1]))
            h["momentum"].append(float(mom_sched[step - 1]))
            h["margin_on"].append(bool(margin_on))
            h["n_role_changes"].append(changes)
            h["train_pu_auroc"].append(pu_auroc(s, prototype_scores(z_all, self.prototypes("teacher"), roles["normal"],
                                                                    roles["anomaly"])))
            if X_val is not None:
                h["val_pu_auroc"].append(pu_auroc(s_val, self._score_np(X_val)))
                h["val_loss"].append(self._eval_loss(X_val, s_val, gen, lam, margin_on, normal_idx, anom_idx, epoch))
            else:
                h["val_pu_auroc"].append(float("nan"))
                h["val_loss"].append(float("nan"))
            h["epoch_seconds"].append(time.perf_counter() - t0)
            if self.snapshot_every and ((epoch + 1) % self.snapshot_every == 0 or epoch == self.epochs - 1):
                self.snapshots_.append({"epoch": epoch + 1, "prototypes": self.prototypes("teacher"),
                                        "normal": roles["normal"].copy(), "anomaly": roles["anomaly"].copy(),
                                        "embeddings": z_all})
            if self.select == "val_pu_auroc":
                v = h["val_pu_auroc"][-1]
                if np.isfinite(v) and v > best[0]:
                    best = (v, copy.deepcopy(self.teacher_.state_dict()), copy.deepcopy(roles))
                    self.best_epoch_ = epoch + 1
            log(f"epoch {epoch + 1}/{self.epochs} loss {h['loss'][-1]:.4f} (dino {h['loss_dino'][-1]:.4f}, "
                f"ang {h['loss_ang'][-1]:.4f}) λ {lam:.2f} margin {'on' if margin_on else 'off'} "
                f"val P-vs-U AUROC {h['val_pu_auroc'][-1]:.3f} role changes {changes}", self.verbose)
            if self.verbose == 1 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{h['loss'][-1]:.3f}", val_pu=f"{h['val_pu_auroc'][-1]:.3f}")
        if self.select == "val_pu_auroc" and best[1] is not None:
            self.teacher_.load_state_dict(best[1])
            self.roles_ = best[2]
        else:
            self.best_epoch_ = self.epochs
        self.teacher_.eval()
        self.student_.eval()
        self.n_features_in_ = tuple(X.shape[1:])
        self._set_threshold(self.decision_function(X))
        return self

    def _margin_cos(self, cos, sb, normal_idx, anom_idx, fn):
        """Apply ``fn`` (a margin) only on (U sample, normal prototype) and (P sample, anomaly prototype)."""
        mask = torch.zeros_like(cos, dtype=torch.bool)
        u = sb == 0
        if len(normal_idx):
            mask[u.nonzero(as_tuple=True)[0][:, None], normal_idx[None, :]] = True
        if len(anom_idx):
            mask[(~u).nonzero(as_tuple=True)[0][:, None], anom_idx[None, :]] = True
        return torch.where(mask, fn(cos, self.margin, self.margin_fallback), cos)

    def _step_loss(self, xb, sb, wb, gen, lam, margin_on, normal_idx, anom_idx, epoch):
        """L = L_DINO + λ L_ANG on one batch (Eq. "Total" of §3.1)."""
        crops = self.crops_(xb.cpu(), gen)
        crops = [c.to(self.device_) for c in crops]
        with torch.no_grad():
            t_out = [self.teacher_(c) for c in crops[:self.n_global]]
        s_out = [self.student_(c) for c in crops]
        t_head, t_cos = [o[1] for o in t_out], [o[2] for o in t_out]
        s_head, s_cos = [o[1] for o in s_out], [o[2] for o in s_out]
        l_dino = self.dino_loss_(s_head, t_head, self.student_temp, self.teacher_temp, wb)
        stu_m = margin_on and self.margin_type in ("tea-stu", "stu")
        tea_m = margin_on and self.margin_type in ("tea-stu", "tea")
        if stu_m:
            s_cos = [self._margin_cos(c, sb, normal_idx, anom_idx, additive_margin) for c in s_cos]
        c_p = self.ang_loss_.center
        if tea_m and self.teacher_margin_on_centred:
            t_centred = [self._margin_cos(c - c_p, sb, normal_idx, anom_idx, subtractive_margin) for c in t_cos]
        elif tea_m:
            t_centred = [self._margin_cos(c, sb, normal_idx, anom_idx, subtractive_margin) - c_p for c in t_cos]
        else:
            t_centred = [c - c_p for c in t_cos]
        l_ang = self.ang_loss_(s_cos, t_cos, self.proto_student_temp, self.proto_teacher_temp, wb,
                               teacher_centred=t_centred)
        if self.student_.training:
            self.dino_loss_.update_center(t_head)
            self.ang_loss_.update_center(t_cos)
        return l_dino + lam * l_ang, l_dino.detach(), l_ang.detach()

    @torch.no_grad()
    def _eval_loss(self, X_val, s_val, gen, lam, margin_on, normal_idx, anom_idx, epoch) -> float:
        """Loss on the validation split (crops drawn from a fixed generator so epochs compare)."""
        self.student_.eval()
        self.teacher_.eval()
        vgen = torch.Generator().manual_seed(self.random_state + 1)
        total, count = 0.0, 0
        for i in range(0, len(X_val), 256):
            xb = torch.from_numpy(X_val[i:i + 256]).to(self.device_)
            sb = torch.from_numpy(s_val[i:i + 256]).to(self.device_)
            loss, _, _ = self._step_loss(xb, sb, None, vgen, lam, margin_on, normal_idx, anom_idx, epoch)
            total += float(loss) * len(xb)
            count += len(xb)
        self.student_.train()
        self.teacher_.train()
        return total / max(count, 1)

    def _score_np(self, X) -> np.ndarray:
        roles = getattr(self, "roles_", None)
        if roles is None:
            raise RuntimeError("AngularDINO is not fitted: call fit(X, s) first")
        return prototype_scores(self.embed(X), self.prototypes("teacher"), roles["normal"], roles["anomaly"])

    def decision_function(self, X) -> np.ndarray:
        """Teacher prototype score: mean cos to anomaly prototypes − mean cos to normal prototypes."""
        if not hasattr(self, "teacher_"):
            raise RuntimeError("AngularDINO is not fitted: call fit(X, s) first")
        X = check_features(X, "X", ndim=4)
        if hasattr(self, "n_features_in_") and tuple(X.shape[1:]) != self.n_features_in_:
            raise ValueError(f"X has image shape {tuple(X.shape[1:])} but the detector was fitted on {self.n_features_in_}")
        return self._score_np(X).astype(np.float64)


    # -- persistence -----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save the fitted detector (student and teacher weights, roles, threshold, history) with a
        JSON sidecar; reload with :meth:`load` (``torch.load(weights_only=True)``). Snapshots are not saved."""
        from .checkpoint import save_checkpoint

        if not hasattr(self, "teacher_"):
            raise RuntimeError("nothing to save: AngularDINO is not fitted")
        state = {"student": self.student_.state_dict(), "teacher": self.teacher_.state_dict(),
                 "normal": torch.as_tensor(np.asarray(self.roles_["normal"])),
                 "anomaly": torch.as_tensor(np.asarray(self.roles_["anomaly"])),
                 "decision_scores": torch.from_numpy(self.decision_scores_), "threshold": float(self.threshold_),
                 "image_shape": list(self.n_features_in_), "history": self.history_, "best_epoch": int(self.best_epoch_)}
        return save_checkpoint(path, state, {"class": type(self).__name__, "params": self.get_params()})

    @classmethod
    def load(cls, path, device: str = "auto") -> "AngularDINO":
        """Rebuild a detector written by :meth:`save`."""
        from .checkpoint import load_checkpoint, read_metadata

        meta = read_metadata(path)
        if meta is None:
            raise FileNotFoundError(f"no complete checkpoint at {str(path)!r} (file or .json sidecar missing)")
        if meta.get("class") != cls.__name__:
            raise ValueError(f"checkpoint {str(path)!r} holds a {meta.get('class')}, not a {cls.__name__}")
        det = cls(**{**meta["params"], "device": device})
        det.device_ = resolve_device(device)
        state = load_checkpoint(path, map_location=det.device_)
        shape = tuple(int(v) for v in state["image_shape"])
        det.student_ = det._build(shape[0]).to(det.device_)
        det.teacher_ = det._build(shape[0]).to(det.device_)
        det.student_.load_state_dict(state["student"])
        det.teacher_.load_state_dict(state["teacher"])
        det.student_.eval()
        det.teacher_.eval()
        det.roles_ = {"normal": state["normal"].numpy(), "anomaly": state["anomaly"].numpy()}
        det.n_features_in_ = shape
        det.history_ = state["history"]
        det.best_epoch_ = int(state["best_epoch"])
        det.snapshots_ = []
        det.decision_scores_ = state["decision_scores"].numpy()
        det.threshold_ = float(state["threshold"])
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(int)
        return det


# ---------------------------------------------------------------------------------------------
# Experiment: the notebook's pipeline, also behind the CLI
# ---------------------------------------------------------------------------------------------
#: the notebook's parameters and their defaults (the CLI's YAML uses the same names)
DEFAULT_PARAMETERS: dict = {
    "SEED": 0, "N_SEEDS": 1, "DATA": "embedded", "DATA_DIR": "", "IMAGE_SIZE": 0,
    "NORMAL_CLASSES": [5], "UNSEEN_CLASSES": [0], "CONTAMINATION": 0.05, "POSITIVE_FRACTION": 0.05,
    "TEST_NORMAL_FRACTION": 0.3, "VAL_FRACTION": 0.1, "MAX_TRAIN_NORMALS": 0,
    "BACKBONE": "small_cnn", "EMB_DIM": 32, "WIDTH": 16, "OUT_DIM": 128, "N_PROTOTYPES": 20, "PT_NUM": 3,
    "MARGIN": 0.5, "MARGIN_TYPE": "tea-stu", "MARGIN_START_FRACTION": 0.25, "LAMBDA_END": 1.0,
    "LAMBDA_RAMP_FRACTION": 0.5, "TEACHER_TEMP": 0.04, "STUDENT_TEMP": 0.1, "MOMENTUM_TEACHER": 0.99,
    "EPOCHS": 60, "BATCH_SIZE": 32, "LR": 0.001, "N_LOCAL": 4, "LOSS_WEIGHTING": "none",
    "TEACHER_MARGIN_ON_CENTRED": False, "MARGIN_FALLBACK": "continuous", "SELECT": "last",
    "BASELINES": ["OCSVM", "IsolationForest", "DeepSAD", "PUSVDD"], "DEEP_BASELINE_EPOCHS": 30,
    "DEVICE": "auto", "VERBOSE": 0, "OUT_DIR": "runs/manual/06_angular_dino",
}

#: lower-case names of the original ``config.yml`` accepted by the CLI as aliases
ORIGINAL_ALIASES = {"prototype_num": "N_PROTOTYPES", "pt_num": "PT_NUM", "margin": "MARGIN", "epochs": "EPOCHS",
                    "lambda_end": "LAMBDA_END", "teacher_temp": "TEACHER_TEMP", "student_temp": "STUDENT_TEMP",
                    "momentum_teacher": "MOMENTUM_TEACHER", "out_dim": "OUT_DIM", "emb_dim": "EMB_DIM",
                    "normal_class": "NORMAL_CLASSES", "unseen_class": "UNSEEN_CLASSES", "seed": "SEED",
                    "margin_type": "MARGIN_TYPE", "local_crops_number": "N_LOCAL", "lr": "LR",
                    "batch_size_per_gpu": "BATCH_SIZE", "arch": "BACKBONE", "output_dir": "OUT_DIR"}


def resolve_parameters(params: Mapping | None = None) -> dict:
    """Defaults overlaid with ``params`` (notebook names, case-insensitive, or the original's aliases);
    an unknown name raises ValueError listing the valid ones."""
    out = dict(DEFAULT_PARAMETERS)
    for k, v in dict(params or {}).items():
        key = ORIGINAL_ALIASES.get(k, str(k).upper())
        if key not in out:
            raise ValueError(f"unknown parameter {k!r}; valid: {sorted(out)}")
        if key == "BACKBONE" and v == "resnet18":
            v = "resnet18"
        out[key] = v
    return out


def detector_from_parameters(p: Mapping, seed: int) -> AngularDINO:
    """An :class:`AngularDINO` configured from notebook parameters."""
    return AngularDINO(backbone=p["BACKBONE"], emb_dim=p["EMB_DIM"], width=p["WIDTH"], out_dim=p["OUT_DIM"],
                       n_prototypes=p["N_PROTOTYPES"], pt_num=p["PT_NUM"], margin=p["MARGIN"],
                       margin_type=p["MARGIN_TYPE"], margin_start_fraction=p["MARGIN_START_FRACTION"],
                       lambda_end=p["LAMBDA_END"], lambda_ramp_fraction=p["LAMBDA_RAMP_FRACTION"],
                       teacher_temp=p["TEACHER_TEMP"], student_temp=p["STUDENT_TEMP"],
                       momentum_teacher=p["MOMENTUM_TEACHER"], epochs=p["EPOCHS"], batch_size=p["BATCH_SIZE"],
                       lr=p["LR"], n_local=p["N_LOCAL"], loss_weighting=p["LOSS_WEIGHTING"],
                       teacher_margin_on_centred=p["TEACHER_MARGIN_ON_CENTRED"], margin_fallback=p["MARGIN_FALLBACK"],
                       select=p["SELECT"], device=p["DEVICE"], random_state=seed, verbose=p["VERBOSE"])


def task_from_parameters(p: Mapping, seed: int) -> PUTask:
    return load_pu_task(p["DATA"], p["DATA_DIR"] or None, p["IMAGE_SIZE"], p["NORMAL_CLASSES"], p["UNSEEN_CLASSES"],
                        p["CONTAMINATION"], p["POSITIVE_FRACTION"], p["TEST_NORMAL_FRACTION"], p["VAL_FRACTION"],
                        p["MAX_TRAIN_NORMALS"] or None, random_state=seed)


def fit_baseline(name: str, task: PUTask, seed: int, deep_epochs: int = 30, device: str = "auto"):
    """Fit one baseline on the task's training pool; returns ``(detector, test scores)``.
    OCSVM / IsolationForest see the flattened pixels of the whole pool as unlabelled (Takahashi's
    protocol fits them on U); DeepSAD / PUSVDD use the P labels."""
    from .baselines import IsolationForestDetector, OCSVMDetector
    from .pu_baselines import DeepSAD

    tr = task.train
    flat = lambda a: a.reshape(len(a), -1)
    if name == "OCSVM":
        det = OCSVMDetector(gamma="scale", nu=0.1, random_state=seed).fit(flat(tr.images[tr.s == 0]))
        return det, det.decision_function(flat(task.test.images))
    if name == "IsolationForest":
        det = IsolationForestDetector(random_state=seed).fit(flat(tr.images[tr.s == 0]))
        return det, det.decision_function(flat(task.test.images))
    if name in ("DeepSAD", "PUSVDD"):
        det = DeepSAD(loss="deepsad" if name == "DeepSAD" else "pusvdd", epochs=deep_epochs, device=device,
                      random_state=seed).fit(tr.images, tr.s)
        return det, det.decision_function(task.test.images)
    raise ValueError(f"unknown baseline {name!r}; choose from OCSVM, IsolationForest, DeepSAD, PUSVDD")


def run_experiment(params: Mapping | None = None, keep_models: bool = False) -> dict:
    """Run AngularDINO and the baselines over ``N_SEEDS`` seeds (a fresh PU split per seed).
    Returns ``{"params", "records", "summary", "tasks", "models", "scores"}`` (models/scores of the
    first seed only, when ``keep_models``)."""
    p = resolve_parameters(params)
    records, tasks, models, scores = [], {}, {}, {}
    for seed in range(int(p["SEED"]), int(p["SEED"]) + int(p["N_SEEDS"])):
        task = task_from_parameters(p, seed)
        tasks[seed] = task
        t0 = time.perf_counter()
        det = detector_from_parameters(p, seed).fit(task.train.images, task.train.s, task.val.images, task.val.s)
        fit_s = time.perf_counter() - t0
        sc = det.decision_function(task.test.images)
        records.append({"dataset": task.name, "method": "AngularDINO", "seed": seed, **evaluate_pu(task.test, sc),
                        "val_pu_AUROC": det.history_["val_pu_auroc"][-1], "fit_s": fit_s})
        if keep_models and seed == int(p["SEED"]):
            models["AngularDINO"], scores["AngularDINO"] = det, sc
        for name in p["BASELINES"]:
            t0 = time.perf_counter()
            bdet, bsc = fit_baseline(name, task, seed, p["DEEP_BASELINE_EPOCHS"], p["DEVICE"])
            records.append({"dataset": task.name, "method": name, "seed": seed, **evaluate_pu(task.test, bsc),
                            "fit_s": time.perf_counter() - t0})
            if keep_models and seed == int(p["SEED"]):
                models[name], scores[name] = bdet, bsc
        log(f"seed {seed}: " + ", ".join(f"{r['method']} {r['AUROC']:.3f}" for r in records if r["seed"] == seed),
            p["VERBOSE"], level=1)
    from .metrics import summarize

    summ = summarize(records, by=("dataset", "method"), metrics=["AUROC", "AUROC_seen", "AUROC_unseen", "AUPR", "fit_s"])
    summary = {f"{r['method']}_{m}": r[f"{m}_mean"] for _, r in summ.iterrows()
               for m in ("AUROC", "AUROC_seen", "AUROC_unseen")}
    return {"params": p, "records": records, "summary": summary, "table": summ, "tasks": tasks, "models": models,
            "scores": scores}


def main(argv=None) -> int:
    """``python -m kdal_lib.angular_dino --config config.yml [--out DIR]``: the seed's command-line shape."""
    import json

    import yaml

    ap = argparse.ArgumentParser(prog="python -m kdal_lib.angular_dino", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="YAML file with the notebook's parameters (e.g. EPOCHS: 30)")
    ap.add_argument("--out", default=None, help="output folder (default: OUT_DIR from the config)")
    args = ap.parse_args(argv)
    path = Path(args.config)
    if not path.is_file():
        raise SystemExit(f"config file {str(path)!r} not found")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise SystemExit(f"{path}: expected a mapping of parameter names to values")
    try:
        res = run_experiment(cfg)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    from .metrics import save_results

    out = Path(args.out or res["params"]["OUT_DIR"])
    task = next(iter(res["tasks"].values()))
    f = save_results(out, "06_angular_dino_cli", res["records"], summary={**task.describe(), **res["summary"]},
                     params=res["params"])
    print(res["table"].to_string(index=False))
    print(json.dumps(res["summary"], indent=1))
    print(f"wrote {f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------
# Figures and the plain-language verdict used by notebook 06
# ---------------------------------------------------------------------------------------------
def plot_margin_functions(m: float = 0.5):
    """The student's additive and the teacher's subtractive margin against the plain cosine, with
    the original's ArcFace fallback dashed (it jumps where ours continues)."""
    from matplotlib.figure import Figure

    cos = torch.linspace(-1, 1, 801, dtype=torch.float64)
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(cos, cos, "k:", lw=1, label="cos θ (no margin)")
    ax.plot(cos, additive_margin(cos, m), color="tab:red", label=f"student: cos(θ + {m}) (additive)")
    ax.plot(cos, subtractive_margin(cos, m), color="tab:blue", label=f"teacher: cos(θ − {m}) (subtractive)")
    ax.plot(cos, additive_margin(cos, m, "arcface"), "--", color="tab:red", lw=0.8, alpha=0.7,
            label="original ArcFace fallbacks")
    ax.plot(cos, subtractive_margin(cos, m, "arcface"), "--", color="tab:blue", lw=0.8, alpha=0.7)
    ax.set(xlabel="cos θ", ylabel="value used in the loss", title="Dual angular margins")
    ax.legend(fontsize=7)
    return fig


def plot_training_history(history: Mapping, title: str = "AngularDINO training"):
    """Four panels per epoch: the losses, λ and the learning rate (relative), the P-vs-U AUROC on
    the training and validation splits, and how many prototypes changed role."""
    from matplotlib.figure import Figure

    ep = np.arange(1, len(history["loss"]) + 1)
    fig = Figure(figsize=(13, 3.2), layout="constrained")
    ax = fig.subplots(1, 4)
    for k in ("loss", "loss_dino", "loss_ang"):
        ax[0].plot(ep, history[k], label=k)
    if np.isfinite(np.asarray(history.get("val_loss", []), dtype=float)).any():
        ax[0].plot(ep, history["val_loss"], "--", label="val loss")
    ax[0].set(xlabel="epoch", title="losses")
    ax[0].legend(fontsize=7)
    lr = np.asarray(history["lr"])
    ax[1].plot(ep, history["lambda"], label="λ (L_ANG weight)")
    ax[1].plot(ep, lr / max(lr.max(), 1e-12), label="lr / max lr")
    on = np.asarray(history["margin_on"], dtype=bool)
    if on.any():
        ax[1].axvspan(ep[on][0] - 0.5, ep[-1] + 0.5, color="0.9", label="margins on")
    ax[1].set(xlabel="epoch", title="schedules")
    ax[1].legend(fontsize=7)
    ax[2].plot(ep, history["train_pu_auroc"], label="train")
    ax[2].plot(ep, history["val_pu_auroc"], label="validation")
    ax[2].set(xlabel="epoch", title="P vs U AUROC (no hidden labels)", ylim=(0.4, 1.01))
    ax[2].legend(fontsize=7)
    ax[3].bar(ep, history["n_role_changes"])
    ax[3].set(xlabel="epoch", title="prototype role changes")
    fig.suptitle(title)
    return fig


def verdict(records: Sequence[Mapping], method: str = "AngularDINO") -> str:
    """One paragraph: how the method compares with the best baseline overall, on seen and on unseen
    anomalies (mean test AUROC over seeds), in plain words."""
    import pandas as pd

    df = pd.DataFrame(list(records))
    if df.empty or method not in set(df["method"]):
        return f"No {method} results to compare."
    mean = df.groupby("method")[["AUROC", "AUROC_seen", "AUROC_unseen"]].mean()
    n_seeds = int(df[df["method"] == method]["seed"].nunique())
    lines = []
    for col, what in (("AUROC", "overall"), ("AUROC_seen", "on seen anomaly classes"),
                      ("AUROC_unseen", "on the unseen class")):
        others = mean.drop(index=method)[col].dropna()
        ours = mean.loc[method, col]
        if others.empty:
            lines.append(f"{method} reaches AUROC {ours:.3f} {what}.")
            continue
        best = others.idxmax()
        diff = ours - others.max()
        word = "beats" if diff > 0.01 else ("matches" if abs(diff) <= 0.01 else "trails")
        lines.append(f"{what.capitalize()}, {method} ({ours:.3f}) {word} the best baseline, {best} ({others.max():.3f}).")
    caveat = (" With one seed and a small test set, differences of a few points are within noise."
              if n_seeds < 3 else f" Means over {n_seeds} seeds.")
    return " ".join(lines) + caveat
