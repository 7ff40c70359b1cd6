"""The coarse-cell constraint of ``Downscaler.__call__(conserve=...)``: each member's area mean
over every coarse cell is the input's value, eager, lazy, tiled, in a bbox, per variable, from
the accessor and the command line; multiplicative keeps dry cells dry (real radar rain)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_pipeline import FACTOR, era5_pair, make_downscaler

from flexdownscale.cli import main
from flexdownscale.data import degrade, grid_spec, normalize_grid
from flexdownscale.errors import ConfigError, FlexDownscaleWarning

RADAR = Path("radar") / "bom_mtstapylton_prcp10min_2020-10-31.nc"
KOLMOGOROV = Path("kolmogorov") / "kf_re1000.nc"
MODES = ("additive", "multiplicative")


def _coarse_error(out: xr.Dataset, coarse: xr.Dataset, name: str) -> float:
    """Largest relative difference between ``degrade(out)`` and ``coarse`` (per member)."""
    got = degrade(out[name], FACTOR).values.astype(np.float64)
    want = coarse[name].values.astype(np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))


@pytest.fixture(scope="module")
def pair(shared_data):
    return era5_pair(shared_data)


@pytest.fixture(scope="module")
def downscaler(pair):
    return make_downscaler(pair[0])


@pytest.fixture(scope="module")
def radar(shared_data):
    """(tiny log1p model, coarse rain with dry cells): 64 x 64 fine cells of the radar at
    03:00 (half of them wet), coarse = area mean x4, one more coarse cell set dry by hand."""
    with xr.open_dataset(shared_data / RADAR) as ds:
        fine = ds[["precipitation"]].isel(time=[18], y=slice(224, 288), x=slice(224, 288))
        fine = normalize_grid(fine.load())
    model = make_downscaler(
        fine,
        variables=["precipitation"],
        units={"precipitation": "kg m-2"},
        name="tiny-conserve",
        transforms={"precipitation": "log1p"},
    )
    coarse = degrade(fine, FACTOR)
    values = coarse["precipitation"].values.copy()
    values[0, 8, 8] = 0.0
    coarse["precipitation"] = coarse["precipitation"].copy(data=values)
    coarse["precipitation"].attrs = dict(fine["precipitation"].attrs)
    return model, coarse


def test_both_modes_hold_the_constraint_eager_lazy_and_tiled(pair, downscaler):
    """degrade(out) equals the input to float32 rounding in both modes; chunked input gives
    the same numbers; small tiles are constrained on the assembled field; additive keeps each
    member's spread within a coarse cell; the input is not modified."""
    from flexdownscale.pipeline import _conserve_coarse_cells

    _, coarse = pair
    before = coarse.copy(deep=True)
    free = downscaler(coarse, members=2, seed=1)
    assert _coarse_error(free, coarse, "t2m") > 1e-3  # the model alone does not hold it
    for mode in MODES:
        out = downscaler(coarse, members=2, seed=1, conserve=mode)
        assert _coarse_error(out, coarse, "t2m") < 1e-6
        assert out.attrs["flexdownscale_conserve"] == mode
        lazy = downscaler(coarse.chunk(time=1), members=2, seed=1, conserve=mode)
        assert lazy["t2m"].chunks is not None
        np.testing.assert_array_equal(lazy["t2m"].values, out["t2m"].values)
        tiled = downscaler(coarse, members=2, seed=1, conserve=mode, tile=16, overlap=8)
        assert tiled.attrs["flexdownscale_tiles"] > 1
        assert _coarse_error(tiled, coarse, "t2m") < 1e-6
        plain = downscaler(coarse, members=2, seed=1, tile=16, overlap=8)
        # the same constraint on the tiles' assembled field; latitude-longitude rows weigh
        # their areas, sin(upper) - sin(lower), proportional to cos(latitude) on even rows
        weights = np.cos(np.deg2rad(plain["latitude"].values))
        expected = np.stack(
            [
                _conserve_coarse_cells(
                    plain["t2m"].values[:, t, None].astype(np.float64),
                    coarse["t2m"].values[t, None].astype(np.float64),
                    FACTOR,
                    [mode],
                    weights,
                )[0][:, 0]
                for t in range(coarse.sizes["time"])
            ],
            axis=1,
        )
        np.testing.assert_allclose(tiled["t2m"].values, expected, rtol=0, atol=1e-4)
    xr.testing.assert_identical(coarse, before)
    # additive: each cell's fine anomalies (from the cell's mean) are the model's own
    add = downscaler(coarse, members=2, seed=1, conserve="additive")

    def anomaly(da: xr.DataArray) -> np.ndarray:
        v = da.values.astype(np.float64)
        mean = degrade(da, FACTOR).values.astype(np.float64)
        return v - np.repeat(np.repeat(mean, FACTOR, axis=-2), FACTOR, axis=-1)

    np.testing.assert_allclose(anomaly(add["t2m"]), anomaly(free["t2m"]), atol=1e-3)


