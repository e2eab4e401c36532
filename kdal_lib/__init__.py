"""kdal_lib: the package behind the kdal-lab notebooks on label-efficient anomaly detection."""
from .utils import seed_everything, resolve_device, data_root, cache_dir

__version__ = "0.1.0"
__all__ = ["seed_everything", "resolve_device", "data_root", "cache_dir", "__version__"]
