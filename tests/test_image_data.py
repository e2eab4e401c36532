"""Image data layer: embedded defect textures, MVTec / LOCO / ASAL loaders, texture folders, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdal_lib.data import (
    CATEGORY_DEFECTS,
    DEFECT_KINDS,
    EMBEDDED_CATEGORIES,
    ImageSet,
    ImageTask,
    detect_layout,
    load_asal_layout,
    load_embedded_textures,
    load_image_task,
    load_mvtec,
    load_mvtec_loco,
    load_texture_folder,
    make_asal_layout,
    read_image,
    read_mask,
    render_defect,
    texture_photo,
)
from kdal_lib.data.defects import _crop_resize

SMALL = dict(n_train=12, n_test_good=6, n_test_defect=12)


# ----------------------------------------------------------------------------------------------
# helpers: tiny image trees
# ----------------------------------------------------------------------------------------------
def _img(path: Path, size=(24, 20), mode="RGB", seed=0) -> Path:
    """A random image of ``size`` = (W, H) written with PIL."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, size=(24, 20), box=(2, 2, 10, 8), value=255) -> Path:
    a = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _mvtec_tree(root: Path, category="widget", missing_mask=False) -> Path:
    c = root / category
    _img(c / "train/good/000.png", mode="RGB", seed=1)
    _img(c / "train/good/001.png", mode="L", seed=2)
    _img(c / "train/good/002.png", mode="RGB", seed=3)
    _img(c / "test/good/000.png", mode="L", seed=4)
    _img(c / "test/scratch/000.png", size=(30, 20), mode="RGB", seed=5)
    _mask(c / "ground_truth/scratch/000_mask.png", size=(30, 20), box=(0, 0, 15, 10))
    _img(c / "test/scratch/001.png", mode="L", seed=6)
    if not missing_mask:
        _mask(c / "ground_truth/scratch/001_mask.png", box=(5, 5, 9, 9))
    return c


def _loco_tree(root: Path) -> Path:
    c = root / "bottle_loco"
    _img(c / "train/good/000.png", seed=1)
    _img(c / "train/good/001.png", mode="L", seed=2)
    _img(c / "validation/good/000.png", seed=3)
    _img(c / "test/good/000.png", seed=4)
    _img(c / "test/logical_anomalies/000.png", seed=5)
    # real LOCO: one folder per image, several mask files OR-ed
    _mask(c / "ground_truth/logical_anomalies/000/000.png", box=(0, 0, 4, 4), value=255)
    _mask(c / "ground_truth/logical_anomalies/000/001.png", box=(20, 16, 24, 20), value=244)
    _img(c / "test/structural_anomalies/000.png", mode="L", seed=6)
    _mask(c / "ground_truth/structural_anomalies/000.png", box=(4, 4, 12, 12))  # flat, as in shared/data
    return c


def _asal_tree(root: Path, cls="thing") -> Path:
    c = root / cls
    _img(c / "train/good/a.png", seed=1)
    _img(c / "train/good/b.png", mode="L", seed=2)
    _img(c / "train/anomaly/c.png", seed=3)
    _img(c / "test/good/d.png", seed=4)
    _img(c / "test/anomaly/e.jpg", seed=5)
    return c


