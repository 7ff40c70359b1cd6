"""flexdownscale: xarray-native downscaling with FLEX diffusion and flow-matching models."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
