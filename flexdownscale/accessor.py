"""The ``.flex`` accessor on xarray objects: ``ds.flex.downscale(...)``, ``da.flex.downscale(...)``.

The accessor stores the object and nothing else; every method delegates to
:class:`~flexdownscale.pipeline.Downscaler` (models are loaded once per path and process).
Importing :mod:`flexdownscale` registers it.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from .errors import ModelFolderError

__all__ = ["FlexDataArrayAccessor", "FlexDatasetAccessor"]


class _FlexAccessor:
    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    def _names(self) -> tuple[str, ...]:
        obj = self._obj
        if isinstance(obj, xr.DataArray):
            return () if obj.name is None else (str(obj.name),)
        return tuple(map(str, obj.data_vars))

    def downscale(self, model: Any = None, **kwargs: Any) -> xr.Dataset:
        """Downscale with ``model`` (a Downscaler, folder, shipped name, Hub id or ``None``).

        Keywords go to :meth:`flexdownscale.pipeline.Downscaler.__call__` (``factor``,
        ``members``, ``steps``, ``sampler``, ``seed``, ``tile``, ``overlap``, ``blend``,
        ``bbox``, ``variables``, ``rename``, ``dims``, ``device``, ``batch_size``, ``progress``,
        ``condition``, ``sampler_options``).
        """
        from .pipeline import downscaler_for

        downscaler = downscaler_for(
            model,
            self._names(),
            rename=kwargs.get("rename"),
            variables=kwargs.get("variables"),
            factor=kwargs.get("factor"),
        )
        return downscaler(self._obj, **kwargs)

    def forecast(
        self, model: Any, lead_steps: int, members: int | None = None, **kwargs: Any
    ) -> xr.Dataset:
        """Member-wise ensemble forecast with a forecast model (a Forecaster or a folder).

        Keywords go to :meth:`flexdownscale.pipeline.Forecaster.__call__`.
        """
        from .pipeline import Forecaster

        if not isinstance(model, Forecaster):
            if model is None:
                raise ModelFolderError(
                    "ds.flex.forecast needs model= (a Forecaster or a forecast model folder); "
                    "no forecast model ships with this version"
                )
            model = Forecaster.from_pretrained(model)
        return model(self._obj, lead_steps=lead_steps, members=members, **kwargs)


@xr.register_dataset_accessor("flex")
class FlexDatasetAccessor(_FlexAccessor):
    """``ds.flex``: downscaling of a Dataset."""


@xr.register_dataarray_accessor("flex")
class FlexDataArrayAccessor(_FlexAccessor):
    """``da.flex``: downscaling of a (named) DataArray."""
