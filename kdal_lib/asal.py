"""ASAL: Active Score for Active Learning (Kim & Bae, KIIE Fall 2023; seed ``001``).

Cold start for active learning on imbalanced defect data (§1 of the methods notes):

1. an unsupervised anomaly score (DRAEM_mixed, notebook 03) ranks the unlabelled pool, highest first;
2. the ranking is cut into ``n_strata`` (5) contiguous strata and the ``per_stratum`` (2) best items of each
   are labelled first (``s0[0], s1[0], ..., s4[0], s0[1], ...``: 10 labels), so the first labelled set
   already holds anomalies;
3. then ``n_cycles - 1`` cycles each label the ``k`` (1) least-confident unlabelled items, and a 2-class
   classifier is retrained by warm start (new optimizer per cycle) on the labelled set.

Compared with **Random** (``n_strata * per_stratum`` random labels, then the same loop) and with the
detector's own test AUROC (DRAEM_mixed / DRAEM_normal reference lines).

Everything active-learning generic lives in :mod:`kdal_lib.active`; this module adds the ASAL pieces:
reading the score files of notebook 03 (``loss_batch/<loss_type>/<class>/batch*.txt``) and aligning
them with the pool, the legacy switches of the original code, the per-category protocol, the seed's
``checkpoint/`` best-accuracy and best-AUROC models (chosen on a validation split of the *labelled*
data, never on the test split), and the command line ``python -m kdal_lib.asal --loss_type ... --data DIR``.

Deviations from the original code, each with a switch where a user may want the original:

* least confidence is ``1 - max softmax(logits)``; ``legacy_normalized_logits=True`` uses the original's
  ``max softmax(logits / ||logits||)``, which does not rank like least confidence;
* queries come from the unlabelled remainder; ``legacy_requery=True`` scores the whole pool as the
  original did, and a query that hits an already-labelled item is a wasted label;
* the epoch kept (and the model warm-started in the next cycle) is chosen on a validation split of the
  labelled data (``select``), not on the test split;
* the test AUROC uses ``p(anomaly)``; the original's raw class-1 logit is reported as ``AUROC_logit1``;
* the CPU default classifier is a small CNN with GroupNorm (``norm="batch"`` for BatchNorm): BatchNorm's running
  statistics after a few steps on ten images make a one-class model's eval-mode confidences meaningless, which
  silently decides the ASAL-vs-Random comparison (see notebook 04).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .active import (
    ActiveLoop,
    ClassifierLearner,
    Oracle,
    RandomSampling,
    UncertaintySampling,
    curve_frame,
    mlp_classifier,
    random_init,
    resnet18_classifier,
    select_top,
    small_cnn_classifier,
    stratified_top,
)
from .checkpoint import save_checkpoint
from .score_files import DEFAULT_LOSS_TYPE, read_score_files
from .utils import log, progress
from .validation import check_param

__all__ = [
    "SEED_MEAN",
    "SEED_STD",
    "ASALData",
    "ASALLearner",
    "RequeryLabelled",
    "align_scores",
    "asal_data_from_arrays",
    "asal_data_from_task",
    "compare_inits",
    "evaluate_classifier",
    "initial_set_table",
    "load_asal_data",
    "main",
    "make_model",
    "reference_from_metrics",
    "run_active",
    "scores_from_files",
    "strata_table",
    "summary_at_budget",
    "verdict",
]

#: the original's input normalisation (3 channels; grey images use the mean of the three)
SEED_MEAN = (0.3337, 0.3064, 0.3171)
SEED_STD = (0.2672, 0.2564, 0.2629)
INITS = ("ASAL", "Random")
MODELS = ("small_cnn", "resnet18", "mlp")


# ----------------------------------------------------------------------------- data
@dataclass
class ASALData:
    """One category in the seed's protocol: an unlabelled ``pool`` (what active learning queries and the
    anomaly score ranks) and a ``test`` split (metrics only). ``X_*`` are images (N, C, H, W) or features."""

    name: str
    X_pool: np.ndarray
    y_pool: np.ndarray
    paths: list
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.X_pool, self.X_test = np.asarray(self.X_pool, np.float32), np.asarray(self.X_test, np.float32)
        self.y_pool, self.y_test = np.asarray(self.y_pool, np.int64).ravel(), np.asarray(self.y_test, np.int64).ravel()
        self.paths = [str(p) for p in self.paths]
        if len(self.X_pool) != self.y_pool.size or len(self.paths) != self.y_pool.size:
            raise ValueError(f"{self.name}: {len(self.X_pool)} pool items, {self.y_pool.size} labels, {len(self.paths)} paths")
        if len(self.X_test) != self.y_test.size:
            raise ValueError(f"{self.name}: {len(self.X_test)} test items but {self.y_test.size} labels")
        if len(set(self.paths)) != len(self.paths):
            raise ValueError(f"{self.name}: pool paths must be unique")

    def describe(self) -> dict:
        return {"name": self.name, "n_pool": len(self.y_pool), "pool_anomalies": int(self.y_pool.sum()),
                "pool_anomaly_rate": round(float(self.y_pool.mean()), 4), "n_test": len(self.y_test),
                "test_anomalies": int(self.y_test.sum()), "shape": tuple(self.X_pool.shape[1:])}


def load_asal_data(data="embedded", category: str | None = "brick", image_size=64, channels: int | None = None,
                   data_dir=None, split_seed: int = 0, test_fraction: float = 0.2, verbose: int = 0) -> ASALData:
    """The seed's protocol for one category: the ASAL layout (``<class>/{train,test}/{good,anomaly}``) is
    used as split on disk; any other source (embedded textures, MVTec AD, LOCO) is merged and re-split
    ``1 - test_fraction`` / ``test_fraction`` stratified by label (``merge_and_split``, seeded by
    ``split_seed``: the same call notebook 03 makes, so its score files name this pool)."""
    from .data.images import load_image_task

    task = load_image_task(data, category, image_size, channels=channels, data_dir=data_dir,
                           random_state=split_seed, verbose=verbose)
    return asal_data_from_task(task, split_seed, test_fraction)


def asal_data_from_task(task, split_seed: int = 0, test_fraction: float = 0.2) -> ASALData:
    """:func:`load_asal_data` for an ImageTask already loaded (e.g. the one DRAEM is trained on)."""
    from .data.images import merge_and_split

    if task.meta.get("layout") == "asal":
        pool, test = task.train, task.test
    else:
        pool, test = merge_and_split(task, test_fraction=test_fraction, random_state=split_seed)
    return ASALData(task.name, pool.images, pool.labels, pool.paths, test.images, test.labels,
                    meta={"source": task.meta.get("source"), "split_seed": split_seed, "test_fraction": test_fraction,
                          "layout": task.meta.get("layout", "merged+split")})


def asal_data_from_arrays(X, y, name: str, split_seed: int = 0, test_fraction: float = 0.2,
                          paths: Sequence[str] | None = None) -> ASALData:
    """Features or images with labels, split as the seed does (stratified, ``round(test_fraction*n)`` per
    label to the test part). ``paths`` default to ``"<name>/<row>"``."""
    X = np.asarray(X, np.float32)
    y = np.asarray(y).astype(np.int64).ravel()
    if len(X) != y.size:
        raise ValueError(f"{len(X)} rows but {y.size} labels")
    check_param("test_fraction", test_fraction, low=0, high=1, inclusive=(False, False))
    paths = [f"{name}/{i}" for i in range(len(X))] if paths is None else [str(p) for p in paths]
    rng = np.random.default_rng(split_seed)
    is_test = np.zeros(y.size, bool)
    for lab in (0, 1):
        idx = np.flatnonzero(y == lab)
        is_test[rng.permutation(idx)[: int(round(test_fraction * idx.size))]] = True
    pool, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return ASALData(name, X[pool], y[pool], [paths[i] for i in pool], X[test], y[test],
                    meta={"source": "arrays", "split_seed": split_seed, "test_fraction": test_fraction})


def _path_key(p: str) -> str:
    """``<split>/<label or defect>/<file>``: the part of a path that names a pool item whatever the root
    (the seed writes ``./DATA/<class>/train/anomaly/x.png``; the loader may hold an absolute path)."""
    parts = [x for x in str(p).replace("\\", "/").split("/") if x not in ("", ".")]
    return "/".join(parts[-3:])


def align_scores(pool_paths: Sequence[str], ranked_paths: Sequence[str], ranked_scores=None,
                 where: str = "the score files") -> np.ndarray:
    """Scores in pool order from a ranking (highest first) of pool paths.

    Paths match exactly, else on their last three components (``train/anomaly/x.png``). Without scores
    (the seed's own files hold only paths) the rank gives them: ``n - rank``. A path that names no
    pool item, a pool item with no score, or a duplicate raises ValueError naming the path."""
    pool_paths = [str(p) for p in pool_paths]
    ranked_paths = [str(p) for p in ranked_paths]
    n = len(ranked_paths)
    s = np.full(n, np.nan) if ranked_scores is None else np.asarray(ranked_scores, np.float64).ravel()
    if s.size != n:
        raise ValueError(f"{where}: {n} paths but {s.size} scores")
    if np.isnan(s).all():
        s = (n - np.arange(n)).astype(np.float64)
    elif not np.isfinite(s).all():
        raise ValueError(f"{where}: some scores are NaN or inf")
    exact = {p: i for i, p in enumerate(pool_paths)}
    keys: dict[str, list[int]] = {}
    for i, p in enumerate(pool_paths):
        keys.setdefault(_path_key(p), []).append(i)
    out = np.full(len(pool_paths), np.nan)
    for p, v in zip(ranked_paths, s):
        i = exact.get(p)
        if i is None:
            hit = keys.get(_path_key(p), [])
            if len(hit) != 1:
                raise ValueError(f"{where} name {p!r}, which is not an image of the pool ({len(pool_paths)} items, e.g. "
                                 f"{pool_paths[0]!r}): the score files and the data do not match (another data folder, "
                                 "category, image set or split seed?)")
            i = hit[0]
        if not np.isnan(out[i]):
            raise ValueError(f"{where} name the pool image {pool_paths[i]!r} twice")
        out[i] = v
    missing = np.flatnonzero(np.isnan(out))
    if missing.size:
        raise ValueError(f"{where} give no score for {missing.size} of the {len(pool_paths)} pool images, e.g. "
                         f"{pool_paths[missing[0]]!r}: they were written for another pool (split seed or data?)")
    return out


def scores_from_files(data: ASALData, root, loss_type: str = DEFAULT_LOSS_TYPE) -> np.ndarray:
    """Read ``<root>/loss_batch/<loss_type>/<data.name>/batch.txt`` (+ ``scores.csv``) and return the scores
    in pool order (rank-based when the files hold paths only, as the seed's)."""
    files = read_score_files(root, data.name, loss_type)
    return align_scores(data.paths, files.paths, files.scores, where=f"the score files in {files.folder}")


def strata_table(scores, y, n_strata: int = 5, per_stratum: int = 2):
    """Per stratum of the descending score ranking: size, anomalies, anomaly rate, and the labels of the
    ``per_stratum`` items ASAL takes from it (how well the unsupervised score sorts the pool)."""
    import pandas as pd

    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(y).ravel()
    strata = np.array_split(np.argsort(-s, kind="stable"), n_strata)
    return pd.DataFrame([{"stratum": k, "size": len(st), "anomalies": int(y[st].sum()),
                          "anomaly_rate": round(float(y[st].mean()), 3),
                          "ASAL picks (labels)": y[st[:per_stratum]].tolist()} for k, st in enumerate(strata)])


def reference_from_metrics(scores_dir, category: str) -> dict:
    """DRAEM_mixed / DRAEM_normal test AUROC for ``category`` from notebook 03's ``metrics.json`` in
    ``scores_dir`` (its ``score_pool_for_asal`` records); ``{}`` when there is none."""
    from .metrics import load_results

    try:
        m = load_results(scores_dir)
    except (FileNotFoundError, ValueError):
        return {}
    return {r["method"]: float(r["image_AUROC"]) for r in m.get("records", [])
            if r.get("dataset") == category and str(r.get("method", "")).startswith("DRAEM_") and "image_AUROC" in r}


def verdict(frame, references: dict | None = None, metric: str = "AUROC", a: str = "ASAL", b: str = "Random") -> str:
    """A plain sentence per data set from the numbers: does ``a`` beat ``b`` at the first budget, at the last
    one, and over the whole curve (mean over seeds, with the seeds' spread), and where the references lie."""
    lines = []
    groups = frame.groupby("dataset", sort=False) if "dataset" in frame else [("data", frame)]
    for ds, g in groups:
        per = {}
        for m in (a, b):
            gm = g[g["method"] == m]
            if gm.empty:
                continue
            first, last = gm["n_labels"].min(), gm["n_labels"].max()
            seeds_curve = gm.groupby("seed")[metric].mean()
            per[m] = dict(first=gm[gm["n_labels"] == first][metric].mean(), last=gm[gm["n_labels"] == last][metric].mean(),
                          curve=seeds_curve.mean(), sd=seeds_curve.std(ddof=1) if len(seeds_curve) > 1 else 0.0,
                          n_first=first, n_last=last, init_anom=gm[gm["cycle"] == 0]["n_anomalies"].mean())
        if len(per) < 2:
            continue
        pa, pb = per[a], per[b]
        diff = pa["curve"] - pb["curve"]
        noise = max(pa["sd"], pb["sd"])
        word = ("beats" if diff > noise else "loses to" if diff < -noise else "is within the seeds' spread of")
        text = (f"{ds}: {a} {word} {b} on mean {metric} over the curve ({pa['curve']:.3f} ± {pa['sd']:.3f} vs "
                f"{pb['curve']:.3f} ± {pb['sd']:.3f}); at {pa['n_first']} labels {pa['first']:.3f} vs {pb['first']:.3f}, "
                f"at {pa['n_last']} labels {pa['last']:.3f} vs {pb['last']:.3f}. Initial sets hold "
                f"{pa['init_anom']:.1f} vs {pb['init_anom']:.1f} anomalies on average.")
        refs = (references or {}).get(ds, {})
        if refs:
            best = max(pa["last"], pb["last"])
            text += " " + "; ".join(f"{k} {v:.3f} ({'above' if v > best else 'below'} both curves' last point)"
                                    for k, v in refs.items()) + "."
        lines.append(text)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the original's re-query
class RequeryLabelled:
    """Legacy switch: the original scores **every** pool item, labelled ones included, and appends the
    ``batch_size`` least-confident. Here a pick that is already labelled is a *wasted label*: it costs
    budget but adds nothing (the original appended a duplicate). ``wasted`` counts them."""

    def __init__(self, strategy: UncertaintySampling):
        self.strategy = strategy
        self.wasted = 0

    @property
    def legacy_normalized_logits(self) -> bool:
        return self.strategy.legacy_normalized_logits

    def reseed(self, key) -> None:
        self.strategy.reseed(key)

    def query(self, outputs, labeled_mask=None, batch_size: int = 1):
        u = self.strategy.utilities(outputs)
        idx = select_top(u, batch_size, None, self.strategy._rng)
        keep = idx if labeled_mask is None else idx[~np.asarray(labeled_mask, bool)[idx]]
        self.wasted += int(idx.size - keep.size)
        return keep


# ----------------------------------------------------------------------------- learner
class ASALLearner(ClassifierLearner):
    """:class:`~kdal_lib.active.ClassifierLearner` plus the seed's ``checkpoint/`` files: after every cycle the
    best-validation-accuracy and best-validation-AUROC weights are written as
    ``<checkpoint_dir>/<name>_cycle<c>_best_acc.pt`` / ``_best_auroc.pt`` (chosen on the labelled validation
    split; the test split is never looked at). ``balance=True`` needs both classes in the labelled set and
    says so clearly otherwise."""

    def __init__(self, model_fn, X, checkpoint_dir=None, name: str = "asal", extra_fingerprint=None, **kwargs):
        super().__init__(model_fn, X, **kwargs)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.name = name
        self.extra_fingerprint = dict(extra_fingerprint or {})
        self.best_epochs_: list[dict] = []

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "balance": self.balance, **self.extra_fingerprint}

    def fit(self, labeled_idx, labels, cycle: int = 0):
        y = np.asarray(labels, np.int64)
        if self.balance and y.size and np.unique(y).size < 2:
            raise ValueError(f"balance=True needs both classes in the labelled set, but its {y.size} items are all "
                             f"{'anomalous' if y[0] == 1 else 'normal'}: class weights are undefined "
                             "(use balance=False or a cold start that finds both classes, e.g. ASAL)")
        super().fit(labeled_idx, labels, cycle)
        best = getattr(self, "best_", {})
        self.best_epochs_.append({"cycle": cycle, **{f"{k}_epoch": v["epoch"] for k, v in best.items()},
                                  **{f"{k}_best": v["value"] for k, v in best.items()}})
        if self.checkpoint_dir is not None:
            for crit, tag in (("val_acc", "best_acc"), ("val_auroc", "best_auroc")):
                state = best.get(crit, {}).get("state") or (self.state_dict() if not best else None)
                if state is None:  # e.g. a one-class validation split has no AUROC
                    continue
                meta = {"cycle": cycle, "criterion": crit if crit in best else "last",
                        "epoch": best.get(crit, {}).get("epoch"), "value": best.get(crit, {}).get("value")}
                save_checkpoint(self.checkpoint_dir / f"{self.name}_cycle{cycle:03d}_{tag}.pt",
                                {k: v.detach().cpu() for k, v in state.items()}, meta)
        return self


def make_model(kind: str, shape: Sequence[int], weights_path: str | None = None, width: int = 16,
               hidden: Sequence[int] = (64,), norm: str = "group"):
    """A model factory for the pool's item shape: ``small_cnn`` (fast CPU default; ``norm`` "group" or "batch"), ``resnet18``
    (torchvision, 2-class head, ``weights=None`` unless a local ``weights_path``; a 3x3 stem without
    max-pool below 128 px unless pretrained weights are given) or ``mlp`` (features)."""
    check_param("model", kind, choices=MODELS)
    shape = tuple(int(s) for s in shape)
    if kind == "mlp":
        if len(shape) != 1:
            raise ValueError(f"model='mlp' needs feature vectors, got items of shape {shape}")
        return lambda: mlp_classifier(shape[0], hidden)
    if len(shape) != 3:
        raise ValueError(f"model={kind!r} needs images (C, H, W), got items of shape {shape}; use model='mlp' for features")
    if kind == "small_cnn":
        return lambda: small_cnn_classifier(shape[0], width=width, norm=norm)
    if weights_path:
        if shape[0] != 3:
            raise ValueError("pretrained ResNet-18 weights need 3-channel images: load the data with channels=3")
        return lambda: resnet18_classifier(3, weights_path=weights_path)
    return lambda: resnet18_classifier(shape[0], small_input=min(shape[1:]) < 128)


def _prepare_inputs(X: np.ndarray, kind: str, ref: np.ndarray) -> np.ndarray:
    """Images for ResNet-18: the seed's mean/std normalisation. Features: standardised with the pool's
    statistics (no labels used). The small CNN has batch norm and takes [0, 1] images as they are."""
    if kind == "resnet18":
        c = X.shape[1]
        mean = np.array(SEED_MEAN if c == 3 else [np.mean(SEED_MEAN)] * c, np.float32).reshape(1, c, 1, 1)
        std = np.array(SEED_STD if c == 3 else [np.mean(SEED_STD)] * c, np.float32).reshape(1, c, 1, 1)
        return (X - mean) / std
    if kind == "mlp":
        mu, sd = ref.mean(0, keepdims=True), ref.std(0, keepdims=True)
        return (X - mu) / np.where(sd > 1e-8, sd, 1.0)
    return X


def evaluate_classifier(learner: ClassifierLearner, X_test, y_test) -> dict:
    """Test metrics after a cycle (reported only, never used to choose anything): ``AUROC`` of ``p(anomaly)``,
    ``AP``, ``accuracy`` of argmax, and the original's ``AUROC_logit1`` (the raw class-1 logit)."""
    from .metrics import aupr, auroc

    logits = learner.logits(X=X_test)
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return {"AUROC": auroc(y_test, p[:, 1]), "AP": aupr(y_test, p[:, 1]),
            "accuracy": float((logits.argmax(1) == y_test).mean()), "AUROC_logit1": auroc(y_test, logits[:, 1])}


# ----------------------------------------------------------------------------- one run and comparisons
def run_active(data: ASALData, scores=None, init: str = "ASAL", seed: int = 0, n_strata: int = 5,
               per_stratum: int = 2, n_cycles: int = 10, k: int = 1, query_method: str = "least_confident",
               legacy_normalized_logits: bool = False, legacy_requery: bool = False, model: str = "small_cnn",
               weights_path: str | None = None, width: int = 16, norm: str = "group", epochs: int = 20, batch_size: int = 10,
               lr: float = 1e-3, weight_decay: float = 5e-4, val_fraction: float = 0.2, select: str = "val_loss",
               balance: bool = False, device: str = "auto", checkpoint_dir=None, verbose: int = 0):
    """One active-learning run on one category: cold start ``init`` ("ASAL": :func:`stratified_top` of
    ``scores``; "Random": ``n_strata * per_stratum`` uniform picks), then ``n_cycles - 1`` cycles of ``k``
    queries (``query_method``, or ``"random"``). Returns ``(records, learner, info)``; ``info`` holds the
    wasted labels of ``legacy_requery`` and the epochs each validation criterion chose."""
    check_param("init", init, choices=INITS)
    check_param("query_method", query_method, choices=("least_confident", "margin", "entropy", "random"))
    n_pool = len(data.y_pool)
    if init == "ASAL":
        if scores is None:
            raise ValueError("init='ASAL' needs the pool's anomaly scores (scores_from_files or a detector)")
        s = np.asarray(scores, np.float64).ravel()
        if s.size != n_pool:
            raise ValueError(f"{s.size} anomaly scores for a pool of {n_pool} items")
        first = stratified_top(s, n_strata, per_stratum)
        init_fn = lambda rng: first
    else:
        n_init = n_strata * per_stratum
        if n_pool < n_init:
            raise ValueError(f"the pool has {n_pool} items, fewer than the {n_init} initial labels")
        init_fn = lambda rng: random_init(n_pool, n_init, rng)
    if query_method == "random":
        if legacy_requery or legacy_normalized_logits:
            raise ValueError("the legacy switches apply to uncertainty queries, not query_method='random'")
        strategy = RandomSampling(random_state=seed)
    else:
        strategy = UncertaintySampling(query_method, random_state=seed,
                                       legacy_normalized_logits=legacy_normalized_logits)
        if legacy_requery:
            strategy = RequeryLabelled(strategy)
    X = _prepare_inputs(data.X_pool, model, data.X_pool)
    tag = f"{data.name}_{init}_seed{seed}"
    extra = {"init": init, "n_strata": n_strata, "per_stratum": per_stratum, "k": k, "query": query_method,
             "legacy_normalized_logits": legacy_normalized_logits, "legacy_requery": legacy_requery, "model": model,
             "width": width, "norm": norm, "select": select,
             "scores": None if scores is None else hashlib.sha1(np.asarray(scores, np.float64).tobytes()).hexdigest()[:12]}
    learner = ASALLearner(make_model(model, X.shape[1:], weights_path, width, norm=norm), X, checkpoint_dir=checkpoint_dir,
                          name=tag, extra_fingerprint=extra, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, val_fraction=val_fraction, select=select, balance=balance,
                          device=device, random_state=seed)
    X_test = _prepare_inputs(data.X_test, model, data.X_pool)
    loop = ActiveLoop(learner, Oracle(data.y_pool), n_pool, init=init_fn, query=strategy,
                      evaluate=lambda lrn: evaluate_classifier(lrn, X_test, data.y_test), n_cycles=n_cycles,
                      batch_size=k, checkpoint_dir=checkpoint_dir, random_state=seed, verbose=verbose, name=tag)
    records = loop.run()
    wasted = [0] + [k - len(r.queried) for r in records[1:]]
    info = {"wasted": wasted, "labels_spent": [r.n_labels + int(np.sum(wasted[: i + 1])) for i, r in enumerate(records)],
            "best_epochs": learner.best_epochs_, "labeled_order": loop.pool.order}
    return records, learner, info


def compare_inits(data: ASALData, scores=None, inits: Sequence[str] = INITS, seeds: Sequence[int] = (0, 1, 2),
                  label: str | None = None, verbose: int = 0, **kwargs):
    """ASAL vs Random (same pool, same test split, same loop) over ``seeds``. Returns a long frame
    (method, seed, cycle, n_labels, labels_spent, wasted, n_anomalies, AUROC, AP, accuracy, ...) and
    ``{method: [records per seed]}``."""
    import pandas as pd

    frames, runs = [], {}
    jobs = [(m, s) for m in inits for s in seeds]
    for init, seed in progress(jobs, verbose, desc=f"{data.name} runs"):
        t0 = time.perf_counter()
        records, _, info = run_active(data, scores, init=init, seed=seed, verbose=max(verbose - 1, 0), **kwargs)
        name = init if label is None else f"{init} {label}"
        runs.setdefault(name, []).append(records)
        f = curve_frame({name: [records]}).assign(seed=seed, dataset=data.name, labels_spent=info["labels_spent"],
                                                   wasted=info["wasted"])
        frames.append(f)
        log(f"{data.name} {name} seed {seed}: AUROC " + " ".join(f"{r.metrics['AUROC']:.2f}" for r in records)
            + f" ({time.perf_counter() - t0:.0f} s)", verbose, 1)
    return pd.concat(frames, ignore_index=True), runs


def initial_set_table(frame, data: ASALData | None = None):
    """How many anomalies each initial labelled set (cycle 0) holds: mean, min and max over seeds, with
    the expectation under uniform random sampling."""
    g = frame[frame["cycle"] == 0].groupby(["dataset", "method"]) if "dataset" in frame else \
        frame[frame["cycle"] == 0].groupby("method")
    t = g.agg(n_labels=("n_labels", "first"), anomalies_mean=("n_anomalies", "mean"),
              anomalies_min=("n_anomalies", "min"), anomalies_max=("n_anomalies", "max"),
              seeds=("n_anomalies", "size")).reset_index()
    if data is not None:
        t["expected_if_random"] = t["n_labels"] * float(data.y_pool.mean())
    return t


def summary_at_budget(frame, metrics: Sequence[str] = ("AUROC", "accuracy"), x: str = "n_labels"):
    """Mean ± std over seeds of each metric at the first and the last budget and averaged over the curve
    (the area under the learning curve divided by its length)."""
    import pandas as pd

    rows = []
    keys = ["dataset", "method"] if "dataset" in frame else ["method"]
    for key, g in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        first, last = g[x].min(), g[x].max()
        for m in metrics:
            per_seed_first = g[g[x] == first][m]
            per_seed_last = g[g[x] == last][m]
            per_seed_mean = g.groupby("seed")[m].mean()
            row[f"{m}@{first}"] = f"{per_seed_first.mean():.3f} ± {per_seed_first.std(ddof=1) if len(per_seed_first) > 1 else 0:.3f}"
            row[f"{m}@{last}"] = f"{per_seed_last.mean():.3f} ± {per_seed_last.std(ddof=1) if len(per_seed_last) > 1 else 0:.3f}"
            row[f"{m} mean over curve"] = f"{per_seed_mean.mean():.3f} ± {per_seed_mean.std(ddof=1) if len(per_seed_mean) > 1 else 0:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m kdal_lib.asal",
        description="ASAL (Kim & Bae 2023): anomaly-score cold start, then least-confidence active learning, per "
                    "category; ASAL vs Random initialisation. Reads loss_batch/<loss_type>/<class>/batch*.txt.")
    ap.add_argument("--loss_type", default=DEFAULT_LOSS_TYPE, help="first folder under loss_batch/ (seed's name)")
    ap.add_argument("--data", default="./DATA",
                    help="data folder of categories (ASAL layout <class>/{train,test}/{good,anomaly}, or MVTec AD), "
                         "or 'embedded' for the generated textures (default ./DATA as the seed)")
    ap.add_argument("--scores_root", default=".", help="folder that holds loss_batch/ (default: here, as the seed)")
    ap.add_argument("--classes", nargs="+", default=None,
                    help="categories (default: every folder in loss_batch/<loss_type>/, or brick for embedded)")
    ap.add_argument("--make_scores", action="store_true",
                    help="missing score files: train DRAEM_mixed/normal on the pool (kdal_lib.draem, short CPU settings)")
    ap.add_argument("--draem_epochs", type=int, default=6)
    ap.add_argument("--inits", nargs="+", default=list(INITS), choices=INITS)
    ap.add_argument("--cycles", type=int, default=10, help="training rounds incl. the cold start (seed: 10)")
    ap.add_argument("--k", type=int, default=1, help="items labelled per cycle after the cold start (seed: 1)")
    ap.add_argument("--n_strata", type=int, default=5)
    ap.add_argument("--per_stratum", type=int, default=2)
    ap.add_argument("--query", default="least_confident", choices=("least_confident", "margin", "entropy", "random"))
    ap.add_argument("--model", default="resnet18", choices=MODELS[:2], help="seed: resnet18")
    ap.add_argument("--norm", default="group", choices=("group", "batch"), help="small_cnn normalisation layers")
    ap.add_argument("--weights", default=None, help="local ResNet-18 ImageNet state dict (nothing is downloaded)")
    ap.add_argument("--image_size", type=int, default=64, help="seed: 256")
    ap.add_argument("--channels", type=int, default=None, help="1 or 3 (default: 1 embedded, 3 real data)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs per cycle (seed: 20)")
    ap.add_argument("--batch_size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam LR (the seed's --lr flag was unused; its Adam used 1e-3)")
    ap.add_argument("--val_fraction", type=float, default=0.2)
    ap.add_argument("--select", default="val_loss", choices=("val_loss", "val_acc", "val_auroc", "last"))
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds 0..n-1")
    ap.add_argument("--split_seed", type=int, default=0)
    ap.add_argument("--test_fraction", type=float, default=0.2)
    ap.add_argument("--legacy_normalized_logits", action="store_true", help="the original's quirky least confidence")
    ap.add_argument("--legacy_requery", action="store_true", help="score labelled items too, as the original")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="runs/asal", help="curves.csv, summary.md and checkpoint/ go here")
    ap.add_argument("--verbose", type=int, default=1)
    return ap


