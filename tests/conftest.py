"""Shared pytest fixtures: the real data folder, an isolated cache folder, a headless matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    env = os.environ.get("KDAL_DATA")
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    p = (REPO / ".." / "shared" / "data").resolve()
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data root: ``$KDAL_DATA`` if set, else ``<repo>/../shared/data``. Skips when it is
    missing, but fails instead when ``KDAL_REQUIRE_DATA=1`` (CI), so real-data tests never
    silently vanish."""
    root = _find_shared_data()
    if root is None:
        msg = (
            f"real data folder not found (KDAL_DATA={os.environ.get('KDAL_DATA')!r}, "
            f"default {REPO.parent / 'shared' / 'data'})"
        )
        if os.environ.get("KDAL_REQUIRE_DATA") == "1":
            pytest.fail(msg + " and KDAL_REQUIRE_DATA=1", pytrace=False)
        pytest.skip(msg)
    return root


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """Point ``KDAL_CACHE`` at a fresh temporary folder so tests never touch ~/.cache."""
    cache = tmp_path / "kdal_cache"
    cache.mkdir()
    monkeypatch.setenv("KDAL_CACHE", str(cache))
    return cache


@pytest.fixture
def run_notebook(tmp_path):
    """Execute a notebook with papermill through kdal-run's API (smoke preset by default, overrides as
    keyword arguments) and return the metrics.json it wrote; fails with the notebook's error."""
    import nbformat

    from kdal_lib.metrics import load_results
    from kdal_lib.runner import run_notebooks

    def run(stem: str, preset: str = "smoke", **overrides) -> dict:
        summary = run_notebooks([stem], preset=preset, overrides=overrides, out_root=tmp_path, timeout=600, echo=False)
        result = summary.results[0]
        assert result.status == "ok", repr(result.error)
        executed = Path(result.executed)
        assert executed.is_file() and executed.parent.parent == tmp_path
        nb = nbformat.read(executed, as_version=4)
        pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        assert pngs > 0, f"{stem}: no figure was drawn as an image (Figures shown as text?)"
        return load_results(result.out_dir)

    return run
