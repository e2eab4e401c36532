"""Image anomaly-detection data: one container for every notebook, real-data loaders, the ASAL layout.

Conventions everywhere
----------------------
* ``images``: float32 ``(N, C, H, W)`` in ``[0, 1]`` with ``C`` = 1 (grey) or 3 (RGB). No ImageNet
  normalisation is applied here: a model that needs it normalises its own input.
* ``labels``: int64 ``(N,)``, 0 = good, 1 = anomalous.
* ``masks``: float32 ``(N, 1, H, W)`` in ``{0, 1}`` (all zeros for good images), or ``None`` when the
  source has no pixel annotation (the ASAL layout).
* Every image is resized to ``image_size`` (an int for a square, or ``(H, W)``). A non-square source
  (e.g. MVTec LOCO's 800x1600 bottles) is therefore *stretched* to the requested shape, not cropped:
  the whole object stays in view, at the price of a changed aspect ratio. Images use bilinear
  resampling (PIL's, antialiased when shrinking); masks use NEAREST so they stay binary.

Layouts read
------------
``load_mvtec``       MVTec AD (Bergmann et al., CVPR 2019): ``<category>/train/good``,
                     ``<category>/test/<defect>``, ``<category>/ground_truth/<defect>/<stem>_mask.png``.
``load_mvtec_loco``  MVTec LOCO AD (Bergmann et al., IJCV 2022): adds ``validation/good``; ground truth is
                     a folder per image, ``ground_truth/<defect>/<stem>/000.png`` (several files are OR-ed),
                     or a flat ``ground_truth/<defect>/<stem>.png`` as in ``shared/data``'s subset.
``load_asal_layout`` the ASAL seed's ``<root>/<class>/{train,test}/{good,anomaly}/*`` (no masks).

Nothing here downloads anything.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils import data_root, progress

__all__ = [
    "ImageSet",
    "ImageTask",
    "IMAGE_EXTENSIONS",
    "DATA_SOURCES",
    "read_image",
    "read_mask",
    "load_mvtec",
    "load_mvtec_loco",
    "load_asal_layout",
    "make_asal_layout",
    "load_texture_folder",
    "detect_layout",
    "load_image_task",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
#: the named values ``load_image_task(data=...)`` accepts (besides a path to a category folder)
DATA_SOURCES = ("embedded", "mvtec", "loco", "asal")
_LOCO_DEFAULT_FOLDERS = ("mvtec_loco_juice_bottle_small", "mvtec_loco_anomaly_detection/juice_bottle", "juice_bottle")


# ----------------------------------------------------------------------------------------------
# containers
# ----------------------------------------------------------------------------------------------
@dataclass
class ImageSet:
    """A set of images with labels, optional pixel masks and one identifier per image.

    ``paths`` hold a real file path, or ``"embedded://<category>/<split>/<type>/<index>"`` for the
    generated textures; ``defect_types`` hold ``"good"`` or the defect name of each image."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    paths: list[str]
    defect_types: list[str]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        imgs = np.asarray(self.images)
        if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
            raise ValueError(f"ImageSet {self.name!r}: images must be (N, C, H, W) with C = 1 or 3, got {imgs.shape}")
        self.images = imgs.astype(np.float32, copy=False)
        n = len(self.images)
        if n and not np.isfinite(self.images).all():
            raise ValueError(f"ImageSet {self.name!r}: images contain NaN or inf")
        if n and (self.images.min() < 0.0 or self.images.max() > 1.0):
            raise ValueError(
                f"ImageSet {self.name!r}: images must lie in [0, 1], got range "
                f"[{self.images.min():.3g}, {self.images.max():.3g}]"
            )
        labels = np.asarray(self.labels).ravel()
        if labels.shape != (n,):
            raise ValueError(f"ImageSet {self.name!r}: {labels.size} labels for {n} images")
        if n and not set(np.unique(labels).tolist()) <= {0, 1}:
            raise ValueError(f"ImageSet {self.name!r}: labels must be 0 (good) or 1 (anomalous)")
        self.labels = labels.astype(np.int64)
        if self.masks is not None:
            masks = np.asarray(self.masks)
            want = (n, 1) + self.images.shape[2:]
            if masks.shape != want:
                raise ValueError(f"ImageSet {self.name!r}: masks must have shape {want}, got {masks.shape}")
            self.masks = masks.astype(np.float32, copy=False)
        self.paths = [str(p) for p in self.paths]
        self.defect_types = [str(t) for t in self.defect_types]
        if len(self.paths) != n or len(self.defect_types) != n:
            raise ValueError(
                f"ImageSet {self.name!r}: {len(self.paths)} paths and {len(self.defect_types)} defect types "
                f"for {n} images"
            )

    def __len__(self) -> int:
        return int(len(self.images))

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, idx) -> "ImageSet":
        """The images at ``idx`` (integer indices, a boolean mask or a slice), as a new ImageSet."""
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean index has shape {idx.shape}, expected ({len(self)},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for an ImageSet of {len(self)} images")
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            masks=None if self.masks is None else self.masks[idx],
            paths=[self.paths[i] for i in idx],
            defect_types=[self.defect_types[i] for i in idx],
            name=self.name,
            meta=dict(self.meta),
        )

    def describe(self) -> dict:
        """One row for a notebook table."""
        return {
            "name": self.name,
            "n": len(self),
            "n_anomalous": int(self.labels.sum()),
            "image_size": self.image_size,
            "channels": self.channels,
            "has_masks": self.masks is not None,
            "defect_types": dict(sorted(Counter(self.defect_types).items())),
        }


