"""flexdownscale: xarray-native downscaling with FLEX diffusion and flow-matching models.

Importing the package registers the ``.flex`` accessor on xarray objects
(``ds.flex.downscale(...)``). ``Downscaler`` and ``metrics`` are loaded on first use, so
``import flexdownscale`` stays light (torch is imported only when a model is needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import accessor as _accessor  # noqa: F401  (registers ds.flex / da.flex)
from ._version import __version__

if TYPE_CHECKING:
    from . import metrics
    from .pipeline import Downscaler

__all__ = ["Downscaler", "__version__", "metrics"]


def __getattr__(name: str) -> Any:
    if name == "Downscaler":
        from .pipeline import Downscaler

        return Downscaler
    if name == "metrics":
        import importlib

        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module 'flexdownscale' has no attribute {name!r}")
