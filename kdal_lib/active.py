"""Active-learning core shared by ASAL (notebook 04) and KDAL (notebook 05).

Shapes follow scikit-activeml / modAL: a *scorer* turns class probabilities into utilities
(higher = ask the oracle first) and a *selector* returns **indices into the pool**, never an item that
is already labelled, ties broken at random with a seeded generator.

* :func:`uncertainty_scores` — least confidence ``1 - max_c p``, margin ``1 - (p_(1) - p_(2))``, entropy
  ``-sum_c p log p``. For two classes all three are monotone in ``|p_1 - 0.5|`` and rank identically.
* :func:`normalized_logit_confidence` — the ASAL/PT4AL original's ``max softmax(l / ||l||)``; it does
  *not* rank like the standard least confidence (kept only as a legacy switch).
* :func:`stratified_top` — ASAL's cold start: cut the descending score ranking into strata, take the top
  items of each (``batch0[0], batch1[0], ..., batch0[1], ...``).
* :class:`Pool`, :class:`Oracle`, :class:`ActiveLoop` — bookkeeping, label reveal, cycles with a record
  per cycle and a checkpoint per cycle (resume gives the same curve).
* :class:`ClassifierLearner` — a torch classifier trained on the labelled items (cross-entropy), optionally
  plus a soft-label loss on every pool item (KDAL), warm-started between cycles, with the epoch chosen on a
  validation split of the *labelled* data (never on the test split).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import viz as _viz  # noqa: F401  (registers the inline PNG display of the Figures returned here)
from .checkpoint import load_checkpoint, read_metadata, save_checkpoint
from .metrics import auroc_or_nan
from .utils import log, progress, resolve_device, seed_everything
from .validation import check_param

__all__ = [
    "QUERY_METHODS",
    "SELECT_CRITERIA",
    "uncertainty_scores",
    "normalized_logit_confidence",
    "select_top",
    "UncertaintySampling",
    "RandomSampling",
    "stratified_top",
    "random_init",
    "Pool",
    "Oracle",
    "CycleRecord",
    "ActiveLoop",
    "ClassifierLearner",
    "soft_loss",
    "mlp_classifier",
    "small_cnn_classifier",
    "resnet18_classifier",
    "curve_frame",
    "plot_learning_curves",
    "labels_to_reach",
]

QUERY_METHODS = ("least_confident", "margin", "entropy", "random")
#: how :class:`ClassifierLearner` picks the epoch it keeps (validation split of the labelled data only)
SELECT_CRITERIA = ("val_loss", "val_acc", "val_auroc", "last")


# ----------------------------------------------------------------------------- scorers and selectors
def _check_probas(probas) -> np.ndarray:
    p = np.asarray(probas, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probas must have shape (n_samples, n_classes >= 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probas contain NaN or inf")
    if (p < -1e-6).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("probas must be non-negative and sum to 1 per row (pass softmax outputs, not logits)")
    return p


def uncertainty_scores(probas, method: str = "least_confident") -> np.ndarray:
    """Utilities (higher = more informative) from class probabilities, as scikit-activeml names them."""
    check_param("method", method, choices=QUERY_METHODS[:3])
    p = _check_probas(probas)
    if method == "least_confident":
        return 1.0 - p.max(1)
    if method == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def normalized_logit_confidence(logits) -> np.ndarray:
    """The ASAL original's "top-1 confidence": ``max softmax(l / ||l||_2)`` (its utility is 1 minus this).
    For two classes it equals ``sigmoid(|l1 - l0| / ||l||)``: a scale-free quantity that does not rank
    items like the standard least confidence ``sigmoid(|l1 - l0|)``."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (n_samples, n_classes), got {tuple(z.shape)}")
    return F.softmax(F.normalize(z, dim=1), dim=1).max(1).values.numpy().astype(np.float64)


def select_top(utilities, n: int, candidates=None, random_state=None) -> np.ndarray:
    """Indices of the ``n`` highest utilities among ``candidates`` (default all), ties broken at random."""
    u = np.asarray(utilities, dtype=np.float64).ravel()
    cand = np.arange(u.size) if candidates is None else np.asarray(candidates, dtype=np.int64).ravel()
    check_param("n", n, low=1, integer=True)
    if n > cand.size:
        raise ValueError(f"cannot query {n} items: only {cand.size} unlabelled items left in the pool")
    if np.isnan(u[cand]).any():
        raise ValueError("utilities contain NaN for unlabelled items")
    rng = np.random.default_rng(random_state)
    tiebreak = rng.random(cand.size)
    order = np.lexsort((tiebreak, -u[cand]))  # primary: utility descending; secondary: random
    return cand[order[:n]]


