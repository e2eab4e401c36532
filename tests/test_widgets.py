"""The AngularDINO prototype explorer (kdal_lib.widgets): state changes on ``.value``, static figures."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from kdal_lib.widgets import (embedding_map, prototype_explorer, prototype_roles, prototype_view,
                              static_prototype_views)


def _snapshots():
    """Three saved epochs, 6 prototypes in 4-D; U samples cluster on e0/e1, P samples on e3.
    Roles: epoch 1 -> prototype 0 normal, 3 anomaly; epoch 3 -> prototype 3 becomes normal."""
    rng = np.random.default_rng(0)
    protos = np.eye(6, 4) + 0.0
    protos[4:] = rng.normal(size=(2, 4))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    u = np.r_[np.tile([1.0, 0, 0, 0], (10, 1)), np.tile([0, 1.0, 0, 0], (10, 1))] + rng.normal(0, 0.05, (20, 4))
    p = np.tile([0, 0, 0, 1.0], (4, 1)) + rng.normal(0, 0.05, (4, 4))
    emb = np.r_[u, p]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    s = np.r_[np.zeros(20), np.ones(4)].astype(int)
    y = s.copy()
    y[5] = 1  # a hidden anomaly in U
    snaps = [
        {"epoch": 1, "prototypes": protos, "normal": np.array([0, 1]), "anomaly": np.array([3, 4]), "embeddings": emb},
        {"epoch": 2, "prototypes": protos, "normal": np.array([0, 1]), "anomaly": np.array([3, 5]), "embeddings": emb},
        {"epoch": 3, "prototypes": protos, "normal": np.array([0, 3]), "anomaly": np.array([4, 5]), "embeddings": emb},
    ]
    images = rng.uniform(0, 1, (24, 1, 8, 8)).astype(np.float32)
    return snaps, images, s, y


def test_prototype_view_finds_the_nearest_samples_and_role():
    snaps, images, s, y = _snapshots()
    st = prototype_view(snaps, s, epoch_index=0, prototype=0, n_neighbours=5)
    assert st.role == "normal" and st.epoch == 1
    assert set(st.nearest_u) <= set(range(10))  # the U samples on e0
    assert set(st.nearest_p) == {20, 21, 22, 23}  # all 4 P (fewer than 5)
    st3 = prototype_view(snaps, s, epoch_index=0, prototype=3)
    assert st3.role == "anomaly" and st3.similarities[20:].min() > 0.9
    assert list(prototype_roles(snaps[2])) == ["normal", "unassigned", "unassigned", "normal", "anomaly", "anomaly"]
    assert st.map_samples.shape == (24, 2) and st.map_prototypes.shape == (6, 2)
    with pytest.raises(ValueError, match="out of range"):
        prototype_view(snaps, s, prototype=6)
    with pytest.raises(ValueError, match="no saved epochs"):
        prototype_view([], s)


def test_widget_state_follows_the_controls():
    snaps, images, s, y = _snapshots()
    box, state = prototype_explorer(snaps, images, s, y, n_neighbours=4)
    assert state.epoch == 3 and state.prototype == 0 and state.role == "normal" and state.n_updates == 0
    png_before = state.outputs["neighbours"].value
    assert png_before[:4] == b"\x89PNG"

    state.controls["prototype"].value = 3
    assert state.prototype == 3 and state.role == "normal" and state.n_updates == 1  # epoch 3: 3 is normal
    assert set(state.nearest_p) <= {20, 21, 22, 23}
    assert state.outputs["neighbours"].value != png_before
    assert "normal" in state.outputs["role"].value

    state.controls["epoch"].value = 0  # slide back to the first saved epoch: 3 was an anomaly prototype then
    assert state.epoch == 1 and state.role == "anomaly" and state.n_updates == 2
    assert "anomaly" in state.outputs["role"].value

    state.controls["prototype"].value = 2
    assert state.role == "unassigned"
    hist_png = state.outputs["histogram"].value
    state.controls["prototype"].value = 4
    assert state.outputs["histogram"].value != hist_png


def test_static_views_draw_the_same_content():
    snaps, images, s, y = _snapshots()
    figs = static_prototype_views(snaps, images, s, y)
    # 2 prototypes × (neighbours, histogram) + maps at epochs {0, 1, 2} + the timeline
    assert len(figs) == 2 * 2 + 3 + 1 and all(isinstance(f, Figure) for f in figs)
    assert "prototype 0 (normal)" in figs[0]._suptitle.get_text()
    assert "prototype 4 (anomaly)" in figs[2]._suptitle.get_text()


def test_embedding_map_methods():
    rng = np.random.default_rng(1)
    a, b = embedding_map(rng.normal(size=(30, 4)), rng.normal(size=(3, 4)), "pca")
    assert a.shape == (30, 2) and b.shape == (3, 2)
    with pytest.raises(ValueError, match="map method"):
        embedding_map(a, b, "umap")
