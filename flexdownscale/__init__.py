"""flexdownscale: xarray-native downscaling with FLEX diffusion and flow-matching models.

Importing the package registers the ``.flex`` accessor on xarray objects
(``ds.flex.downscale(...)``). ``Downscaler``, ``Forecaster`` and the subpackages (``metrics``,
``data``, ``plot``, ...) are loaded on first use, so ``import flexdownscale`` stays light (torch is imported only when a model is needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import accessor as _accessor  # noqa: F401  (registers ds.flex / da.flex)
from ._version import __version__

if TYPE_CHECKING:
    from . import metrics
    from .pipeline import Downscaler, Forecaster

__all__ = ["Downscaler", "Forecaster", "__version__", "metrics"]

#: The public subpackages and modules, loaded on first attribute access (``fd.data``, ...).
_SUBPACKAGES = frozenset(
    {"metrics", "data", "diffusion", "models", "plot", "units", "errors", "config", "hub"}
    | {"provenance", "demo"}
)


def __getattr__(name: str) -> Any:
    if name in ("Downscaler", "Forecaster"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in _SUBPACKAGES:  # fd.data.degrade works without `import flexdownscale.data`
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'flexdownscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the lazily loaded ones included (for ``dir()`` and tab completion)."""
    return sorted({*__all__, *_SUBPACKAGES, "accessor"})