# ----------------------------------------------------------------------------------------------
# embedded textures
# ----------------------------------------------------------------------------------------------
def test_embedded_default_task(tmp_cache):
    task = load_embedded_textures("brick")
    assert isinstance(task, ImageTask) and task.name == "brick"
    tr, te = task.train, task.test
    assert tr.images.shape == (200, 1, 64, 64) and te.images.shape == (100, 1, 64, 64)
    for s in (tr, te):
        assert s.images.dtype == np.float32 and s.labels.dtype == np.int64 and s.masks.dtype == np.float32
        assert 0.0 <= s.images.min() and s.images.max() <= 1.0
        assert set(np.unique(s.masks).tolist()) <= {0.0, 1.0}
    assert tr.labels.sum() == 0 and tr.masks.sum() == 0
    assert te.labels.sum() == 40 and (te.labels == 0).sum() == 60
    area = te.masks.sum(axis=(1, 2, 3))
    assert np.all(area[te.labels == 0] == 0) and np.all(area[te.labels == 1] > 0)
    counts = task.describe()["test_defect_types"]
    assert counts["good"] == 60 and set(counts) == {"good", *DEFECT_KINDS}
    assert all(6 <= counts[k] <= 7 for k in DEFECT_KINDS)  # spread evenly
    frac = area[te.labels == 1] / (64 * 64)
    assert frac.min() >= 0.004 and frac.max() <= 0.12
    assert te.paths[0] == "embedded://brick/test/good/0000"
    assert all(p.startswith(f"embedded://brick/test/{t}/") for p, t in zip(te.paths, te.defect_types))
    assert len(set(te.paths)) == 100 and tr.paths[3] == "embedded://brick/train/good/0003"
    d = te.describe()
    assert d["n"] == 100 and d["n_anomalous"] == 40 and d["image_size"] == (64, 64) and d["channels"] == 1
    # train and test crops come from disjoint checkerboard quadrants, half from each quadrant
    H, W = task.meta["photo_shape"]
    assert task.meta["train_region"] == [(0, 0, H // 2, W // 2), (H // 2, W // 2, H, W)]
    assert task.meta["test_region"] == [(0, W // 2, H // 2, W), (H // 2, 0, H, W // 2)]
    boxes_tr, boxes_te = task.meta["crop_boxes"]["train"], task.meta["crop_boxes"]["test"]
    assert boxes_tr.shape == (200, 4) and boxes_te.shape == (100, 4)

    def inside(boxes, region):
        y0, x0, y1, x1 = region
        return (boxes[:, 0] >= y0) & (boxes[:, 1] >= x0) & (boxes[:, 2] <= y1) & (boxes[:, 3] <= x1)

    for boxes, regions in ((boxes_tr, task.meta["train_region"]), (boxes_te, task.meta["test_region"])):
        counts = [int(inside(boxes, r).sum()) for r in regions]
        assert sum(counts) == len(boxes) and abs(counts[0] - counts[1]) <= 1
    assert not any(inside(boxes_te, r).any() for r in task.meta["train_region"])


def test_embedded_stochastic_textures_have_no_shifted_patches(tmp_cache):
    assert CATEGORY_DEFECTS["brick"] == DEFECT_KINDS
    task = load_embedded_textures("grass", **SMALL, cache=False)
    kinds = set(task.test.defect_types) - {"good"}
    assert kinds == set(DEFECT_KINDS) - {"shifted"} == set(task.meta["defect_kinds"])


def test_embedded_deterministic_and_cached(tmp_cache):
    a = load_embedded_textures("grass", **SMALL, random_state=3, cache=False)
    b = load_embedded_textures("grass", **SMALL, random_state=3, cache=False)
    c = load_embedded_textures("grass", **SMALL, random_state=4, cache=False)
    for s in ("train", "test"):
        assert getattr(a, s).images.tobytes() == getattr(b, s).images.tobytes()
    assert a.test.masks.tobytes() == b.test.masks.tobytes() and a.test.defect_types == b.test.defect_types
    assert not np.array_equal(a.train.images, c.train.images)
    assert not np.array_equal(a.test.masks, c.test.masks)
    assert not list(tmp_cache.rglob("*.npz"))  # cache=False writes nothing

    first = load_embedded_textures("grass", **SMALL, random_state=3)
    assert first.meta["from_cache"] is False
    files = list((tmp_cache / "images").glob("embedded_grass_64_*.npz"))
    assert len(files) == 1 and not list((tmp_cache / "images").glob("*.tmp"))
    hit = load_embedded_textures("grass", **SMALL, random_state=3)
    assert hit.meta["from_cache"] is True
    for s in ("train", "test"):
        assert getattr(hit, s).images.tobytes() == getattr(a, s).images.tobytes()
    assert hit.test.masks.tobytes() == a.test.masks.tobytes()
    assert hit.test.paths == a.test.paths and hit.test.defect_types == a.test.defect_types
    np.testing.assert_array_equal(hit.meta["crop_boxes"]["test"], a.meta["crop_boxes"]["test"])

    files[0].write_bytes(b"PK\x03\x04 this is not a real archive")
    with pytest.warns(UserWarning, match="ignoring unreadable image cache"):
        rebuilt = load_embedded_textures("grass", **SMALL, random_state=3)
    assert rebuilt.meta["from_cache"] is False
    assert rebuilt.test.images.tobytes() == a.test.images.tobytes()
    again = load_embedded_textures("grass", **SMALL, random_state=3)  # the rebuilt file is good again
    assert again.meta["from_cache"] is True


def test_embedded_defects_change_only_masked_pixels(tmp_cache):
    task = load_embedded_textures("gravel", **SMALL, random_state=1, cache=False)
    photo = texture_photo("gravel")
    te = task.test
    for i in np.flatnonzero(te.labels == 1):
        clean = _crop_resize(photo, task.meta["crop_boxes"]["test"][i], (64, 64))
        m = te.masks[i, 0] > 0
        out = te.images[i, 0]
        keep = ~m & (clean > 0.05) & (clean < 0.9)
        f = np.median(out[keep] / clean[keep])  # the crop's brightness jitter
        assert 0.94 <= f <= 1.06
        np.testing.assert_allclose(out[~m], np.clip(clean[~m] * f, 0, 1), atol=1e-4)  # nothing outside
        assert np.abs(out[m] - np.clip(clean[m] * f, 0, 1)).mean() > 0.04  # visible inside


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_render_defect_each_kind(kind):
    img = _crop_resize(texture_photo("brick"), (0, 0, 128, 128), (64, 64))
    for seed in range(3):
        out, mask = render_defect(img, kind, np.random.default_rng(seed))
        assert out.shape == img.shape and mask.shape == img.shape and out.dtype == np.float32
        m = mask > 0
        assert 0.004 <= m.mean() <= 0.12
        assert np.array_equal(out[~m], img[~m])
        assert np.abs(out[m] - img[m]).mean() > 0.04
    rgb = np.repeat(img[None], 3, axis=0)
    out, mask = render_defect(rgb, kind, 0)
    assert out.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
    a, ma = render_defect(img, kind, 5)
    b, mb = render_defect(img, kind, 5)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)


def test_embedded_bad_input(tmp_cache):
    with pytest.raises(ValueError, match=r"unknown embedded category 'marble'.*brick.*grass.*gravel"):
        load_embedded_textures("marble")
    with pytest.raises(ValueError, match="unknown defect kind 'dent'"):
        render_defect(np.zeros((32, 32)), "dent", 0)
    with pytest.raises(ValueError, match="crop_size"):
        load_embedded_textures("brick", crop_size=300)
    assert EMBEDDED_CATEGORIES == ("brick", "grass", "gravel")


def test_load_image_task_embedded(tmp_cache):
    t = load_image_task("embedded", "gravel", image_size=32, random_state=2)
    assert t.train.images.shape == (200, 1, 32, 32) and t.meta["source"] == "embedded"
    t3 = load_image_task("embedded", "gravel", image_size=32, channels=3, random_state=2)
    assert t3.test.images.shape == (100, 3, 32, 32) and t3.test.masks.shape == (100, 1, 32, 32)
    np.testing.assert_array_equal(t3.test.images[:, 1], t.test.images[:, 0])
    assert load_image_task().name == "brick"


# ----------------------------------------------------------------------------------------------
# containers and single files
# ----------------------------------------------------------------------------------------------
def test_imageset_subset_and_checks():
    imgs = np.random.default_rng(0).random((5, 3, 8, 8)).astype(np.float32)
    s = ImageSet(imgs, [0, 1, 0, 1, 1], np.zeros((5, 1, 8, 8)), [f"p{i}" for i in range(5)],
                 ["good", "a", "good", "b", "a"], "x")
    sub = s.subset(s.labels == 1)
    assert len(sub) == 3 and sub.paths == ["p1", "p3", "p4"] and sub.describe()["defect_types"] == {"a": 2, "b": 1}
    assert len(s.subset([0, 2])) == 2 and len(s.subset(slice(1, 3))) == 2
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        ImageSet(imgs * 2, [0] * 5, None, ["p"] * 5, ["good"] * 5)
    with pytest.raises(ValueError, match="masks must have shape"):
        ImageSet(imgs, [0] * 5, np.zeros((5, 1, 4, 4)), ["p"] * 5, ["good"] * 5)


def test_read_image_channels_and_sizes(tmp_path):
    grey = _img(tmp_path / "g.png", size=(40, 20), mode="L")
    rgb = _img(tmp_path / "c.png", size=(40, 20), mode="RGB")
    a = read_image(grey, 16, channels=3)
    assert a.shape == (3, 16, 16) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a[0], a[1]) and np.array_equal(a[1], a[2])  # grey replicated
    b = read_image(rgb, (10, 30), channels=1)
    assert b.shape == (1, 10, 30)
    m = read_mask(_mask(tmp_path / "m.png", size=(40, 20), value=37), 16)
    assert m.shape == (1, 16, 16) and set(np.unique(m).tolist()) == {0.0, 1.0}


# ----------------------------------------------------------------------------------------------
# MVTec AD
# ----------------------------------------------------------------------------------------------
def test_load_mvtec_tiny_tree(tmp_path):
    _mvtec_tree(tmp_path)
    task = load_mvtec(tmp_path, "widget", image_size=16, channels=3)
    assert task.train.images.shape == (3, 3, 16, 16) and task.test.images.shape == (3, 3, 16, 16)
    assert task.test.labels.tolist() == [0, 1, 1]
    assert task.test.defect_types == ["good", "scratch", "scratch"]
    assert task.test.masks[0].sum() == 0
    # mask (0..15, 0..10) of a 30x20 image -> top-left half-by-half of the resized square
    np.testing.assert_array_equal(task.test.masks[1, 0, :8, :8], 1.0)
    assert task.test.masks[1, 0, 8:, :].sum() == 0 and task.test.masks[1, 0, :, 8:].sum() == 0
    assert task.test.masks[2].sum() > 0 and task.meta["warnings"] == []
    assert task.test.paths[1].endswith("test/scratch/000.png")
    grey = load_mvtec(tmp_path, "widget", image_size=(12, 20), channels=1, split="train")
    assert grey.train.images.shape == (3, 1, 12, 20) and len(grey.test) == 0
    via = load_image_task("mvtec", "widget", image_size=16, data_dir=tmp_path)
    np.testing.assert_array_equal(via.test.images, task.test.images)
    auto = load_image_task(tmp_path / "widget", image_size=16)
    assert auto.meta["layout"] == "mvtec" and np.array_equal(auto.test.masks, task.test.masks)


def test_load_mvtec_missing_mask_recorded(tmp_path):
    _mvtec_tree(tmp_path, missing_mask=True)
    with pytest.warns(UserWarning, match="no ground-truth mask"):
        task = load_mvtec(tmp_path, "widget", image_size=16, verbose=1)
    assert task.test.masks[2].sum() == 0
    assert len(task.meta["warnings"]) == 1 and "001.png" in task.meta["warnings"][0]


def test_load_mvtec_alt_root(tmp_path):
    _mvtec_tree(tmp_path / "mvtec_anomaly_detection", "bottle")
    task = load_image_task("mvtec", "bottle", image_size=8, data_dir=tmp_path)
    assert len(task.train) == 3 and task.train.channels == 3


# ----------------------------------------------------------------------------------------------
# MVTec LOCO
# ----------------------------------------------------------------------------------------------
def test_load_mvtec_loco_tiny_tree(tmp_path):
    folder = _loco_tree(tmp_path)
    task = load_mvtec_loco(folder, image_size=24, channels=3)
    assert len(task.train) == 2 and len(task.validation) == 1
    assert task.meta["test_normals_from"] == "test/good"
    assert task.test.defect_types == ["good", "logical_anomalies", "structural_anomalies"]
    assert task.test.labels.tolist() == [0, 1, 1]
    m = task.test.masks[1, 0]  # folder of two masks, OR-ed; 24x20 image resized to 24x24
    assert m[0, 0] == 1 and m[-1, -1] == 1 and m.sum() > 0 and m[12, 12] == 0
    assert task.test.masks[2].sum() > 0
    assert detect_layout(folder) == "loco"
    grey = load_image_task(folder, image_size=24, channels=1)
    assert grey.train.images.shape == (2, 1, 24, 24) and grey.meta["layout"] == "mvtec_loco"


def test_load_mvtec_loco_real_subset(shared_data):
    root = shared_data / "mvtec_loco_juice_bottle_small"
    n_train = len(list((root / "train/good").glob("*.png")))
    n_val = len(list((root / "validation/good").glob("*.png")))
    n_logical = len(list((root / "test/logical_anomalies").glob("*.png")))
    assert (n_train, n_val, n_logical) == (100, 30, 50)  # as listed in MANIFEST.md
    assert not (root / "test/good").exists()
    task = load_image_task("loco", image_size=32, data_dir=shared_data)
    assert task.name == "juice_bottle"
    assert len(task.train) == n_train and len(task.validation) == n_val
    # no test/good in the subset: the validation normals become the test normals
    assert task.meta["test_normals_from"] == "validation/good"
    assert len(task.test) == n_val + n_logical and task.test.labels.sum() == n_logical
    assert task.test.images.shape[1:] == (3, 32, 32)
    area = task.test.masks.sum(axis=(1, 2, 3))
    assert np.all(area[task.test.labels == 1] > 0) and np.all(area[task.test.labels == 0] == 0)
    assert task.meta["defects_config"][0]["defect_name"] == "missing_top_label"
    assert task.meta["warnings"] == []


# ----------------------------------------------------------------------------------------------
# ASAL layout
# ----------------------------------------------------------------------------------------------
def test_load_asal_tiny_tree(tmp_path):
    _asal_tree(tmp_path)
    task = load_asal_layout(tmp_path, "thing", image_size=16, channels=3)
    assert task.train.labels.tolist() == [0, 0, 1] and task.test.labels.tolist() == [0, 1]
    assert task.train.masks is None and task.test.masks is None
    assert task.train.defect_types == ["good", "good", "anomaly"]
    assert detect_layout(tmp_path / "thing") == "asal"
    via = load_image_task("asal", "thing", image_size=16, channels=1, data_dir=tmp_path)
    assert via.train.images.shape == (3, 1, 16, 16)
    joined = load_image_task(tmp_path, "thing", image_size=16)  # a folder of categories + category
    assert joined.meta["layout"] == "asal"


def test_make_asal_layout_round_trip(tmp_path, tmp_cache):
    src = load_embedded_textures("brick", image_size=32, n_train=20, n_test_good=10, n_test_defect=10, cache=False)
    out = make_asal_layout(src, tmp_path / "asal", "brick", test_fraction=0.2, random_state=0)
    assert out == tmp_path / "asal" / "brick"
    assert not [p for p in (tmp_path / "asal").iterdir() if p.name.startswith(".")]  # no temp folders left
    counts = {f"{s}/{c}": len(list((out / s / c).glob("*.png"))) for s in ("train", "test") for c in ("good", "anomaly")}
    assert counts == {"train/good": 24, "test/good": 6, "train/anomaly": 8, "test/anomaly": 2}  # 80/20 per label
    task = load_asal_layout(tmp_path / "asal", "brick", image_size=32, channels=1)
    assert len(task.train) + len(task.test) == 40
    assert task.train.labels.sum() + task.test.labels.sum() == src.train.labels.sum() + src.test.labels.sum() == 10
    merged = np.concatenate([src.train.images, src.test.images])
    idx = [int(Path(p).name[:5]) for p in task.test.paths]  # files are named <merged index>_<type>.png
    assert np.abs(task.test.images - merged[idx]).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG round trip
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) == 40 and manifest["meta"]["random_state"] == 0
    # seeded: same seed -> same split, another seed -> another split
    same = make_asal_layout(src, tmp_path / "asal2", "brick", random_state=0)
    other = make_asal_layout(src, tmp_path / "asal3", "brick", random_state=1)
    names = lambda root: sorted(p.name for p in (root / "test" / "good").glob("*.png"))  # noqa: E731
    assert names(same) == names(out) and names(other) != names(out)
    with pytest.raises(FileExistsError, match="already exists and is not empty.*overwrite=True"):
        make_asal_layout(src, tmp_path / "asal", "brick")
    again = make_asal_layout(src.test, tmp_path / "asal", "brick", overwrite=True, random_state=0)
    assert sum(1 for _ in again.rglob("*.png")) == 20
    assert not [p for p in (tmp_path / "asal").iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------
# texture folders
# ----------------------------------------------------------------------------------------------
def test_load_texture_folder_real(shared_data):
    dtd = shared_data / "dtd_subset"
    n = len([p for p in dtd.rglob("*") if p.suffix.lower() in (".jpg", ".png")])
    x = load_texture_folder(dtd, image_size=32)
    assert x.shape == (n, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    sub = load_texture_folder(dtd, image_size=16, limit=7, random_state=0)
    assert sub.shape == (7, 3, 16, 16)
    np.testing.assert_array_equal(sub, load_texture_folder(dtd, image_size=16, limit=7, random_state=0))
    cc0 = load_texture_folder(shared_data / "textures_cc0", image_size=32)
    assert cc0.shape == (3, 3, 32, 32)
    assert np.array_equal(cc0[:, 0], cc0[:, 2])  # greyscale photos replicated to RGB


def test_load_texture_folder_dtd_layout(tmp_path):
    _img(tmp_path / "images/banded/banded_0001.jpg", size=(30, 20))
    _img(tmp_path / "images/bumpy/bumpy_0001.jpg", size=(20, 20), mode="L")
    assert load_texture_folder(tmp_path, 8).shape == (2, 3, 8, 8)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*nowhere.* does not exist"):
        load_mvtec(tmp_path, "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_task(tmp_path / "missing_dir")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_texture_folder(tmp_path / "no_textures")

    empty = tmp_path / "empty"
    (empty / "e" / "train" / "good").mkdir(parents=True)
    (empty / "e" / "test" / "good").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images found under .*train.good"):
        load_mvtec(empty, "e")
    (tmp_path / "no_imgs").mkdir()
    with pytest.raises(ValueError, match="no images found under"):
        load_texture_folder(tmp_path / "no_imgs")

    bad = tmp_path / "bad"
    _mvtec_tree(bad)
    (bad / "widget/train/good/003.png").write_bytes(b"\x89PNG not really an image")
    with pytest.raises(ValueError, match=r"cannot read image .*003\.png"):
        load_mvtec(bad, "widget")

    mism = tmp_path / "mism"
    _mvtec_tree(mism)
    _mask(mism / "widget/ground_truth/scratch/000_mask.png", size=(12, 12))
    with pytest.raises(ValueError, match=r"mask .*000_mask\.png has size 12x12.*000\.png has size 30x20"):
        load_mvtec(mism, "widget")

    odd = tmp_path / "odd"
    _img(odd / "images" / "x.png")
    with pytest.raises(ValueError, match=r"unknown image layout .*looked for .*MVTec LOCO.*ASAL.*MVTec AD"):
        load_image_task(odd)
    with pytest.raises(ValueError, match=r"unknown data value 'cifar10'.*embedded"):
        load_image_task("cifar10")
    with pytest.raises(FileNotFoundError, match=r"MVTec AD category 'bottle'.*looked for"):
        load_image_task("mvtec", "bottle", data_dir=tmp_path)
    with pytest.raises(ValueError, match="channels must be 1"):
        load_image_task(bad / "widget", channels=2)


def test_merge_and_split_matches_the_layout_writer(tmp_path, tmp_cache):
    from kdal_lib.data import load_asal_layout, load_embedded_textures, make_asal_layout, merge_and_split

    task = load_embedded_textures("brick", image_size=16, n_train=20, n_test_good=10, n_test_defect=10)
    pool, test = merge_and_split(task, test_fraction=0.2, random_state=3)
    assert (len(pool), len(test)) == (32, 8)
    assert int(test.labels.sum()) == 2 and int(pool.labels.sum()) == 8  # 20 % of each label
    assert not set(pool.paths) & set(test.paths)
    make_asal_layout(task, tmp_path, "brick", test_fraction=0.2, random_state=3)
    disk = load_asal_layout(tmp_path, "brick", image_size=16, channels=1)
    assert (len(disk.train), int(disk.train.labels.sum())) == (len(pool), int(pool.labels.sum()))