def test_default_is_unchanged(pair, downscaler):
    """conserve=None is the call without it, values and attributes (no conserve attribute)."""
    _, coarse = pair

    def run(**kwargs: object) -> xr.Dataset:  # without the history line's time stamp
        out = downscaler(coarse, members=2, seed=3, **kwargs)
        out.attrs["history"] = out.attrs["history"].split(": ", 1)[1]
        return out

    out = run()
    xr.testing.assert_identical(run(conserve=None), out)
    assert "flexdownscale_conserve" not in out.attrs
    xr.testing.assert_identical(run(conserve={"t2m": None}), out)


def test_bbox_constrains_the_cells_returned(pair, downscaler):
    """With a bbox (its halo cropped off), the returned cells degrade to the bbox's cells."""
    _, coarse = pair
    bbox = (-8.6, 51.4, -6.4, 53.6)
    inside = coarse.sel(longitude=slice(bbox[0], bbox[2]), latitude=slice(bbox[1], bbox[3]))
    for mode in MODES:
        out = downscaler(coarse, members=2, seed=1, bbox=bbox, conserve=mode)
        assert out.sizes["latitude"] == inside.sizes["latitude"] * FACTOR
        assert out.sizes["longitude"] == inside.sizes["longitude"] * FACTOR
        assert _coarse_error(out, inside, "t2m") < 1e-6


def test_multiplicative_keeps_dry_cells_dry(radar):
    """Real radar rain with a log1p model: unconstrained, the clip at 0 makes dry coarse cells
    wet and adds mass; multiplicative gives exact zeros there, no negative value and the
    coarse values; additive holds the means too (it may go below 0)."""
    model, coarse = radar
    before = coarse.copy(deep=True)
    rain = coarse["precipitation"].values
    dry = rain == 0
    assert 20 < dry.sum() < dry.size - 20  # both dry and wet coarse cells
    free = model(coarse, members=3, seed=2)
    wet_in_dry = (degrade(free["precipitation"], FACTOR).values > 0) & dry
    assert wet_in_dry.sum() > 0.9 * 3 * dry.sum()
    assert free["precipitation"].values.min() >= 0

    out = model(coarse, members=3, seed=2, conserve="multiplicative")
    values = out["precipitation"].values
    assert values.min() >= 0
    blocks = np.repeat(np.repeat(dry, FACTOR, axis=-2), FACTOR, axis=-1)
    blocks = np.broadcast_to(blocks, values.shape)
    assert np.all(values[blocks] == 0)
    assert np.all(degrade(out["precipitation"], FACTOR).values[:, dry] == 0)
    got = degrade(out["precipitation"], FACTOR).values.astype(np.float64)
    np.testing.assert_allclose(got, np.broadcast_to(rain, got.shape), rtol=1e-5, atol=1e-7)
    lazy = model(coarse.chunk(time=1), members=3, seed=2, conserve="multiplicative")
    np.testing.assert_array_equal(lazy["precipitation"].values, values)

    add = model(coarse, members=3, seed=2, conserve="additive")
    got = degrade(add["precipitation"], FACTOR).values.astype(np.float64)
    np.testing.assert_allclose(got, np.broadcast_to(rain, got.shape), rtol=1e-5, atol=1e-6)
    xr.testing.assert_identical(coarse, before)


