"""The embedded image task: crops of real CC0 texture photos with geometric structural defects.

No files are needed: the photos are the three 512x512 greyscale textures shipped inside
scikit-image (``skimage.data.brick()``, ``.grass()``, ``.gravel()``; CC0, see ``skimage.data``).

Protocol (MVTec-AD-like, Bergmann et al., CVPR 2019)
----------------------------------------------------
* The photo is cut into four quadrants like a 2x2 checkerboard. Training crops lie entirely inside
  the top-left and bottom-right quadrants, test crops inside the other two, so test normals are
  unseen texture while both sets see every side of the photo (a plain left/right split let the
  photo's left-to-right lighting and contrast drift pass for a defect; version 1 of this generator did
  that). ``meta["train_region"]`` / ``meta["test_region"]`` list the quadrants and ``meta["crop_boxes"]``
  records every crop as ``(y0, x0, y1, x1)`` in photo pixels; each set takes half its crops from each
  of its quadrants.
* Each crop (``crop_size`` = 128 px) is resized to ``image_size`` (PIL bilinear, antialiased) and
  gets a mild brightness jitter (x U[0.95, 1.05]). No flips or rotations.
* Defaults: 200 training normals; test = 60 normals + 40 defective crops (40 %), the defect kinds
  spread evenly over the category's kinds (:data:`CATEGORY_DEFECTS`): all of :data:`DEFECT_KINDS`
  for *brick*; *grass* and *gravel* have no "shifted" patch, because a patch of a stochastic texture
  moved elsewhere is still the same texture (nothing anyone could see).

Defects (:func:`render_defect`) are geometric (lines, ellipses, polygons, random walks, copied
patches), drawn at the output resolution. They are deliberately *independent* of DRAEM's training
anomalies (Perlin-noise masks filled with DTD textures, Zavrtanik et al., ICCV 2021): no Perlin noise
and no foreign texture is used, so a DRAEM model evaluated here is not tested on its own synthesis.
The mask covers exactly the changed pixels: the blend weight is cut to zero below 0.1 and the image
outside the mask is left bit-for-bit unchanged.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from ..utils import atomic_save_npz, cache_dir
from .images import ImageSet, ImageTask, _size_hw

__all__ = [
    "EMBEDDED_CATEGORIES",
    "DEFECT_KINDS",
    "CATEGORY_DEFECTS",
    "render_defect",
    "texture_photo",
    "load_embedded_textures",
]

EMBEDDED_CATEGORIES = ("brick", "grass", "gravel")
DEFECT_KINDS = ("scratch", "hole", "stain", "crack", "missing", "shifted")
#: defect kinds of each embedded category ("shifted" only where the texture is regular)
CATEGORY_DEFECTS = {"brick": DEFECT_KINDS, "grass": DEFECT_KINDS[:5], "gravel": DEFECT_KINDS[:5]}
_GENERATOR_VERSION = 2
_ALPHA_CUT = 0.1  # blend weights below this are set to 0, so the mask is exactly the changed pixels
_MIN_AREA, _MAX_AREA = 0.004, 0.12  # accepted defect area, as a fraction of the image
_MIN_CHANGE = 0.04  # accepted mean |change| inside the mask (max over channels)


# ----------------------------------------------------------------------------------------------
# defect shapes
# ----------------------------------------------------------------------------------------------
def _soft(shape: np.ndarray, feather: float) -> np.ndarray:
    """Blend weight that ramps from the shape's border to 1 over ``feather`` px, zero outside."""
    from scipy.ndimage import distance_transform_edt

    if feather <= 0:
        return shape.astype(np.float32)
    dt = distance_transform_edt(shape)
    return np.clip(dt / (feather + 1.0), 0.0, 1.0).astype(np.float32)


def _polyline(points, h: int, w: int) -> np.ndarray:
    from skimage.draw import line

    canvas = np.zeros((h, w), bool)
    pts = np.round(np.asarray(points)).astype(int)
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        canvas[rr[ok], cc[ok]] = True
    return canvas


