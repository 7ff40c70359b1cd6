"""Bad input gives a clear typed error (or the documented NaN with a warning): one table."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from metrics_helpers import grid_field

from flexdownscale.errors import (
    ConfigError,
    EnsembleError,
    FlexDownscaleError,
    GridError,
    MissingVariableError,
    ShapeError,
    UndefinedMetricWarning,
    UnitsError,
    WeightsError,
)
from flexdownscale.metrics import (
    area_weights,
    crps_ensemble,
    pearson_r,
    power_spectrum,
    psnr,
    rank_histogram,
    rmse,
    spread_skill_ratio,
    ssim,
    zonal_spectrum,
)

FC = grid_field((4, 6, 8), ("time", "lat", "lon"), seed=1)
OBS = grid_field((4, 6, 8), ("time", "lat", "lon"), seed=2)
ENS = FC.expand_dims(member=3).copy() + xr.DataArray([0.0, 1.0, -1.0], dims="member")
W = np.cos(np.deg2rad(FC.lat))


def _neg_weights():
    return W.copy(data=np.r_[-1.0, W.values[1:]])


def _nan_weights():
    return W.copy(data=np.r_[np.nan, W.values[1:]])


TABLE = [
    # (id, call, error, message fragment)
    ("size mismatch", lambda: rmse(FC, OBS.isel(lat=slice(0, 5))), ShapeError, "size of dim 'lat'"),
    (
        "coord mismatch",
        lambda: rmse(FC, OBS.assign_coords(lat=OBS.lat + 0.1)),
        ShapeError,
        "different 'lat' coordinates",
    ),
    # an empty selection scored NaN silently
    (
        "empty time",
        lambda: rmse(FC.isel(time=slice(0, 0)), OBS.isel(time=slice(0, 0))),
        ShapeError,
        "no values along 'time' (size 0)",
    ),
    (
        "empty after inner align",
        lambda: rmse(*xr.align(FC, OBS.assign_coords(time=OBS.time + 10), join="inner")),
        ShapeError,
        "no values along 'time' (size 0)",
    ),
    (
        "empty crps",
        lambda: crps_ensemble(ENS.isel(lat=slice(0, 0)), OBS.isel(lat=slice(0, 0))),
        ShapeError,
        "no values along 'lat' (size 0)",
    ),
    (
        "empty spread-skill",
        lambda: spread_skill_ratio(ENS.isel(lon=slice(0, 0)), OBS.isel(lon=slice(0, 0))),
        ShapeError,
        "no values along 'lon' (size 0)",
    ),
    (
        "empty rank histogram",
        lambda: rank_histogram(ENS.isel(time=slice(0, 0)), OBS.isel(time=slice(0, 0))),
        ShapeError,
        "no values along 'time' (size 0)",
    ),
    (
        "no members",
        lambda: crps_ensemble(ENS.isel(member=slice(0, 0)), OBS),
        EnsembleError,
        "fcst has no members",
    ),
    ("missing member dim", lambda: crps_ensemble(FC, OBS), EnsembleError, "no member dim 'member'"),
    ("member dim in obs", lambda: crps_ensemble(ENS, ENS), EnsembleError, "obs has the member dim"),
    (
        "wrong member name",
        lambda: spread_skill_ratio(ENS, OBS, member_dim="ens"),
        EnsembleError,
        "member_dim",
    ),
    (
        "one member spread",
        lambda: spread_skill_ratio(ENS.isel(member=[0]), OBS),
        EnsembleError,
        "at least 2",
    ),
    ("negative weights", lambda: rmse(FC, OBS, weights=_neg_weights()), WeightsError, "negative"),
    ("NaN weights", lambda: crps_ensemble(ENS, OBS, weights=_nan_weights()), WeightsError, "NaN"),
    (
        "infinite weights",
        lambda: rmse(FC, OBS, weights=W.copy(data=np.r_[np.inf, W.values[1:]])),
        WeightsError,
        "1 infinite value",
    ),
    (
        "infinite dask weights",
        lambda: rmse(FC, OBS, weights=W.copy(data=np.r_[np.inf, W.values[1:]]).chunk()).compute(),
        WeightsError,
        "infinite",
    ),
    ("numpy weights", lambda: rmse(FC, OBS, weights=W.values), WeightsError, "DataArray"),
    (
        "weights extra dim",
        lambda: rmse(FC, OBS, weights=W.rename(lat="y")),
        WeightsError,
        "dims ['y']",
    ),
    (
        "member weights shape",
        lambda: crps_ensemble(ENS, OBS, member_weights=[1.0, 2.0]),
        WeightsError,
        "shape (3,)",
    ),
    (
        "negative member weights",
        lambda: crps_ensemble(ENS, OBS, member_weights=[1.0, -2.0, 1.0]),
        WeightsError,
        "negative",
    ),
    (
        "weights on members",
        lambda: crps_ensemble(ENS, OBS, weights=xr.ones_like(ENS.member, dtype=float)),
        WeightsError,
        "member_weights",
    ),
    (
        "spread-skill weights on members",
        lambda: spread_skill_ratio(ENS, OBS, weights=xr.ones_like(ENS, dtype=float)),
        WeightsError,
        "must not vary across members",
    ),
    (
        "rank histogram weights on members",
        lambda: rank_histogram(ENS, OBS, weights=xr.ones_like(ENS.member, dtype=float)),
        WeightsError,
        "must not vary across members",
    ),
    (
        "reduce and preserve",
        lambda: rmse(FC, OBS, reduce_dims="time", preserve_dims="lat"),
        ConfigError,
        "only one",
    ),
    ("unknown reduce dim", lambda: rmse(FC, OBS, reduce_dims="level"), ConfigError, "'level'"),
    (
        "member as reduce dim",
        lambda: crps_ensemble(ENS, OBS, reduce_dims="member"),
        ConfigError,
        "consumes",
    ),
    (
        "bad correction",
        lambda: spread_skill_ratio(ENS, OBS, correction="wb2"),
        ConfigError,
        "correction",
    ),
    ("bad data_range", lambda: psnr(FC, OBS, data_range=-1.0), ConfigError, "data_range"),
    (
        "ssim window too big",
        lambda: ssim(FC.isel(lat=slice(0, 5)), OBS.isel(lat=slice(0, 5)), data_range=1.0),
        ShapeError,
        "window",
    ),
    (
        "rank dim taken",
        lambda: rank_histogram(ENS.rename(time="rank"), OBS.rename(time="rank")),
        ConfigError,
        "rank",
    ),
    (
        "dataset vars differ",
        lambda: rmse(xr.Dataset({"a": FC}), xr.Dataset({"b": OBS})),
        MissingVariableError,
        "variables",
    ),
    ("spectrum method", lambda: power_spectrum(OBS, method="welch"), ConfigError, "method"),
    (
        "window with dct",
        lambda: power_spectrum(OBS, method="dct", window="hann"),
        ConfigError,
        "FFT",
    ),
    ("zonal on regional", lambda: zonal_spectrum(OBS), GridError, "full circle"),
    ("not xarray", lambda: pearson_r(FC.values, OBS), TypeError, "xarray"),
    (
        "no grid dims",
        lambda: area_weights(xr.DataArray(np.zeros((3, 4)), dims=("a", "b"))),
        GridError,
        "dims=",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "fragment"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_bad_input_table(call, error, fragment):
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)
    if error is not TypeError:
        assert isinstance(info.value, FlexDownscaleError)


def test_a_kept_empty_dim_is_an_empty_score_not_an_error():
    # only the dims averaged over must have values: preserving an empty dim returns it empty
    out = rmse(FC.isel(time=slice(0, 0)), OBS.isel(time=slice(0, 0)), preserve_dims="time")
    assert out.sizes == {"time": 0}


def test_documented_nan_with_warning():
    # a point with one valid member: fair CRPS NaN + RuntimeWarning; ecdf |x - y|
    ens = ENS.copy()
    ens[1:, 0, 0, 0] = np.nan
    with pytest.warns(UndefinedMetricWarning, match="only one ensemble member"):
        fair = crps_ensemble(ens, OBS, preserve_dims="all")
    assert np.isnan(fair.values[0, 0, 0])
    assert np.isfinite(fair.values[1:]).all()
    ecdf = crps_ensemble(ens, OBS, fair=False, preserve_dims="all")
    assert float(ecdf[0, 0, 0]) == pytest.approx(abs(float(ens[0, 0, 0, 0] - OBS[0, 0, 0])))


# --------------------------------------------------------------------------------------------
# units: fcst and obs in different units are an error, not a score
# --------------------------------------------------------------------------------------------


def _in(units: str, field: xr.DataArray = FC) -> xr.DataArray:
    return field.assign_attrs(units=units)


@pytest.mark.parametrize(
    "score",
    [
        lambda f, o: rmse(f, o),
        lambda f, o: psnr(f, o, data_range=1.0),
        lambda f, o: pearson_r(f, o),
        lambda f, o: crps_ensemble(f.expand_dims(member=3) + ENS.member * 0.1, o),
        lambda f, o: spread_skill_ratio(f.expand_dims(member=3) + ENS.member * 0.1, o),
        lambda f, o: rank_histogram(f.expand_dims(member=3) + ENS.member * 0.1, o),
    ],
    ids=["rmse", "psnr", "pearson_r", "crps", "spread_skill", "rank_histogram"],
)
def test_scores_refuse_fcst_and_obs_in_other_units(score):
    with pytest.raises(UnitsError, match=r"'K' but obs is in 'degC'.*\+ 273\.15") as err:
        score(_in("K"), _in("degC", OBS))
    assert isinstance(err.value, FlexDownscaleError)


def test_units_are_compared_as_units_not_strings():
    # the same unit spelled differently scores as before; absent units are not checked
    expected = float(rmse(FC, OBS))
    assert float(rmse(_in("K"), _in("kelvin", OBS))) == expected
    assert float(rmse(_in("m s**-1"), _in("m/s", OBS))) == expected
    assert float(rmse(_in("K"), OBS)) == expected
    assert rmse(_in("K"), OBS).attrs["units"] == "K"


def test_units_error_for_units_that_do_not_convert_and_per_dataset_variable():
    with pytest.raises(UnitsError, match=r"'K' but obs is in 'm s-1'; .*not the same kind of"):
        rmse(_in("K"), _in("m s-1", OBS))
    fc = xr.Dataset({"t2m": _in("K"), "u10": _in("m s-1")})
    ob = xr.Dataset({"t2m": _in("K", OBS), "u10": _in("km h-1", OBS)})
    with pytest.raises(UnitsError, match=r"variable 'u10'.*x 0\.2777"):
        rmse(fc, ob)
    assert float(rmse(fc, ob.assign(u10=ob.u10.assign_attrs(units="m s-1"))).u10) > 0


def test_a_dataset_against_a_dataarray_checks_every_variable():
    """xarray scores a DataArray against every variable of a Dataset; the units check did not
    run for that pair, so a field in degC scored an error of 273 K against one in K."""
    in_celsius = xr.Dataset({"t2m": _in("degC")})
    with pytest.raises(UnitsError, match=r"variable 't2m': fcst is in 'degC' but obs is in 'K'"):
        rmse(in_celsius, _in("K", OBS))
    with pytest.raises(UnitsError, match=r"variable 't2m': fcst is in 'K' but obs is in 'degC'"):
        crps_ensemble(
            _in("K").expand_dims(member=3) + ENS.member * 0.1, xr.Dataset({"t2m": _in("degC", OBS)})
        )
    same = xr.Dataset({"t2m": _in("kelvin")})
    # The same squares, summed in another order: xarray 2025.11 reduces a Dataset over all its
    # dims with axis=None, which takes bottleneck's running sum, and a DataArray over a list of
    # dims with numpy's pairwise sum (1.2726893213795938 against 1.272689321379594 at the
    # floors). Any order of n additions is within n eps of the exact sum (and the sqrt halves
    # that), so agreement within FC.size eps is the same score.
    expected = float(rmse(FC, OBS))
    assert float(rmse(same, _in("K", OBS)).t2m) == pytest.approx(
        expected, rel=FC.size * np.finfo(np.float64).eps
    )


def test_energy_spectrum_and_skill_summary_refuse_mixed_units():
    from flexdownscale.metrics import downscaling_skill, kinetic_energy_spectrum

    u = grid_field((2, 16, 16), ("time", "lat", "lon"), seed=3).assign_attrs(units="m s-1")
    with pytest.raises(UnitsError, match=r"u is in 'm s-1' but v is in 'km h-1'"):
        kinetic_energy_spectrum(u, u.assign_attrs(units="km h-1"))
    with pytest.raises(UnitsError, match=r"pred is in 'degC' but truth is in 'K'"):
        downscaling_skill(u.assign_attrs(units="degC"), u.assign_attrs(units="K"))