def test_multiplicative_fallback_where_the_sample_is_dry():
    """A coarse cell > 0 whose fine values are all 0 gets the coarse value spread evenly (the
    additive correction); a coarse 0 zeroes its cell; a negative block mean is shifted."""
    from flexdownscale.pipeline import _conserve_coarse_cells

    fine = np.zeros((2, 1, 4, 4))
    fine[0, 0, :2, 2:] = [[1.0, 2.0], [3.0, 2.0]]  # member 0, cell (0, 1): mean 2
    fine[1, 0, 2:, :2] = 5.0  # member 1, cell (1, 0): wet where the input is dry
    coarse = np.array([[[3.0, 4.0], [0.0, 0.0]]])
    out, signed = _conserve_coarse_cells(fine, coarse, 2, ["multiplicative"])
    assert signed.tolist() == [0]
    np.testing.assert_array_equal(out[0, 0, :2, :2], np.full((2, 2), 3.0))  # spread evenly
    np.testing.assert_array_equal(out[0, 0, :2, 2:], [[2.0, 4.0], [6.0, 4.0]])  # x 4 / 2
    np.testing.assert_array_equal(out[1, 0, 2:, :2], np.zeros((2, 2)))  # dry stays dry
    np.testing.assert_array_equal(out[1, 0, :2, :2], np.full((2, 2), 3.0))
    negative, signed = _conserve_coarse_cells(-fine, coarse, 2, ["multiplicative"])
    # mean -2 < 0 < 4: shifted by 6, not scaled by -2; member 1's wet cell under a dry input
    # is negative here: shifted to 0 too
    np.testing.assert_array_equal(negative[0, 0, :2, 2:], [[5.0, 4.0], [3.0, 4.0]])
    np.testing.assert_array_equal(negative[1, 0, 2:, :2], np.zeros((2, 2)))
    assert signed.tolist() == [2]
    assert out is not fine  # a new array: the input keeps its values
    assert fine[1, 0, 2, 0] == 5.0


def test_multiplicative_scales_only_values_of_one_sign():
    """A block with values of both signs is shifted, not scaled (a small positive mean made
    ratios in the hundreds); a coarse value < 0 likewise; the non-negative blocks are scaled as
    before, up to factor**2 x the coarse value (one drizzle cell in a dry block); the number of
    shifted blocks is returned per channel."""
    from flexdownscale.pipeline import _conserve_coarse_cells

    fine = np.zeros((1, 2, 4, 4))
    fine[0, 0, :2, :2] = [[-1.0, 1.0], [1.0, -0.9]]  # mean 0.025 under a coarse value of 2
    fine[0, 0, :2, 2:] = [[0.5, 1.5], [1.0, 1.0]]  # non-negative: scaled
    fine[0, 0, 2:, :2] = [[-1.0, 3.0], [0.0, 2.0]]  # coarse 0 under values of both signs
    fine[0, 0, 2:, 2:] = [[1.0, 2.0], [3.0, 2.0]]  # coarse value < 0
    fine[0, 1] = 0.0
    fine[0, 1, 0, 0] = 0.01  # drizzle in one cell of a 4 x 4 block whose coarse value is 2
    coarse = np.zeros((2, 2, 2))
    coarse[0] = [[2.0, 3.0], [0.0, -1.0]]
    out, signed = _conserve_coarse_cells(fine, coarse[:1], 2, ["multiplicative"])
    assert signed.tolist() == [3]
    add, _ = _conserve_coarse_cells(fine[:, :1], coarse[:1], 2, ["additive"])
    np.testing.assert_allclose(out[0, 0, :2, :2], add[0, 0, :2, :2])  # + 1.975, not x 80
    np.testing.assert_allclose(out[0, 0, :2, 2:], [[1.5, 4.5], [3.0, 3.0]])  # x 3
    np.testing.assert_allclose(out[0, 0, 2:, :2], [[-2.0, 2.0], [-1.0, 1.0]])  # - 1, not x 0
    np.testing.assert_allclose(out[0, 0, 2:, 2:], [[-2.0, -1.0], [0.0, -1.0]])  # - 3
    assert np.abs(out).max() < 5.0
    rain, signed = _conserve_coarse_cells(fine[:, 1:], np.full((1, 1, 1), 2.0), 4, [None])
    assert signed.tolist() == [0]
    assert rain[0, 0, 0, 0] == 0.01  # None: unchanged
    rain, signed = _conserve_coarse_cells(
        fine[:, 1:], np.full((1, 1, 1), 2.0), 4, ["multiplicative"]
    )
    assert signed.tolist() == [0]
    assert rain[0, 0, 0, 0] == pytest.approx(32.0)  # 4**2 x 2, the rest of the block 0
    assert np.count_nonzero(rain) == 1