class UncertaintySampling:
    """Uncertainty sampling (least confidence, margin or entropy) in the scikit-activeml shape.

    ``query(probas, labeled_mask, batch_size)`` takes the pool's class probabilities and returns indices
    of unlabelled items. ``legacy_normalized_logits=True`` reproduces the ASAL original (pass logits)."""

    def __init__(self, method: str = "least_confident", random_state: int | None = None,
                 legacy_normalized_logits: bool = False):
        self.method = check_param("method", method, choices=QUERY_METHODS[:3])
        self.random_state = random_state
        self.legacy_normalized_logits = legacy_normalized_logits
        self._rng = np.random.default_rng(random_state)

    def reseed(self, key) -> None:
        """Restart the tie-break generator from ``(random_state, key)`` (:class:`ActiveLoop` calls it with the
        cycle number, so a resumed run draws what an uninterrupted one does). No-op without a random_state."""
        if self.random_state is not None:
            self._rng = np.random.default_rng([int(self.random_state), int(key)])

    def utilities(self, outputs) -> np.ndarray:
        if self.legacy_normalized_logits:
            return 1.0 - normalized_logit_confidence(outputs)
        return uncertainty_scores(outputs, self.method)

    def query(self, outputs, labeled_mask=None, batch_size: int = 1, return_utilities: bool = False):
        u = self.utilities(outputs)
        cand = _unlabelled(u.size, labeled_mask)
        idx = select_top(u, batch_size, cand, self._rng)
        if return_utilities:
            u = u.copy()
            u[~np.isin(np.arange(u.size), cand)] = np.nan
            return idx, u
        return idx


class RandomSampling:
    """Uniform random queries among the unlabelled items (the baseline every curve is compared with)."""

    def __init__(self, random_state: int | None = None):
        self.random_state = random_state
        self._rng = np.random.default_rng(random_state)

    def reseed(self, key) -> None:
        """As :meth:`UncertaintySampling.reseed`."""
        if self.random_state is not None:
            self._rng = np.random.default_rng([int(self.random_state), int(key)])

    def query(self, n_pool_or_outputs, labeled_mask=None, batch_size: int = 1):
        n = n_pool_or_outputs if isinstance(n_pool_or_outputs, (int, np.integer)) else len(n_pool_or_outputs)
        cand = _unlabelled(int(n), labeled_mask)
        return select_top(np.zeros(int(n)), batch_size, cand, self._rng)


def _unlabelled(n: int, labeled_mask) -> np.ndarray:
    if labeled_mask is None:
        return np.arange(n)
    m = np.asarray(labeled_mask, dtype=bool).ravel()
    if m.size != n:
        raise ValueError(f"labeled_mask has {m.size} entries but the pool has {n} items")
    return np.flatnonzero(~m)


