"""Labelled image classification sets for the latent class-condition scenarios of CLAD (notebook 02).

Every loader returns ``(images, labels)``: float32 images ``(N, C, H, W)`` in [0, 1] and int64
class labels. Nothing is downloaded:

* ``load_digits_images()`` -- scikit-learn's bundled handwritten digits (1,797 images, 8×8, 0-16
  grey levels), the embedded default;
* ``load_mnist(root)`` -- the original MNIST IDX files (``.gz`` or not) under ``<root>/mnist`` or
  ``root``. When only the *test* files are present (as in ``../shared/data/mnist``), the caller
  splits them into train and test (``split_train_test``);
* ``load_cifar10(root)`` -- the torchvision folder ``cifar-10-batches-py`` (python pickles);
* ``load_gtsrb(root)`` -- the German Traffic Sign benchmark as its archives extract
  (``GTSRB/Final_Training/Images/000NN/*.ppm``, ``GTSRB/Final_Test/Images/*.ppm`` + ``GT-final_test.csv``)
  or in torchvision's ``gtsrb/GTSRB/Training`` layout; resized to 32 px as the CLAD original;
* ``load_tiny_imagenet(root, classes=...)`` -- ``tiny-imagenet-200/{train/<wnid>/images, val}`` with
  ``val/val_annotations.txt``; only the classes asked for are decoded (all 200 at 64 px need ~5 GB).

``load_classification_split(name, ...)`` puts them behind one call that always returns a train and
a test part, using the official split where the files hold one and a seeded stratified split of
the available images otherwise.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "ClassificationSplit",
    "load_digits_images",
    "read_idx",
    "find_mnist_files",
    "load_mnist",
    "load_cifar10",
    "GTSRB_CLASSES",
    "load_gtsrb",
    "load_tiny_imagenet",
    "split_train_test",
    "resize_images",
    "load_classification_split",
]

CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
#: GTSRB has 43 sign classes, numbered 0..42 by the benchmark (folder 000NN = class NN)
GTSRB_CLASSES = 43
CLASS_NAMES["gtsrb"] = [f"{i:02d}" for i in range(GTSRB_CLASSES)]
#: data set names accepted by :func:`load_classification_split`
DATASETS = tuple(CLASS_NAMES) + ("tinyimagenet",)

_MNIST_HELP = ("MNIST IDX files not found under {where}. Put t10k-images-idx3-ubyte(.gz) and "
               "t10k-labels-idx1-ubyte(.gz) (and optionally train-images-idx3-ubyte(.gz) / "
               "train-labels-idx1-ubyte(.gz)) there; they are distributed at "
               "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/). "
               "The kdal-lab shared data folder holds the test files in shared/data/mnist.")
_CIFAR_HELP = ("CIFAR-10 not found under {where}: download cifar-10-python.tar.gz from "
               "https://www.cs.toronto.edu/~kriz/cifar.html (on a machine with internet access) and extract it so "
               "that <data_dir>/cifar-10-batches-py/ holds "
               "data_batch_1..5 and test_batch. Nothing is downloaded at run time.")


_GTSRB_HELP = ("GTSRB not found under {where}: download GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip "
               "and GTSRB_Final_Test_GT.zip from https://benchmark.ini.rub.de/gtsrb_dataset.html (on a machine with "
               "internet access) and extract them into <data_dir> so that <data_dir>/GTSRB/Final_Training/Images/00000 "
               "... 00042 and <data_dir>/GTSRB/Final_Test/Images with GT-final_test.csv exist (torchvision's "
               "datasets.GTSRB layout <data_dir>/gtsrb/GTSRB/Training works too). Nothing is downloaded at run time.")
_TINY_HELP = ("Tiny-ImageNet not found under {where}: download tiny-imagenet-200.zip from "
              "http://cs231n.stanford.edu/tiny-imagenet-200.zip (on a machine with internet access) and extract it so "
              "that <data_dir>/tiny-imagenet-200/train/<wnid>/images and <data_dir>/tiny-imagenet-200/val/images with "
              "val_annotations.txt exist. Nothing is downloaded at run time.")


@dataclass
class ClassificationSplit:
    """Train and test images with their class labels, plus where they came from."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------------
def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8×8 digits as ``(1797, 1, 8, 8)`` float32 in [0, 1] (grey level / 16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images.astype(np.float32) / 16.0)[:, None]
    return np.clip(X, 0.0, 1.0), d.target.astype(np.int64)


