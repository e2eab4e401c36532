"""Input checks shared by every detector and loader: each error names the problem."""
from __future__ import annotations

import numpy as np

__all__ = ["check_features", "check_binary_labels", "check_param"]


def check_features(X, name: str = "X", ndim: int = 2, min_samples: int = 1) -> np.ndarray:
    """Return ``X`` as a float32 array after checking it is numeric, finite, non-empty and
    has ``ndim`` dimensions. Raises ValueError (TypeError for non-numeric data)."""
    if hasattr(X, "to_numpy"):  # pandas
        if hasattr(X, "dtypes") and hasattr(X, "columns"):
            from pandas.api.types import is_bool_dtype, is_numeric_dtype

            bad = [str(c) for c, t in zip(X.columns, X.dtypes) if not (is_numeric_dtype(t) or is_bool_dtype(t))]
            if bad:
                raise TypeError(f"{name} has non-numeric columns {bad}: encode them (e.g. one-hot) first")
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            X = X.to_numpy()
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}: encode symbolic columns first")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} is empty or too small: {arr.shape[0]} samples, need at least {min_samples}")
    if ndim >= 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} inf values: impute or drop them first")
    return arr


def check_binary_labels(y, name: str = "y", n_samples: int | None = None, need_both: bool = True) -> np.ndarray:
    """Return ``y`` as an int array of 0 (normal) / 1 (anomaly). With ``need_both`` both classes
    must be present (AUROC and F1 are undefined otherwise)."""
    arr = np.asarray(y).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1, True, False}:
        raise ValueError(f"{name} must hold 0 (normal) and 1 (anomaly) only, got values {sorted(values)[:10]}")
    if n_samples is not None and arr.size != n_samples:
        raise ValueError(f"{name} has {arr.size} labels but X has {n_samples} samples")
    if need_both and len(values) < 2:
        only = "normal (0)" if 0 in values else "anomaly (1)"
        raise ValueError(f"{name} holds a single class, {only}: both normal and anomalous samples are needed")
    return arr.astype(np.int64)


def check_param(name: str, value, low=None, high=None, choices=None, integer: bool = False, inclusive=(True, True)):
    """Check one constructor or notebook parameter; raise ValueError naming it."""
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value
    if integer and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if low is not None and (value < low if inclusive[0] else value <= low):
        raise ValueError(f"{name} must be {'>=' if inclusive[0] else '>'} {low}, got {value!r}")
    if high is not None and (value > high if inclusive[1] else value >= high):
        raise ValueError(f"{name} must be {'<=' if inclusive[1] else '<'} {high}, got {value!r}")
    return value