def _thicken(shape: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    if width <= 1:
        return shape
    return binary_dilation(shape, structure=np.ones((width, width), bool))


def _ellipse(h, w, r, c, r_rad, c_rad, rotation) -> np.ndarray:
    from skimage.draw import ellipse

    canvas = np.zeros((h, w), bool)
    rr, cc = ellipse(r, c, max(r_rad, 1.0), max(c_rad, 1.0), shape=(h, w), rotation=rotation)
    canvas[rr, cc] = True
    return canvas


def _local_mean(img: np.ndarray, shape: np.ndarray) -> float:
    return float(img[:, shape].mean()) if shape.any() else float(img.mean())


def _scratch(img, rng, s):
    c, h, w = img.shape
    f = s / 64.0
    n_seg = int(rng.integers(1, 4))
    length = rng.uniform(0.35, 0.7) * s
    theta = rng.uniform(0, 2 * np.pi)
    p = np.array([rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w])
    pts = [p.copy()]
    for _ in range(n_seg):
        p = p + length / n_seg * np.array([np.sin(theta), np.cos(theta)])
        pts.append(p.copy())
        theta += rng.uniform(-0.6, 0.6)
    width = max(1, int(round(int(rng.integers(1, 4)) * f)))
    shape = _thicken(_polyline(pts, h, w), width)
    target_level = 0.0 if _local_mean(img, shape) > 0.5 else 1.0  # the far end: always visible
    strength = rng.uniform(0.6, 0.85)
    alpha = shape.astype(np.float32) * strength
    return np.full_like(img, target_level), alpha


def _hole(img, rng, s):
    c, h, w = img.shape
    area = rng.uniform(0.015, 0.08) * h * w
    aspect = rng.uniform(1.0, 2.0)
    r_minor = np.sqrt(area / (np.pi * aspect))
    shape = _ellipse(h, w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, r_minor * aspect, r_minor,
                     rng.uniform(-np.pi, np.pi))
    alpha = _soft(shape, 2.0 * s / 64.0)
    # darkened to 20-45 % of its brightness (about -0.25 to -0.35 on these photos); texture stays faintly visible
    target = (img * rng.uniform(0.2, 0.45)).astype(np.float32)
    return target, alpha


def _stain(img, rng, s):
    from scipy.ndimage import gaussian_filter

    c, h, w = img.shape
    area = rng.uniform(0.03, 0.1) * h * w
    centre = np.array([rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w])
    shape = np.zeros((h, w), bool)
    n_blob = int(rng.integers(2, 5))
    for _ in range(n_blob):
        r = np.sqrt(area / n_blob / np.pi) * rng.uniform(0.8, 1.3)
        off = rng.normal(0, 0.5 * r, size=2)
        shape |= _ellipse(h, w, centre[0] + off[0], centre[1] + off[1], r * rng.uniform(0.7, 1.3), r,
                          rng.uniform(-np.pi, np.pi))
    blurred = gaussian_filter(shape.astype(np.float32), sigma=1.5 * s / 64.0)
    alpha = np.clip(2.0 * blurred, 0.0, 1.0) * shape
    shift = rng.uniform(0.15, 0.35) * rng.choice([-1.0, 1.0])
    m = _local_mean(img, shape)
    if not 0.1 <= m + shift <= 0.9:
        shift = -shift
    tint = 1.0 + (rng.uniform(-0.3, 0.3, size=(c, 1, 1)) if c > 1 else np.zeros((1, 1, 1)))
    target = np.clip(img + shift * tint, 0.0, 1.0).astype(np.float32)
    return target, alpha.astype(np.float32)


def _walk(start, theta, n_steps, rng, step=1.0, wiggle=0.35):
    pts = [np.asarray(start, float)]
    for _ in range(int(n_steps)):
        theta += rng.normal(0.0, wiggle)
        pts.append(pts[-1] + step * np.array([np.sin(theta), np.cos(theta)]))
    return pts


def _crack(img, rng, s):
    c, h, w = img.shape
    f = s / 64.0
    theta = rng.uniform(0, 2 * np.pi)
    main = _walk([rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w], theta, rng.integers(25, 55) * f, rng, step=1.0)
    shape = _polyline(main, h, w)
    for _ in range(int(rng.integers(1, 3))):
        k = int(rng.integers(len(main) // 4, max(len(main) // 4 + 1, 3 * len(main) // 4)))
        branch_theta = theta + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2)
        branch = _walk(main[k], branch_theta, len(main) * rng.uniform(0.25, 0.5), rng, step=1.0)
        shape |= _polyline(branch, h, w)
    width = max(1, int(round(int(rng.integers(1, 3)) * f)))
    shape = _thicken(shape, width)
    depth = rng.uniform(0.3, 0.6)
    target = np.clip(img - depth, 0.0, 1.0)
    return target, shape.astype(np.float32)


def _missing(img, rng, s):
    from scipy.ndimage import gaussian_filter
    from skimage.draw import polygon

    c, h, w = img.shape
    area = rng.uniform(0.02, 0.09) * h * w
    cr, cc = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    shape = np.zeros((h, w), bool)
    if rng.random() < 0.5:  # rectangle
        aspect = rng.uniform(0.5, 2.0)
        hh, ww = np.sqrt(area * aspect), np.sqrt(area / aspect)
        r0, c0 = int(max(0, cr - hh / 2)), int(max(0, cc - ww / 2))
        shape[r0:int(min(h, cr + hh / 2)), c0:int(min(w, cc + ww / 2))] = True
    else:  # irregular convex-ish polygon
        n_v = int(rng.integers(4, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n_v))
        rad = np.sqrt(area / np.pi) * rng.uniform(0.8, 1.25, n_v)
        rr, cc_ = polygon(cr + rad * np.sin(ang), cc + rad * np.cos(ang), shape=(h, w))
        shape[rr, cc_] = True
    if rng.random() < 0.5 and shape.any():  # flat fill with the patch's mean
        target = np.broadcast_to(img[:, shape].mean(axis=1)[:, None, None], img.shape).astype(np.float32).copy()
    else:  # heavily blurred (texture detail gone)
        target = np.stack([gaussian_filter(ch, sigma=4.0 * s / 64.0) for ch in img]).astype(np.float32)
    return target, shape.astype(np.float32)


def _shifted(img, rng, s):
    c, h, w = img.shape
    side = int(round(np.sqrt(rng.uniform(0.02, 0.09) * h * w)))
    side = max(3, min(side, h - 1, w - 1))
    r0, c0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    target = img.copy()
    patch = img[:, r0:r0 + side, c0:c0 + side]
    if rng.random() < 0.5:  # the patch rotated in place by 90 degrees
        target[:, r0:r0 + side, c0:c0 + side] = np.rot90(patch, k=int(rng.choice([1, 3])), axes=(1, 2))
    else:  # content copied from elsewhere in the image, at an offset of at least half the patch
        for _ in range(20):
            sr, sc = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            if max(abs(sr - r0), abs(sc - c0)) >= side // 2:
                break
        target[:, r0:r0 + side, c0:c0 + side] = img[:, sr:sr + side, sc:sc + side]
    shape = np.zeros((h, w), bool)
    shape[r0:r0 + side, c0:c0 + side] = True
    return target, shape.astype(np.float32)


_RENDERERS = {
    "scratch": _scratch,
    "hole": _hole,
    "stain": _stain,
    "crack": _crack,
    "missing": _missing,
    "shifted": _shifted,
}


def render_defect(image, kind: str, rng=None, max_tries: int = 20):
    """Add one structural defect to ``image`` and return ``(defective image, mask)``.

    ``image``: float ``(H, W)`` or ``(C, H, W)`` in [0, 1]; ``kind``: one of :data:`DEFECT_KINDS` or
    ``"random"``; ``rng``: a ``np.random.Generator`` or an int seed. The result has the input's shape
    (float32); ``mask`` is float32 {0, 1}, ``(H, W)`` for a 2-D input and ``(1, H, W)`` otherwise, and
    covers exactly the changed pixels (outside it the image is unchanged). A draw whose area falls
    outside 0.4–12 % of the image or whose mean change inside the mask is below 0.04 is redrawn
    (up to ``max_tries`` times)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    arr = np.asarray(image, dtype=np.float32)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W) with C = 1 or 3, got shape {np.shape(image)}")
    if min(arr.shape[1:]) < 16:
        raise ValueError(f"image is too small for a defect ({arr.shape[1]}x{arr.shape[2]}; need at least 16x16)")
    if kind == "random":
        kind = str(rng.choice(DEFECT_KINDS))
    if kind not in _RENDERERS:
        raise ValueError(f"unknown defect kind {kind!r}: use one of {list(DEFECT_KINDS)} or 'random'")
    arr = np.clip(arr, 0.0, 1.0)
    s = float(min(arr.shape[1:]))
    n_pix = arr.shape[1] * arr.shape[2]
    out = mask = None
    for _ in range(max_tries):
        target, alpha = _RENDERERS[kind](arr, rng, s)
        alpha = np.where(alpha >= _ALPHA_CUT, alpha, 0.0).astype(np.float32)
        m = alpha > 0
        blended = np.clip(arr + alpha[None] * (target - arr), 0.0, 1.0).astype(np.float32)
        out = np.where(m[None], blended, arr).astype(np.float32)
        mask = m
        area = m.sum() / n_pix
        change = np.abs(out - arr).max(axis=0)[m].mean() if m.any() else 0.0
        if _MIN_AREA <= area <= _MAX_AREA and change >= _MIN_CHANGE:
            break
    mask = mask.astype(np.float32)
    if squeeze:
        return out[0], mask
    return out, mask[None]


# ----------------------------------------------------------------------------------------------
# the embedded task
# ----------------------------------------------------------------------------------------------
def texture_photo(category: str) -> np.ndarray:
    """The 512x512 greyscale CC0 photo behind an embedded category, float32 in [0, 1]."""
    if category not in EMBEDDED_CATEGORIES:
        raise ValueError(f"unknown embedded category {category!r}: use one of {list(EMBEDDED_CATEGORIES)}")
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("the embedded image task needs scikit-image: pip install scikit-image") from exc
    photo = np.asarray(getattr(skimage.data, category)())
    if photo.ndim == 3:  # pragma: no cover - the three photos are greyscale
        photo = photo[..., :3].mean(axis=2)
    return (photo.astype(np.float32) / 255.0).astype(np.float32)


def _crop_resize(photo: np.ndarray, box, hw) -> np.ndarray:
    from PIL import Image

    y0, x0, y1, x1 = box
    patch = np.ascontiguousarray(photo[y0:y1, x0:x1], dtype=np.float32)
    h, w = hw
    if patch.shape != (h, w):
        patch = np.asarray(Image.fromarray(patch).resize((w, h), Image.BILINEAR), dtype=np.float32)
    return np.clip(patch, 0.0, 1.0)


def _quadrants(H: int, W: int) -> dict:
    """The checkerboard regions ``(y0, x0, y1, x1)``: train = top-left + bottom-right, test = the others."""
    h2, w2 = H // 2, W // 2
    return {"train": [(0, 0, h2, w2), (h2, w2, H, W)], "test": [(0, w2, h2, W), (h2, 0, H, w2)]}


def _boxes(rng, n, regions, cs) -> np.ndarray:
    """``n`` crop boxes (y0, x0, y1, x1) of side ``cs``, crop i inside ``regions[i % len(regions)]``."""
    out = np.zeros((n, 4), np.int64)
    for i in range(n):
        ry0, rx0, ry1, rx1 = regions[i % len(regions)]
        y0, x0 = int(rng.integers(ry0, ry1 - cs + 1)), int(rng.integers(rx0, rx1 - cs + 1))
        out[i] = (y0, x0, y0 + cs, x0 + cs)
    return out


def _build(photo, hw, n_train, n_test_good, n_test_defect, random_state, crop_size, cat_id=0,
           kinds_of_category=DEFECT_KINDS) -> dict:
    H, W = photo.shape
    regions = _quadrants(H, W)
    rng_train, rng_test, rng_defect = (np.random.default_rng(s) for s in np.random.SeedSequence([random_state, cat_id]).spawn(3))

    def crops(boxes, rng):
        out = np.zeros((len(boxes), 1) + tuple(hw), np.float32)
        for i, b in enumerate(boxes):
            out[i, 0] = np.clip(_crop_resize(photo, b, hw) * rng.uniform(0.95, 1.05), 0.0, 1.0)
        return out

    train_boxes = _boxes(rng_train, n_train, regions["train"], crop_size)
    train = crops(train_boxes, rng_train)
    test_boxes = _boxes(rng_test, n_test_good + n_test_defect, regions["test"], crop_size)
    test = crops(test_boxes, rng_test)
    masks = np.zeros((len(test), 1) + tuple(hw), np.float32)
    # kinds spread evenly (round-robin), then grouped by kind as MVTec's test/<defect>/ folders are
    kinds = sorted((kinds_of_category[i % len(kinds_of_category)] for i in range(n_test_defect)),
                   key=DEFECT_KINDS.index)
    types = ["good"] * n_test_good + kinds
    for j in range(n_test_defect):
        i = n_test_good + j
        test[i], masks[i] = render_defect(test[i], types[i], rng_defect)
    labels = np.array([0] * n_test_good + [1] * n_test_defect, np.int64)
    return {
        "train_images": train,
        "train_boxes": train_boxes,
        "test_images": test,
        "test_masks": masks,
        "test_labels": labels,
        "test_boxes": test_boxes,
        "test_types": np.array(types, dtype="U16"),
    }


def _save_npz(arrays: dict, target: Path) -> None:
    atomic_save_npz(arrays, target)


_KEYS = ("train_images", "train_boxes", "test_images", "test_masks", "test_labels", "test_boxes", "test_types")


def _load_npz(target: Path, n_train: int, n_test: int, hw) -> dict | None:
    if not target.is_file():
        return None
    try:
        with open(target, "rb") as fh, np.load(fh, allow_pickle=False) as d:
            out = {k: d[k] for k in _KEYS}
        ok = (
            out["train_images"].shape == (n_train, 1) + tuple(hw)
            and out["test_images"].shape == (n_test, 1) + tuple(hw)
            and out["test_masks"].shape == (n_test, 1) + tuple(hw)
            and out["test_labels"].shape == (n_test,)
            and out["test_types"].shape == (n_test,)
            and out["train_boxes"].shape == (n_train, 4)
            and out["test_boxes"].shape == (n_test, 4)
        )
        if not ok:
            raise ValueError("array shapes do not match the requested task")
        return out
    except Exception as exc:  # corrupt or stale cache: rebuild it
        warnings.warn(f"ignoring unreadable image cache {target} ({exc!r}); rebuilding it", UserWarning, stacklevel=3)
        return None


def load_embedded_textures(category: str = "brick", image_size=64, n_train: int = 200, n_test_good: int = 60,
                           n_test_defect: int = 40, random_state: int = 0, cache: bool = True,
                           crop_size: int = 128) -> ImageTask:
    """The embedded texture task (see the module docstring): 1-channel images, ``n_train`` normal
    training crops, ``n_test_good`` normal and ``n_test_defect`` defective test crops with pixel masks.

    Same arguments → byte-identical arrays. The arrays are cached in
    ``cache_dir("images")/embedded_<category>_<size>_<hash>.npz`` (written atomically; a corrupt file
    is reported and rebuilt); ``cache=False`` neither reads nor writes it."""
    if category not in EMBEDDED_CATEGORIES:
        raise ValueError(f"unknown embedded category {category!r}: use one of {list(EMBEDDED_CATEGORIES)}")
    hw = _size_hw(image_size)
    for name, v, lo in (("n_train", n_train, 1), ("n_test_good", n_test_good, 0), ("n_test_defect", n_test_defect, 0)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if n_test_good + n_test_defect < 1:
        raise ValueError("the test set would be empty: n_test_good + n_test_defect must be >= 1")
    if not isinstance(random_state, (int, np.integer)) or isinstance(random_state, bool) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}")
    photo = texture_photo(category)
    quadrant = min(photo.shape) // 2
    if not isinstance(crop_size, (int, np.integer)) or not 8 <= crop_size <= quadrant:
        raise ValueError(
            f"crop_size must be an integer in [8, {quadrant}] (the side of a photo quadrant), got {crop_size!r}"
        )
    if min(hw) < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size!r}")
    n_train, n_test_good, n_test_defect = int(n_train), int(n_test_good), int(n_test_defect)
    n_test = n_test_good + n_test_defect
    key = {
        "v": _GENERATOR_VERSION,
        "category": category,
        "hw": list(hw),
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect": n_test_defect,
        "random_state": int(random_state),
        "crop_size": int(crop_size),
        "photo_sha": hashlib.sha256(photo.tobytes()).hexdigest()[:16],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    size_tag = str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"
    target = cache_dir("images") / f"embedded_{category}_{size_tag}_{digest}.npz" if cache else None
    arrays = _load_npz(target, n_train, n_test, hw) if cache else None
    from_cache = arrays is not None
    if arrays is None:
        arrays = _build(photo, hw, n_train, n_test_good, n_test_defect, int(random_state), int(crop_size),
                        EMBEDDED_CATEGORIES.index(category), CATEGORY_DEFECTS[category])
        if cache:
            _save_npz(arrays, target)

    types = [str(t) for t in arrays["test_types"]]
    counters: dict[str, int] = {}
    test_paths = []
    for t in types:
        k = counters.get(t, 0)
        counters[t] = k + 1
        test_paths.append(f"embedded://{category}/test/{t}/{k:04d}")
    train = ImageSet(
        images=arrays["train_images"],
        labels=np.zeros(n_train, np.int64),
        masks=np.zeros_like(arrays["train_images"]),
        paths=[f"embedded://{category}/train/good/{i:04d}" for i in range(n_train)],
        defect_types=["good"] * n_train,
        name=category,
    )
    test = ImageSet(
        images=arrays["test_images"],
        labels=arrays["test_labels"],
        masks=arrays["test_masks"],
        paths=test_paths,
        defect_types=types,
        name=category,
    )
    meta = {
        "source": "embedded",
        "layout": "embedded",
        "category": category,
        "photo": f"skimage.data.{category}() (CC0, 512x512 greyscale, shipped with scikit-image)",
        "photo_shape": tuple(int(v) for v in photo.shape),
        "image_size": hw,
        "channels": 1,
        "crop_size": int(crop_size),
        "train_region": _quadrants(*photo.shape)["train"],  # (y0, x0, y1, x1) quadrants in photo pixels
        "test_region": _quadrants(*photo.shape)["test"],
        "crop_boxes": {"train": arrays["train_boxes"], "test": arrays["test_boxes"]},
        "defect_kinds": CATEGORY_DEFECTS[category],
        "random_state": int(random_state),
        "generator": f"geometric defects v{_GENERATOR_VERSION} (lines, ellipses, polygons, random walks, "
        "copied patches; no Perlin noise)",
        "cache_file": None if target is None else str(target),
        "from_cache": from_cache,
        "warnings": [],
    }
    return ImageTask(name=category, train=train, test=test, meta=meta)