@dataclass
class ImageTask:
    """One category: ``train`` (normals, or an unlabelled pool for ASAL), ``test`` and, for MVTec
    LOCO, ``validation`` (normal images only). ``meta`` records the source and every choice made."""

    name: str
    train: ImageSet
    test: ImageSet
    meta: dict = field(default_factory=dict)
    validation: ImageSet | None = None

    def describe(self) -> dict:
        """One row for a notebook table."""
        n_test = len(self.test)
        return {
            "name": self.name,
            "source": self.meta.get("source"),
            "n_train": len(self.train),
            "n_train_anomalous": int(self.train.labels.sum()),
            "n_validation": None if self.validation is None else len(self.validation),
            "n_test": n_test,
            "n_test_anomalous": int(self.test.labels.sum()),
            "contamination": round(float(self.test.labels.mean()), 4) if n_test else 0.0,
            "image_size": self.train.image_size,
            "channels": self.train.channels,
            "has_masks": self.test.masks is not None,
            "test_defect_types": dict(sorted(Counter(self.test.defect_types).items())),
        }


def empty_set(image_size, channels: int, name: str = "", with_masks: bool = True) -> ImageSet:
    h, w = _size_hw(image_size)
    return ImageSet(
        images=np.zeros((0, channels, h, w), np.float32),
        labels=np.zeros(0, np.int64),
        masks=np.zeros((0, 1, h, w), np.float32) if with_masks else None,
        paths=[],
        defect_types=[],
        name=name,
    )


def concat_sets(sets: Sequence[ImageSet], name: str | None = None) -> ImageSet:
    """Join ImageSets of the same image shape (masks kept only if every part has them)."""
    sets = [s for s in sets if s is not None]
    if not sets:
        raise ValueError("nothing to concatenate")
    shapes = {s.images.shape[1:] for s in sets}
    if len(shapes) > 1:
        raise ValueError(f"cannot join image sets of different shapes {sorted(shapes)}")
    has_masks = all(s.masks is not None for s in sets)
    return ImageSet(
        images=np.concatenate([s.images for s in sets]),
        labels=np.concatenate([s.labels for s in sets]),
        masks=np.concatenate([s.masks for s in sets]) if has_masks else None,
        paths=[p for s in sets for p in s.paths],
        defect_types=[t for s in sets for t in s.defect_types],
        name=sets[0].name if name is None else name,
        meta={},
    )


