"""Shared plumbing: seeding, device choice, progress bars, data and cache folders."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "resolve_device",
    "progress",
    "log",
    "data_root",
    "cache_dir",
    "atomic_write",
    "atomic_save_npz",
]


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA). With ``deterministic`` also ask torch
    for deterministic kernels (slower on GPU; CPU results are reproducible either way)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='auto'")
    return dev


def progress(iterable: Iterable, verbose: int = 1, **kwargs):
    """A ``tqdm.auto`` bar when ``verbose == 1``; the bare iterable otherwise
    (``verbose=0`` is silent, ``verbose=2`` prints one line per epoch via :func:`log`)."""
    if verbose == 1:
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return iterable


def log(message: str, verbose: int = 2, level: int = 2) -> None:
    """Print ``message`` when ``verbose >= level``."""
    if verbose >= level:
        print(message, flush=True)


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Where real data sets live: ``path`` if given, else ``$KDAL_DATA``.

    Raises a FileNotFoundError naming both ways to set it when neither points at a folder."""
    candidate = path if path not in (None, "") else os.environ.get("KDAL_DATA")
    if candidate in (None, ""):
        raise FileNotFoundError(
            "no data folder given: pass a path or set the KDAL_DATA environment variable "
            "(e.g. export KDAL_DATA=../shared/data)"
        )
    root = Path(candidate).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist (from parameter or KDAL_DATA)")
    return root


def cache_dir(sub: str = "") -> Path:
    """Folder for derived, rebuildable files: ``$KDAL_CACHE`` or ``~/.cache/kdal_lib``."""
    base = Path(os.environ.get("KDAL_CACHE", Path.home() / ".cache" / "kdal_lib")).expanduser()
    out = base / sub if sub else base
    out.mkdir(parents=True, exist_ok=True)
    return out


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place with
    ``os.replace``: readers see the old file or the complete new one, never half of it."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save_npz(arrays: dict, path: str | os.PathLike) -> Path:
    """``np.savez`` through :func:`atomic_write`."""
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)