def test_multiplicative_on_a_field_of_both_signs_warns_and_shifts(shared_data):
    """Kolmogorov vorticity (both signs): each block that the sample or the input has a
    negative value in gets the additive correction (the package before scaled them, up to
    -205 / 278 where the field lies within +-7), the others the scaling; the coarse means hold;
    one FlexDownscaleWarning names the variable, the count and conserve='additive'."""
    with xr.open_dataset(shared_data / KOLMOGOROV) as ds:
        fine = ds[["vorticity"]].isel(trajectory=3, time=[0], x=slice(0, 64), y=slice(0, 64))
        fine = normalize_grid(fine.load()).transpose("time", "y", "x")  # stored (x, y)
    fine["vorticity"].attrs["units"] = "s-1"
    model = make_downscaler(
        fine, variables=["vorticity"], units={"vorticity": "s-1"}, name="tiny-signed"
    )
    coarse = degrade(fine, FACTOR)
    coarse["vorticity"].attrs = dict(fine["vorticity"].attrs)
    kwargs = {"members": 2, "seed": 1, "steps": 2}
    free = model(coarse, **kwargs)["vorticity"]
    add = model(coarse, conserve="additive", **kwargs)["vorticity"]
    with pytest.warns(FlexDownscaleWarning) as record:
        out = model(coarse, conserve="multiplicative", **kwargs)
    mul = out["vorticity"]
    assert len(record) == 1
    message = str(record[0].message)
    assert _coarse_error(out, coarse, "vorticity") < 1e-6
    x = free.values.astype(np.float64)
    m, t, h, w = x.shape
    lowest = x.reshape(m, t, h // FACTOR, FACTOR, w // FACTOR, FACTOR).min(axis=(3, 5))
    want = coarse["vorticity"].values
    signed = (lowest < 0) | (want < 0)
    assert 0 < signed.sum() < signed.size
    assert f"{int(signed.sum())} of the {signed.size} coarse cells of 'vorticity'" in message
    assert "constrained with conserve='additive'" in message

    def blocks(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, FACTOR, axis=-2), FACTOR, axis=-1)

    shifted = blocks(signed)
    got, added = mul.values, add.values
    np.testing.assert_array_equal(got[shifted], added[shifted])
    mean = degrade(free, FACTOR).values.astype(np.float64)
    scaled = x * blocks(want / np.where(signed, 1.0, mean))
    np.testing.assert_allclose(got[~shifted], scaled[~shifted], rtol=1e-5, atol=1e-6)
    truth = float(np.abs(fine["vorticity"]).max())
    assert float(np.abs(mul).max()) < 2 * truth
    lazy = model(coarse.chunk(time=1), conserve="multiplicative", **kwargs)
    with pytest.warns(FlexDownscaleWarning, match="of 'vorticity'"):
        np.testing.assert_array_equal(lazy["vorticity"].values, mul.values)