# ----------------------------------------------------------------------------------------------
# reading single files
# ----------------------------------------------------------------------------------------------
def _size_hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        h = w = int(image_size)
    else:
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size must be an int or an (H, W) pair, got {image_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def _check_channels(channels) -> int:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return int(channels)


def _open(path):
    """Open and fully decode an image file; ValueError naming the file if that fails."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc


def _to_8bit(im):
    """16-bit / 32-bit / float PIL images to an 8-bit one, scaled by the type's range."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if a.size and a.max() <= 1.0 + 1e-6 else 255.0
        else:
            top = 255.0 if a.size and a.max() <= 255 else 65535.0
        return Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8))
    return im


def _pil_to_array(im, image_size, channels: int, mask: bool = False) -> np.ndarray:
    from PIL import Image

    h, w = _size_hw(image_size)
    im = _to_8bit(im)
    if mask:
        im = im.convert("L")
        if im.size != (w, h):
            im = im.resize((w, h), Image.NEAREST)
        return (np.asarray(im) > 0).astype(np.float32)[None]
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def read_image(path, image_size=64, channels: int = 3) -> np.ndarray:
    """One image as float32 ``(C, H, W)`` in [0, 1]: converted to grey (``channels=1``, PIL "L") or
    RGB (``channels=3``; grey sources are replicated), resized bilinearly to ``image_size`` (an int
    gives a square: non-square sources are stretched, not cropped). Unreadable or corrupt file →
    ValueError ``"cannot read image <path>: ..."``."""
    channels = _check_channels(channels)
    _size_hw(image_size)
    return _pil_to_array(_open(path), image_size, channels)


def read_mask(path, image_size=64) -> np.ndarray:
    """One ground-truth mask as float32 ``(1, H, W)`` in {0, 1} (any non-zero pixel is defective),
    resized with NEAREST so it stays binary."""
    _size_hw(image_size)
    return _pil_to_array(_open(path), image_size, 1, mask=True)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _require_dir(path: Path, what: str = "folder") -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return path


def _mask_candidates(gt_dir: Path, defect: str, stem: str) -> list[Path]:
    """Ground-truth files for one test image: MVTec AD ``<stem>_mask.<ext>``, a flat ``<stem>.<ext>``,
    or MVTec LOCO's folder ``<stem>/*.png`` (all files in it)."""
    d = gt_dir / defect
    folder = d / stem
    if folder.is_dir():
        files = _image_files(folder)
        if files:
            return files
    for base in (f"{stem}_mask", stem):
        for ext in IMAGE_EXTENSIONS:
            for e in (ext, ext.upper()):
                p = d / f"{base}{e}"
                if p.is_file():
                    return [p]
    return []


def _load_items(items, image_size, channels: int, name: str, gt_dir: Path | None, verbose: int = 0,
                with_masks: bool = True, desc: str = "") -> tuple[ImageSet, list[str]]:
    """``items``: list of (path, label, defect_type). Masks of defective images are looked up under
    ``gt_dir``; a missing one gives a zero mask and a warning string (returned)."""
    h, w = _size_hw(image_size)
    n = len(items)
    images = np.zeros((n, channels, h, w), np.float32)
    masks = np.zeros((n, 1, h, w), np.float32) if with_masks else None
    notes: list[str] = []
    for i, (path, label, defect) in enumerate(progress(items, verbose=verbose, desc=desc or name, leave=False)):
        im = _open(path)
        images[i] = _pil_to_array(im, image_size, channels)
        if not with_masks or label == 0:
            continue
        cands = _mask_candidates(gt_dir, defect, Path(path).stem) if gt_dir is not None else []
        if not cands:
            notes.append(f"no ground-truth mask for {path} (looked in {gt_dir / defect if gt_dir else None}): zero mask used")
            continue
        m = np.zeros((1, h, w), np.float32)
        for mp in cands:
            mim = _open(mp)
            if mim.size != im.size:
                raise ValueError(
                    f"mask {mp} has size {mim.size[0]}x{mim.size[1]} (WxH) but its image {path} has size "
                    f"{im.size[0]}x{im.size[1]}: they must match before resizing"
                )
            m = np.maximum(m, _pil_to_array(mim, image_size, 1, mask=True))
        masks[i] = m
    s = ImageSet(
        images=images,
        labels=np.array([it[1] for it in items], np.int64),
        masks=masks,
        paths=[str(it[0]) for it in items],
        defect_types=[it[2] for it in items],
        name=name,
    )
    return s, notes


