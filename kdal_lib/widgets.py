"""Interactive prototype explorer for AngularDINO (ipywidgets), and the same views as static figures.

Everything is built from functions that return the widget *and its state*, so a test can set a
control's ``.value`` and check what changed without a browser:

    box, state = prototype_explorer(model.snapshots_, X_train, s_train, y_train)
    state.controls["prototype"].value = 3      # -> state.prototype == 3, new neighbours, new figures
    state.controls["epoch"].value = 0          # -> roles of the first saved epoch

Views: the chosen prototype's nearest U and P samples (image grid), its role, the histogram of its
similarities to U and P, a 2-D map (PCA or t-SNE) of the teacher embeddings with the prototypes marked
and coloured by role, and a role timeline over the saved epochs. Under papermill (``INTERACTIVE=False``)
:func:`static_prototype_views` draws the same views as matplotlib Figures.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

__all__ = ["ExplorerState", "prototype_roles", "prototype_view", "embedding_map", "plot_prototype_neighbours",
           "plot_similarity_hist", "plot_prototype_map", "plot_role_timeline", "prototype_explorer",
           "static_prototype_views", "figure_png"]

ROLE_COLOURS = {"normal": "tab:blue", "anomaly": "tab:red", "unassigned": "0.6"}


def _check_snapshots(snapshots):
    if not snapshots:
        raise ValueError("no saved epochs: fit AngularDINO with snapshot_every >= 1 (model.snapshots_ is empty)")
    for k in ("epoch", "prototypes", "normal", "anomaly", "embeddings"):
        if k not in snapshots[0]:
            raise ValueError(f"snapshot entries need the key {k!r} (got {sorted(snapshots[0])})")


def prototype_roles(snapshot: dict) -> np.ndarray:
    """Role name of every prototype in one snapshot: ``normal``, ``anomaly`` or ``unassigned``."""
    k = len(snapshot["prototypes"])
    roles = np.array(["unassigned"] * k, dtype=object)
    roles[np.asarray(snapshot["anomaly"], dtype=int)] = "anomaly"
    roles[np.asarray(snapshot["normal"], dtype=int)] = "normal"
    return roles


def embedding_map(embeddings: np.ndarray, prototypes: np.ndarray, method: str = "pca", random_state: int = 0):
    """2-D coordinates of the samples and of the prototypes, embedded together.
    ``method``: ``"pca"`` (fast, default; fitted on the samples, prototypes projected) or ``"tsne"``
    (:func:`kdal_lib.embedding.tsne`, samples and prototypes embedded together)."""
    Z = np.vstack([embeddings, prototypes]).astype(np.float64)
    if method == "pca":  # fitted on the samples, prototypes projected into the same plane
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=random_state).fit(np.asarray(embeddings, dtype=np.float64))
        Y = pca.transform(Z)
    elif method == "tsne":
        from .embedding import tsne

        Y, _ = tsne(Z, perplexity=30, n_iter=500, random_state=random_state)
    else:
        raise ValueError(f"map method must be 'pca' or 'tsne', got {method!r}")
    return Y[:len(embeddings)], Y[len(embeddings):]


@dataclass
class ExplorerState:
    """What the explorer currently shows (updated in place when a control changes)."""

    epoch_index: int
    epoch: int
    prototype: int
    role: str
    roles: np.ndarray
    similarities: np.ndarray
    nearest_u: np.ndarray
    nearest_p: np.ndarray
    map_samples: np.ndarray
    map_prototypes: np.ndarray
    n_updates: int = 0
    controls: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


def prototype_view(snapshots: Sequence[dict], s, epoch_index: int = -1, prototype: int = 0, n_neighbours: int = 8,
                   map_method: str = "pca", _map_cache: dict | None = None) -> ExplorerState:
    """The explorer's state for one saved epoch and one prototype (no drawing): its role, the cosine
    of every training sample to it, the ``n_neighbours`` most similar U and P samples (indices into
    the training set), and the 2-D map."""
    _check_snapshots(snapshots)
    s = np.asarray(s).astype(int).ravel()
    n_snap = len(snapshots)
    if not -n_snap <= epoch_index < n_snap:
        raise ValueError(f"epoch_index {epoch_index} out of range for {n_snap} saved epochs")
    epoch_index %= n_snap
    snap = snapshots[epoch_index]
    k = len(snap["prototypes"])
    if not 0 <= prototype < k:
        raise ValueError(f"prototype {prototype} out of range: there are {k} prototypes")
    emb = np.asarray(snap["embeddings"])
    if len(emb) != len(s):
        raise ValueError(f"s has {len(s)} labels but the snapshot holds {len(emb)} embeddings")
    sims = emb @ np.asarray(snap["prototypes"])[prototype]
    u_idx, p_idx = np.flatnonzero(s == 0), np.flatnonzero(s == 1)
    near_u = u_idx[np.argsort(-sims[u_idx], kind="stable")[:n_neighbours]]
    near_p = p_idx[np.argsort(-sims[p_idx], kind="stable")[:n_neighbours]]
    key = (epoch_index, map_method)
    if _map_cache is not None and key in _map_cache:
        ms, mp = _map_cache[key]
    else:
        ms, mp = embedding_map(emb, np.asarray(snap["prototypes"]), map_method)
        if _map_cache is not None:
            _map_cache[key] = (ms, mp)
    roles = prototype_roles(snap)
    return ExplorerState(epoch_index, int(snap["epoch"]), int(prototype), str(roles[prototype]), roles, sims, near_u,
                         near_p, ms, mp)


# -- figures -----------------------------------------------------------------------------------
def _img(ax, im):
    im = np.asarray(im)
    ax.imshow(im[0] if im.shape[0] == 1 else np.transpose(im, (1, 2, 0)), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_prototype_neighbours(state: ExplorerState, images: np.ndarray, y=None) -> Figure:
    """Two rows: the prototype's nearest U samples and nearest P samples, with their cosines
    (a hidden anomaly in U is marked when the true labels ``y`` are given)."""
    n = max(len(state.nearest_u), len(state.nearest_p), 1)
    fig = Figure(figsize=(1.1 * n + 0.6, 2.8), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for row, (name, idx) in enumerate((("U", state.nearest_u), ("P", state.nearest_p))):
        for j in range(n):
            ax = axes[row, j]
            if j < len(idx):
                _img(ax, images[idx[j]])
                hidden = y is not None and name == "U" and int(np.asarray(y)[idx[j]]) == 1
                ax.set_title(f"{state.similarities[idx[j]]:.2f}" + (" (anom.)" if hidden else ""), fontsize=7,
                             color="tab:red" if hidden else "k")
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"nearest {name}", fontsize=8)
    fig.suptitle(f"prototype {state.prototype} ({state.role}), epoch {state.epoch}", fontsize=9)
    return fig


def plot_similarity_hist(state: ExplorerState, s, bins: int = 30) -> Figure:
    """Histogram of the cosines of U and P training samples to the chosen prototype."""
    s = np.asarray(s).astype(int)
    fig = Figure(figsize=(4.2, 2.8), layout="constrained")
    ax = fig.subplots()
    lo, hi = float(state.similarities.min()), float(state.similarities.max())
    pad = max(0.02, 0.05 * (hi - lo))
    edges = np.linspace(max(-1.0, lo - pad), min(1.0, hi + pad), bins + 1)
    ax.hist(state.similarities[s == 0], bins=edges, alpha=0.6, density=True, label=f"U (n={(s == 0).sum()})")
    ax.hist(state.similarities[s == 1], bins=edges, alpha=0.6, density=True, label=f"P (n={(s == 1).sum()})",
            color="tab:red")
    ax.set(xlabel="cos(z, prototype)", ylabel="density",
           title=f"prototype {state.prototype} ({state.role}), epoch {state.epoch}")
    ax.legend(fontsize=8)
    return fig


def plot_prototype_map(state: ExplorerState, s, y=None, method: str = "pca") -> Figure:
    """2-D map of the teacher embeddings (U grey, hidden U anomalies orange when ``y`` is given,
    P red) with the prototypes as stars coloured by role; the chosen one circled."""
    s = np.asarray(s).astype(int)
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.subplots()
    xy = state.map_samples
    u_norm = (s == 0) if y is None else (s == 0) & (np.asarray(y) == 0)
    ax.scatter(*xy[u_norm].T, s=6, c="0.7", label="U")
    if y is not None:
        hid = (s == 0) & (np.asarray(y) == 1)
        ax.scatter(*xy[hid].T, s=10, c="tab:orange", label="U, hidden anomaly")
    ax.scatter(*xy[s == 1].T, s=12, c="tab:red", marker="^", label="P")
    for role, col in ROLE_COLOURS.items():
        m = state.roles == role
        if m.any():
            ax.scatter(*state.map_prototypes[m].T, s=120, marker="*", c=col, edgecolors="k", linewidths=0.5,
                       label=f"{role} prototype")
    ax.scatter(*state.map_prototypes[state.prototype], s=400, facecolors="none", edgecolors="k", linewidths=1.5)
    ax.set(title=f"{method.upper()} of teacher embeddings, epoch {state.epoch}", xticks=[], yticks=[])
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_role_timeline(snapshots: Sequence[dict], mark_epoch_index: int | None = None,
                       prototype: int | None = None) -> Figure:
    """Prototype × saved-epoch grid coloured by role (blue normal, red anomaly, grey unassigned)."""
    _check_snapshots(snapshots)
    code = {"unassigned": 0, "normal": 1, "anomaly": 2}
    grid = np.array([[code[r] for r in prototype_roles(sn)] for sn in snapshots]).T
    fig = Figure(figsize=(5.5, 2.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, aspect="auto", interpolation="nearest", vmin=0, vmax=2,
              cmap=ListedColormap(["0.85", "tab:blue", "tab:red"]))
    epochs = [int(sn["epoch"]) for sn in snapshots]
    step = max(1, len(epochs) // 10)
    ax.set_xticks(range(0, len(epochs), step), [str(e) for e in epochs[::step]])
    ax.set(xlabel="epoch", ylabel="prototype", title="prototype roles per epoch (blue normal, red anomaly)")
    if mark_epoch_index is not None:
        ax.axvline(mark_epoch_index % len(epochs), color="k", lw=1)
    if prototype is not None:
        ax.axhline(prototype, color="k", lw=0.8, ls=":")
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a Figure (for ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# -- the widget ----------------------------------------------------------------------------------
def prototype_explorer(snapshots: Sequence[dict], images: np.ndarray, s, y=None, n_neighbours: int = 8,
                       map_method: str = "pca", prototype: int | None = None):
    """Build the explorer. Returns ``(widget, state)``: ``state.controls`` holds the ``prototype``
    and ``epoch`` sliders and the ``map`` toggle; ``state.outputs`` the ``ipywidgets.Image`` views and
    the ``role`` label. Changing a control's ``.value`` updates ``state`` and redraws the images."""
    import ipywidgets as W

    _check_snapshots(snapshots)
    s = np.asarray(s).astype(int).ravel()
    images = np.asarray(images)
    if len(images) != len(s):
        raise ValueError(f"images has {len(images)} samples but s has {len(s)}")
    last = len(snapshots) - 1
    if prototype is None:  # start on a normal prototype of the final epoch
        prototype = int(np.asarray(snapshots[last]["normal"])[0])
    cache: dict = {}
    state = prototype_view(snapshots, s, last, prototype, n_neighbours, map_method, cache)
    k = len(snapshots[0]["prototypes"])
    proto_w = W.IntSlider(value=prototype, min=0, max=k - 1, description="prototype", continuous_update=False)
    epoch_w = W.IntSlider(value=last, min=0, max=last, description="saved epoch", continuous_update=False,
                          readout=False)
    map_w = W.ToggleButtons(options=["pca", "tsne"], value=map_method, description="map")
    role_w = W.HTML()
    img = {name: W.Image(format="png") for name in ("neighbours", "histogram", "map", "timeline")}
    state.controls = {"prototype": proto_w, "epoch": epoch_w, "map": map_w}
    state.outputs = {"role": role_w, **img}

    def redraw(*_):
        new = prototype_view(snapshots, s, epoch_w.value, proto_w.value, n_neighbours, map_w.value, cache)
        for f in ("epoch_index", "epoch", "prototype", "role", "roles", "similarities", "nearest_u", "nearest_p",
                  "map_samples", "map_prototypes"):
            setattr(state, f, getattr(new, f))
        state.n_updates += 1
        col = ROLE_COLOURS[state.role]
        role_w.value = (f"<b>epoch {state.epoch}</b> &nbsp; prototype {state.prototype}: "
                        f"<span style='color:{col}'><b>{state.role}</b></span> &nbsp; "
                        f"({int((state.roles == 'normal').sum())} normal, {int((state.roles == 'anomaly').sum())} anomaly"
                        " prototypes)")
        img["neighbours"].value = figure_png(plot_prototype_neighbours(state, images, y))
        img["histogram"].value = figure_png(plot_similarity_hist(state, s))
        img["map"].value = figure_png(plot_prototype_map(state, s, y, map_w.value))
        img["timeline"].value = figure_png(plot_role_timeline(snapshots, state.epoch_index, state.prototype))

    for w in (proto_w, epoch_w, map_w):
        w.observe(redraw, names="value")
    redraw()
    state.n_updates = 0
    box = W.VBox([W.HBox([proto_w, epoch_w, map_w]), role_w, img["neighbours"],
                  W.HBox([img["histogram"], img["map"]]), img["timeline"]])
    return box, state