def stratified_top(scores, n_strata: int = 5, per_stratum: int = 2) -> np.ndarray:
    """ASAL cold start: sort ``scores`` descending, cut into ``n_strata`` contiguous strata (as
    ``numpy.array_split``: sizes differ by at most one) and take the ``per_stratum`` best of each, in the
    original's order ``s0[0], s1[0], ..., s0[1], s1[1], ...``. Returns indices into ``scores``."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    check_param("n_strata", n_strata, low=1, integer=True)
    check_param("per_stratum", per_stratum, low=1, integer=True)
    if not np.isfinite(s).all():
        raise ValueError("anomaly scores contain NaN or inf")
    if s.size < n_strata * per_stratum:
        raise ValueError(f"the pool has {s.size} items, fewer than n_strata*per_stratum = {n_strata * per_stratum}")
    ranking = np.argsort(-s, kind="stable")
    strata = np.array_split(ranking, n_strata)
    return np.array([strata[k][j] for j in range(per_stratum) for k in range(n_strata)], dtype=np.int64)


def random_init(n_pool: int, n: int, random_state=None) -> np.ndarray:
    """The Random cold start: ``n`` pool indices drawn uniformly without replacement."""
    check_param("n", n, low=1, high=n_pool, integer=True)
    return np.random.default_rng(random_state).choice(n_pool, size=n, replace=False).astype(np.int64)


# ----------------------------------------------------------------------------- pool, oracle, records
class Pool:
    """Which pool items are labelled, in the order they were labelled (and in which cycle)."""

    def __init__(self, n: int):
        check_param("pool size", n, low=1, integer=True)
        self.n = int(n)
        self.labeled_mask = np.zeros(self.n, dtype=bool)
        self.order: list[int] = []
        self.cycle_of: list[int] = []

    def label(self, indices, cycle: int) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError(f"query indices must lie in [0, {self.n}), got {idx.min()}..{idx.max()}")
        if len(set(idx.tolist())) != idx.size:
            raise ValueError("a query holds the same item twice")
        again = idx[self.labeled_mask[idx]]
        if again.size:
            raise ValueError(f"items {again[:10].tolist()} are already labelled: a query must come from the unlabelled pool")
        self.labeled_mask[idx] = True
        self.order.extend(idx.tolist())
        self.cycle_of.extend([int(cycle)] * idx.size)
        return idx

    @property
    def labeled(self) -> np.ndarray:
        return np.asarray(self.order, dtype=np.int64)

    @property
    def unlabeled(self) -> np.ndarray:
        return np.flatnonzero(~self.labeled_mask)

    def __len__(self) -> int:
        return len(self.order)


class Oracle:
    """Reveals the true labels (0 normal, 1 anomaly) of queried pool items and counts the queries."""

    def __init__(self, y):
        self._y = np.asarray(y, dtype=np.int64).ravel()
        self.n_queries = 0

    def reveal(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).ravel()
        self.n_queries += idx.size
        return self._y[idx]


@dataclass
class CycleRecord:
    cycle: int
    n_labels: int
    n_anomalies: int
    queried: list
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- the loop
class ActiveLoop:
    """Cycle driver: ``init`` picks the first labelled set, then ``query`` picks ``batch_size`` more per cycle.

    Parameters
    ----------
    learner : object with ``fit(labeled_idx, labels, cycle)``, ``predict_proba(idx=None)`` (pool
        probabilities), ``logits(idx=None)``, ``state_dict()`` / ``load_state_dict(state)``.
    init : ``callable(rng) -> indices`` for the cold start, or None for no labels before cycle 0 (KDAL).
    query : an object with ``query(outputs, labeled_mask, batch_size)`` (``UncertaintySampling``,
        ``RandomSampling``); it gets the learner's probabilities, or logits in legacy mode.
    evaluate : ``callable(learner) -> dict`` of metrics (on the test split: reported, never used to choose).
    n_cycles : number of training rounds; round 0 trains on the cold start, each later one first queries.
    checkpoint_dir : a checkpoint per cycle (learner weights, labelled order, records); a rerun resumes
        after the last complete cycle and gives the same curve.
    """

    def __init__(self, learner, oracle: Oracle, n_pool: int, init=None, query=None, evaluate=None,
                 n_cycles: int = 10, batch_size: int = 1, checkpoint_dir=None, random_state: int = 0,
                 verbose: int = 1, name: str = "active"):
        check_param("n_cycles", n_cycles, low=1, integer=True)
        check_param("batch_size", batch_size, low=1, integer=True)
        self.learner, self.oracle, self.init, self.query = learner, oracle, init, query
        self.evaluate = evaluate or (lambda learner: {})
        self.n_cycles, self.batch_size = int(n_cycles), int(batch_size)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.random_state, self.verbose, self.name = int(random_state), verbose, name
        self.pool = Pool(n_pool)
        self.records: list[CycleRecord] = []
        if self.query is None and self.n_cycles > 1:
            raise ValueError("a query strategy is needed for more than one cycle")

    def _ckpt(self, cycle: int) -> Path:
        return self.checkpoint_dir / f"{self.name}_cycle{cycle:03d}.pt"

    def _fingerprint(self) -> dict:
        return {"name": self.name, "n_pool": self.pool.n, "batch_size": self.batch_size,
                "random_state": self.random_state, "learner": getattr(self.learner, "fingerprint", lambda: {})()}

    def _resume(self) -> int:
        """Load the last complete cycle checkpoint with the same fingerprint; return the next cycle."""
        if self.checkpoint_dir is None:
            return 0
        for cycle in range(self.n_cycles - 1, -1, -1):
            meta = read_metadata(self._ckpt(cycle))
            if meta and meta.get("fingerprint") == json.loads(json.dumps(self._fingerprint(), default=str)):
                state = load_checkpoint(self._ckpt(cycle))
                self.learner.load_state_dict(state["learner"])
                self.pool = Pool(self.pool.n)
                for c, idx in zip(meta["cycle_of"], meta["order"]):
                    self.pool.label([idx], c)
                self.records = [CycleRecord(**r) for r in meta["records"]]
                log(f"{self.name}: resumed after cycle {cycle}", self.verbose, 1)
                return cycle + 1
        return 0

    def _save(self, cycle: int) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        meta = {"fingerprint": self._fingerprint(), "order": self.pool.order, "cycle_of": self.pool.cycle_of,
                "records": [asdict(r) for r in self.records]}
        save_checkpoint(self._ckpt(cycle), {"learner": self.learner.state_dict()}, json.loads(json.dumps(meta, default=str)))

    def _outputs(self):
        if getattr(self.query, "legacy_normalized_logits", False):
            return self.learner.logits()
        if isinstance(self.query, RandomSampling):
            return self.pool.n
        return self.learner.predict_proba()

    def run(self) -> list[CycleRecord]:
        import time

        start = self._resume()
        for cycle in progress(range(start, self.n_cycles), self.verbose, desc=self.name, initial=start,
                              total=self.n_cycles):
            t0 = time.perf_counter()
            rng = np.random.default_rng([self.random_state, cycle])
            if cycle == 0:
                new = self.pool.label(self.init(rng), 0) if self.init is not None else np.array([], dtype=np.int64)
            else:
                if hasattr(self.query, "reseed"):
                    self.query.reseed(cycle)
                new = self.pool.label(self.query.query(self._outputs(), self.pool.labeled_mask, self.batch_size), cycle)
            labeled = self.pool.labeled
            y = self.oracle.reveal(labeled)
            seed_everything(self.random_state * 1000 + cycle)
            self.learner.fit(labeled, y, cycle)
            metrics = {k: float(v) for k, v in self.evaluate(self.learner).items()}
            self.records.append(CycleRecord(cycle, len(labeled), int(y.sum()), new.tolist(), metrics,
                                            time.perf_counter() - t0))
            self._save(cycle)
        return self.records


# ----------------------------------------------------------------------------- a torch learner
def soft_loss(logits: torch.Tensor, q: torch.Tensor, form: str = "ce", temperature: float = 1.0) -> torch.Tensor:
    """Per-item loss between the classifier and soft targets ``q`` (rows sum to 1).

    ``ce``: ``-sum_c q_c log p_c`` (knowledge-distillation cross-entropy, Hinton et al.);
    ``kl``: ``KL(q || p)`` (same gradient as ``ce``, zero at the optimum); ``mse``: ``||p - q||^2``.
    ``p = softmax(logits / T)``; ce and kl are multiplied by ``T^2`` as in distillation."""
    check_param("soft_loss", form, choices=("ce", "kl", "mse"))
    logp = F.log_softmax(logits / temperature, dim=1)
    if form == "mse":
        return ((logp.exp() - q) ** 2).sum(1)
    ce = -(q * logp).sum(1)
    if form == "kl":
        ce = ce + (q * torch.log(q.clamp_min(1e-12))).sum(1)
    return ce * temperature**2


class ClassifierLearner:
    """A two-class torch classifier over a fixed pool, trained on the labelled items each cycle.

    Hard loss: cross-entropy on the labelled items (class-balanced weights ``N/(2 N_c)`` when
    ``balance=True``). Soft loss (KDAL): ``soft_weight * soft_loss(all pool items, soft_targets)``.
    ``warm_start=True`` keeps the weights between cycles and builds a new optimizer (as ASAL).
    ``val_fraction`` of the labelled items (stratified; at least one per class when a class has two or more)
    is held out to choose the epoch by validation loss; the test split is never looked at.
    ``select="last"`` keeps the last epoch instead; ``"val_acc"`` / ``"val_auroc"`` keep the epoch with the best
    validation accuracy / AUROC (ties: lower validation loss). ``best_`` holds, after each fit, the epoch, value
    and weights that each criterion would keep (the ASAL seed's best-accuracy / best-AUROC checkpoints, chosen
    on validation data); a validation split with one class has no AUROC, and ``select="val_auroc"`` then
    raises ValueError. ``soft_samples``: the soft loss of each epoch runs
    over a fresh random subset of that many pool items instead of all of them (large pools, e.g. KDD).
    ``history_`` entries hold the epoch's mean ``loss`` and its ``hard_loss`` / ``soft_loss`` parts."""

    def __init__(self, model_fn: Callable[[], nn.Module], X, epochs: int = 20, batch_size: int = 10,
                 lr: float = 1e-3, weight_decay: float = 5e-4, warm_start: bool = True,
                 val_fraction: float = 0.0, select: str = "val_loss", balance: bool = False,
                 soft_targets=None, soft_weight: float = 1.0, soft_form: str = "ce", temperature: float = 1.0,
                 soft_batch_size: int = 256, device: str = "auto", random_state: int = 0, verbose: int = 0,
                 soft_samples: int | None = None):
        check_param("epochs", epochs, low=1, integer=True)
        check_param("batch_size", batch_size, low=1, integer=True)
        check_param("lr", lr, low=0, inclusive=(False, True))
        check_param("val_fraction", val_fraction, low=0, high=0.5)
        check_param("select", select, choices=SELECT_CRITERIA)
        check_param("soft_weight", soft_weight, low=0)
        check_param("temperature", temperature, low=0, inclusive=(False, True))
        self.model_fn, self.epochs, self.batch_size, self.lr = model_fn, int(epochs), int(batch_size), lr
        self.weight_decay, self.warm_start, self.val_fraction, self.select = weight_decay, warm_start, val_fraction, select
        self.balance, self.soft_weight, self.soft_form, self.temperature = balance, soft_weight, soft_form, temperature
        self.soft_batch_size, self.random_state, self.verbose = soft_batch_size, random_state, verbose
        if soft_samples is not None:
            check_param("soft_samples", soft_samples, low=1, integer=True)
        self.soft_samples = soft_samples
        self.device = resolve_device(device)
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if not torch.isfinite(self.X).all():
            raise ValueError("the pool features contain NaN or inf")
        self.soft_targets = None
        if soft_targets is not None:
            q = torch.as_tensor(np.asarray(soft_targets, dtype=np.float32))
            if q.shape != (len(self.X), 2) or not torch.isfinite(q).all():
                raise ValueError(f"soft_targets must be a finite array of shape ({len(self.X)}, 2), got {tuple(q.shape)}")
            self.soft_targets = q
        self.model: nn.Module | None = None
        self.history_: list[dict] = []

    def fingerprint(self) -> dict:
        return {"X": list(self.X.shape), "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "warm_start": self.warm_start, "val_fraction": self.val_fraction, "soft": self.soft_targets is not None,
                "soft_weight": self.soft_weight, "soft_form": self.soft_form, "temperature": self.temperature,
                "X_sum": round(float(self.X.double().sum()), 4),
                **({"select": self.select} if self.select != "val_loss" else {}),
                **({"soft_samples": self.soft_samples} if self.soft_samples is not None else {})}

    # -- state
    def _ensure_model(self) -> nn.Module:
        if self.model is None:
            self.model = self.model_fn().to(self.device)
        return self.model

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self._ensure_model().state_dict().items()}

    def load_state_dict(self, state: Mapping) -> None:
        self._ensure_model().load_state_dict(state)

    # -- training
    def _split_val(self, idx: np.ndarray, y: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        if self.val_fraction <= 0 or self.select == "last" or idx.size < 4:
            return np.arange(idx.size), np.array([], dtype=np.int64)
        val = []
        for c in (0, 1):
            members = rng.permutation(np.flatnonzero(y == c))
            if members.size >= 2:
                val.extend(members[: max(1, int(round(self.val_fraction * members.size)))].tolist())
        val = np.array(sorted(val), dtype=np.int64)
        return np.setdiff1d(np.arange(idx.size), val), val

    def fit(self, labeled_idx, labels, cycle: int = 0) -> "ClassifierLearner":
        idx = np.asarray(labeled_idx, dtype=np.int64)
        y = np.asarray(labels, dtype=np.int64)
        if idx.size == 0 and self.soft_targets is None:
            raise ValueError("nothing to train on: no labelled items and no soft targets")
        if not self.warm_start or self.model is None:
            self.model = None
            self._ensure_model()
        model = self.model
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng([self.random_state, cycle])
        tr, va = self._split_val(idx, y, rng)
        Xl, yl = self.X[idx[tr]], torch.as_tensor(y[tr])
        counts = np.bincount(y[tr], minlength=2).astype(np.float64)
        weight = None
        if self.balance and (counts > 0).all():
            weight = torch.as_tensor(counts.sum() / (2 * counts), dtype=torch.float32, device=self.device)
        best, best_state = np.inf, None
        self.best_ = {}
        if self.select == "val_auroc" and va.size and np.unique(y[va]).size < 2:
            raise ValueError(f"select='val_auroc' needs both classes in the validation split of the labelled data, got "
                             f"{np.bincount(y[va], minlength=2).tolist()} (normal, anomalous) items: AUROC is undefined; "
                             "label more items or use select='val_loss'")
        n_soft = len(self.X) if self.soft_targets is not None else 0
        if n_soft and self.soft_samples is not None:
            n_soft = min(n_soft, int(self.soft_samples))
        for epoch in range(self.epochs):
            model.train()
            total = 0.0
            perm_l = torch.as_tensor(rng.permutation(len(Xl))) if len(Xl) else torch.zeros(0, dtype=torch.long)
            n_steps = max(int(np.ceil(len(Xl) / self.batch_size)) if len(Xl) else 0,
                          int(np.ceil(n_soft / self.soft_batch_size)) if n_soft else 0)
            perm_s = torch.as_tensor(rng.permutation(len(self.X))[:n_soft]) if n_soft else None
            hard_total = soft_total = 0.0
            for step in range(n_steps):
                loss = torch.zeros((), device=self.device)
                if len(Xl):
                    b = perm_l[(step * self.batch_size) % len(Xl):][: self.batch_size]
                    logits = model(Xl[b].to(self.device))
                    hard = F.cross_entropy(logits, yl[b].to(self.device), weight=weight)
                    loss = loss + hard
                    hard_total += float(hard.detach())
                if n_soft and self.soft_weight > 0:
                    b = perm_s[(step * self.soft_batch_size) % n_soft:][: self.soft_batch_size]
                    logits = model(self.X[b].to(self.device))
                    soft = soft_loss(logits, self.soft_targets[b].to(self.device), self.soft_form,
                                     self.temperature).mean()
                    loss = loss + self.soft_weight * soft
                    soft_total += float(soft.detach())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            entry = {"cycle": cycle, "epoch": epoch, "loss": total / max(n_steps, 1),
                     "hard_loss": hard_total / max(n_steps, 1), "soft_loss": soft_total / max(n_steps, 1)}
            if va.size:
                with torch.no_grad():
                    model.eval()
                    lv = model(self.X[idx[va]].to(self.device)).float()
                    vl = F.cross_entropy(lv, torch.as_tensor(y[va], device=self.device)).item()
                    pv = torch.softmax(lv, 1)[:, 1].cpu().numpy()
                entry["val_loss"] = vl
                entry["val_acc"] = float((lv.argmax(1).cpu().numpy() == y[va]).mean())
                entry["val_auroc"] = auroc_or_nan(y[va], pv)
                self._track_best(entry, model)
                if vl < best:
                    best, best_state = vl, {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.history_.append(entry)
        chosen = self.best_.get(self.select, {}).get("state") if self.select in ("val_acc", "val_auroc") else best_state
        if chosen is not None:
            model.load_state_dict(chosen)
        return self

    def _track_best(self, entry: dict, model: nn.Module) -> None:
        keys = {"val_loss": (-entry["val_loss"],), "val_acc": (entry["val_acc"], -entry["val_loss"])}
        if np.isfinite(entry["val_auroc"]):
            keys["val_auroc"] = (entry["val_auroc"], -entry["val_loss"])
        for crit, key in keys.items():
            if crit not in self.best_ or key > self.best_[crit]["key"]:
                self.best_[crit] = {"epoch": entry["epoch"], "value": entry[crit], "key": key,
                                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}

    # -- outputs
    @torch.no_grad()
    def logits(self, idx=None, X=None, batch_size: int = 512) -> np.ndarray:
        model = self._ensure_model()
        model.eval()
        data = self.X if X is None else torch.as_tensor(np.asarray(X, dtype=np.float32))
        if idx is not None:
            data = data[torch.as_tensor(np.asarray(idx, dtype=np.int64))]
        out = [model(data[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(data), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, 2), np.float32)

    def predict_proba(self, idx=None, X=None) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.logits(idx, X)), 1).double().numpy()

    def anomaly_score(self, X) -> np.ndarray:
        """Higher = more anomalous: ``p(anomaly | x)`` (ranks like ``l1 - l0``; not the raw class-1 logit
        the ASAL original fed to AUROC)."""
        return self.predict_proba(X=X)[:, 1]


# ----------------------------------------------------------------------------- classifiers
def mlp_classifier(n_features: int, hidden: Sequence[int] = (64, 64), n_classes: int = 2) -> nn.Module:
    """Tabular classifier: Linear-ReLU blocks then a linear head."""
    layers, d = [], n_features
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, n_classes))