def test_mapping_per_variable(pair):
    """A two-variable model: {'tp': 'multiplicative'} constrains tp only; t2m is the
    unconstrained call's, bit for bit; the attribute names the variable."""
    fine, coarse = pair
    fine = fine.assign(tp=np.maximum(fine["t2m"] - 279.0, 0.0).assign_attrs(units="kg m-2"))
    coarse = coarse.assign(tp=degrade(fine["tp"], FACTOR))
    model = make_downscaler(
        fine, variables=["t2m", "tp"], units={"t2m": "K", "tp": "kg m-2"}, name="tiny-conserve"
    )
    free = model(coarse, members=2, seed=1)
    out = model(coarse, members=2, seed=1, conserve={"tp": "multiplicative"})
    np.testing.assert_array_equal(out["t2m"].values, free["t2m"].values)
    assert _coarse_error(out, coarse, "tp") < 1e-6
    assert _coarse_error(free, coarse, "tp") > 1e-3
    assert out.attrs["flexdownscale_conserve"] == "tp: multiplicative"
    both = model(coarse, members=2, seed=1, conserve={"t2m": "additive", "tp": "multiplicative"})
    assert both.attrs["flexdownscale_conserve"] == "t2m: additive, tp: multiplicative"
    assert _coarse_error(both, coarse, "t2m") < 1e-6


@pytest.mark.parametrize(
    "value",
    ["mass", "Additive", True, 1, ["additive"], {"t2m": "sum"}],
)
def test_bad_values_name_the_allowed_ones(pair, downscaler, value):
    with pytest.raises(ConfigError, match="expected None, 'additive' or 'multiplicative'"):
        downscaler(pair[1], conserve=value)


def test_unknown_variable_in_the_mapping(pair, downscaler):
    match = r"conserve=\{'tp': 'additive'\} names 'tp'.*its variables are 't2m'"
    with pytest.raises(ConfigError, match=match):
        downscaler(pair[1], conserve={"tp": "additive"})


@pytest.mark.parametrize("degradation", ["gaussian", "strided", None])
def test_refused_for_a_model_whose_degradation_is_no_area_mean(pair, degradation):
    fine, coarse = pair
    model = make_downscaler(fine)
    model.grid = {**model.grid, "degradation": degradation}
    with pytest.raises(ConfigError) as info:
        model(coarse, conserve="additive")
    message = str(info.value)
    assert f"trained with degradation {degradation!r}" in message
    assert "needs a model trained with degradation 'area_mean'" in message
    assert "Leave conserve unset" in message
    model(coarse, steps=1)  # without the constraint it runs


def test_accessor_passes_it_through(pair, downscaler):
    _, coarse = pair
    out = coarse.flex.downscale(downscaler, members=2, seed=1, conserve="multiplicative")
    direct = downscaler(coarse, members=2, seed=1, conserve="multiplicative")
    xr.testing.assert_equal(out, direct)
    assert out.attrs["flexdownscale_conserve"] == "multiplicative"


