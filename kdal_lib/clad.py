"""CLAD: confidence-based self-labeling anomaly detection (Park et al., "What is Wrong with One-Class
Anomaly Detection?", ICLR 2021 workshop, arXiv 2104.09793).

The "normal" data of a *latent class-condition scenario* hides several semantic classes (e.g. the
MNIST digits {0, 3, 8}); every other class is an anomaly. CLAD runs four stages:

1. a convolutional autoencoder (MSE) maps images to a latent ``z``;
2. DEC (Xie et al., ICML 2016) self-labels the normal data: KMeans initialises the centres
   ``mu_j``; the soft assignment (DEC Eq. 1, Student-t with ``alpha``)
   ``q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2) / sum_j' (...)``, the sharpened target
   (DEC Eq. 3) ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')`` with ``f_j = sum_i q_ij``, and the
   loss KL(P || Q) (DEC Eq. 2) refine encoder and centres until fewer than ``tol`` (0.1 %) of the
   labels change; pseudo-label ``y* = argmax_j q_ij``;
3. a ResNet-18 (torchvision; stem adapted to grey, small images) learns ``y*`` with cross-entropy;
4. the confidence of that classifier scores a sample: Base = max softmax, ODIN (Liang et al., ICLR
   2018, Eq. 1-2) = max softmax(f(x~)/T) with ``x~ = x - eps * sign(grad_x CE(f(x)/T, argmax))``.
   Anomaly score = -confidence (higher = more anomalous, the package convention).

Deliberate differences from the original code (each a parameter; see the notebook's fidelity table):
ODIN runs batched (same maths, BatchNorm in eval mode); the original's x161 gradient scale
(``ORIGINAL_GRADIENT_SCALE``) is off by default; DEC's target is recomputed once per epoch over all
data (DEC paper) instead of per batch (``target_update="batch"`` restores it); the AE is a plain
AE (the original draws z = mu + sigma * eps without a KL term); AUROC is never flipped.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import DetectorMixin
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_features, check_param

__all__ = [
    "SCENARIOS",
    "ORIGINAL_GRADIENT_SCALE",
    "PAPER_AUROC",
    "PAPER_BEST_BASELINE",
    "ClassConditionTask",
    "resolve_normal_classes",
    "make_scenario",
    "load_scenario",
    "ConvAE",
    "soft_assignment",
    "target_distribution",
    "dec_kl_loss",
    "label_change_fraction",
    "dec_should_stop",
    "resnet18_small",
    "confidence_scores",
    "CLADDetector",
    "cluster_purity",
    "cluster_metrics",
    "contingency",
    "latent_tsne",
    "plot_tsne_panels",
    "run_scenario",
]

#: latent class-condition scenarios of the paper (README Table 5): the normal super-categories.
#: GTSRB: the benchmark's class ids (SPDL speed limits, INST driving instructions, WARN warnings, DIRC
#: directions, SPEC special signs, REGN regulations; the six cover all 43 classes).
#: Tiny-ImageNet's five groups of 8 (ANML, ISCT, ISTM, STRT, VHCL) are not transcribed: the original gives
#: them as positions in a class-list file it does not ship, so the WordNet ids cannot be recovered; pass
#: ``classes=[wnids]`` to :func:`load_scenario` and the normal ones as ``scenario=[positions]``.
SCENARIOS = {
    "mnist": {"CUR": (0, 3, 8), "STR": (1, 4, 7), "MIX": (2, 5, 6, 9)},
    "digits": {"CUR": (0, 3, 8), "STR": (1, 4, 7), "MIX": (2, 5, 6, 9)},
    "cifar10": {"THG": (0, 1, 8, 9), "LIV": (2, 3, 4, 5, 6, 7)},
    "gtsrb": {"SPDL": (0, 1, 2, 3, 4, 5, 7, 8), "INST": (9, 10, 15, 16),
              "WARN": (11, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
              "DIRC": (33, 34, 35, 36, 37, 38, 39, 40), "SPEC": (12, 13, 14, 17), "REGN": (6, 32, 41, 42)},
}
#: the original multiplies sign(grad) by 50 / (79 / 255) before the eps step (odin.py)
ORIGINAL_GRADIENT_SCALE = 50.0 / (79.0 / 255.0)
#: paper AUROC (%) of CLAD and of its best baseline per scenario (README tables)
PAPER_AUROC = {("mnist", "CUR"): 94.0, ("mnist", "STR"): 96.1, ("mnist", "MIX"): 92.6,
               ("cifar10", "THG"): 74.9, ("cifar10", "LIV"): 72.8,
               ("gtsrb", "SPDL"): 66.7, ("gtsrb", "INST"): 66.5, ("gtsrb", "WARN"): 64.9,
               ("gtsrb", "DIRC"): 67.4, ("gtsrb", "SPEC"): 62.2, ("gtsrb", "REGN"): 79.1}
PAPER_BEST_BASELINE = {("mnist", "CUR"): (81.7, "DeepSVDD"), ("mnist", "STR"): (87.4, "OCSVM"),
                       ("mnist", "MIX"): (69.7, "DeepSVDD"), ("cifar10", "THG"): (65.0, "DeepSVDD"),
                       ("cifar10", "LIV"): (67.7, "OCSVM"), ("gtsrb", "SPDL"): (66.3, "OCSVM"),
                       ("gtsrb", "INST"): (69.7, "DeepSVDD"), ("gtsrb", "WARN"): (73.4, "DeepSVDD"),
                       ("gtsrb", "DIRC"): (62.0, "OCNN"), ("gtsrb", "SPEC"): (70.2, "DeepSVDD"),
                       ("gtsrb", "REGN"): (78.3, "OCNN")}


# ----------------------------------------------------------------------------------------------
# scenarios
# ----------------------------------------------------------------------------------------------
@dataclass
class ClassConditionTask:
    """A latent class-condition task: ``X_train`` holds only images of ``normal_classes``
    (``train_classes`` = their true class, for diagnostics only); ``X_test`` holds every class,
    ``y_test`` = 1 for an anomaly (a class outside ``normal_classes``)."""

    name: str
    dataset: str
    scenario: str
    normal_classes: tuple
    X_train: np.ndarray
    train_classes: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    test_classes: np.ndarray
    class_names: list
    meta: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "scenario": self.scenario,
                "normal_classes": list(self.normal_classes),
                "normal_names": [self.class_names[c] for c in self.normal_classes],
                "n_train": int(len(self.X_train)), "n_test": int(len(self.X_test)),
                "n_test_normal": int((self.y_test == 0).sum()), "n_test_anomalies": int(self.y_test.sum()),
                "contamination": round(float(self.y_test.mean()), 4),
                "image_size": int(self.X_train.shape[2]), "channels": int(self.X_train.shape[1]),
                "split": self.meta.get("split")}

    def class_counts(self):
        """Per-class counts in train and test, with the role of each class (a DataFrame)."""
        import pandas as pd

        rows = []
        for c, name in enumerate(self.class_names):
            rows.append({"class": c, "name": name, "role": "normal" if c in self.normal_classes else "anomaly",
                         "train": int((self.train_classes == c).sum()), "test": int((self.test_classes == c).sum())})
        return pd.DataFrame(rows)


def resolve_normal_classes(dataset: str, scenario, n_classes: int = 10) -> tuple[str, tuple]:
    """``scenario``: a named group (``"CUR"``), ``"one-class:<k>"`` / ``"<k>"`` (one class normal,
    the ablation setting), or a list of class indices. Returns ``(label, classes)``."""
    groups = SCENARIOS.get(dataset, {})
    if isinstance(scenario, str):
        s = scenario.strip()
        if s.upper() in groups:
            return s.upper(), tuple(groups[s.upper()])
        low = s.lower().replace("_", "-")
        if low.startswith(("one-class:", "oneclass:")) or s.isdigit():
            num = low.split(":", 1)[1] if ":" in low else s
            try:
                classes = (int(num),)
            except ValueError:
                raise ValueError(f"one-class scenario must name a class index, got {scenario!r}") from None
            label = f"one-class:{classes[0]}"
        else:
            raise ValueError(f"unknown scenario {scenario!r} for {dataset!r}; named scenarios: {sorted(groups)}, "
                             "or 'one-class:<k>', or a list of class indices")
    else:
        try:
            classes = tuple(int(c) for c in scenario)
        except TypeError:
            raise ValueError(f"scenario must be a name or a list of class indices, got {scenario!r}") from None
        label = "classes:" + "+".join(str(c) for c in classes)
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"scenario {scenario!r} names class(es) {bad} that do not exist in {dataset!r} "
                         f"(classes 0..{n_classes - 1})")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"scenario {scenario!r} must list distinct classes, at least one")
    if len(classes) == n_classes:
        raise ValueError(f"scenario {scenario!r} makes every class normal: no anomalies are left")
    return label, tuple(sorted(classes))


def make_scenario(split, scenario="CUR", max_train: int | None = None, random_state: int = 0,
                  dataset: str | None = None) -> ClassConditionTask:
    """Build the latent class-condition task from a :class:`~kdal_lib.data.digits.ClassificationSplit`
    (or any object with ``X_train, y_train, X_test, y_test, class_names, name``): the training set keeps
    the normal classes only (a seeded subsample of ``max_train`` if given); the test set keeps all."""
    dataset = dataset or split.name
    n_classes = len(split.class_names)
    label, classes = resolve_normal_classes(dataset, scenario, n_classes)
    X_tr = check_features(split.X_train, "X_train", ndim=4)
    X_te = check_features(split.X_test, "X_test", ndim=4)
    y_tr, y_te = np.asarray(split.y_train).astype(np.int64), np.asarray(split.y_test).astype(np.int64)
    keep = np.isin(y_tr, classes)
    if keep.sum() < 2:
        raise ValueError(f"scenario {label}: only {int(keep.sum())} training images of classes {classes}")
    X_tr, c_tr = X_tr[keep], y_tr[keep]
    if max_train is not None and len(X_tr) > max_train:
        check_param("max_train", max_train, low=2, integer=True)
        idx = np.sort(np.random.default_rng(random_state).choice(len(X_tr), max_train, replace=False))
        X_tr, c_tr = X_tr[idx], c_tr[idx]
    y_anom = (~np.isin(y_te, classes)).astype(np.int64)
    if y_anom.min() == y_anom.max():
        raise ValueError(f"scenario {label}: the test split holds only {'anomalies' if y_anom[0] else 'normals'}")
    meta = dict(getattr(split, "meta", {}) or {})
    meta.update(max_train=max_train)
    return ClassConditionTask(f"{dataset}:{label}", dataset, label, classes, X_tr, c_tr, X_te, y_anom, y_te,
                              list(split.class_names), meta)


def load_scenario(dataset: str = "digits", scenario="CUR", data_dir=None, random_state: int = 0,
                  test_fraction: float | None = None, image_size: int | None = None,
                  max_train: int | None = None, classes=None) -> ClassConditionTask:
    """:func:`~kdal_lib.data.digits.load_classification_split` then :func:`make_scenario`.
    ``classes``: the WordNet ids to load for ``"tinyimagenet"`` (ignored by the others)."""
    from .data.digits import load_classification_split

    split = load_classification_split(dataset, data_dir=data_dir, test_fraction=test_fraction,
                                      random_state=random_state, image_size=image_size, classes=classes)
    return make_scenario(split, scenario, max_train=max_train, random_state=random_state)


# ----------------------------------------------------------------------------------------------
# stage 1: convolutional autoencoder
# ----------------------------------------------------------------------------------------------
class ConvAE(nn.Module):
    """Conv encoder → ``latent_dim`` → mirrored decoder with a sigmoid output (MSE on [0, 1] images).
    One 2× pooling for images ≤ 8 px, two above (so 28 → 7, 32 → 8, 8 → 4); input dropout as the
    original (Dropout 0.1 before the encoder, active in training only)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, latent_dim: int = 10, width: int = 16,
                 input_dropout: float = 0.1):
        super().__init__()
        n_pool = 1 if image_size <= 8 else 2
        if image_size % (2 ** n_pool):
            raise ValueError(f"ConvAE needs an image size divisible by {2 ** n_pool}, got {image_size}")
        s = image_size // 2 ** n_pool
        w = width
        enc = [nn.Dropout(input_dropout), nn.Conv2d(in_channels, w, 3, padding=1), nn.ELU(), nn.MaxPool2d(2),
               nn.Conv2d(w, 2 * w, 3, padding=1), nn.ELU()]
        if n_pool == 2:
            enc.append(nn.MaxPool2d(2))
        enc += [nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ELU(), nn.Flatten(),
                nn.Linear(4 * w * s * s, 128), nn.ELU(), nn.Linear(128, latent_dim)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Linear(latent_dim, 128), nn.ELU(), nn.Linear(128, 4 * w * s * s), nn.ELU(),
               nn.Unflatten(1, (4 * w, s, s))]
        ch = 4 * w
        for _ in range(n_pool):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1), nn.ELU()]
            ch //= 2
        dec += [nn.Conv2d(ch, in_channels, 3, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        return self.decoder(self.encoder(x))


# ----------------------------------------------------------------------------------------------
# stage 2: DEC
# ----------------------------------------------------------------------------------------------
def soft_assignment(z: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """DEC Eq. 1: Student-t kernel between embeddings ``z`` (N, h) and centres (k, h); rows sum to 1."""
    d2 = torch.cdist(z, centres).pow(2) if z.shape[0] > 0 else z.new_zeros(0, centres.shape[0])
    q = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC Eq. 3: ``p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j')`` with cluster frequencies ``f_j = Σ_i q_ij``."""
    w = q.pow(2) / q.sum(0, keepdim=True)
    return w / w.sum(1, keepdim=True)


def dec_kl_loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """DEC Eq. 2: KL(P ‖ Q), averaged over the batch."""
    return F.kl_div(q.clamp_min(1e-12).log(), p, reduction="batchmean")


def label_change_fraction(previous, current) -> float:
    """Share of samples whose hard cluster label changed."""
    previous, current = np.asarray(previous), np.asarray(current)
    if previous.shape != current.shape:
        raise ValueError(f"label arrays differ in shape: {previous.shape} vs {current.shape}")
    return float((previous != current).mean()) if previous.size else 0.0


def dec_should_stop(previous, current, tol: float = 0.001) -> bool:
    """DEC's stopping rule: stop once fewer than ``tol`` of the labels change (strictly less)."""
    return label_change_fraction(previous, current) < tol


# ----------------------------------------------------------------------------------------------
# stage 3: classifier
# ----------------------------------------------------------------------------------------------
def resnet18_small(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, stem: str = "auto") -> nn.Module:
    """torchvision ResNet-18 (BasicBlock [2, 2, 2, 2]) with the ImageNet stem (7×7 stride-2 conv +
    max-pool) swapped for a 3×3 conv: stride 1 (``stem="cifar"``, images ≤ 16 px under "auto") or
    stride 2 (``stem="stride2"``, larger images under "auto": 28 px → 14 px, 4× cheaper on CPU).
    ``stem="imagenet"`` keeps torchvision's stem (only the input channels change), as the original."""
    from .nets import resnet18_net

    check_param("stem", stem, choices=("auto", "cifar", "stride2", "imagenet"))
    if stem == "auto":
        stem = "cifar" if image_size <= 16 else "stride2"
    return resnet18_net(in_channels, num_classes, stem)


# ----------------------------------------------------------------------------------------------
# stage 4: confidence (Base / ODIN), batched
# ----------------------------------------------------------------------------------------------
def confidence_scores(model: nn.Module, X: torch.Tensor, temperature: float = 1.0, epsilon: float = 0.0,
                      gradient_scale: float = 1.0, batch_size: int = 256, device=None) -> np.ndarray:
    """Max softmax of ``model(x~) / T`` per sample (high = normal); ODIN Eq. 1-2.

    ``x~ = x - epsilon * gradient_scale * sign(∇_x CE(model(x)/T, argmax))`` (``epsilon = 0``: no
    perturbation; ``T = 1, epsilon = 0``: the Base max-softmax score). ``X`` must already be in the
    model's input scale. Runs in batches with the model in eval mode: every sample's perturbation
    depends on that sample only, so batching gives the same numbers as the original's batch size 1.
    The softmax is taken in float64 so that the tiny differences at T = 1000 are not rounded away."""
    check_param("temperature", temperature, low=0, inclusive=(False, True))
    check_param("epsilon", epsilon, low=0)
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    for i in range(0, X.shape[0], batch_size):
        xb = X[i:i + batch_size].to(device)
        if epsilon > 0:
            xg = xb.clone().requires_grad_(True)
            logits = model(xg) / temperature
            loss = F.cross_entropy(logits, logits.argmax(1), reduction="sum")
            grad, = torch.autograd.grad(loss, xg)
            xb = xb - epsilon * gradient_scale * grad.sign()
        with torch.no_grad():
            logits = model(xb).double() / temperature
            out.append(torch.softmax(logits, 1).max(1).values.cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


# ----------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------
class CLADDetector(DetectorMixin):
    """CLAD with a PyOD-style API: ``fit(X)`` on normal images ``(N, C, H, W)`` in [0, 1];
    ``decision_function(X)`` = −confidence (``score="odin"`` or ``"base"``); ``score_all(X)`` gives both.

    Defaults follow the MNIST run scripts where CPU allows (k = 10 clusters, h = 10, DEC SGD lr 0.01
    momentum 0.9, tol 0.1 %, T = 1000) with fewer epochs (original: AE 100, DEC 100, ResNet 100).
    ``epsilon`` is fixed by default, never chosen with test labels (original MNIST ε = 1e-4 with the
    ×161 scale, i.e. an effective step ≈ 0.016 in normalised units; here ε = 0.002 with scale 1).
    ``epsilon="auto"`` picks ε from ``epsilon_grid`` without any anomaly, by the Generalized-ODIN
    criterion (Hsu et al., CVPR 2020, §3.3): the ε that maximises the mean ODIN confidence (max softmax
    at ``temperature`` after the perturbation) of held-out *normal* images. A seeded ``val_fraction``
    of the training normals is held out of the ResNet classifier's training set (and of its input
    standardisation) only; the AE and DEC still use all normals, unsupervised. Fitted: ``epsilon_``
    (the ε used for scoring; = ``epsilon`` when numeric), ``epsilon_table_`` (one dict per grid value:
    ``epsilon``, ``mean_confidence``; empty when numeric), ``val_index_`` (held-out rows of ``X``),
    ``n_classifier_train_``. Other fitted attributes: ``pseudo_labels_``, ``kmeans_labels_``,
    ``latent_ae_``, ``latent_dec_`` (training latents after each stage), ``history_`` (per-epoch
    losses, DEC label changes, classifier accuracy on the pseudo-labels), ``stage_seconds_``,
    ``dec_epochs_run_``. ``decision_scores_`` and ``threshold_`` (``contamination``) come from a
    seeded subsample of ``threshold_samples`` training images (all when None) because ODIN costs
    three network passes per image."""

    def __init__(self, n_clusters: int = 10, latent_dim: int = 10, ae_epochs: int = 20, dec_epochs: int = 20,
                 clf_epochs: int = 10, ae_lr: float = 1e-3, dec_lr: float = 0.01, clf_lr: float = 1e-3,
                 batch_size: int = 128, alpha: float = 1.0, dec_tol: float = 0.001, target_update: str = "epoch",
                 kmeans_n_init: int = 20, temperature: float = 1000.0, epsilon: float | str = 0.002,
                 epsilon_grid: Sequence[float] = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02),
                 val_fraction: float = 0.1, gradient_scale: float = 1.0, score: str = "odin", stem: str = "auto",
                 ae_width: int = 16, input_dropout: float = 0.1, contamination: float = 0.1,
                 threshold_samples: int | None = 1024,
                 device: str = "auto", random_state: int = 0, verbose: int = 0):
        self.n_clusters, self.latent_dim = n_clusters, latent_dim
        self.ae_epochs, self.dec_epochs, self.clf_epochs = ae_epochs, dec_epochs, clf_epochs
        self.ae_lr, self.dec_lr, self.clf_lr, self.batch_size = ae_lr, dec_lr, clf_lr, batch_size
        self.alpha, self.dec_tol, self.target_update, self.kmeans_n_init = alpha, dec_tol, target_update, kmeans_n_init
        self.temperature, self.epsilon, self.gradient_scale, self.score = temperature, epsilon, gradient_scale, score
        self.epsilon_grid, self.val_fraction = epsilon_grid, val_fraction
        self.stem, self.ae_width, self.input_dropout = stem, ae_width, input_dropout
        self.contamination, self.threshold_samples = contamination, threshold_samples
        self.device, self.random_state, self.verbose = device, random_state, verbose

    # -- checks -------------------------------------------------------------------------------
    def _check_params(self, n: int) -> None:
        check_param("n_clusters", self.n_clusters, low=2, integer=True)
        check_param("latent_dim", self.latent_dim, low=1, integer=True)
        for name in ("ae_epochs", "clf_epochs"):
            check_param(name, getattr(self, name), low=1, integer=True)
        check_param("dec_epochs", self.dec_epochs, low=0, integer=True)
        check_param("batch_size", self.batch_size, low=1, integer=True)
        for name in ("ae_lr", "dec_lr", "clf_lr", "alpha", "temperature"):
            check_param(name, getattr(self, name), low=0, inclusive=(False, True))
        check_param("dec_tol", self.dec_tol, low=0, high=1)
        if isinstance(self.epsilon, str):
            if self.epsilon != "auto":
                raise ValueError(f"epsilon must be 'auto' or a number >= 0, got {self.epsilon!r}")
        else:
            check_param("epsilon", self.epsilon, low=0)
        grid = self.epsilon_grid
        if isinstance(grid, str) or np.ndim(grid) != 1 or len(grid) == 0:
            raise ValueError(f"epsilon_grid must be a non-empty sequence of numbers >= 0, got {grid!r}")
        for e in grid:
            check_param("epsilon_grid value", e, low=0)
        check_param("val_fraction", self.val_fraction, low=0, high=0.5, inclusive=(False, True))
        check_param("gradient_scale", self.gradient_scale, low=0)
        check_param("target_update", self.target_update, choices=("epoch", "batch"))
        check_param("score", self.score, choices=("odin", "base"))
        check_param("verbose", self.verbose, choices=(0, 1, 2))
        if n < self.n_clusters:
            raise ValueError(f"CLAD needs at least n_clusters={self.n_clusters} training samples, got {n}")
        if self.epsilon == "auto" and n - max(1, int(round(self.val_fraction * n))) < 2:
            raise ValueError(f"epsilon='auto' holds out val_fraction={self.val_fraction} of {n} samples: "
                             "fewer than 2 are left to train the classifier")

    def _batches(self, n: int, gen: torch.Generator, drop_last: bool = False):
        order = torch.randperm(n, generator=gen)
        stop = n - n % self.batch_size if (drop_last and n > self.batch_size) else n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            if len(idx):
                yield idx

    @torch.no_grad()
    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        self.ae_.eval()
        return torch.cat([self.ae_.encoder(X[i:i + 1024].to(self.device_)).cpu() for i in range(0, len(X), 1024)])

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train the four stages on normal images ``X``; ``y`` is ignored (labels are never used)."""
        from sklearn.cluster import KMeans

        X = check_features(X, "X", ndim=4, min_samples=2)
        self._check_params(len(X))
        if X.min() < 0 or X.max() > 1:
            raise ValueError(f"X must hold images scaled to [0, 1], got range [{X.min():.3g}, {X.max():.3g}]")
        if X.shape[2] != X.shape[3]:
            raise ValueError(f"CLAD expects square images, got {X.shape[2]}×{X.shape[3]}")
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.n_features_in_ = X.shape[1]
        self.image_size_ = X.shape[2]
        Xt = torch.from_numpy(X)
        n = len(Xt)
        self.history_ = {"ae_loss": [], "dec_loss": [], "dec_changed": [], "clf_loss": [], "clf_acc": []}
        self.stage_seconds_ = {}

        # 1. autoencoder
        t0 = time.perf_counter()
        self.ae_ = ConvAE(X.shape[1], X.shape[2], self.latent_dim, self.ae_width, self.input_dropout).to(self.device_)
        opt = torch.optim.Adam(self.ae_.parameters(), lr=self.ae_lr)
        for epoch in progress(range(self.ae_epochs), self.verbose, desc="CLAD AE", unit="epoch"):
            self.ae_.train()
            total = 0.0
            for idx in self._batches(n, gen):
                xb = Xt[idx].to(self.device_)
                loss = F.mse_loss(self.ae_(xb), xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.history_["ae_loss"].append(total / n)
            log(f"AE epoch {epoch + 1}/{self.ae_epochs} mse {total / n:.5f}", self.verbose)
        if not np.isfinite(self.history_["ae_loss"][-1]):
            raise FloatingPointError("CLAD autoencoder loss diverged: lower ae_lr")
        self.stage_seconds_["ae"] = time.perf_counter() - t0

        # 2. KMeans initialisation + DEC
        t0 = time.perf_counter()
        z = self._encode(Xt)
        self.latent_ae_ = z.numpy().copy()
        km = KMeans(self.n_clusters, n_init=self.kmeans_n_init, random_state=self.random_state).fit(self.latent_ae_)
        self.kmeans_labels_ = km.labels_.astype(np.int64)
        self.stage_seconds_["kmeans"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.centres_ = nn.Parameter(torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=self.device_))
        encoder = self.ae_.encoder
        opt = torch.optim.SGD(list(encoder.parameters()) + [self.centres_], lr=self.dec_lr, momentum=0.9)
        labels = self.kmeans_labels_.copy()
        self.dec_epochs_run_ = 0
        self.dec_converged_ = False
        for epoch in progress(range(self.dec_epochs), self.verbose, desc="CLAD DEC", unit="epoch"):
            p_all = None
            if self.target_update == "epoch":
                with torch.no_grad():
                    p_all = target_distribution(soft_assignment(self._encode(Xt).to(self.device_), self.centres_,
                                                                self.alpha))
            encoder.train()
            total = 0.0
            for idx in self._batches(n, gen):
                q = soft_assignment(encoder(Xt[idx].to(self.device_)), self.centres_, self.alpha)
                p = p_all[idx.to(self.device_)] if p_all is not None else target_distribution(q).detach()
                loss = dec_kl_loss(q, p)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            with torch.no_grad():
                new = soft_assignment(self._encode(Xt).to(self.device_), self.centres_, self.alpha).argmax(1).cpu().numpy()
            changed = label_change_fraction(labels, new)
            self.history_["dec_loss"].append(total / n)
            self.history_["dec_changed"].append(changed)
            self.dec_epochs_run_ = epoch + 1
            log(f"DEC epoch {epoch + 1}/{self.dec_epochs} KL {total / n:.5f} labels changed {changed:.4%}", self.verbose)
            stop = dec_should_stop(labels, new, self.dec_tol)
            labels = new
            if stop:
                self.dec_converged_ = True
                break
        with torch.no_grad():
            zd = self._encode(Xt)
            q = soft_assignment(zd.to(self.device_), self.centres_, self.alpha)
        self.latent_dec_ = zd.numpy()
        self.pseudo_labels_ = q.argmax(1).cpu().numpy().astype(np.int64)
        self.stage_seconds_["dec"] = time.perf_counter() - t0

        # 3. classifier on the pseudo-labels, inputs standardised with the training statistics; with
        # epsilon="auto" a seeded share of the normals is held out of this stage to choose epsilon
        t0 = time.perf_counter()
        clf_rows = np.arange(n)
        self.val_index_ = np.zeros(0, dtype=np.int64)
        if self.epsilon == "auto":
            n_val = max(1, int(round(self.val_fraction * n)))
            perm = np.random.default_rng(self.random_state).permutation(n)
            self.val_index_, clf_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        self.n_classifier_train_ = len(clf_rows)
        Xc = Xt[torch.from_numpy(clf_rows)]
        self.mean_ = Xc.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
        self.std_ = Xc.std(dim=(0, 2, 3)).clamp_min(1e-6).view(1, -1, 1, 1)
        Xn = (Xc - self.mean_) / self.std_
        yt = torch.from_numpy(self.pseudo_labels_[clf_rows])
        self.classifier_ = resnet18_small(X.shape[1], self.n_clusters, X.shape[2], self.stem).to(self.device_)
        opt = torch.optim.Adam(self.classifier_.parameters(), lr=self.clf_lr)
        for epoch in progress(range(self.clf_epochs), self.verbose, desc="CLAD ResNet-18", unit="epoch"):
            self.classifier_.train()
            total, correct, count = 0.0, 0, 0
            for idx in self._batches(len(clf_rows), gen, drop_last=True):
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                logits = self.classifier_(Xn[idx].to(self.device_))
                yb = yt[idx].to(self.device_)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                count += len(idx)
            self.history_["clf_loss"].append(total / max(count, 1))
            self.history_["clf_acc"].append(correct / max(count, 1))
            log(f"ResNet epoch {epoch + 1}/{self.clf_epochs} CE {total / max(count, 1):.4f} "
                f"acc {correct / max(count, 1):.3f}", self.verbose)
        self.classifier_.eval()
        self.stage_seconds_["classifier"] = time.perf_counter() - t0

        # 4. epsilon: fixed, or the Generalized-ODIN choice on the held-out normals (no anomaly used)
        self.epsilon_table_ = []
        if self.epsilon == "auto":
            t0 = time.perf_counter()
            X_val = X[self.val_index_]
            for eps in self.epsilon_grid:
                conf = self.confidence(X_val, self.temperature, float(eps))
                self.epsilon_table_.append({"epsilon": float(eps), "mean_confidence": float(conf.mean())})
            best = int(np.argmax([row["mean_confidence"] for row in self.epsilon_table_]))  # ties: first (smaller)
            self.epsilon_ = self.epsilon_table_[best]["epsilon"]
            self.stage_seconds_["epsilon"] = time.perf_counter() - t0
            log(f"epsilon='auto': chose {self.epsilon_} on {len(X_val)} held-out normals", self.verbose)
        else:
            self.epsilon_ = float(self.epsilon)
        t0 = time.perf_counter()
        if self.threshold_samples and n > self.threshold_samples:  # ODIN costs 3 passes: score a subsample
            X = X[np.sort(np.random.default_rng(self.random_state).choice(n, self.threshold_samples, replace=False))]
        self._set_threshold(self.decision_function(X))
        self.stage_seconds_["score_train"] = time.perf_counter() - t0
        return self

    # -- scoring ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise RuntimeError("CLADDetector is not fitted: call fit(X) first")

    def _prepare(self, X) -> torch.Tensor:
        self._check_fitted()
        X = check_features(X, "X", ndim=4)
        if X.shape[1:] != (self.n_features_in_, self.image_size_, self.image_size_):
            raise ValueError(f"X has images of shape {X.shape[1:]}, the detector was fitted on "
                             f"{(self.n_features_in_, self.image_size_, self.image_size_)}")
        return (torch.from_numpy(X) - self.mean_) / self.std_

    def confidence(self, X, temperature: float = 1.0, epsilon: float = 0.0, gradient_scale: float | None = None,
                   batch_size: int = 256) -> np.ndarray:
        """Max-softmax confidence (high = normal) with any T and ε (T = 1, ε = 0: Base)."""
        Xp = self._prepare(X)
        return confidence_scores(self.classifier_, Xp, temperature, epsilon,
                                 self.gradient_scale if gradient_scale is None else gradient_scale, batch_size,
                                 self.device_)

    def decision_function(self, X) -> np.ndarray:
        """Anomaly score = −confidence (ODIN with ``temperature`` and the fitted ``epsilon_``, or Base)."""
        self._check_fitted()
        if self.score == "base":
            return -self.confidence(X)
        return -self.confidence(X, self.temperature, self.epsilon_)

    def score_all(self, X) -> dict:
        """``{"Base": -max softmax, "ODIN": -ODIN confidence}`` (both higher = more anomalous)."""
        self._check_fitted()
        return {"Base": -self.confidence(X), "ODIN": -self.confidence(X, self.temperature, self.epsilon_)}

    def embed(self, X) -> np.ndarray:
        """Latent codes of the (DEC-refined) encoder."""
        if not hasattr(self, "ae_"):
            raise RuntimeError("CLADDetector is not fitted: call fit(X) first")
        return self._encode(torch.from_numpy(check_features(X, "X", ndim=4))).numpy()

    def predict_cluster(self, X) -> np.ndarray:
        """DEC cluster (argmax q) of each image."""
        z = torch.from_numpy(self.embed(X)).to(self.device_)
        with torch.no_grad():
            return soft_assignment(z, self.centres_, self.alpha).argmax(1).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# diagnostics and plots
# ----------------------------------------------------------------------------------------------
def cluster_purity(clusters, classes) -> float:
    """Purity: the share of samples that belong to the majority true class of their cluster."""
    clusters, classes = np.asarray(clusters).ravel(), np.asarray(classes).ravel()
    if clusters.shape != classes.shape or clusters.size == 0:
        raise ValueError(f"clusters and classes must be non-empty and equally long, got {clusters.size} and {classes.size}")
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(classes[clusters == c]).max()
    return float(total / clusters.size)


def cluster_metrics(clusters, classes) -> dict:
    """Purity, normalised mutual information and adjusted Rand index against the true classes."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"purity": cluster_purity(clusters, classes), "NMI": float(normalized_mutual_info_score(classes, clusters)),
            "ARI": float(adjusted_rand_score(classes, clusters))}


def contingency(clusters, classes):
    """Clusters × true classes count table (a DataFrame)."""
    import pandas as pd

    return pd.crosstab(pd.Series(np.asarray(clusters), name="cluster"), pd.Series(np.asarray(classes), name="class"))


def latent_tsne(latents: Mapping[str, np.ndarray], max_points: int = 2000, random_state: int = 0,
                perplexity: float = 30.0, n_iter: int = 750, prefer: str = "multicore"):
    """t-SNE of each latent (same seeded subsample of rows for all) via :func:`kdal_lib.embedding.tsne`
    (MulticoreTSNE, else scikit-learn). Returns ``({name: Y}, rows, backend)``."""
    from .embedding import tsne

    n = len(next(iter(latents.values())))
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(random_state).choice(n, max_points, replace=False))
    out, backend = {}, None
    for name, Z in latents.items():
        out[name], backend = tsne(np.asarray(Z)[rows], perplexity=perplexity, n_iter=n_iter,
                                  random_state=random_state, prefer=prefer)
    return out, rows, backend


def plot_tsne_panels(embeddings: Mapping[str, np.ndarray], colourings: Mapping[str, np.ndarray], backend: str,
                     class_names: Sequence[str] | None = None, cell: float = 3.4):
    """Grid: one row per embedding (e.g. "after AE", "after DEC"), one column per colouring
    (e.g. "cluster", "true class"); the t-SNE backend is named in the title. A colouring is one label
    array for every row, or a mapping row name → labels (e.g. KMeans clusters for the AE row, DEC
    clusters for the DEC row)."""
    from matplotlib.figure import Figure

    rows, cols = list(embeddings), list(colourings)
    fig = Figure(figsize=(cell * len(cols) + 1.2, cell * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, ename in enumerate(rows):
        Y = embeddings[ename]
        for c, cname in enumerate(cols):
            ax = axes[r, c]
            lab = colourings[cname]
            lab = np.asarray(lab[ename] if isinstance(lab, Mapping) else lab)
            for j, v in enumerate(np.unique(lab)):
                m = lab == v
                name = class_names[v] if (class_names is not None and "class" in cname and v < len(class_names)) else v
                ax.scatter(Y[m, 0], Y[m, 1], s=4, color=f"C{j % 10}", label=str(name), alpha=0.8,
                           marker="o" if j < 10 else "x")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{ename} · coloured by {cname}", fontsize=9)
            ax.legend(fontsize=6, markerscale=2, ncol=2, loc="best", framealpha=0.6)
    fig.suptitle(f"t-SNE of the CLAD latent (backend: {backend})", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------
# one scenario, several seeds, CLAD and baselines
# ----------------------------------------------------------------------------------------------
def run_scenario(task: ClassConditionTask, seeds: Sequence[int], clad_kwargs: Mapping | None = None,
                 methods: Sequence[str] = ("CLAD-Base", "CLAD-ODIN", "OCSVM", "DeepSVDD"),
                 deep_svdd_kwargs: Mapping | None = None, ocsvm_kwargs: Mapping | None = None,
                 ocnn_kwargs: Mapping | None = None, device: str = "auto", verbose: int = 0):
    """Fit CLAD (one fit gives both CLAD-Base and CLAD-ODIN) and the baselines on ``task.X_train``
    for every seed; score ``task.X_test``. Returns ``(records, scores_first_seed, detectors_first_seed)``.
    Records hold AUROC (raw, never flipped), AUPR, best-F1, fit/score seconds and CLAD's stage times
    (and the ε CLAD-ODIN used). ``"OCNN"`` (:class:`~kdal_lib.oc_nn.OCNNDetector`, ``ocnn_kwargs``) is
    available but not in the default ``methods``."""
    from .baselines import OCSVMDetector
    from .deep_svdd import DeepSVDDDetector
    from .metrics import evaluate_scores
    from .oc_nn import OCNNDetector

    known = {"CLAD-Base", "CLAD-ODIN", "OCSVM", "DeepSVDD", "OCNN"}
    unknown = set(methods) - known
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {sorted(known)}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty: give at least one seed")
    records, scores, detectors = [], {}, {}
    flat_tr = task.X_train.reshape(len(task.X_train), -1)
    flat_te = task.X_test.reshape(len(task.X_test), -1)
    base = {"dataset": task.dataset, "scenario": task.scenario}
    for seed in seeds:
        if {"CLAD-Base", "CLAD-ODIN"} & set(methods):
            t0 = time.perf_counter()
            det = CLADDetector(**{**dict(clad_kwargs or {}), "random_state": seed, "device": device,
                                  "verbose": verbose}).fit(task.X_train)
            fit_s = time.perf_counter() - t0
            purity = cluster_metrics(det.pseudo_labels_, task.train_classes)
            for name, eps_T in (("CLAD-Base", None), ("CLAD-ODIN", True)):
                if name not in methods:
                    continue
                t0 = time.perf_counter()
                s = -det.confidence(task.X_test) if eps_T is None else \
                    -det.confidence(task.X_test, det.temperature, det.epsilon_)
                score_s = time.perf_counter() - t0
                rec = {**base, "method": name, "seed": seed, **evaluate_scores(task.y_test, s, oracle=False),
                       "fit_s": fit_s, "score_s": score_s, "cluster_purity": purity["purity"],
                       "cluster_NMI": purity["NMI"], "dec_epochs_run": det.dec_epochs_run_, "epsilon": det.epsilon_,
                       **{f"{k}_s": v for k, v in det.stage_seconds_.items()}}
                records.append(rec)
                if seed == seeds[0]:
                    scores[name] = s
            if seed == seeds[0]:
                detectors["CLAD"] = det
        for name in ("OCSVM", "DeepSVDD", "OCNN"):
            if name not in methods:
                continue
            t0 = time.perf_counter()
            if name == "OCSVM":
                det = OCSVMDetector(**{**dict(ocsvm_kwargs or {}), "random_state": seed}).fit(flat_tr)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                s = det.decision_function(flat_te)
            elif name == "OCNN":
                det = OCNNDetector(**{**dict(ocnn_kwargs or {}), "random_state": seed, "device": device,
                                      "verbose": 0}).fit(flat_tr)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                s = det.decision_function(flat_te)
            else:
                det = DeepSVDDDetector(**{**dict(deep_svdd_kwargs or {}), "random_state": seed, "device": device,
                                          "verbose": 0}).fit(task.X_train)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                s = det.decision_function(task.X_test)
            records.append({**base, "method": name, "seed": seed, **evaluate_scores(task.y_test, s, oracle=False),
                            "fit_s": fit_s, "score_s": time.perf_counter() - t0})
            if seed == seeds[0]:
                scores[name], detectors[name] = s, det
        log(f"{task.name} seed {seed}: " + ", ".join(f"{r['method']} {r['AUROC']:.3f}" for r in records
                                                      if r["seed"] == seed), verbose, level=1)
    return records, scores, detectors
