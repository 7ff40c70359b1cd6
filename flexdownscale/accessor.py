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

    @property
    def _spelled(self) -> str:
        """How a user writes the accessor in messages: ``ds.flex`` or ``da.flex``."""
        return "da.flex" if isinstance(self._obj, xr.DataArray) else "ds.flex"

    def _names(self) -> tuple[str, ...]:
        obj = self._obj
        if isinstance(obj, xr.DataArray):
            return () if obj.name is None else (str(obj.name),)
        return tuple(map(str, obj.data_vars))

    def downscale(self, model: Any = None, **kwargs: Any) -> xr.Dataset:
        """Downscale with ``model`` (a Downscaler, folder, shipped name, Hub id or ``None``).

        Parameters
        ----------
        model : Downscaler, str, path or None, default None
            The model: a :class:`~flexdownscale.pipeline.Downscaler`, a model folder, the name
            of a shipped model or a Hub id; ``None`` picks the shipped model for the object's
            variables and ``factor`` (:class:`~flexdownscale.errors.ModelFolderError` when
            none fits).
        **kwargs
            Go to :meth:`flexdownscale.pipeline.Downscaler.__call__` (``factor``, ``members``,
            ``steps``, ``sampler``, ``seed``, ``tile``, ``overlap``, ``blend``, ``bbox``,
            ``variables``, ``rename``, ``dims``, ``device``, ``batch_size``,
            ``batch_invariant``, ``progress``, ``condition``, ``sampler_options``,
            ``conserve``); ``variables``, ``rename`` and ``factor`` also choose the model when
            ``model`` is a name or ``None``.

        Returns
        -------
        Dataset
            The model's variables on the fine grid (dims ``(member, time, y, x)``; ``member``
            only with ``members``), in the input's units, with CF bounds and provenance attrs.

        Examples
        --------
        A coarsened copy of the ERA5 sample that ships with the package, downscaled by the
        shipped model (picked from the variable and the factor) into two members with a
        two-step sampler (seconds on a CPU):

        >>> import flexdownscale as fd
        >>> ds = fd.demo.open_sample("era5_t2m_uk").isel(time=[0])
        >>> coarse = fd.data.degrade(ds, 4, boundary="trim")  # 0.25 -> 1 degree
        >>> fine = coarse.flex.downscale(members=2, steps=2, seed=0)
        >>> fine["t2m"].dims, fine["t2m"].shape
        (('member', 'time', 'latitude', 'longitude'), (2, 1, 32, 48))
        >>> fine.attrs["flexdownscale_model"]
        'era5-t2m-x4'
        """
        from ._keywords import check_keywords, keyword_names
        from .pipeline import Downscaler, _refuse_empty_dataset, downscaler_for

        # before a model is picked or loaded: an unknown keyword names the likely one
        takes = keyword_names(Downscaler.__call__) or frozenset()
        check_keywords(kwargs, takes - {"self", "ds"}, f"{self._spelled}.downscale")
        _refuse_empty_dataset(self._obj)  # before a model is chosen for its (no) names
        downscaler = downscaler_for(
            model,
            self._names(),
            rename=kwargs.get("rename"),
            variables=kwargs.get("variables"),
            factor=kwargs.get("factor"),
        )
        return downscaler(self._obj, **kwargs)

    def forecast(
        self,
        model: Any = None,
        lead_steps: int | None = None,
        members: int | None = None,
        **kwargs: Any,
    ) -> xr.Dataset:
        """Member-wise ensemble forecast with a forecast model (a Forecaster or a folder).

        Parameters
        ----------
        model : Forecaster, str or path, default None
            A :class:`~flexdownscale.pipeline.Forecaster` or a forecast model folder or Hub id.
            Required: no forecast model ships with the package, so ``None`` is a
            :class:`~flexdownscale.errors.ModelFolderError`.
        lead_steps : int, default None
            Leads to forecast, in time steps of the model (at least 1). Required: ``None`` is
            Python's TypeError for a missing argument (a misspelt keyword, ``lead_step=``, is
            named as such first).
        members : int, optional
            Ensemble size; ``None`` gives one forecast without a ``member`` dim.
        **kwargs
            Go to :meth:`flexdownscale.pipeline.Forecaster.__call__` (``steps``, ``sampler``,
            ``seed``, ``variables``, ``rename``, ``dims``, ``device``, ``batch_size``,
            ``batch_invariant``, ``sampler_options``, ``condition``, ``progress``).

        Returns
        -------
        Dataset
            Variables with dims ``(member, lead, y, x)``, with ``valid_time`` along ``lead``
            and ``forecast_reference_time`` when the input's times are known.

        Raises
        ------
        ModelFolderError
            ``model`` missing, or neither a Forecaster nor a path, name or Hub id (a
            :class:`~flexdownscale.pipeline.Downscaler` is told to downscale).
        TypeError
            An unknown keyword (with the likely one: ``member`` -> ``members``), or no
            ``lead_steps``.
        """
        from ._keywords import check_keywords, keyword_names
        from .pipeline import Forecaster, _model_reference_error

        called_as = f"{self._spelled}.forecast"
        takes = keyword_names(Forecaster.__call__) or frozenset()
        # lead_steps and members are this method's own arguments, offered as near names too
        check_keywords(kwargs, takes - {"self", "ds"}, called_as)
        if model is None:
            raise ModelFolderError(
                f"{called_as} needs model= (a Forecaster or a forecast model folder or Hub id); "
                "no forecast model ships with this version"
            )
        problem = _model_reference_error(model, "forecast", loaded=True)
        if problem is not None:
            raise problem
        if lead_steps is None:  # Python's own message would name the private class
            raise TypeError(
                f"{called_as}() missing the required argument 'lead_steps' (the leads to "
                f"forecast, in time steps of the model), e.g. {called_as}(model, lead_steps=4)"
            )
        if not isinstance(model, Forecaster):
            model = Forecaster.from_pretrained(model)
        return model(self._obj, lead_steps=lead_steps, members=members, **kwargs)


