"""Small helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def eprint(*a) -> None:
    """Progress to stderr, so stdout holds only the figures."""
    print(*a, file=sys.stderr, flush=True)


def default_data_dir(cli: str | None = None) -> str | None:
    """The real-data folder: the command line, else ``$KDAL_DATA``, else ``../shared/data`` beside the repo."""
    if cli:
        return cli
    if os.environ.get("KDAL_DATA"):
        return os.environ["KDAL_DATA"]
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def load_avg() -> str:
    """The machine's 1/5/15-minute load averages (timings taken under load are inflated)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


def md_table(header, rows) -> str:
    """A markdown table from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