def static_prototype_views(snapshots: Sequence[dict], images: np.ndarray, s, y=None, prototypes: Sequence[int] | None = None,
                           epoch_indices: Sequence[int] | None = None, n_neighbours: int = 8,
                           map_method: str = "pca") -> list[Figure]:
    """The explorer's views as Figures (for ``INTERACTIVE=False``): for each prototype in
    ``prototypes`` (default: the first normal and the first anomaly prototype of the last epoch)
    its neighbour grid and similarity histogram; the 2-D map at each of ``epoch_indices``
    (default: first, middle and last saved epoch), which shows roles changing; and the role timeline."""
    _check_snapshots(snapshots)
    last = len(snapshots) - 1
    if prototypes is None:
        prototypes = [int(np.asarray(snapshots[last]["normal"])[0]), int(np.asarray(snapshots[last]["anomaly"])[0])]
    if epoch_indices is None:
        epoch_indices = sorted({0, last // 2, last})
    figs: list[Figure] = []
    cache: dict = {}
    for p in prototypes:
        st = prototype_view(snapshots, s, last, p, n_neighbours, map_method, cache)
        figs += [plot_prototype_neighbours(st, images, y), plot_similarity_hist(st, s)]
    for e in epoch_indices:
        st = prototype_view(snapshots, s, e, prototypes[0], n_neighbours, map_method, cache)
        figs.append(plot_prototype_map(st, s, y, map_method))
    figs.append(plot_role_timeline(snapshots))
    return figs
