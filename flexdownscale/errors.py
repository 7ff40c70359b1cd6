"""Typed errors raised by flexdownscale.

Every error the package raises on purpose derives from :class:`FlexDownscaleError`, so one
``except fd.errors.FlexDownscaleError`` catches them all. Each subclass also derives from the
builtin exception a user would reach for (``ValueError``, ``KeyError``, ``OSError``, ...), so
existing handlers keep working.

Messages say three things: what was found, what was expected, and how to fix it.

Every warning the package issues on purpose derives from :class:`FlexDownscaleWarning` (a
``UserWarning``), so one filter silences or escalates them all, and the subclasses name why a
run warns, e.g. ``warnings.filterwarnings("ignore", category=fd.errors.SkillWarning)`` for a
regional model run on purpose outside its domain.
"""

from __future__ import annotations

__all__ = [
    "BackendNotAvailableError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EnsembleError",
    "FlexDownscaleError",
    "FlexDownscaleWarning",
    "GridError",
    "MissingVariableError",
    "ModelFolderError",
    "NonFiniteLossError",
    "NotXarrayError",
    "ShapeError",
    "SkillWarning",
    "UndefinedMetricWarning",
    "UnitsError",
    "UnsupportedFactorError",
    "WeightsError",
    "WeightsMismatchError",
]


class FlexDownscaleError(Exception):
    """Base class of every error raised on purpose by flexdownscale."""


class ConfigError(FlexDownscaleError, ValueError):
    """A configuration value or key is invalid (unknown key, bad option, wrong type)."""


class ShapeError(FlexDownscaleError, ValueError):
    """A tensor or array has a shape the operation cannot accept (e.g. H or W not divisible by 16)."""


class GridError(FlexDownscaleError, ValueError):
    """A grid cannot be used: axes not found, irregular spacing, duplicated coordinates, ..."""


class UnitsError(FlexDownscaleError, ValueError):
    """A variable's ``units`` attribute does not match what the model or operation expects."""


class MissingVariableError(FlexDownscaleError, KeyError):
    """A variable the model or operation needs is not in the dataset."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnsupportedFactorError(FlexDownscaleError, ValueError):
    """The downscaling factor is not one the model or grid supports."""


class DataError(FlexDownscaleError, ValueError):
    """Input data are unusable as given (all-NaN tile, wrong dtype that cannot be converted, ...)."""


class NotXarrayError(DataError, TypeError):
    """An xarray Dataset or DataArray is needed and something else was given (a numpy array,
    a list, an ``xarray.DataTree``); also a ``TypeError``, as Python's own type errors, and a
    :class:`DataError`. The message says how to get one (:func:`not_xarray_message`)."""


class EnsembleError(FlexDownscaleError, ValueError):
    """An ensemble is malformed: missing member dimension, chunked member dim, too few members."""


class WeightsError(FlexDownscaleError, ValueError):
    """Weights are negative, NaN or cannot be broadcast against the data."""


class BackendNotAvailableError(FlexDownscaleError, ImportError):
    """An optional backend (xesmf, huggingface_hub, wandb, accelerate, ...) is not installed."""


class ModelFolderError(FlexDownscaleError, OSError):
    """A model folder is missing files, has files that fail their checks, or an unknown format."""


class WeightsMismatchError(ModelFolderError):
    """Stored weights do not match the architecture described by the folder's config."""


class CheckpointError(FlexDownscaleError, OSError):
    """A training-state folder is corrupted, incomplete or belongs to a different run."""


class NonFiniteLossError(FlexDownscaleError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good state is kept."""


class FlexDownscaleWarning(UserWarning):
    """Base class of every warning issued on purpose by flexdownscale.

    Used directly for results that are complete but leave something out (a projected grid's 2-D
    latitude / longitude that cannot be recomputed, a spectrum that cannot be drawn, ...).
    """


class SkillWarning(FlexDownscaleWarning):
    """A run works but is likely to lose skill: the input lies outside what the model was trained
    on (a condition outside its range, cells outside its training domain) or is run in a way it
    was not trained for (tiles smaller than its crops, a periodic field without its
    ``periodic`` attribute). The message says what it costs and the fix."""


class UndefinedMetricWarning(FlexDownscaleWarning, RuntimeWarning):
    """A score is undefined for some of the data and is NaN there (the fair CRPS where only one
    ensemble member is valid). Also a ``RuntimeWarning``, as numpy's warnings of NaN results."""


def not_xarray_message(obj: object, name: str = "the input") -> str:
    """The message for ``obj`` given where an xarray Dataset or DataArray is needed (for the
    package's modules; not part of the API): what was found and how to get one (one node of an
    ``xarray.DataTree``, or numpy values wrapped with their coordinates).

    >>> not_xarray_message([1.0], "truth")[:60]
    'truth must be an xarray Dataset or DataArray, got list; wrap'
    """
    kind = type(obj).__name__
    if kind == "DataTree":
        fix = (
            "pass one node's data, e.g. dt['region'].to_dataset(), or run on every node with "
            "dt.map_over_datasets(lambda ds: ...)"
        )
    else:
        fix = "wrap the values with xr.DataArray(values, dims=[...], coords={...})"
    return f"{name} must be an xarray Dataset or DataArray, got {kind}; {fix}"
