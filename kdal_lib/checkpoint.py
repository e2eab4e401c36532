"""Checkpoints: ``torch.save`` plus a JSON metadata sidecar, loaded with ``weights_only=True``.

Everything stored must be tensors, numbers, strings, lists or dicts (no pickled objects), so
a checkpoint from an untrusted source cannot run code when it is loaded.
"""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch

from .utils import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "read_metadata", "checkpoint_matches"]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> Path:
    """Atomically write ``state`` to ``path`` and ``metadata`` (plus versions and time) to
    ``path + ".json"``. The sidecar is written last, so its presence marks a complete checkpoint."""
    import kdal_lib

    path = Path(path)
    meta = dict(metadata or {})
    meta.setdefault("saved", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("versions", {"kdal_lib": kdal_lib.__version__, "torch": torch.__version__,
                                 "python": platform.python_version()})
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))
    atomic_write(_sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, default=str)))
    return path


def read_metadata(path: str | os.PathLike) -> dict | None:
    """The sidecar of a checkpoint, or None when the checkpoint is missing or incomplete."""
    path = Path(path)
    side = _sidecar(path)
    if not (path.is_file() and side.is_file()):
        return None
    return json.loads(side.read_text())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"checkpoint {str(path)!r} could not be loaded safely (corrupt, or holds pickled objects): {exc}") from exc


def checkpoint_matches(path: str | os.PathLike, fingerprint: Mapping[str, Any]) -> bool:
    """True when a complete checkpoint exists at ``path`` whose recorded ``fingerprint`` (class,
    parameters, data shape) equals ``fingerprint``."""
    meta = read_metadata(path)
    if meta is None or "fingerprint" not in meta:
        return False
    return json.loads(json.dumps(meta["fingerprint"], default=str)) == json.loads(json.dumps(dict(fingerprint), default=str))