def read_idx(path) -> np.ndarray:
    """Read one IDX file (MNIST format, gzip or plain) into a NumPy array of its stored dtype."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {arr.size} values")
    return arr.reshape(shape).astype(dtypes[dtype_code][1:])


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist_files(root) -> dict:
    """Locate MNIST IDX files under ``root/mnist``, ``root/MNIST/raw`` (torchvision) or ``root``.
    Returns ``{"test_images", "test_labels"[, "train_images", "train_labels"]}`` paths."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    for folder in (root / "mnist", root / "MNIST" / "raw", root):
        test_i, test_l = _find(folder, "t10k-images-idx3-ubyte"), _find(folder, "t10k-labels-idx1-ubyte")
        if test_i and test_l:
            out = {"test_images": test_i, "test_labels": test_l}
            tr_i, tr_l = _find(folder, "train-images-idx3-ubyte"), _find(folder, "train-labels-idx1-ubyte")
            if tr_i and tr_l:
                out.update(train_images=tr_i, train_labels=tr_l)
            return out
    raise FileNotFoundError(_MNIST_HELP.format(where=f"{str(root)!r} (looked in mnist/, MNIST/raw/ and the folder itself)"))


def _mnist_pair(img_path, lbl_path) -> tuple[np.ndarray, np.ndarray]:
    X = read_idx(img_path)
    y = read_idx(lbl_path).astype(np.int64)
    if X.ndim != 3 or X.shape[0] != y.shape[0]:
        raise ValueError(f"MNIST files disagree: images {X.shape} from {img_path}, labels {y.shape} from {lbl_path}")
    return (X.astype(np.float32) / 255.0)[:, None], y