def test_command_line(pair, downscaler, tmp_path, capsys):
    """--conserve on a small file: the written output holds the constraint, says so in its
    attributes and the summary; an unknown value names the choices."""
    _, coarse = pair
    coarse.to_netcdf(tmp_path / "coarse.nc")
    model = downscaler.save_pretrained(tmp_path / "model")
    args = ["downscale", str(tmp_path / "coarse.nc"), str(tmp_path / "out.nc")]
    args += ["--model", str(model), "--members", "2", "--steps", "2"]
    assert main([*args, "--conserve", "multiplicative"]) == 0
    printed = capsys.readouterr().out
    assert "conserve: multiplicative" in printed
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert out.attrs["flexdownscale_conserve"] == "multiplicative"
        assert _coarse_error(out, coarse, "t2m") < 1e-6
    with pytest.raises(SystemExit) as info:
        main([*args, "--conserve", "mass"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--conserve: invalid choice: 'mass' (choose from additive, multiplicative, or " in err


def test_command_line_per_variable(pair, tmp_path, capsys):
    """--conserve VARIABLE=MODE, comma-separated or repeated, is the Python mapping (the other
    variables unconstrained); a bare mode still means every variable; mixing the two, an
    unknown mode or an unknown variable is an error that says so in the flag's words."""
    fine, coarse = pair
    fine = fine.assign(tp=np.maximum(fine["t2m"] - 279.0, 0.0).assign_attrs(units="kg m-2"))
    coarse = coarse.assign(tp=degrade(fine["tp"], FACTOR))
    model = make_downscaler(
        fine, variables=["t2m", "tp"], units={"t2m": "K", "tp": "kg m-2"}, name="tiny-conserve"
    )
    coarse.to_netcdf(tmp_path / "coarse.nc")
    folder = model.save_pretrained(tmp_path / "model")
    args = ["downscale", str(tmp_path / "coarse.nc"), str(tmp_path / "out.nc")]
    args += ["--model", str(folder), "--members", "2", "--steps", "2", "--seed", "1"]
    free = model(coarse, members=2, steps=2, seed=1)
    runs = [
        (["--conserve", "tp=multiplicative"], "tp: multiplicative"),
        (["--conserve", "tp=multiplicative", "--conserve", "t2m=additive"], None),
        (["--conserve", "t2m=additive,tp=multiplicative"], None),
        (["--conserve", "multiplicative"], "multiplicative"),
    ]
    for flags, said in runs:
        assert main([*args, *flags]) == 0
        said = said or "t2m: additive, tp: multiplicative"
        assert f"conserve: {said} (each member's" in capsys.readouterr().out
        with xr.open_dataset(tmp_path / "out.nc") as out:
            assert out.attrs["flexdownscale_conserve"] == said
            assert _coarse_error(out, coarse, "tp") < 1e-6
            if said.startswith("tp"):  # t2m as the unconstrained call's
                np.testing.assert_array_equal(out["t2m"].values, free["t2m"].values)
            else:
                assert _coarse_error(out, coarse, "t2m") < 1e-6
    for flags, words in [
        (["additive", "--conserve", "tp=multiplicative"], "'additive', one mode for every"),
        (["tp=multiplicative", "--conserve", "additive"], "cannot be combined with modes per"),
        (["additive,tp=multiplicative"], "mixes 'additive', one mode for every variable"),
        (["tp=sum"], "invalid choice: 'tp=sum': expected VARIABLE=MODE with MODE additive"),
    ]:
        with pytest.raises(SystemExit) as info:
            main([*args, "--conserve", *flags])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "argument --conserve: " in err
        assert words in err
    assert main([*args, "--conserve", "tas=additive"]) == 2
    err = capsys.readouterr().err
    assert "error: --conserve tas=additive names 'tas', which model " in err
    assert "its variables are 't2m', 'tp'" in err


def test_periodic_axis_whole_and_bbox_across_its_seam(shared_data):
    """A band of a global grid (periodic in longitude): run whole, with a bbox across the
    dateline, and with one whose halos meet round the globe (its cells cut across the seam),
    every returned coarse cell holds its input value."""
    band = xr.open_dataset(shared_data / "era_interim" / "eraint_uv_monthly.nc")
    band = band.isel(month=0, level=2, latitude=slice(48, 64))  # 54 .. 42.75 N
    fine = normalize_grid(band[["u"]].rename(u="t2m").load())
    fine["t2m"].attrs = {"units": "K"}
    assert grid_spec(fine).periodic_x
    model = make_downscaler(fine)
    coarse = degrade(fine, FACTOR)
    coarse["t2m"].attrs = {"units": "K"}

    def worst(out: xr.Dataset) -> float:
        """Largest difference of the area means of out's blocks (in its own order, longitudes
        perhaps past 360) from the input's cells at the same places."""
        v = out["t2m"].values.astype(np.float64)  # (member, lat, lon)
        lat, lon = out["latitude"].values, out["longitude"].values
        w = np.cos(np.deg2rad(lat)).reshape(-1, FACTOR)
        m, ny, nx = v.shape
        blocks = v.reshape(m, ny // FACTOR, FACTOR, nx // FACTOR, FACTOR)
        means = np.einsum("maybx,ay->mab", blocks, w / w.sum(1, keepdims=True)) / FACTOR
        centres = (lon.reshape(-1, FACTOR).mean(1) + 180.0) % 360.0 - 180.0
        want = coarse["t2m"].sel(
            latitude=lat.reshape(-1, FACTOR).mean(1), longitude=centres, method="nearest"
        )
        return float(np.abs(means - want.values).max())

    runs = [("additive", (175.0, 44.0, 185.0, 52.0)), ("multiplicative", None)]
    runs += [(mode, (171.0, 44.0, 150.0, 52.0)) for mode in MODES]
    for mode, bbox in runs:
        if mode == "multiplicative":  # u takes both signs: those blocks are shifted, with a warning
            with pytest.warns(FlexDownscaleWarning, match="coarse cells of 't2m'"):
                out = model(coarse, members=2, seed=4, bbox=bbox, conserve=mode)
        else:
            out = model(coarse, members=2, seed=4, bbox=bbox, conserve=mode)
        if bbox is not None:
            assert out["longitude"].values[0] < 180.0 < out["longitude"].values[-1]
        assert worst(out) < 1e-5, (mode, bbox)
    free = model(coarse, members=2, seed=4, bbox=(171.0, 44.0, 150.0, 52.0))
    assert worst(free) > 1e-2


def test_lazy_call_warns_once_not_per_block(shared_data):
    """Lazy vorticity in three one-step dask blocks, each with shifted cells: one
    FlexDownscaleWarning for the call (the package before gave one per block: a year in daily
    chunks gave 365), counting the block it came from and saying so; a second compute of the
    same output is silent; the values are the eager call's."""
    with xr.open_dataset(shared_data / KOLMOGOROV) as ds:
        fine = ds[["vorticity"]].isel(trajectory=3, time=[0, 1, 2], x=slice(0, 64), y=slice(0, 64))
        fine = normalize_grid(fine.load()).transpose("time", "y", "x")
    fine["vorticity"].attrs["units"] = "s-1"
    model = make_downscaler(
        fine, variables=["vorticity"], units={"vorticity": "s-1"}, name="tiny-signed"
    )
    coarse = degrade(fine, FACTOR)
    coarse["vorticity"].attrs = dict(fine["vorticity"].attrs)
    kwargs = {"members": 2, "seed": 1, "steps": 2, "conserve": "multiplicative"}
    with pytest.warns(FlexDownscaleWarning) as eager_record:
        eager = model(coarse, **kwargs)["vorticity"]
    assert len(eager_record) == 1
    assert "first block" not in str(eager_record[0].message)
    lazy = model(coarse.chunk(time=1), **kwargs)["vorticity"]
    assert lazy.chunks is not None
    assert len(lazy.chunks[lazy.dims.index("time")]) == 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        values = lazy.compute(scheduler="synchronous").values
    shifted = [w for w in record if issubclass(w.category, FlexDownscaleWarning)]
    assert len(shifted) == 1
    message = str(shifted[0].message)
    assert re.search(r"of time steps (\d)\.\.\1 \(the first block of this lazy call", message)
    np.testing.assert_array_equal(values, eager.values)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        lazy.compute(scheduler="synchronous")
    assert not [w for w in again if issubclass(w.category, FlexDownscaleWarning)]