def small_cnn_classifier(in_channels: int = 1, n_classes: int = 2, width: int = 16, norm: str = "batch") -> nn.Module:
    """Three conv-norm-ReLU-pool blocks and global average pooling: the fast CPU option for images.
    ``norm="group"`` uses GroupNorm (4 groups): no running statistics, so a model trained on a handful of
    labelled images (few steps, tiny batches) behaves the same in eval mode as in training."""
    check_param("norm", norm, choices=("batch", "group"))

    def block(i, o):
        layer = nn.BatchNorm2d(o) if norm == "batch" else nn.GroupNorm(4 if o % 4 == 0 else 1, o)
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), layer, nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(in_channels, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, n_classes))


def resnet18_classifier(in_channels: int = 3, n_classes: int = 2, weights_path: str | None = None,
                        small_input: bool = False) -> nn.Module:
    """torchvision ResNet-18 with a ``n_classes`` head. ``weights_path``: a local ImageNet state dict
    (nothing is downloaded); ``small_input``: 3x3 stride-1 stem without max-pool for images under ~64 px."""
    from .nets import resnet18_net

    return resnet18_net(in_channels, n_classes, "cifar" if small_input else "imagenet", weights_path)


# ----------------------------------------------------------------------------- curves
def curve_frame(runs: Mapping[str, Sequence[Sequence[CycleRecord]]]):
    """Long table (method, seed, cycle, n_labels, n_anomalies, metric...) from ``{method: [records per seed]}``."""
    import pandas as pd

    rows = []
    for method, seeds in runs.items():
        for seed, records in enumerate(seeds):
            for r in records:
                rows.append({"method": method, "seed": seed, "cycle": r.cycle, "n_labels": r.n_labels,
                             "n_anomalies": r.n_anomalies, **r.metrics})
    return pd.DataFrame(rows)


