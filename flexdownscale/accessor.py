"""The ``.flex`` accessor on xarray objects: ``ds.flex.downscale(...)``, ``da.flex.downscale(...)``.

The accessor stores the object and nothing else; every method delegates to
:class:`~flexdownscale.pipeline.Downscaler` (models are loaded once per path and process).
Importing :mod:`flexdownscale` registers it.
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from .errors import ModelFolderError

__all__ = ["FlexDataArrayAccessor", "FlexDatasetAccessor", "resolve_downscaler"]


def resolve_downscaler(
    model: Any, *, variables: tuple[str, ...] = (), factor: int | None = None
) -> Any:
    """A :class:`~flexdownscale.pipeline.Downscaler` from a Downscaler, a path, a name or ``None``.

    ``None`` picks the shipped model whose variables are all in ``variables`` and whose factor is
    ``factor`` (any factor when ``None``).

    Raises
    ------
    ModelFolderError
        When no shipped model matches (the message lists the shipped models and the fix).
    """
    from .hub import load_model_folder, shipped_models
    from .pipeline import Downscaler, _cached

    if isinstance(model, Downscaler):
        return model
    if model is not None:
        if not isinstance(model, str | os.PathLike):
            raise ModelFolderError(
                f"model={model!r}; expected a Downscaler, a model folder path, a shipped model "
                "name or a Hugging Face Hub id"
            )
        from .hub import resolve_model_path

        return _cached(str(resolve_model_path(model)))
    shipped = shipped_models()
    matches = []
    for path in shipped.values():
        folder = load_model_folder(path)
        if folder.task != "superres" or not set(folder.variables) <= set(variables):
            continue
        if factor is None or folder.factor == factor:
            matches.append(str(path))
    if not matches:
        listing = ", ".join(shipped) or "none are shipped with this version"
        raise ModelFolderError(
            f"no shipped model downscales variables {list(variables)} by factor {factor} "
            f"(shipped models: {listing}); pass model='path/to/model-folder' (a folder written by "
            "Downscaler.save_pretrained or the training script) or a Hugging Face Hub id"
        )
    return _cached(matches[0])


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
        ``bbox``, ``variables``, ``rename``, ``dims``, ``device``, ``batch_size``, ``progress``).
        """
        names = self._names()
        rename = kwargs.get("rename") or {}
        names = tuple(rename.get(n, n) for n in names)
        if kwargs.get("variables") is not None:
            names = names + tuple(kwargs["variables"])
        downscaler = resolve_downscaler(model, variables=names, factor=kwargs.get("factor"))
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