def _warn_missing_masks(notes: list[str], where: Path) -> None:
    if notes:
        warnings.warn(
            f"{len(notes)} defective image(s) under {where} have no ground-truth mask: zero masks used "
            f"(listed in task.meta['warnings']); first: {notes[0]}",
            UserWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------
# MVTec AD
# ----------------------------------------------------------------------------------------------
def _load_good_folder(folder: Path, image_size, channels: int, name: str, verbose: int) -> ImageSet:
    """All images of a ``train/good`` folder as normal samples; a missing or empty folder is an error."""
    _require_dir(folder)
    files = _image_files(folder)
    if not files:
        raise ValueError(f"no images found under {folder}")
    images, _ = _load_items([(p, 0, "good") for p in files], image_size, channels, name, None, verbose,
                            desc=f"{name} train")
    return images


def load_mvtec(root, category: str, image_size=64, channels: int = 3, split: str = "both",
               verbose: int = 0) -> ImageTask:
    """MVTec AD category ``<root>/<category>``: train = ``train/good``; test = every ``test/<defect>``
    folder (``good`` = normal), masks from ``ground_truth/<defect>/<stem>_mask.png``. A defective image
    without a mask gets a zero mask and a line in ``meta["warnings"]``. ``split``: "train", "test" or
    "both" (the part not loaded is an empty ImageSet)."""
    channels = _check_channels(channels)
    if split not in ("train", "test", "both"):
        raise ValueError(f"split must be 'train', 'test' or 'both', got {split!r}")
    folder = _require_dir(Path(root).expanduser() / category)
    train_dir, test_dir, gt_dir = folder / "train" / "good", folder / "test", folder / "ground_truth"
    notes: list[str] = []
    train = empty_set(image_size, channels, category)
    test = empty_set(image_size, channels, category)
    if split in ("train", "both"):
        train = _load_good_folder(train_dir, image_size, channels, category, verbose)
    if split in ("test", "both"):
        _require_dir(test_dir)
        items = []
        for d in _subdirs(test_dir):
            label = 0 if d.name == "good" else 1
            items += [(p, label, d.name) for p in _image_files(d)]
        if not items:
            raise ValueError(f"no images found under {test_dir} (expected test/<defect>/*.png)")
        test, notes = _load_items(items, image_size, channels, category, gt_dir, verbose, desc=f"{category} test")
        _warn_missing_masks(notes, folder)
    meta = {
        "source": "mvtec",
        "layout": "mvtec",
        "root": str(folder),
        "category": category,
        "image_size": _size_hw(image_size),
        "channels": channels,
        "split": split,
        "warnings": notes,
        "note": "non-square images are stretched to image_size; masks resized with NEAREST",
    }
    return ImageTask(name=category, train=train, test=test, meta=meta)


# ----------------------------------------------------------------------------------------------
# MVTec LOCO AD
# ----------------------------------------------------------------------------------------------
def load_mvtec_loco(root, image_size=64, channels: int = 3, test_normals_from_validation="auto",
                    verbose: int = 0, name: str | None = None) -> ImageTask:
    """MVTec LOCO AD category folder ``root``: train = ``train/good``; ``task.validation`` =
    ``validation/good``; test = every ``test/<kind>`` folder (``good``, ``logical_anomalies``,
    ``structural_anomalies``). Masks: ``ground_truth/<kind>/<stem>/*.png`` (OR-ed) or a flat
    ``ground_truth/<kind>/<stem>.png``; any non-zero pixel is defective (LOCO codes the defect class in
    the pixel value, see ``defects_config.json``, kept in ``meta["defects_config"]``).

    ``test_normals_from_validation``: the downscaled subset in shared/data has no ``test/good``; with
    ``"auto"`` (default) the validation normals are then appended to the test set as its good images
    (as the MANIFEST advises) and ``meta["test_normals_from"]`` says so; ``True`` always appends them,
    ``False`` never. ``name`` defaults to the folder's name."""
    channels = _check_channels(channels)
    if test_normals_from_validation not in ("auto", True, False):
        raise ValueError(f"test_normals_from_validation must be 'auto', True or False, got {test_normals_from_validation!r}")
    folder = _require_dir(Path(root).expanduser())
    name = name or folder.name
    train_dir, val_dir, test_dir = folder / "train" / "good", folder / "validation" / "good", folder / "test"
    _require_dir(test_dir)
    train = _load_good_folder(train_dir, image_size, channels, name, verbose)
    validation = None
    if val_dir.is_dir():
        vfiles = _image_files(val_dir)
        if vfiles:
            validation, _ = _load_items([(p, 0, "good") for p in vfiles], image_size, channels, name, None, verbose,
                                        desc=f"{name} validation")
    items = []
    for d in _subdirs(test_dir):
        label = 0 if d.name == "good" else 1
        items += [(p, label, d.name) for p in _image_files(d)]
    if not items:
        raise ValueError(f"no images found under {test_dir} (expected test/<kind>/*.png)")
    test, notes = _load_items(items, image_size, channels, name, folder / "ground_truth", verbose, desc=f"{name} test")
    _warn_missing_masks(notes, folder)
    has_test_good = any(t == "good" for t in test.defect_types)
    use_val = test_normals_from_validation is True or (
        test_normals_from_validation == "auto" and not has_test_good
    )
    test_normals_from = "test/good" if has_test_good else None
    if use_val:
        if validation is None:
            if test_normals_from_validation is True or not has_test_good:
                warnings.warn(f"{folder} has no test/good and no validation/good: the test set holds anomalies only")
        else:
            test = concat_sets([validation, test], name=name)
            test_normals_from = "validation/good" if not has_test_good else "test/good + validation/good"
    defects_config = None
    cfg = folder / "defects_config.json"
    if cfg.is_file():
        try:
            defects_config = json.loads(cfg.read_text())
        except (OSError, ValueError) as exc:
            notes.append(f"could not parse {cfg}: {exc}")
    meta = {
        "source": "loco",
        "layout": "mvtec_loco",
        "root": str(folder),
        "category": name,
        "image_size": _size_hw(image_size),
        "channels": channels,
        "test_normals_from": test_normals_from,
        "defects_config": defects_config,
        "warnings": notes,
        "note": "non-square images (LOCO: W x H = 1 x 2) are stretched to image_size; masks resized with NEAREST",
    }
    return ImageTask(name=name, train=train, test=test, meta=meta, validation=validation)


# ----------------------------------------------------------------------------------------------
# ASAL layout
# ----------------------------------------------------------------------------------------------
_ASAL_LABELS = {"good": 0, "anomaly": 1}


def load_asal_layout(root, class_name: str, image_size=64, channels: int = 3, verbose: int = 0) -> ImageTask:
    """The ASAL seed's layout ``<root>/<class_name>/{train,test}/{good,anomaly}/*``. Labels come from
    the folder names; ``train`` may hold anomalies (ASAL's unlabelled pool). No masks (``None``)."""
    channels = _check_channels(channels)
    folder = _require_dir(Path(root).expanduser() / class_name)
    sets = {}
    for split in ("train", "test"):
        sdir = _require_dir(folder / split)
        extra = [d.name for d in _subdirs(sdir) if d.name not in _ASAL_LABELS]
        if extra:
            raise ValueError(
                f"{sdir} holds folders {extra} besides 'good' and 'anomaly': not the ASAL layout "
                "(<class>/{train,test}/{good,anomaly}/*)"
            )
        items = [(p, lab, d) for d, lab in _ASAL_LABELS.items() for p in _image_files(sdir / d)]
        if not items:
            raise ValueError(f"no images found under {sdir}/good or {sdir}/anomaly")
        sets[split], _ = _load_items(items, image_size, channels, class_name, None, verbose, with_masks=False,
                                     desc=f"{class_name} {split}")
    meta = {
        "source": "asal",
        "layout": "asal",
        "root": str(folder),
        "category": class_name,
        "image_size": _size_hw(image_size),
        "channels": channels,
        "warnings": [],
    }
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            meta["manifest"] = json.loads(manifest.read_text()).get("meta")
        except (OSError, ValueError, AttributeError):
            pass
    return ImageTask(name=class_name, train=sets["train"], test=sets["test"], meta=meta)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def _merge_and_mark_test(task_or_sets, test_fraction: float, random_state: int):
    if isinstance(task_or_sets, ImageTask):
        parts = [task_or_sets.train, task_or_sets.test]
    elif isinstance(task_or_sets, ImageSet):
        parts = [task_or_sets]
    else:
        parts = list(task_or_sets)
        if not parts or not all(isinstance(p, ImageSet) for p in parts):
            raise TypeError("task_or_sets must be an ImageTask, an ImageSet or a list of ImageSets")
    if not (0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    merged = concat_sets(parts)
    if len(merged) == 0:
        raise ValueError("no images to split")
    rng = np.random.default_rng(random_state)
    is_test = np.zeros(len(merged), bool)
    for lab in (0, 1):
        idx = np.flatnonzero(merged.labels == lab)
        if idx.size == 0:
            continue
        n_test = int(round(float(test_fraction) * idx.size))
        is_test[rng.permutation(idx)[:n_test]] = True
    return merged, is_test


def merge_and_split(task_or_sets, test_fraction: float = 0.2, random_state: int = 0) -> tuple[ImageSet, ImageSet]:
    """The ASAL seed's protocol in memory: merge an ImageTask's train and test (or the given
    ImageSets) and re-split them stratified by label, ``round(test_fraction * n_label)`` of each
    label to the test part (seeded). Returns ``(pool, test)``; the pool is the unlabelled set
    active learning queries, the test part is for evaluation only. :func:`make_asal_layout` writes
    the same split to disk."""
    merged, is_test = _merge_and_mark_test(task_or_sets, test_fraction, random_state)
    pool, test = merged.subset(np.flatnonzero(~is_test)), merged.subset(np.flatnonzero(is_test))
    pool.name, test.name = f"{merged.name}_pool", f"{merged.name}_test"
    return pool, test


def make_asal_layout(task_or_sets, out_root, class_name: str, test_fraction: float = 0.2, random_state: int = 0,
                     overwrite: bool = False) -> Path:
    """Write the ASAL seed's layout ``<out_root>/<class_name>/{train,test}/{good,anomaly}/<name>.png``.

    ``task_or_sets``: an ImageTask (train + test are merged; a LOCO ``validation`` set is left out) or an
    ImageSet / list of ImageSets. The merged images are re-split stratified by label: per label,
    ``round(test_fraction * n_label)`` images go to test (seeded by ``random_state``). PNGs are 8-bit
    (grey or RGB). Everything is written into a temporary sibling folder that is renamed into place,
    so a crash leaves no half-written class folder; an existing non-empty class folder is refused
    unless ``overwrite=True``. A ``manifest.json`` beside ``train``/``test`` lists each file's source
    path and defect type. Returns the class folder."""
    from PIL import Image

    if not class_name or "/" in class_name or "\\" in class_name or class_name in (".", ".."):
        raise ValueError(f"class_name must be a plain folder name, got {class_name!r}")
    merged, is_test = _merge_and_mark_test(task_or_sets, test_fraction, random_state)
    out_root = Path(out_root).expanduser()
    target = out_root / class_name
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"class folder {target} already exists and is not empty: pass overwrite=True to replace it")

    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{class_name}.tmp-"))
    try:
        records = []
        for i in range(len(merged)):
            split = "test" if is_test[i] else "train"
            lab = "anomaly" if merged.labels[i] == 1 else "good"
            d = tmp / split / lab
            d.mkdir(parents=True, exist_ok=True)
            fname = f"{i:05d}_{_safe_name(merged.defect_types[i])}.png"
            a = np.clip(np.round(merged.images[i] * 255.0), 0, 255).astype(np.uint8)
            img = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))
            img.save(d / fname)
            records.append({"file": f"{split}/{lab}/{fname}", "source": merged.paths[i],
                            "defect_type": merged.defect_types[i], "label": int(merged.labels[i])})
        for split in ("train", "test"):
            for lab in ("good", "anomaly"):
                (tmp / split / lab).mkdir(parents=True, exist_ok=True)
        meta = {"class_name": class_name, "test_fraction": float(test_fraction), "random_state": random_state,
                "n": len(merged), "n_test": int(is_test.sum())}
        (tmp / "manifest.json").write_text(json.dumps({"meta": meta, "files": records}, indent=1))
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{class_name}.old-"))
            os.replace(target, old / class_name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ----------------------------------------------------------------------------------------------
# texture folders (DRAEM's anomaly source)
# ----------------------------------------------------------------------------------------------
def load_texture_folder(root, image_size=64, limit: int | None = None, random_state: int = 0,
                        verbose: int = 0) -> np.ndarray:
    """All images under ``root`` (searched recursively: DTD's ``images/<category>/*.jpg``, a
    ``<category>/*.jpg`` subset, or a flat folder such as ``textures_cc0``) as float32
    ``(N, 3, H, W)`` in [0, 1] (grey photos replicated to RGB, non-square ones stretched). With
    ``limit`` a seeded random subset of that many files is read (in file-name order)."""
    root = _require_dir(Path(root).expanduser())
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise ValueError(f"no images found under {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files, recursively)")
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        if limit < len(files):
            pick = np.sort(np.random.default_rng(random_state).choice(len(files), int(limit), replace=False))
            files = [files[i] for i in pick]
    h, w = _size_hw(image_size)
    out = np.zeros((len(files), 3, h, w), np.float32)
    for i, p in enumerate(progress(files, verbose=verbose, desc="textures", leave=False)):
        out[i] = read_image(p, (h, w), 3)
    return out


# ----------------------------------------------------------------------------------------------
# layout detection and the one call notebooks make
# ----------------------------------------------------------------------------------------------
_LAYOUT_HELP = (
    "MVTec LOCO (train/good + validation/good + test/), "
    "ASAL (train/{good,anomaly} + test/{good,anomaly}, with an 'anomaly' folder), "
    "MVTec AD (train/good + test/<defect>/ [+ ground_truth/])"
)


def detect_layout(folder) -> str:
    """"loco", "asal" or "mvtec" for a category folder; ValueError listing what was looked for."""
    folder = _require_dir(Path(folder).expanduser())
    train, test = folder / "train", folder / "test"
    if (folder / "validation" / "good").is_dir() and (train / "good").is_dir() and test.is_dir():
        return "loco"
    if test.is_dir() and train.is_dir() and ((test / "anomaly").is_dir() or (train / "anomaly").is_dir()):
        return "asal"
    if (train / "good").is_dir() and test.is_dir():
        return "mvtec"
    found = [p.name for p in _subdirs(folder)]
    raise ValueError(f"unknown image layout in {folder} (sub-folders {found}): looked for {_LAYOUT_HELP}")


def _load_path(folder: Path, image_size, channels: int, verbose: int) -> ImageTask:
    kind = detect_layout(folder)
    if kind == "loco":
        return load_mvtec_loco(folder, image_size, channels, verbose=verbose)
    if kind == "asal":
        return load_asal_layout(folder.parent, folder.name, image_size, channels, verbose=verbose)
    return load_mvtec(folder.parent, folder.name, image_size, channels, verbose=verbose)


def _first_dir(candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"{what}: folder does not exist; looked for {', '.join(repr(str(c)) for c in candidates)}")


def load_image_task(data="embedded", category: str | None = None, image_size=64, channels: int | None = None,
                    data_dir=None, random_state: int = 0, verbose: int = 0) -> ImageTask:
    """The one call notebooks make.

    ``data``:
      * ``"embedded"``: generated texture task from scikit-image's CC0 photos (no files needed),
        ``category`` in ``EMBEDDED_CATEGORIES``; 1 channel unless ``channels=3`` (grey replicated).
      * ``"mvtec"``: ``<data root>/<category>`` or ``<data root>/mvtec_anomaly_detection/<category>``.
      * ``"loco"``: ``<data root>/mvtec_loco_juice_bottle_small`` for ``category`` "juice_bottle" (or
        None), else ``<data root>/<category>`` or ``<data root>/mvtec_loco_anomaly_detection/<category>``.
      * ``"asal"``: ``<data root>/<category>/{train,test}/{good,anomaly}``.
      * a path to a category folder: its layout (LOCO, ASAL or MVTec AD) is detected; a path to a folder
        of categories is joined with ``category``.
    ``category`` None means "brick" for embedded and "juice_bottle" for loco (mvtec and asal need one).
    ``data root`` is ``data_dir`` or ``$KDAL_DATA`` (see :func:`kdal_lib.utils.data_root`).
    ``channels`` None means 1 for embedded and 3 for real data."""
    if isinstance(data, str) and data in DATA_SOURCES:
        if data == "embedded":
            from .defects import load_embedded_textures

            task = load_embedded_textures(category or "brick", image_size=image_size, random_state=random_state)
            if channels is not None:
                _check_channels(channels)
                if channels == 3:
                    task = _to_rgb(task)
            return task
        channels = 3 if channels is None else _check_channels(channels)
        root = data_root(data_dir)
        if data == "mvtec":
            if not category:
                raise ValueError("data='mvtec' needs a category (e.g. 'bottle')")
            folder = _first_dir([root / category, root / "mvtec_anomaly_detection" / category],
                                f"MVTec AD category {category!r}")
            return load_mvtec(folder.parent, folder.name, image_size, channels, verbose=verbose)
        if data == "loco":
            if category in (None, "", "juice_bottle"):
                cands = [root / f for f in _LOCO_DEFAULT_FOLDERS]
            else:
                cands = [root / category, root / "mvtec_loco_anomaly_detection" / category]
            folder = _first_dir(cands, f"MVTec LOCO category {category or 'juice_bottle'!r}")
            return load_mvtec_loco(folder, image_size, channels, verbose=verbose, name=category or "juice_bottle")
        if not category:
            raise ValueError("data='asal' needs a category (the class folder name)")
        return load_asal_layout(root, category, image_size, channels, verbose=verbose)

    if isinstance(data, (str, os.PathLike)):
        s = os.fspath(data)
        p = Path(s).expanduser()
        looks_like_path = isinstance(data, os.PathLike) or os.sep in s or "/" in s or s.startswith((".", "~"))
        if p.is_dir() or looks_like_path:
            _require_dir(p)
            channels = 3 if channels is None else _check_channels(channels)
            try:
                detect_layout(p)
            except ValueError:
                if category and (p / category).is_dir():
                    return _load_path(p / category, image_size, channels, verbose)
                raise
            return _load_path(p, image_size, channels, verbose)
    raise ValueError(
        f"unknown data value {data!r}: use one of {list(DATA_SOURCES)} or a path to a category folder"
    )


def _to_rgb(task: ImageTask) -> ImageTask:
    def rgb(s: ImageSet | None):
        if s is None or s.channels == 3:
            return s
        return ImageSet(np.repeat(s.images, 3, axis=1), s.labels, s.masks, s.paths, s.defect_types, s.name, dict(s.meta))

    meta = dict(task.meta)
    meta["channels"] = 3
    meta["note_channels"] = "grey images replicated to 3 channels"
    return ImageTask(task.name, rgb(task.train), rgb(task.test), meta, rgb(task.validation))


def example_indices(images: ImageSet, n_good: int = 2, per_type: int = 1) -> np.ndarray:
    """Indices for a figure: the first ``n_good`` normal images, then ``per_type`` image(s) of each
    defect type in order of first appearance."""
    good = [i for i, t in enumerate(images.defect_types) if t == "good"][:n_good]
    seen: dict[str, int] = {}
    picks = []
    for i, t in enumerate(images.defect_types):
        if t != "good" and seen.get(t, 0) < per_type:
            seen[t] = seen.get(t, 0) + 1
            picks.append(i)
    return np.array(good + picks, dtype=int)