def plot_learning_curves(frame, metric: str = "AUROC", reference_lines: Mapping[str, float] | None = None,
                         title: str | None = None, ax=None):
    """Metric against labels used: mean line and mean±std band over seeds per method; dashed horizontal
    reference lines (e.g. the unsupervised detector's AUROC)."""
    from matplotlib.figure import Figure

    fig = None
    if ax is None:
        fig = Figure(figsize=(5.5, 3.6), layout="constrained")
        ax = fig.subplots()
    for i, (method, g) in enumerate(frame.groupby("method", sort=False)):
        stats = g.groupby("n_labels")[metric].agg(["mean", "std"]).fillna(0.0)
        x = stats.index.to_numpy()
        ax.plot(x, stats["mean"], "-o", ms=3, color=f"C{i}", label=method)
        ax.fill_between(x, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=f"C{i}", alpha=0.2)
    for j, (name, value) in enumerate((reference_lines or {}).items()):
        ax.axhline(value, ls="--", color=f"C{j + 5}", lw=1, label=name)
    ax.set(xlabel="labels used", ylabel=metric, title=title or f"{metric} against labels")
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure


def labels_to_reach(frame, target: float, metric: str = "AUROC"):
    """Labels each method needs for its mean curve to reach ``target`` (NaN when it never does)."""
    out = {}
    for method, g in frame.groupby("method", sort=False):
        mean = g.groupby("n_labels")[metric].mean()
        hit = mean[mean >= target]
        out[method] = float(hit.index.min()) if len(hit) else float("nan")
    return out
