"""Power spectra of fields: isotropic 2-D (DCT or FFT), zonal (global grids), kinetic energy.

Normalisation (one for all functions here): the spectrum is an **annulus sum** turned into a
density, so that

    sum_k E(k) dk = mean(field'^2)

where ``field'`` is the field after detrending (at least the mean removed) and ``dk`` the bin
width. ``E`` thus has units of ``length * units^2`` (e.g. ``m K^2``) and spectra of the same
field on grids of different size or resolution lie on top of each other. (Some codes return
the annulus *mean* of the 2-D modal power, or do not divide by ``dk``: those differ by a factor
``~2 pi k / dk`` or ``dk`` and their slopes by one power of ``k``.)

Wavenumbers are in cycles per unit length (``1 / wavelength``, not radians). The spacing comes
from the grid: degrees are converted to metres at the domain's mean latitude
(``dx = R cos(mean lat) dlon``, ``dy = R dlat``, ``R = 6371008.8 m``), projected ``x``/``y``
coordinates in ``m`` or ``km`` are used as they are, and ``spacing=`` overrides both. Grids with
dimensionless coordinates (e.g. a turbulence box with ``units="1"``) give wavenumbers in cycles
per coordinate unit.

Limited-area fields are not periodic: the FFT sees a jump at the edges, whose leakage bends a
``k^-3`` spectrum to about ``k^-2`` (fitted between ``4 / L`` and ``1 / (4 dx)``; about
``k^-1.7`` up to Nyquist). The default for them is therefore the DCT of Denis et al.
(2002) (``method="dct"``), which mirrors the field instead of wrapping it; ``method="fft"`` with
``window="hann"`` (Hann taper with the ``mean(w^2)`` power correction) and ``detrend="errico"``
(Errico 1985) are the alternatives. A periodic domain (e.g. the doubly periodic Kolmogorov
flow), whose spatial coordinates all say ``periodic = "true"``, gets the plain FFT by default
(:func:`default_method`, the one rule of every spectrum in the package); :func:`zonal_spectrum`
is for global grids.

Bins: the 2-D modes fill the annuli up to the highest wavenumber along the shorter axis of the
spectral rectangle (the Nyquist wavenumber for the FFT); beyond it, the corners fill the annuli
only in part. The spectra keep those bins (Parseval's identity needs them) and record the
limit as ``attrs["complete_wavenumber"]``; :func:`log_spectral_distance` averages over the
complete annuli only.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import xarray as xr

from flexdownscale._attributes import says_periodic
from flexdownscale._keywords import keyword_hints
from flexdownscale._stack import user_stacklevel
from flexdownscale.errors import ConfigError, FlexDownscaleWarning, GridError, UnitsError
from flexdownscale.metrics._utils import (
    EARTH_RADIUS,
    Dims,
    XarrayLike,
    align_exact,
    as_working_float,
    check_member_dim,
    check_option,
    check_same_units,
    check_single_chunk,
    check_xarray,
    coord_kind,
    coord_units_kind,
    dataset_with_dims,
    find_latitude,
    find_yx_dims,
    mapping_or_scalar,
    member_mean,
    pow_units,
    regular_step,
    resolve_reduce_dims,
    set_attrs,
    unit_pairs,
    units_advice,
)
from flexdownscale.metrics.probabilistic import _check_spread_members
from flexdownscale.units import linear_conversion, quantity_kind, same_units

__all__ = [
    "complete_bins",
    "default_method",
    "kinetic_energy_spectrum",
    "log_spectral_distance",
    "power_spectrum",
    "spectral_ratio",
    "spread_skill_spectrum",
    "zonal_spectrum",
]

Method = Literal["dct", "fft"]
Detrend = Literal["constant", "linear", "errico"] | None
Window = Literal["hann"] | None

_NORMALISATION = "annulus sum: sum_k E(k) dk = mean(field'^2)"


# --------------------------------------------------------------------------------------------
# numpy core
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """How 1-D/2-D modes map to isotropic wavenumber bins (built once per grid)."""

    method: str
    shape: tuple[int, ...]
    order: np.ndarray  # indices of the non-DC modes, sorted by bin
    starts: np.ndarray  # first position in ``order`` of every non-empty bin
    filled: np.ndarray  # which bins (0-based, bin j stored at j - 1) are non-empty
    nbins: int
    dk: float
    mult: np.ndarray  # multiplicity of each (flattened) mode (rfft halves the last axis)
    nyquist: float
    complete: float  # the highest wavenumber whose annulus the modes fill completely


def _plan(shape: tuple[int, ...], steps: tuple[float, ...], method: str) -> _Plan:
    """Mode wavenumbers, multiplicities and bins for a field of ``shape`` and ``steps``."""
    ks, mults = [], []
    for axis, (n, d) in enumerate(zip(shape, steps)):
        last = axis == len(shape) - 1
        if method == "dct":
            ks.append(np.arange(n) / (2.0 * n * d))
            mults.append(np.ones(n))
        elif last:
            k = np.fft.rfftfreq(n, d)
            mult = np.full(k.size, 2.0)
            mult[0] = 1.0
            if n % 2 == 0:
                mult[-1] = 1.0  # the Nyquist mode has no conjugate twin: counted once
            ks.append(k)
            mults.append(mult)
        else:
            ks.append(np.fft.fftfreq(n, d))
            mults.append(np.ones(n))
    grids = np.meshgrid(*ks, indexing="ij")
    kmag = np.sqrt(sum(g**2 for g in grids)).ravel()
    mult = np.ones_like(kmag)
    for axis, m in enumerate(mults):
        shape_m = [1] * len(shape)
        shape_m[axis] = m.size
        mult = (mult.reshape([g.size for g in ks]) * m.reshape(shape_m)).ravel()
    base = 2.0 if method == "dct" else 1.0
    dk = max(1.0 / (base * n * d) for n, d in zip(shape, steps))
    # ring j is [(j - 1/2) dk, (j + 1/2) dk): a mode exactly on a boundary goes up (np.rint
    # would send halves to the even neighbour, zig-zagging the bins of non-square grids); the
    # slack keeps modes that sit on a boundary up to round-off on the same side
    bins = np.floor(kmag / dk + 0.5 + 1e-9).astype(np.int64)
    bins = np.where(kmag > 0, np.maximum(bins, 1), 0)  # DC excluded; low modes merged into bin 1
    nonzero = np.flatnonzero(bins > 0)
    order = nonzero[np.argsort(bins[nonzero], kind="stable")]
    sorted_bins = bins[order]
    nbins = int(sorted_bins.max()) if sorted_bins.size else 0
    present, starts = np.unique(sorted_bins, return_index=True)
    filled = np.zeros(nbins, dtype=bool)
    filled[present - 1] = True
    nyquist = min(1.0 / (2.0 * d) for d in steps)
    # the highest mode along each axis (FFT: n // 2 cycles per length, the Nyquist wavenumber
    # for even n; DCT: n - 1 half-cycles); annuli up to the smallest of them are complete
    if method == "dct":
        complete = min((n - 1) / (2.0 * n * d) for n, d in zip(shape, steps))
    else:
        complete = min((n // 2) / (n * d) for n, d in zip(shape, steps))
    return _Plan(method, tuple(shape), order, starts, filled, nbins, dk, mult, nyquist, complete)


def _detrend(f: np.ndarray, ndim: int, detrend: str | None) -> np.ndarray:
    axes = tuple(range(f.ndim - ndim, f.ndim))
    if detrend is None:
        return f
    if detrend in ("linear", "errico"):
        size = int(np.prod([f.shape[ax] for ax in axes]))
        for ax in axes:
            n = f.shape[ax]
            shape = [1] * f.ndim
            shape[ax] = n
            t = (np.arange(n) - (n - 1) / 2.0).reshape(shape)
            if n < 2:
                continue
            if detrend == "linear":
                # least-squares plane over the whole field: on a full grid the centred
                # coordinates are orthogonal to each other and to the mean, so each slope is
                # sum(f t) / sum(t^2) over all points, fitted one axis after the other
                slope = (f * t).sum(axis=axes, keepdims=True) / ((t**2).sum() * (size // n))
            else:  # Errico (1985): every row / column's end points made equal (periodic)
                first = np.take(f, [0], axis=ax)
                last = np.take(f, [n - 1], axis=ax)
                slope = (last - first) / (n - 1)
            f = f - slope * t
    return f - f.mean(axis=axes, keepdims=True)


def _spectrum_kernel(
    field: np.ndarray, *, plan: _Plan, detrend: str | None, window: str | None
) -> np.ndarray:
    """Isotropic spectrum over the last ``len(plan.shape)`` axes: (..., *shape) -> (..., nbins)."""
    ndim = len(plan.shape)
    f = np.asarray(field, dtype=np.float64)
    f = _detrend(f, ndim, detrend)
    axes = tuple(range(f.ndim - ndim, f.ndim))
    norm = 1.0
    if window is not None:
        w = np.ones(())
        for n in plan.shape:
            from scipy.signal import get_window  # a third of the metrics' import time

            w = np.multiply.outer(w, get_window(window, n))
        f = f * w
        norm = float(np.mean(w**2))
    npts = float(np.prod(plan.shape))
    if plan.method == "dct":
        coeffs = scipy.fft.dctn(f, type=2, norm="ortho", axes=axes)
        power = coeffs**2 / npts
    else:
        coeffs = scipy.fft.rfftn(f, axes=axes)
        power = (coeffs.real**2 + coeffs.imag**2) / npts**2
    lead = power.shape[: f.ndim - ndim]
    power = power.reshape((*lead, -1)) * plan.mult
    out = np.zeros((*lead, plan.nbins))
    if plan.order.size:
        sums = np.add.reduceat(power[..., plan.order], plan.starts, axis=-1)
        out[..., plan.filled] = sums
    return out / (plan.dk * norm)


# --------------------------------------------------------------------------------------------
# grid spacing
# --------------------------------------------------------------------------------------------
def _spacing(
    obj: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable],
    spacing: float | Mapping[Hashable, float] | None,
    spacing_units: str,
) -> tuple[dict[Hashable, float], str]:
    """Grid spacing per dim and its length unit (``"m"``, the user's, or ``"1"``)."""
    if spacing is not None:
        steps = mapping_or_scalar(spacing, dims, "spacing")
        for d, s in steps.items():
            if not np.isfinite(s) or s <= 0:
                raise ConfigError(f"spacing for {d!r} must be positive, got {s!r}.")
        return steps, spacing_units
    kinds = {d: coord_units_kind(obj, d) for d in dims}
    families = {k for k, _ in kinds.values()}
    if len(families) > 1:
        raise GridError(
            f"the dims {tuple(dims)!r} mix coordinate kinds {kinds!r} (degrees, lengths, "
            "unitless); pass spacing={dim: metres, ...} explicitly."
        )
    family = families.pop()
    steps: dict[Hashable, float] = {}
    if family == "degrees":
        lat = None
        for d in dims:
            if coord_kind(obj, d) == "y":
                lat = obj[d]
        if lat is None:
            lat = find_latitude(obj, exclude=dims)
        for d in dims:
            if coord_kind(obj, d) == "y":
                steps[d] = np.deg2rad(regular_step(obj, d)) * EARTH_RADIUS
                continue
            step = np.deg2rad(regular_step(obj, d, period=360.0)) * EARTH_RADIUS
            if lat is None:
                raise GridError(
                    f"dim {d!r} is in degrees of longitude but no latitude was found to convert "
                    "it to metres; add a latitude coordinate or pass spacing=... (metres)."
                )
            mean_lat = float(np.mean(np.asarray(lat.values, dtype=float)))
            steps[d] = step * np.cos(np.deg2rad(mean_lat))
        return steps, "m"
    if family == "length":
        return {d: regular_step(obj, d) * kinds[d][1] for d in dims}, "m"
    return {d: regular_step(obj, d) for d in dims}, "1"


def _warn_if_global(field: xr.DataArray | xr.Dataset, dims: Sequence[Hashable]) -> None:
    """Warn when one of ``dims`` is a longitude in degrees that spans the whole circle: the
    isotropic spectrum of a global grid takes one spacing (the mean latitude's) for every row,
    so its wavenumbers are nominal away from that latitude. Limited-area grids (a longitude
    range short of 360 degrees) are what the isotropic spectrum is for: no warning."""
    for d in dims:
        if coord_units_kind(field, d)[0] != "degrees" or coord_kind(field, d) == "y":
            continue
        n = field.sizes[d]
        step = regular_step(field, d, period=360.0)
        if abs(n * step - 360.0) > 0.5 * step:
            continue
        warnings.warn(
            f"power_spectrum over {d!r}, a longitude that spans the whole circle ({n} x "
            f"{step:g} degrees): on a global grid the isotropic spectrum converts degrees to "
            "metres at the mean latitude for every row, so its wavenumbers are nominal away "
            "from it. Use zonal_spectrum for global grids (each latitude circle at its own "
            "length; kinetic_energy_spectrum(u, v, kind='zonal') for winds), or pass "
            "spacing=... (metres) to keep the isotropic spectrum without this warning.",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
        return


def _inverse_units(length_units: str) -> str:
    return "1" if length_units in ("1", "") else f"{length_units}-1"


def _density_units(length_units: str):
    def fn(u: str) -> str:
        sq = pow_units(u) or "1"
        if length_units in ("1", ""):
            return sq
        return length_units if sq == "1" else f"{length_units} {sq}"

    return fn


#: the units :func:`_density_units` writes: ``"<length> <field>^2"``, ``"<length> (<field>)^2"``
#: or ``"<field>^2"`` on a dimensionless grid
_SPECTRUM_UNITS = re.compile(r"(?:(?P<length>\S+) )?(?:\((?P<paren>.+)\)|(?P<bare>[A-Za-z_]+))\^2")


def _spectrum_units_parts(units: str) -> tuple[str, str] | None:
    """``("m", "K")`` for a spectrum in ``"m K^2"``; ``None`` for units not written so."""
    match = _SPECTRUM_UNITS.fullmatch(units.strip())
    if match is None:  # the spectrum of a dimensionless field is in the grid's length units
        return (units.strip(), "1") if quantity_kind(units) == "a length" else None
    return match["length"] or "1", match["paren"] or match["bare"]


def _check_same_spectrum_units(pred: XarrayLike, ref: XarrayLike) -> None:
    """UnitsError when two spectra are in other units, said in the units of their fields.

    The spectra's units (``m Kelvin^2`` and ``m K^2``) are compared as units; units that
    :mod:`flexdownscale.units` cannot read as a whole are compared by their parts, the grid's
    length and the field's units. A mismatch names the fields' units and how to convert the
    field (then compute its spectrum again), or says that the fields are different quantities.
    """
    names = ("pred", "ref")
    for name, ua, ub in unit_pairs(pred, ref):
        if linear_conversion(ub, ua) == (1.0, 0.0):
            continue
        parts_a, parts_b = _spectrum_units_parts(ua), _spectrum_units_parts(ub)
        what = f"variable {name!r}: " if name is not None else ""
        if parts_a is None or parts_b is None or not same_units(parts_a[0], parts_b[0]):
            raise UnitsError(
                f"{what}the spectra are in different units, pred in {ua!r} and ref in {ub!r}; "
                + units_advice(
                    ua,
                    ub,
                    names,
                    lead="spectra in different units cannot be compared",
                    then=" (or compute both spectra from fields in the same units, on the "
                    "same grid)",
                )
            )
        (_, fa), (_, fb) = parts_a, parts_b
        if same_units(fa, fb):
            continue
        raise UnitsError(
            f"{what}pred is in {ua!r} but ref is in {ub!r}, the spectra of fields in {fa!r} "
            f"and in {fb!r}; "
            + units_advice(
                fa,
                fb,
                ("pred's field", "ref's field"),
                lead="spectra of fields in different units cannot be compared",
                then=", then compute its spectrum again",
            )
        )


def _paired_spectra(
    pred: XarrayLike, ref: XarrayLike, dim: Hashable | None, *, dim_of: XarrayLike
) -> tuple[XarrayLike, XarrayLike, Hashable]:
    """``(pred, ref, spectral dim)`` checked and aligned for a comparison of two spectra.

    Both must be xarray objects in the same units (:func:`_check_same_spectrum_units`; m s-1
    against km h-1 would be 12.96x off); the spectral dim is ``dim`` or found on ``dim_of``;
    ``pred`` is put on ``ref``'s bins and both are aligned exactly.
    """
    pred = check_xarray(pred, "pred")
    ref = check_xarray(ref, "ref")
    _check_same_spectrum_units(pred, ref)
    d = _spectral_dim(dim_of, dim)
    pred = on_reference_bins(pred, ref, d)
    pred, ref = align_exact(pred, ref, names=("pred", "ref"))
    return pred, ref, d


def _says_periodic(obj: xr.DataArray | xr.Dataset, dim: Hashable) -> bool:
    """Whether the coordinate of ``dim`` carries ``periodic = "true"`` (or True, 1, "yes"): the
    reading of :mod:`flexdownscale.data.grid` (:func:`flexdownscale._attributes.says_periodic`)."""
    return dim in obj.coords and says_periodic(obj[dim].attrs)


def _spatial_dims(
    field: xr.DataArray | xr.Dataset, dims: Sequence[Hashable] | Hashable | None
) -> tuple[Hashable, ...]:
    """``dims`` as a tuple; ``None``: the (Y, X) dims found from CF attrs or names."""
    if dims is None:
        return tuple(find_yx_dims(field))
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        return (dims,)
    return tuple(dims)


@keyword_hints
def default_method(
    field: xr.DataArray | xr.Dataset,
    dims: Sequence[Hashable] | Hashable | None = None,
    *,
    window: Window = None,
) -> Method:
    """The spectrum method that ``method=None`` picks for ``field``: one rule for every spectrum.

    The FFT when a ``window`` is given, or when the coordinate of every spatial dim says
    ``periodic = "true"`` (a doubly periodic box: wrapping it is exact, and the FFT's modes
    are its Fourier modes); the DCT of Denis et al. (2002) otherwise (limited-area and other
    non-periodic grids). :func:`power_spectrum`, :func:`kinetic_energy_spectrum`,
    :func:`~flexdownscale.metrics.mean_spectrum`,
    :func:`~flexdownscale.metrics.downscaling_skill`,
    :func:`~flexdownscale.plot.plot_spectra` and ``flexdownscale evaluate`` all choose with it
    (the last three from the truth's, or the reference's, coordinates).

    Parameters
    ----------
    field : DataArray or Dataset
        The field whose spectrum is wanted (its coordinates' attrs are read).
    dims : str or pair of str, optional
        Its spatial dim(s); default None: the (Y, X) dims found from CF attrs or names.
    window : {"hann", None}, default None
        The taper that will be used, if any.

    Returns
    -------
    {"fft", "dct"}
        The method: ``"fft"`` or ``"dct"`` (as ``method=`` of :func:`power_spectrum` takes
        it).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> box = np.arange(8) * 2 * np.pi / 8
    >>> field = xr.DataArray(np.zeros((8, 8)), dims=("y", "x"), coords={"y": box, "x": box})
    >>> default_method(field)
    'dct'
    >>> for c in ("x", "y"):
    ...     field[c].attrs["periodic"] = "true"
    >>> default_method(field)
    'fft'
    """
    if window is not None:
        return "fft"
    sdims = _spatial_dims(field, dims)
    if sdims and all(_says_periodic(field, d) for d in sdims):
        return "fft"
    return "dct"


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
@keyword_hints
def power_spectrum(
    field: XarrayLike,
    *,
    dims: Sequence[Hashable] | Hashable | None = None,
    spacing: float | Mapping[Hashable, float] | None = None,
    spacing_units: str = "m",
    method: Method | None = None,
    detrend: Detrend = "constant",
    window: Window = None,
) -> XarrayLike:
    """Isotropic power spectrum over one or two spatial dims (annulus sum, see module doc).

    Each sample (every index of the other dims) is detrended, optionally windowed,
    transformed, and its modal power ``P(k_x, k_y)`` (with ``sum P = mean(field'^2)``) is
    summed over annuli ``|k|`` in ``[(j - 1/2) dk, (j + 1/2) dk)`` and divided by ``dk``.
    ``dk`` is the fundamental wavenumber of the shorter side (``1/L`` for the FFT, ``1/(2L)``
    for the DCT, whose modes are half-cycles). The mean (``k = 0``) is dropped and modes
    below ``dk/2`` go to the first bin. All modes are kept, including the corners of the
    spectral rectangle beyond the highest complete annulus, so Parseval's identity
    ``sum_k E(k) dk = mean(field'^2)`` holds to round-off for the unwindowed paths. Those
    last bins are only partly filled: ``attrs["complete_wavenumber"]`` is the highest
    wavenumber whose annulus is complete, the smallest over the axes of the highest mode
    along the axis (FFT: ``(n // 2) / (n d)``, the Nyquist wavenumber
    ``attrs["nyquist_wavenumber"]`` for even ``n``; DCT: ``(n - 1) / (2 n d)``, one ``dk``
    below it); cut the bins beyond it before fitting slopes (:func:`log_spectral_distance`
    leaves them out).
    With a window, ``E`` is divided by ``mean(w^2)``: the identity then holds in expectation.
    With one dim the result equals ``scipy.signal.periodogram`` (one-sided, density).

    Parameters
    ----------
    field : DataArray or Dataset
        Field(s) with the spatial ``dims`` (in one dask chunk each); other dims are samples.
        For a Dataset, the variables that have ``dims`` are used. A NaN anywhere in a sample
        makes its spectrum NaN (fill or crop first).
    dims : str or pair of str, optional
        Spatial dim(s); default: the (Y, X) dims found from CF attrs or names.
    spacing : float or mapping, optional
        Grid step per dim in ``spacing_units``; default: from the coordinates (degrees ->
        metres at the mean latitude; ``m``/``km`` -> metres; unitless -> as is).
    spacing_units : str, default "m"
        Units of an explicit ``spacing`` (sets the wavenumber units).
    method : {"dct", "fft"} or None, default None
        DCT-II (Denis et al. 2002; for limited-area, non-periodic fields) or FFT (periodic
        fields, or with a window). ``None``: :func:`default_method`, the FFT when a
        ``window`` is given or when every spatial coordinate says ``periodic = "true"`` (a
        doubly periodic box), else the DCT. ``attrs["spectrum_method"]`` says which.
    detrend : {"constant", "linear", "errico", None}, default "constant"
        Remove the mean, a least-squares plane, or Errico's (1985) end-point trends (then the
        mean). The mean mode is never part of the output.
    window : {"hann", None}, default None
        Taper for the FFT path (a 2-D outer product of periodic Hann windows, as scipy uses);
        not allowed with ``method="dct"``.

    Returns
    -------
    DataArray or Dataset
        Dim ``wavenumber`` (cycles per unit length, ``units`` e.g. ``"m-1"``) with a
        ``wavelength`` coordinate; ``units`` ``length * units^2``; attrs record the method,
        window, detrend, spacing, normalisation, ``dk``, ``nyquist_wavenumber`` and
        ``complete_wavenumber``.

    Warns
    -----
    FlexDownscaleWarning
        Over a longitude (in degrees) that spans the whole circle, with the spacing taken
        from the grid: a global grid's rows are converted to metres at one latitude, so
        the wavenumbers are nominal away from it; :func:`zonal_spectrum` takes each latitude
        circle at its own length. Limited-area windows do not warn.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = np.arange(64) * 1000.0
    >>> da = xr.DataArray(np.sin(2 * np.pi * 4 * x / 64e3)[None, :] * np.ones((32, 1)),
    ...                   dims=("y", "x"), coords={"y": x[:32], "x": x},
    ...                   attrs={"units": "K"})
    >>> for c in ("x", "y"):
    ...     da[c].attrs["units"] = "m"
    >>> spec = power_spectrum(da, method="fft")
    >>> float(spec.wavenumber[spec.argmax("wavenumber")]) * 64e3  # cycles per domain length
    4.0
    >>> bool(np.isclose((spec * spec.attrs["dk"]).sum(), (da - da.mean()).var()))
    True

    The 2-D modes fill the annuli up to the Nyquist wavenumber of the shorter side; the bins
    beyond it (the corners of the spectral rectangle) are partly filled:

    >>> spec.attrs["complete_wavenumber"] == spec.attrs["nyquist_wavenumber"] == 1 / 2000.0
    True
    >>> int((spec.wavenumber > spec.attrs["complete_wavenumber"]).sum())
    7
    """
    check_option("method", method, ("dct", "fft", None))
    check_option("detrend", detrend, ("constant", "linear", "errico", None))
    check_option("window", window, ("hann", None))
    if window is not None and method == "dct":
        raise ConfigError(
            "window='hann' is for the FFT path: the DCT needs no taper (it mirrors the field). "
            "Pass method='fft' with the window, or window=None with the DCT."
        )
    field = check_xarray(field, "field")
    sdims = _spatial_dims(field, dims)
    if len(sdims) not in (1, 2):
        raise ConfigError(f"dims must name one or two spatial dims, got {sdims!r}.")
    for d in sdims:
        if d not in field.dims:
            raise GridError(f"dim {d!r} is not in the input (dims: {tuple(field.dims)!r}).")
        if field.sizes[d] < 4:
            raise GridError(f"dim {d!r} has {field.sizes[d]} points; a spectrum needs >= 4.")
    if method is None:  # the FFT with a window or on a periodic domain, else the DCT
        method = default_method(field, sdims, window=window)
    field = dataset_with_dims(field, sdims)
    check_single_chunk(field, sdims, "a spectrum (an FFT over the spatial dims)", error=GridError)
    steps, length_units = _spacing(field, sdims, spacing, spacing_units)
    if spacing is None:
        _warn_if_global(field, sdims)
    plan = _plan(tuple(field.sizes[d] for d in sdims), tuple(steps[d] for d in sdims), method)
    spec = xr.apply_ufunc(
        _spectrum_kernel,
        field,
        input_core_dims=[list(sdims)],
        output_core_dims=[["wavenumber"]],
        exclude_dims=set(sdims),
        kwargs={"plan": plan, "detrend": detrend, "window": window},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": plan.nbins}},
    )
    k = np.arange(1, plan.nbins + 1) * plan.dk
    inv = _inverse_units(length_units)
    spec = spec.assign_coords(
        wavenumber=(
            "wavenumber",
            k,
            {"units": inv, "long_name": "wavenumber (cycles per unit length)"},
        ),
        wavelength=("wavenumber", 1.0 / k, {"units": length_units, "long_name": "wavelength"}),
    )
    grid_attrs = {
        "spectrum_method": "DCT-II (Denis et al. 2002)" if method == "dct" else "FFT",
        "spectrum_window": str(window),
        "spectrum_detrend": str(detrend),
        "spectrum_dims": ", ".join(map(str, sdims)),
        "spectrum_spacing": ", ".join(f"{d}={steps[d]:.6g} {length_units}" for d in sdims),
        "spectrum_normalization": _NORMALISATION,
        "dk": plan.dk,
        "nyquist_wavenumber": plan.nyquist,
        "complete_wavenumber": plan.complete,
    }
    spec = set_attrs(
        spec,
        field,
        units=_density_units(length_units),
        long_name="power spectral density",
        **grid_attrs,
    )
    if isinstance(spec, xr.Dataset):  # one grid for every variable: spec.attrs["dk"] works too
        spec.attrs = dict(grid_attrs)
    return spec


def _zonal_kernel(field: np.ndarray) -> np.ndarray:
    """One-sided periodogram power per zonal wavenumber 1..N//2 along the last axis."""
    f = np.asarray(field, dtype=np.float64)
    n = f.shape[-1]
    f = f - f.mean(axis=-1, keepdims=True)
    coeffs = scipy.fft.rfft(f, axis=-1)
    power = (coeffs.real**2 + coeffs.imag**2) / float(n) ** 2
    power[..., 1:] *= 2.0
    if n % 2 == 0:
        power[..., -1] /= 2.0  # Nyquist counted once (WeatherBench2 doubles it; not here)
    return power[..., 1:]


@keyword_hints
def zonal_spectrum(
    field: XarrayLike,
    *,
    lat_dim: Hashable | None = None,
    lon_dim: Hashable | None = None,
) -> XarrayLike:
    """Zonal power spectrum along each latitude circle of a global grid.

    For every latitude the field along the full circle (periodic: no window or detrending
    beyond the mean) gives the one-sided periodogram in cycles per metre, with the circle's
    length ``C = 2 pi R cos(lat)``: ``E_j = C * P_j`` at zonal wavenumber ``j = 1..N//2``
    (``P_j`` the modal power, ``sum_j P_j = zonal variance``), so
    ``sum_j E_j / C = zonal mean of field'^2`` and ``E`` matches
    ``scipy.signal.periodogram(f, fs=N / C)``. The Nyquist mode of an even ``N`` is counted
    once (WeatherBench2 doubles it). At the poles ``C = 0`` and ``E = 0``.

    Parameters
    ----------
    field : DataArray or Dataset
        Global field with latitude and longitude dims (degrees); longitude must cover the
        full circle regularly, each longitude once (a grid from 0 to 360 inclusive repeats
        one: drop it with ``field.isel(lon=slice(None, -1))``), and be in one dask chunk.
    lat_dim, lon_dim : str, optional
        Names of the latitude and longitude dims. Default None: found from CF attrs or names.

    Returns
    -------
    DataArray or Dataset
        Dims: ``zonal_wavenumber`` (integer cycles per circle) replacing longitude, latitude
        kept; a 2-D ``wavelength`` coordinate (metres); ``units`` ``m units^2``. Average over
        a latitude band yourself; a selection by value works for ascending and descending
        latitudes alike::

            band = spec.where((spec.lat >= 30) & (spec.lat <= 60), drop=True).mean("lat")

        (``spec.sel(lat=slice(60, 30))`` is empty on an ascending grid).

    Examples
    --------
    Three cycles around every latitude circle of a 10 degree grid: the spectrum peaks at
    zonal wavenumber 3, ``sum_j E_j / C`` gives back the variance of the cosine (1/2), and
    the circle at 60 degrees, half as long as the equator, holds half its density:

    >>> import numpy as np, xarray as xr
    >>> lon = np.arange(0.0, 360.0, 10.0)
    >>> lat = np.array([-60.0, 0.0, 60.0])
    >>> field = xr.DataArray(np.cos(np.deg2rad(3 * lon)) * np.ones((3, 1)),
    ...                      dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    >>> field["lat"].attrs["units"] = "degrees_north"
    >>> field["lon"].attrs["units"] = "degrees_east"
    >>> spec = zonal_spectrum(field)
    >>> spec.dims, spec.shape
    (('lat', 'zonal_wavenumber'), (3, 18))
    >>> spec.idxmax("zonal_wavenumber").values
    array([3., 3., 3.])
    >>> circle = 2 * np.pi * spec.attrs["earth_radius"] * np.cos(np.deg2rad(spec.lat))
    >>> (spec.sum("zonal_wavenumber") / circle).round(6).values
    array([0.5, 0.5, 0.5])
    >>> round(float(spec.sel(lat=60, zonal_wavenumber=3) / spec.sel(lat=0, zonal_wavenumber=3)), 6)
    0.5
    """
    field = check_xarray(field, "field")
    if lat_dim is None or lon_dim is None:
        ydim, xdim = find_yx_dims(field)
        lat_dim = ydim if lat_dim is None else lat_dim
        lon_dim = xdim if lon_dim is None else lon_dim
    for d in (lat_dim, lon_dim):
        if d not in field.dims:
            raise GridError(f"dim {d!r} is not in the input (dims: {tuple(field.dims)!r}).")
        if coord_units_kind(field, d)[0] != "degrees":
            raise GridError(
                f"zonal_spectrum needs latitude/longitude in degrees; {d!r} is not (units "
                f"{field[d].attrs.get('units') if d in field.coords else None!r}). For a "
                "projected or limited-area grid use power_spectrum."
            )
    n = field.sizes[lon_dim]
    dlon = regular_step(field, lon_dim, period=360.0)
    if abs(n * dlon - 360.0) > 0.5 * dlon:
        lon_values = np.asarray(field[lon_dim].values, dtype=float)
        first_again = (lon_values[-1] - lon_values[0] + 180.0) % 360.0 - 180.0
        if abs(n * dlon - 360.0 - dlon) <= 0.5 * dlon and abs(first_again) <= 0.5 * dlon:
            raise GridError(
                f"{lon_dim!r} covers {n * dlon:g} degrees: its last longitude "
                f"({lon_values[-1]:g}) repeats the first ({lon_values[0]:g}) modulo 360, as "
                "cartopy's add_cyclic_point writes it; zonal spectra need each longitude "
                f"once. Drop the repeated one: field.isel({lon_dim}=slice(None, -1))."
            )
        raise GridError(
            f"{lon_dim!r} covers {n * dlon:g} degrees, not a full circle (360); zonal spectra "
            "need global longitude. For a limited-area grid use power_spectrum."
        )
    lat = field[lat_dim]
    if float(np.nanmax(np.abs(lat.values))) > 90.0 + 1e-6:
        raise GridError(f"latitudes beyond +-90 found in {lat_dim!r}.")
    field = dataset_with_dims(field, (lat_dim, lon_dim))
    check_single_chunk(
        field, [lon_dim], "a zonal spectrum (an FFT along longitude)", error=GridError
    )
    power = xr.apply_ufunc(
        _zonal_kernel,
        field,
        input_core_dims=[[lon_dim]],
        output_core_dims=[["zonal_wavenumber"]],
        exclude_dims={lon_dim},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"zonal_wavenumber": n // 2}},
    )
    circumference = 2.0 * np.pi * EARTH_RADIUS * np.cos(np.deg2rad(lat.astype(np.float64)))
    circumference = circumference.where(np.abs(lat) < 90.0, 0.0).clip(min=0.0)
    j = np.arange(1, n // 2 + 1)
    spec = power * circumference.broadcast_like(power)  # under any arithmetic_broadcast
    # broadcast explicitly: xarray's arithmetic_broadcast=False refuses it in the division
    circles, jcoord = xr.broadcast(circumference, xr.DataArray(j, dims="zonal_wavenumber"))
    spec = spec.assign_coords(
        zonal_wavenumber=(
            "zonal_wavenumber",
            j,
            {"units": "1", "long_name": "zonal wavenumber (cycles per latitude circle)"},
        ),
        wavelength=(circles / jcoord).assign_attrs(units="m", long_name="zonal wavelength"),
    )
    spec = spec.transpose(*[d for d in field.dims if d != lon_dim], "zonal_wavenumber", ...)
    return set_attrs(
        spec,
        field,
        units=_density_units("m"),
        long_name="zonal power spectral density",
        spectrum_method="zonal periodogram (FFT along each latitude circle)",
        spectrum_normalization="sum_j E_j / (2 pi R cos(lat)) = zonal mean of field'^2",
        earth_radius=EARTH_RADIUS,
    )


def _spectrum_for(
    like: XarrayLike,
    kind: str,
    *,
    dims: Sequence[Hashable] | Hashable | None,
    spacing: float | Mapping[Hashable, float] | None,
    spacing_units: str,
    method: Method | None,
    detrend: Detrend,
    window: Window,
    lat_dim: Hashable | None,
    lon_dim: Hashable | None,
) -> Callable[[XarrayLike], XarrayLike]:
    """The one spectrum of ``kind`` for fields on ``like``'s grid: :func:`zonal_spectrum`
    (``"zonal"``), or :func:`power_spectrum` with the dims and ``method=None``'s
    :func:`default_method` settled once from ``like``, so every field gets the same.

    Every public function with a ``kind`` passes here, so here ``kind`` is checked and an
    option of the other kind refused (:class:`~flexdownscale.errors.ConfigError`): ``dims``,
    ``spacing``, ``spacing_units``, ``method``, ``detrend`` and ``window`` are the isotropic
    spectrum's, ``lat_dim`` and ``lon_dim`` the zonal one's. An option at its default
    (``None``; ``spacing_units="m"``, ``detrend="constant"``) counts as not given."""
    check_option("kind", kind, ("isotropic", "zonal"))
    isotropic_only = {"dims": dims, "spacing": spacing, "method": method, "window": window}
    given = [name for name, value in isotropic_only.items() if value is not None]
    given += ["detrend"] if detrend != "constant" else []
    given += ["spacing_units"] if spacing_units != "m" else []
    if kind == "zonal" and given:
        raise ConfigError(
            f"{', '.join(given)} set the isotropic spectrum; kind='zonal' takes the "
            "periodogram along each latitude circle, which has no such option: leave "
            f"{'them' if len(given) > 1 else 'it'} out, or use kind='isotropic' for a "
            "limited-area grid"
        )
    if kind == "isotropic" and (lat_dim is not None or lon_dim is not None):
        raise ConfigError(
            "lat_dim / lon_dim name the latitude circles of kind='zonal'; pass kind='zonal' "
            "for a global grid, or dims=... for the isotropic spectrum"
        )
    if kind == "zonal":
        return lambda field: zonal_spectrum(field, lat_dim=lat_dim, lon_dim=lon_dim)
    sdims = _spatial_dims(like, dims)
    if method is None:
        method = default_method(like, sdims, window=window)
    options = {
        "dims": sdims,
        "spacing": spacing,
        "spacing_units": spacing_units,
        "method": method,
        "detrend": detrend,
        "window": window,
    }
    return lambda field: power_spectrum(field, **options)


@keyword_hints
def kinetic_energy_spectrum(
    u: XarrayLike,
    v: XarrayLike,
    *,
    kind: Literal["isotropic", "zonal"] = "isotropic",
    dims: Sequence[Hashable] | None = None,
    spacing: float | Mapping[Hashable, float] | None = None,
    spacing_units: str = "m",
    method: Method | None = None,
    detrend: Detrend = "constant",
    window: Window = None,
    lat_dim: Hashable | None = None,
    lon_dim: Hashable | None = None,
) -> XarrayLike:
    """Kinetic energy spectrum ``E(k) = (E_u(k) + E_v(k)) / 2`` of a wind field.

    ``kind="isotropic"`` uses :func:`power_spectrum` (options ``dims``, ``spacing``,
    ``spacing_units``, ``method``, ``detrend``, ``window``); ``kind="zonal"`` uses
    :func:`zonal_spectrum` (options ``lat_dim``, ``lon_dim``). With winds in ``m s-1`` on a
    metric grid the units are ``m (m s-1)^2`` (i.e. m^3 s^-2). The sum rule becomes
    ``sum_k E dk = mean(u'^2 + v'^2) / 2``.

    Parameters
    ----------
    u, v : DataArray or Dataset
        Wind components on the same grid, in the same units (e.g. ``m s-1``).
    kind : {"isotropic", "zonal"}, default "isotropic"
        Isotropic spectrum of a (limited-area or periodic) grid, or zonal spectra along the
        latitude circles of a global grid.
    dims : str or pair of str, optional
        ``kind="isotropic"`` only: the spatial dim(s), as in :func:`power_spectrum`.
    spacing : float or mapping, optional
        ``kind="isotropic"`` only: grid step per dim in ``spacing_units``; default None: from
        the coordinates.
    spacing_units : str, default "m"
        ``kind="isotropic"`` only: units of an explicit ``spacing``.
    method : {"dct", "fft"} or None, default None
        ``kind="isotropic"`` only: as in :func:`power_spectrum`; ``None``:
        :func:`default_method` of ``u`` (the FFT on a doubly periodic grid), the same for
        both components.
    detrend : {"constant", "linear", "errico", None}, default "constant"
        ``kind="isotropic"`` only: as in :func:`power_spectrum`.
    window : {"hann", None}, default None
        ``kind="isotropic"`` only: as in :func:`power_spectrum`.
    lat_dim, lon_dim : str, optional
        ``kind="zonal"`` only: the latitude and longitude dims; default None: found from CF
        attrs or names.

    Returns
    -------
    DataArray or Dataset
        Dims and coordinates of :func:`power_spectrum` or :func:`zonal_spectrum`; a DataArray
        is named ``kinetic_energy``; ``long_name`` "kinetic energy spectral density".

    Raises
    ------
    ConfigError
        An isotropic-only option (``dims``, ``spacing``, ``method``, ``window``, a
        ``detrend`` or ``spacing_units`` other than the default) passed with
        ``kind="zonal"``, or ``lat_dim`` / ``lon_dim`` with ``kind="isotropic"``.
    UnitsError
        ``u`` and ``v`` in different units.
    GridError
        ``kind="zonal"`` on a grid that is not global in degrees (as :func:`zonal_spectrum`).

    Examples
    --------
    A wind blowing along ``x`` only, with four cycles across a 32 km domain: the energy sits
    at 4 cycles per domain length, and the sum rule gives half the mean of ``u'^2``:

    >>> import numpy as np, xarray as xr
    >>> x = np.arange(32) * 1000.0
    >>> u = xr.DataArray(np.sin(2 * np.pi * 4 * x / 32e3) * np.ones((32, 1)),
    ...                  dims=("y", "x"), coords={"y": x, "x": x}, attrs={"units": "m s-1"})
    >>> for c in ("x", "y"):
    ...     u[c].attrs["units"] = "m"
    >>> v = xr.zeros_like(u)
    >>> ke = kinetic_energy_spectrum(u, v, method="fft")
    >>> ke.name, float(ke.wavenumber[ke.argmax("wavenumber")]) * 32e3
    ('kinetic_energy', 4.0)
    >>> round(float((ke * ke.attrs["dk"]).sum()), 6), round(float((u**2).mean() / 2), 6)
    (0.25, 0.25)
    """
    check_option("kind", kind, ("isotropic", "zonal"))
    u = check_xarray(u, "u")
    v = check_xarray(v, "v")
    u, v = align_exact(u, v, names=("u", "v"))
    check_same_units(
        u, v, names=("u", "v"), lead="u and v in different units cannot be added into one energy"
    )
    spectrum = _spectrum_for(  # one method for both components: that of u's grid
        u,
        kind,
        dims=dims,
        spacing=spacing,
        spacing_units=spacing_units,
        method=method,
        detrend=detrend,
        window=window,
        lat_dim=lat_dim,
        lon_dim=lon_dim,
    )
    eu, ev = spectrum(u), spectrum(v)
    ke = 0.5 * (eu + ev)
    long_name = "kinetic energy spectral density"
    if isinstance(ke, xr.DataArray):
        ke.attrs = {**eu.attrs, "long_name": long_name}
        return ke.rename("kinetic_energy")
    for name in ke.data_vars:
        ke[name].attrs = {**eu[name].attrs, "long_name": long_name}
    return ke


def _spectral_dim(spec: xr.DataArray | xr.Dataset, dim: Hashable | None) -> Hashable:
    if dim is not None:
        if dim not in spec.dims:
            raise GridError(f"dim {dim!r} is not in the spectrum (dims {tuple(spec.dims)!r}).")
        return dim
    for d in ("wavenumber", "zonal_wavenumber"):
        if d in spec.dims:
            return d
    raise GridError(
        f"no spectral dim ('wavenumber' or 'zonal_wavenumber') in {tuple(spec.dims)!r}; "
        "pass dim=... or compute the spectra with power_spectrum / zonal_spectrum first."
    )


#: Wavenumbers of two spectra that agree to this fraction are the same bins: the spacing ``dk``
#: of a degree grid comes from cos(mean latitude) x the step, which float32 and float64 copies
#: of one grid give a few 1e-7 apart (a relative error that grows with the bin index in ``k``).
SAME_BINS_RTOL = 1e-4


def on_reference_bins(pred: XarrayLike, ref: XarrayLike, dim: Hashable) -> XarrayLike:
    """``pred`` with ``ref``'s wavenumbers on the bins the two spectra share up to
    :data:`SAME_BINS_RTOL` (the first ``min(n_pred, n_ref)`` bins: a coarser field's spectrum
    stops at its own Nyquist wavenumber); ``pred`` unchanged when they are not the same bins."""
    if dim not in pred.dims or dim not in ref.dims:
        return pred
    kp = np.asarray(pred[dim].values, dtype=float)
    kr = np.asarray(ref[dim].values, dtype=float)
    n = min(kp.size, kr.size)
    if n == 0 or np.array_equal(kp[:n], kr[:n]):
        return pred
    if not np.allclose(kp[:n], kr[:n], rtol=SAME_BINS_RTOL, atol=0.0):
        return pred
    coords = {}
    for name in pred.coords:
        if pred[name].dims == (dim,) and name in ref.coords and ref[name].dims == (dim,):
            values = np.asarray(pred[name].values).copy()
            values[:n] = np.asarray(ref[name].values)[:n]
            coords[name] = (dim, values, pred[name].attrs)
    return pred.assign_coords(coords)


@keyword_hints
def spectral_ratio(pred: XarrayLike, ref: XarrayLike, *, dim: Hashable | None = None) -> XarrayLike:
    """Ratio ``P_pred(k) / P_ref(k)`` of two spectra on the same wavenumbers (1 = perfect).

    Below 1: missing (smoothed) variance at that scale; above 1: spurious (noisy) variance.
    The spectra must have the same bins (same grid and method; wavenumbers equal to
    :data:`SAME_BINS_RTOL`, as for float32 and float64 copies of one grid), else
    :class:`~flexdownscale.errors.ShapeError`; spectra in other units (those of fields in
    ``m s-1`` and ``km h-1``) are a :class:`~flexdownscale.errors.UnitsError`.

    Parameters
    ----------
    pred, ref : DataArray or Dataset
        Spectra from :func:`power_spectrum` or :func:`zonal_spectrum`, same units.
    dim : str, optional
        The spectral dim; default None: ``wavenumber`` or ``zonal_wavenumber``.

    Returns
    -------
    DataArray or Dataset
        ``pred / ref`` per bin (``inf`` or NaN where ``ref`` is 0); ``units`` ``"1"``.

    Examples
    --------
    A prediction with half the amplitude of the truth has a quarter of its power at every
    scale:

    >>> import numpy as np, xarray as xr
    >>> cells = np.arange(16.0)
    >>> truth = xr.DataArray(np.random.default_rng(0).normal(size=(16, 16)), dims=("y", "x"),
    ...                      coords={"y": cells, "x": cells})
    >>> ratio = spectral_ratio(power_spectrum(0.5 * truth), power_spectrum(truth))
    >>> np.unique(ratio.round(6).values), ratio.attrs["units"]
    (array([0.25]), '1')
    """
    pred, ref, _ = _paired_spectra(pred, ref, dim, dim_of=pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pred / ref
    return set_attrs(out, ref, units="1", long_name="spectral ratio (pred / ref)")


def _complete_wavenumber(spec: xr.DataArray | xr.Dataset) -> float | None:
    """``attrs["complete_wavenumber"]`` of a spectrum (a Dataset's, or its first variable's
    that has it); ``None`` when it has none."""
    sources = [spec] if isinstance(spec, xr.DataArray) else [spec, *spec.data_vars.values()]
    for src in sources:
        value = src.attrs.get("complete_wavenumber")
        if value is not None:
            return float(value)
    return None


@keyword_hints
def complete_bins(spec: xr.DataArray | xr.Dataset, dim: Hashable) -> np.ndarray | None:
    """Which bins of ``spec`` along ``dim`` are complete annuli: the rule of
    :func:`log_spectral_distance` and the spectrum plots, for your own fits and averages.

    A 2-D spectrum's annuli are complete up to ``attrs["complete_wavenumber"]`` (see
    :func:`power_spectrum`); the bins beyond are the partly filled corners of the spectral
    rectangle. Zonal spectra (``zonal_wavenumber``) are 1-D: every bin is complete.

    Parameters
    ----------
    spec : DataArray or Dataset
        A spectrum from :func:`power_spectrum`, :func:`kinetic_energy_spectrum` or
        :func:`zonal_spectrum` (its attrs kept).
    dim : str
        Its spectral dim (``"wavenumber"`` or ``"zonal_wavenumber"``).

    Returns
    -------
    ndarray of bool or None
        One flag per bin along ``dim`` (``wavenumber <= complete_wavenumber`` up to
        round-off); ``None`` for a 2-D spectrum without the attribute (attrs dropped, or a
        spectrum from elsewhere).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> cells = np.arange(16.0)
    >>> field = xr.DataArray(np.random.default_rng(0).normal(size=(16, 16)), dims=("y", "x"),
    ...                      coords={"y": cells, "x": cells})
    >>> spec = power_spectrum(field, method="fft")
    >>> keep = complete_bins(spec, "wavenumber")
    >>> int(keep.sum()), spec.sizes["wavenumber"]
    (8, 11)
    >>> fitted_bins = spec.isel(wavenumber=keep)
    """
    if dim == "zonal_wavenumber":
        return np.ones(spec.sizes[dim], dtype=bool)
    top = _complete_wavenumber(spec)
    if top is None or dim not in spec.coords:
        return None
    k = np.asarray(spec[dim].values, dtype=float)
    return k <= top * (1.0 + SAME_BINS_RTOL)


@keyword_hints
def log_spectral_distance(
    pred: XarrayLike,
    ref: XarrayLike,
    *,
    dim: Hashable | None = None,
    bins: Literal["complete", "all"] = "complete",
) -> XarrayLike:
    """Log-spectral distance ``10 sqrt(mean_k log10(P_pred / P_ref)^2)`` in dB.

    The mean runs over the spectral ``dim`` (default ``wavenumber`` or ``zonal_wavenumber``);
    other dims are kept. By default (``bins="complete"``) it runs over the complete annuli
    only, the bins up to ``ref.attrs["complete_wavenumber"]`` (:func:`power_spectrum`: the
    smaller axis' highest mode, the Nyquist wavenumber for the FFT): the partly filled
    corner bins beyond it hold almost no variance but would weigh as much as any other
    (53 of the 181 FFT bins of a 256 x 256 box). Zonal spectra are complete in every bin.
    0 dB for identical spectra; a constant factor 10 in power gives 10 dB.
    Bins where either spectrum is NaN, or both are zero (a constant field), are skipped (two
    spectra without power in any bin, those of two constant fields, are 0 dB apart); a bin
    where only one of them has no power is infinitely far (the distance is ``inf``), so a
    prediction that lacks whole scales is never scored as close. Spectra in other units are a
    :class:`~flexdownscale.errors.UnitsError`, as in :func:`spectral_ratio`.

    Parameters
    ----------
    pred, ref : DataArray or Dataset
        Spectra from :func:`power_spectrum` or :func:`zonal_spectrum`, same units.
    dim : str, optional
        The spectral dim; default None: ``wavenumber`` or ``zonal_wavenumber``.
    bins : {"complete", "all"}, default "complete"
        The bins averaged over: the complete annuli, or every bin (the definition before
        flexdownscale's complete-annuli rule, with the partly filled corners).

    Returns
    -------
    DataArray or Dataset
        The other dims only; ``units`` ``"dB"``; ``attrs["lsd_bins"]`` says which bins
        were used.

    Warns
    -----
    FlexDownscaleWarning
        With ``bins="complete"``, when ``ref`` (and ``pred``) have no
        ``complete_wavenumber`` attribute (spectra from elsewhere, or whose attrs were
        dropped): every bin is used. Pass ``bins="all"`` to say that this is meant, or select
        the bins first (``spec.sel(wavenumber=slice(None, k_max))``).

    Examples
    --------
    A field ``sqrt(10)`` times too strong has ten times the power at every wavenumber, 10 dB
    from the truth's spectrum; a field is 0 dB from itself:

    >>> import numpy as np, xarray as xr
    >>> cells = np.arange(16.0)
    >>> truth = xr.DataArray(np.random.default_rng(0).normal(size=(16, 16)), dims=("y", "x"),
    ...                      coords={"y": cells, "x": cells})
    >>> ref = power_spectrum(truth)
    >>> round(float(log_spectral_distance(power_spectrum(np.sqrt(10) * truth), ref)), 6)
    10.0
    >>> float(log_spectral_distance(ref, ref))
    0.0

    Only the complete annuli count: a prediction wrong in the corner bins alone is 0 dB away
    unless ``bins="all"``:

    >>> corners = ref.where(ref.wavenumber <= ref.attrs["complete_wavenumber"], 10 * ref)
    >>> float(log_spectral_distance(corners, ref))
    0.0
    >>> log_spectral_distance(corners, ref, bins="all").attrs["lsd_bins"]
    'all bins'
    """
    check_option("bins", bins, ("complete", "all"))
    pred, ref, d = _paired_spectra(pred, ref, dim, dim_of=ref)
    used = "all bins"
    if bins == "complete":
        keep = complete_bins(ref, d)
        if keep is None:
            keep = complete_bins(pred, d)
        if keep is None:
            warnings.warn(
                f"log_spectral_distance: the spectra carry no 'complete_wavenumber' attribute "
                f"(not from power_spectrum, or their attrs were dropped), so the mean runs over "
                f"all their {ref.sizes[d]} bins, the partly filled corners of a 2-D spectrum "
                "included; pass bins='all' to mean that, or select the complete bins first "
                f"(spec.sel({d}=slice(None, k_max)))",
                FlexDownscaleWarning,
                stacklevel=user_stacklevel(),
            )
        elif not keep.all():
            top = float(np.asarray(ref[d].values, dtype=float)[keep][-1]) if keep.any() else 0.0
            pred, ref = pred.isel({d: keep}), ref.isel({d: keep})
            used = f"complete annuli: {int(keep.sum())} bins, {d} <= {top:.6g}"
        else:
            used = f"complete annuli: all {keep.size} bins"
    ok = (pred > 0) | (ref > 0)  # both zero: the two agree there, nothing to compare
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(pred.where(ok) / ref.where(ok))
    out = 10.0 * np.sqrt((ratio**2).mean(d, skipna=True))
    # Two spectra with no power in any bin (two constant fields) agree exactly: 0 dB, not the
    # NaN of an empty mean; spectra that are NaN in every bin stay NaN.
    all_silent = ((pred == 0) & (ref == 0)).any(d) & ~ok.any(d)
    out = out.where(~all_silent, 0.0)
    return set_attrs(out, ref, units="dB", long_name="log-spectral distance", lsd_bins=used)


@keyword_hints
def spread_skill_spectrum(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    member_dim: Hashable = "member",
    dims: Sequence[Hashable] | Hashable | None = None,
    spacing: float | Mapping[Hashable, float] | None = None,
    spacing_units: str = "m",
    method: Method | None = None,
    detrend: Detrend = "constant",
    window: Window = None,
    correction: Literal["fortin", "unbiased"] | None = "fortin",
    include_components: bool = False,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    kind: Literal["isotropic", "zonal"] = "isotropic",
    lat_dim: Hashable | None = None,
    lon_dim: Hashable | None = None,
) -> XarrayLike:
    """Spread-skill ratio per wavenumber: is the ensemble's spread right at every scale?

    The ensemble's deviations from its mean and the ensemble mean's error are taken to
    spectral space with :func:`power_spectrum` (same grid, method, detrending and window), so
    that at each wavenumber ``k``::

        spread(k) = sum_i E[x_i - xbar](k) / (M - 1)     (the member variance, ddof=1, of
                                                          the modes in the annulus of k)
        error(k)  = E[xbar - y](k)                        (the ensemble mean's error power)

    averaged over ``reduce_dims`` (default: every dim but the spectral one; time steps,
    variables' samples), and the ratio is formed as :func:`spread_skill_ratio` forms it from
    variances: ``sqrt(spread (M + 1) / M / error)`` (``correction="fortin"``, default),
    ``sqrt(spread / (error - spread / M))`` (``"unbiased"``) or ``sqrt(spread / error)``
    (``None``, raw). Every step before the power is linear in the fields, so for members
    and truth exchangeable at a scale (a reliable ensemble there) the Fortin ratio is 1 at
    that ``k``, whatever the method or window; below 1 the ensemble is under-dispersed at
    that scale (too confident), above 1 over-dispersed. A point-wise
    :func:`spread_skill_ratio` pools all scales, so an ensemble over-dispersed at small
    scales and under-dispersed at large ones can score 1 there; this one tells them apart.

    With ``method="fft"`` and no window, Parseval's identity links the two: the sums of
    ``spread(k) dk`` and ``error(k) dk`` over every bin are the mean member variance and
    mean squared error of the fields with each field's spatial mean removed (their
    :func:`spread_skill_ratio` over space and samples). The bins beyond
    ``attrs["complete_wavenumber"]`` are partly filled annuli (kept, as in
    :func:`power_spectrum`); read the ratio up to it.

    On a global grid pass ``kind="zonal"``: the spectra are then :func:`zonal_spectrum`'s,
    along each latitude circle, per zonal wavenumber ``j`` (cycles per circle). Their
    density ``E_j = C P_j`` carries the circle's length ``C = 2 pi R cos(lat)``, so the
    default average over latitudes weights each latitude by its area, and Parseval holds
    per circle: the sums over ``j`` of ``spread`` and ``error`` over ``2 pi R`` are the
    area-weighted (``cos(lat)``) member variance and squared error of the fields with each
    circle's zonal mean removed. Keep ``preserve_dims=<latitude>`` for a ratio per latitude.

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with ``member_dim`` (at least 2 members) and the spatial ``dims``, each in
        one dask chunk.
    obs : DataArray or Dataset
        Truth on the same grid, without ``member_dim``, same ``units``.
    member_dim : str, default "member"
        Name of the member dim.
    dims, spacing, spacing_units, method, detrend, window
        ``kind="isotropic"`` only: as :func:`power_spectrum`; ``method=None`` is
        :func:`default_method` of ``obs``.
    correction : {"fortin", "unbiased", None}, default "fortin"
        As :func:`spread_skill_ratio`.
    include_components : bool, default False
        Add a ``component`` dim with ``ratio``, ``spread`` (the spectral member variance) and
        ``error`` (the ensemble mean's error spectrum), the last two power spectral densities
        in the units of :func:`power_spectrum` (the ``units`` attr is then left out).
    reduce_dims, preserve_dims : str or sequence of str, optional
        The dims (other than the spectral one) averaged over, or kept; default: average over
        all. A NaN anywhere in a sample's field makes its spectra NaN; such samples are left
        out of both averages.
    kind : {"isotropic", "zonal"}, default "isotropic"
        The isotropic 2-D spectrum of a limited-area or periodic grid, or the zonal spectra
        along the latitude circles of a global grid.
    lat_dim, lon_dim : str, optional
        ``kind="zonal"`` only: the latitude and longitude dims; default None: found from CF
        attrs or names.

    Returns
    -------
    DataArray or Dataset
        Dim ``wavenumber`` (with ``wavelength``; ``zonal_wavenumber`` for ``kind="zonal"``)
        and the preserved dims; ``units`` ``"1"``; the spectrum's attrs (method, ``dk``,
        ``complete_wavenumber``) and ``spread_skill_correction``.

    Raises
    ------
    EnsembleError
        Fewer than 2 members, no ``member_dim`` in ``fcst``, or one in ``obs``.
    UnitsError
        ``fcst`` and ``obs`` in different units.
    GridError
        ``kind="zonal"`` on a grid that is not global in degrees (as :func:`zonal_spectrum`).
    ConfigError
        An isotropic-only option (``dims``, ``spacing``, ``method``, ``window``, a
        ``detrend`` or ``spacing_units`` other than the default) passed with
        ``kind="zonal"``, or ``lat_dim`` / ``lon_dim`` with ``kind="isotropic"``.

    Examples
    --------
    Members and truth drawn alike (a reliable ensemble) give about 1 at every wavenumber;
    members with twice the deviations give about 2:

    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> cells = np.arange(32.0)
    >>> draw = rng.normal(size=(9, 200, 32, 32))  # 8 members and the truth, 200 times
    >>> ens = xr.DataArray(draw[:8], dims=("member", "time", "y", "x"),
    ...                    coords={"y": cells, "x": cells})
    >>> truth = xr.DataArray(draw[8], dims=("time", "y", "x"), coords={"y": cells, "x": cells})
    >>> ratio = spread_skill_spectrum(ens, truth)
    >>> bool(abs(ratio - 1).max() < 0.1)
    True
    >>> wide = ens.mean("member") + 2 * (ens - ens.mean("member"))
    >>> bool(abs(spread_skill_spectrum(wide, truth) - 2).max() < 0.2)
    True
    """
    check_option("correction", correction, ("fortin", "unbiased", None))
    check_option("kind", kind, ("isotropic", "zonal"))
    fcst = check_xarray(fcst, "fcst")
    obs = check_xarray(obs, "obs")
    m = check_member_dim(fcst, obs, member_dim)
    _check_spread_members(m, member_dim)
    fcst, obs = align_exact(fcst, obs, names=("fcst", "obs"))
    check_same_units(fcst, obs)
    sdim = "zonal_wavenumber" if kind == "zonal" else "wavenumber"
    spectrum = _spectrum_for(
        obs,
        kind,
        dims=dims,
        spacing=spacing,
        spacing_units=spacing_units,
        method=method,
        detrend=detrend,
        window=window,
        lat_dim=lat_dim,
        lon_dim=lon_dim,
    )

    # half precision in float32, the mean summed in float64 (float16 steps by 0.25 K at 280 K)
    fcst, obs = as_working_float(fcst), as_working_float(obs)
    mean = member_mean(fcst, member_dim, skipna=False)  # a NaN member leaves the sample out
    error = spectrum(mean - obs)
    spread = spectrum(fcst - mean).sum(member_dim, skipna=False) / (m - 1)
    grid_attrs = {k: v for k, v in error.attrs.items() if k not in ("units", "long_name")}
    if isinstance(error, xr.Dataset):  # every variable's grid is the Dataset's (one grid)
        grid_attrs = dict(error.attrs)
    spread, error = xr.broadcast(spread, error)
    valid = spread.notnull() & error.notnull()
    spread, error = spread.where(valid), error.where(valid)
    red = resolve_reduce_dims(
        tuple(d for d in error.dims if d != sdim),
        reduce_dims=reduce_dims,
        preserve_dims=preserve_dims,
    )
    spread = spread.mean(red, skipna=True)
    error = error.mean(red, skipna=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        if correction == "fortin":
            ratio = np.sqrt(spread * (m + 1) / m / error)
        elif correction == "unbiased":
            ratio = np.sqrt(spread / (error - spread / m))
        else:
            ratio = np.sqrt(spread / error)
    attrs = {
        **grid_attrs,
        "long_name": "spread-skill ratio per wavenumber",
        "spread_skill_correction": str(correction),
    }
    if include_components:
        ratio = xr.concat(
            [ratio, spread, error],
            dim="component",
            coords="minimal",
            compat="override",
            join="exact",
        ).assign_coords(component=["ratio", "spread", "error"])
    out = set_attrs(ratio, obs, units=None if include_components else "1", **attrs)
    if isinstance(out, xr.Dataset):
        out.attrs = dict(grid_attrs)
    return out