def load_mnist(root, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``(N, 1, 28, 28)`` in [0, 1] and labels, for ``split`` = "test" or "train"."""
    files = find_mnist_files(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if f"{split}_images" not in files:
        raise FileNotFoundError(_MNIST_HELP.format(where=repr(str(Path(files['test_images']).parent)))
                                + f" (the {split} files are missing)")
    return _mnist_pair(files[f"{split}_images"], files[f"{split}_labels"])


def _cifar_dir(root) -> Path:
    root = Path(root).expanduser()
    for folder in (root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py", root):
        if (folder / "test_batch").is_file():
            return folder
    raise FileNotFoundError(_CIFAR_HELP.format(where=repr(str(root))))


def load_cifar10(root, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``(N, 3, 32, 32)`` in [0, 1] from the torchvision/python folder ``cifar-10-batches-py``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = _cifar_dir(root)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing. " + _CIFAR_HELP.format(where=repr(str(folder))))
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")  # the official python pickles hold only arrays and lists
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)


def _read_images(paths, image_size: int, channels: int = 3) -> np.ndarray:
    from .images import read_image

    out = np.empty((len(paths), channels, image_size, image_size), np.float32)
    for i, path in enumerate(paths):
        out[i] = read_image(path, image_size, channels)  # corrupt file: ValueError naming it
    return out


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def _gtsrb_dirs(root: Path) -> tuple[Path, Path | None]:
    bases = [root / "GTSRB", root / "gtsrb" / "GTSRB", root / "gtsrb", root]
    for base in bases:
        for train in (base / "Final_Training" / "Images", base / "Training"):
            if _class_folders(train):
                test = next((t for t in (base / "Final_Test" / "Images", base / "Test" / "Images", base / "Test")
                             if t.is_dir()), None)
                return train, test
    raise FileNotFoundError(_GTSRB_HELP.format(where=repr(str(root))))


def _gtsrb_test_labels(test_dir: Path, root: Path) -> dict:
    """``{file name: class}`` from GT-final_test.csv (semicolon separated, columns Filename ... ClassId)."""
    import csv

    places = [test_dir, test_dir.parent, test_dir.parent.parent, root / "GTSRB", root / "gtsrb", root]
    path = next((d / "GT-final_test.csv" for d in places if (d / "GT-final_test.csv").is_file()), None)
    if path is None:
        raise FileNotFoundError(f"GTSRB test images found in {test_dir} but no GT-final_test.csv beside them (from "
                                "GTSRB_Final_Test_GT.zip). " + _GTSRB_HELP.format(where=repr(str(root))))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    if not rows or "Filename" not in rows[0] or "ClassId" not in rows[0]:
        raise ValueError(f"{path} is not a GTSRB ground-truth file (needs the columns Filename and ClassId)")
    return {r["Filename"]: int(r["ClassId"]) for r in rows}


def load_gtsrb(root, split: str = "train", image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """GTSRB ``(N, 3, S, S)`` in [0, 1] (resized to ``image_size``; CLAD: 32) and the class ids 0..42.
    Training images come from the class folders; test images from class folders when present, else from
    ``Final_Test/Images`` labelled by ``GT-final_test.csv``."""
    from .images import _image_files

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    train_dir, test_dir = _gtsrb_dirs(root)
    paths, labels = [], []
    if split == "train" or (test_dir is not None and _class_folders(test_dir)):
        for folder in _class_folders(train_dir if split == "train" else test_dir):
            files = _image_files(folder)
            paths += files
            labels += [int(folder.name)] * len(files)
    else:
        if test_dir is None:
            raise FileNotFoundError(f"no GTSRB test images next to {train_dir}. " + _GTSRB_HELP.format(where=repr(str(root))))
        truth = _gtsrb_test_labels(test_dir, root)
        files = _image_files(test_dir)
        missing = [p.name for p in files if p.name not in truth]
        if missing:
            raise ValueError(f"{len(missing)} GTSRB test image(s) have no row in GT-final_test.csv, e.g. {missing[0]!r}")
        paths, labels = files, [truth[p.name] for p in files]
    if not paths:
        raise FileNotFoundError(f"no GTSRB {split} images under {train_dir if split == 'train' else test_dir}")
    y = np.asarray(labels, dtype=np.int64)
    bad = y[(y < 0) | (y >= GTSRB_CLASSES)]
    if bad.size:
        raise ValueError(f"GTSRB class id {int(bad[0])} is outside 0..{GTSRB_CLASSES - 1}")
    return _read_images(paths, image_size), y


def _tiny_root(root: Path) -> Path:
    for folder in (root / "tiny-imagenet-200", root):
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return folder
    raise FileNotFoundError(_TINY_HELP.format(where=repr(str(root))))


def load_tiny_imagenet(root, classes, split: str = "train", image_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Tiny-ImageNet images of the WordNet ids ``classes`` (label = position in ``classes``), ``(N, 3, S, S)``
    in [0, 1]. ``split="train"``: ``train/<wnid>/images`` (500 per class); ``"test"``: ``val/`` (50 per
    class) labelled by ``val_annotations.txt`` (flat ``val/images`` or per-class folders)."""
    from .images import _image_files

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct WordNet ids (e.g. 'n01443537'), got {classes!r}")
    base = _tiny_root(Path(root).expanduser())
    known = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise ValueError(f"Tiny-ImageNet has no class {unknown[0]!r} under {base / 'train'} ({len(known)} classes there)")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    if split == "train":
        for c in classes:
            folder = base / "train" / c / "images"
            folder = folder if folder.is_dir() else base / "train" / c
            files = _image_files(folder)
            paths += files
            labels += [index[c]] * len(files)
    else:
        val = base / "val"
        ann = val / "val_annotations.txt"
        if ann.is_file():
            for line in ann.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 2 and parts[1] in index:
                    f = val / "images" / parts[0]
                    paths.append(f if f.is_file() else val / parts[1] / parts[0])
                    labels.append(index[parts[1]])
        else:
            for c in classes:
                folder = val / c / "images" if (val / c / "images").is_dir() else val / c
                files = _image_files(folder) if folder.is_dir() else []
                paths += files
                labels += [index[c]] * len(files)
    if not paths:
        raise FileNotFoundError(f"no Tiny-ImageNet {split} images of the classes {classes} under {base}")
    return _read_images(paths, image_size), np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# splitting and resizing
# ----------------------------------------------------------------------------------------------
def split_train_test(X, y, test_fraction: float = 0.3, random_state: int = 0):
    """Seeded split, stratified by class: ``(X_train, y_train, X_test, y_test)``."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=random_state, stratify=y)
    return X_tr, y_tr, X_te, y_te


def resize_images(X: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``(N, C, H, W)`` images to ``size × size`` (antialiased when shrinking)."""
    X = np.asarray(X, dtype=np.float32)
    if X.shape[2:] == (size, size):
        return X
    import torch
    import torch.nn.functional as F

    out = F.interpolate(torch.from_numpy(X), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=size < X.shape[2])
    return out.clamp_(0, 1).numpy()


def load_classification_split(name: str = "digits", data_dir=None, test_fraction: float | None = None,
                              random_state: int = 0, image_size: int | None = None,
                              classes: Sequence[str] | None = None) -> ClassificationSplit:
    """A labelled train/test split of ``name`` in ``DATASETS``.

    * ``digits``: all 1,797 bundled images, stratified split (``test_fraction`` default 0.5).
    * ``mnist``: the official train/test split when the training IDX files are present and
      ``test_fraction`` is None; otherwise a stratified split of the 10,000 test images
      (``test_fraction`` default 0.3), seeded by ``random_state``.
    * ``cifar10``: the official 50k/10k split (``test_fraction`` given: a split of the test batch).
    * ``gtsrb``: the official training / final-test split at 32 px (``test_fraction`` given: a split of the
      final-test images).
    * ``tinyimagenet``: ``classes`` (WordNet ids, required) from ``train`` / ``val`` at 64 px; labels are
      positions in ``classes`` (CLAD keeps only the 40 classes of its five groups).

    ``data_dir``: the data folder (else ``$KDAL_DATA``). ``image_size`` resizes (e.g. MNIST 28 → 16).
    """
    from ..utils import data_root

    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {list(DATASETS)} (or pass your own arrays to "
                         "make_scenario)")
    if key == "tinyimagenet" and not classes:
        raise ValueError("tinyimagenet needs classes=[WordNet ids] (e.g. the 40 classes of CLAD's five groups): "
                         "decoding all 200 classes at 64 px takes about 5 GB")
    meta: dict = {"source": key, "random_state": random_state}
    if key == "digits":
        X, y = load_digits_images()
        tf = 0.5 if test_fraction is None else test_fraction
        X_tr, y_tr, X_te, y_te = split_train_test(X, y, tf, random_state)
        meta.update(split=f"stratified {1 - tf:.0%}/{tf:.0%} of the 1,797 bundled images", files="sklearn")
    elif key == "mnist":
        files = find_mnist_files(data_root(data_dir))
        if "train_images" in files and test_fraction is None:
            X_tr, y_tr = _mnist_pair(files["train_images"], files["train_labels"])
            X_te, y_te = _mnist_pair(files["test_images"], files["test_labels"])
            meta.update(split="official 60k/10k")
        else:
            X, y = _mnist_pair(files["test_images"], files["test_labels"])
            tf = 0.3 if test_fraction is None else test_fraction
            X_tr, y_tr, X_te, y_te = split_train_test(X, y, tf, random_state)
            meta.update(split=f"stratified {1 - tf:.0%}/{tf:.0%} of the 10,000 MNIST test images (no training files)")
        meta["files"] = str(files["test_images"])
    elif key in ("gtsrb", "tinyimagenet"):
        root = data_root(data_dir)
        size = image_size or (32 if key == "gtsrb" else 64)
        load = (lambda split: load_gtsrb(root, split, size)) if key == "gtsrb" else \
            (lambda split: load_tiny_imagenet(root, list(classes), split, size))
        if test_fraction is None:
            (X_tr, y_tr), (X_te, y_te) = load("train"), load("test")
            meta.update(split="official train / test" if key == "gtsrb" else "train / val (50 per class)")
        else:
            X, y = load("test")
            X_tr, y_tr, X_te, y_te = split_train_test(X, y, test_fraction, random_state)
            meta.update(split=f"stratified split of the test images, test_fraction {test_fraction}")
        meta["files"] = str(root)
        names = CLASS_NAMES["gtsrb"] if key == "gtsrb" else [str(c) for c in classes]
        return ClassificationSplit(key, X_tr, y_tr, X_te, y_te, list(names), {**meta, "resized_to": size})
    else:
        root = data_root(data_dir)
        if test_fraction is None:
            X_tr, y_tr = load_cifar10(root, "train")
            X_te, y_te = load_cifar10(root, "test")
            meta.update(split="official 50k/10k")
        else:
            X, y = load_cifar10(root, "test")
            X_tr, y_tr, X_te, y_te = split_train_test(X, y, test_fraction, random_state)
            meta.update(split=f"stratified split of the 10k test batch, test_fraction {test_fraction}")
        meta["files"] = str(_cifar_dir(root))
    if image_size:
        X_tr, X_te = resize_images(X_tr, image_size), resize_images(X_te, image_size)
        meta["resized_to"] = image_size
    return ClassificationSplit(key, X_tr.astype(np.float32), y_tr.astype(np.int64), X_te.astype(np.float32),
                               y_te.astype(np.int64), list(CLASS_NAMES[key]), meta)