@xr.register_dataset_accessor("flex")
class FlexDatasetAccessor(_FlexAccessor):
    """``ds.flex``: downscaling of a Dataset.

    Parameters
    ----------
    obj : xarray.Dataset
        The Dataset ``ds`` of ``ds.flex``; xarray builds the accessor on first use (the class is
        not called directly).

    Examples
    --------
    Importing flexdownscale gives every Dataset a ``flex`` accessor. Without ``model=`` its
    :meth:`downscale` picks the shipped model from the variables' names and the factor (see
    its example for a run); a factor that no shipped model has for them is refused at once:

    >>> import numpy as np, xarray as xr
    >>> import flexdownscale
    >>> ds = xr.Dataset({"t2m": (("latitude", "longitude"), np.full((8, 12), 280.0))})
    >>> type(ds.flex).__name__
    'FlexDatasetAccessor'
    >>> ds.flex.downscale(factor=8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.UnsupportedFactorError: factor = 8 but the shipped models for ...
    """


@xr.register_dataarray_accessor("flex")
class FlexDataArrayAccessor(_FlexAccessor):
    """``da.flex``: downscaling of a (named) DataArray.

    Parameters
    ----------
    obj : xarray.DataArray
        The DataArray ``da`` of ``da.flex``; xarray builds the accessor on first use (the class
        is not called directly).

    Examples
    --------
    A DataArray's name plays the variable's: the shipped model is chosen by it, so an
    unnamed DataArray is asked for one (a named one runs as ``ds.flex.downscale`` does):

    >>> import numpy as np, xarray as xr
    >>> import flexdownscale
    >>> da = xr.DataArray(np.full((8, 12), 280.0), dims=("latitude", "longitude"))
    >>> type(da.flex).__name__
    'FlexDataArrayAccessor'
    >>> da.flex.downscale()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.MissingVariableError: the input has no named variable, ...
    """