def main(argv=None) -> int:
    import pandas as pd

    args = _parser().parse_args(argv)
    out = Path(args.out)
    ckpt = out / "checkpoint"
    embedded = args.data == "embedded"
    root = Path(args.scores_root)
    classes = args.classes
    if not classes:
        folder = root / "loss_batch" / args.loss_type
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []
        if not classes and embedded:
            classes = ["brick"]
        if not classes:
            raise SystemExit(f"no categories: {folder} holds no class folders; pass --classes (and --make_scores "
                             "to compute the scores)")
    frames = []
    for cls in classes:
        data = load_asal_data("embedded" if embedded else Path(args.data) / cls, cls if embedded else None,
                              args.image_size, args.channels, split_seed=args.split_seed,
                              test_fraction=args.test_fraction, verbose=args.verbose)
        data.name = cls
        try:
            scores = scores_from_files(data, root, args.loss_type)
        except FileNotFoundError:
            if not args.make_scores:
                raise
            scores = _make_scores(args, data, cls, root)
        print(json.dumps(data.describe()))
        frame, _ = compare_inits(data, scores, inits=args.inits, seeds=range(args.seeds), verbose=args.verbose,
                                 n_strata=args.n_strata, per_stratum=args.per_stratum, n_cycles=args.cycles, k=args.k,
                                 query_method=args.query, norm=args.norm, legacy_normalized_logits=args.legacy_normalized_logits,
                                 legacy_requery=args.legacy_requery, model=args.model, weights_path=args.weights,
                                 epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 val_fraction=args.val_fraction, select=args.select, device=args.device,
                                 checkpoint_dir=ckpt)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "curves.csv", index=False)
    table = frame.groupby(["dataset", "method", "n_labels"])[["AUROC", "accuracy"]].agg(["mean", "std"]).round(3)
    text = table.to_string()
    (out / "summary.md").write_text("```\n" + text + "\n```\n")
    print(text)
    return 0


def _make_scores(args, data: ASALData, cls: str, root: Path) -> np.ndarray:
    """DRAEM_mixed on the pool (unsupervised) for a category without score files; writes them too."""
    from .draem import DRAEM
    from .score_files import write_score_files

    det = DRAEM(epochs=args.draem_epochs, device=args.device, random_state=args.split_seed,
                verbose=args.verbose).fit(data.X_pool)
    s = det.decision_function(data.X_pool)
    write_score_files(data.paths, s, root, cls, args.loss_type)
    return s


if __name__ == "__main__":
    sys.exit(main())
