"""Raise sites a user reaches with a wrong input (review 137): typed errors saying what was found
and the fix instead of asserts, plain tracebacks or messages without either; warnings pointing at
the user's line; wrong settings that were accepted silently."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from flexdownscale import config as C
from flexdownscale.diffusion import FlowMatching, sample_ddim, sample_idff
from flexdownscale.errors import ConfigError, FlexDownscaleError


def _zero(z, t, cond=None, **kwargs):
    return torch.zeros_like(z)


class _ClaimsEverySampler(FlowMatching):
    """A user's objective whose ``samplers`` list names samplers of other objectives."""

    samplers = ("euler", "heun", "ddim", "idff")


@pytest.mark.parametrize(
    ("sampler", "needs"), [(sample_ddim, "VPDiffusion"), (sample_idff, "IDFF")]
)
def test_sampler_refuses_objective_claiming_it(sampler, needs) -> None:
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ConfigError, match=needs) as info:
        sampler(_zero, x, objective=_ClaimsEverySampler(), steps=2)
    message = str(info.value)
    assert "_ClaimsEverySampler" in message
    assert "'euler', 'heun'" in message


def test_sampler_check_survives_python_O() -> None:
    """It was an ``assert``: under ``python -O`` sample_idff ran on a flow objective."""
    code = textwrap.dedent(
        """
        import torch
        from flexdownscale.diffusion import FlowMatching, sample_idff
        from flexdownscale.errors import ConfigError
        class Sneaky(FlowMatching):
            samplers = ("euler", "idff")
        try:
            sample_idff(lambda z, t, cond=None, **k: torch.zeros_like(z), torch.zeros(1, 1, 8, 8),
                        objective=Sneaky(), steps=2)
        except ConfigError:
            print("refused")
        """
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "refused"


# --- B1: run files and mappings -----------------------------------------------------------


def test_toml_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_bytes('run_dir = "r"\nsteps = 2  # T in °C\n'.encode("latin1"))
    with pytest.raises(ConfigError, match="UTF-8") as info:
        C.from_toml(C.TrainConfig, path)
    message = str(info.value)
    assert "run.toml" in message
    assert "line 2" in message
    assert "position 32" in message


def test_toml_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        C.from_toml(C.TrainConfig, tmp_path)


def test_from_dict_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"must be a mapping.*got list"):
        C.from_dict(C.TrainConfig, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the class first"):
        C.from_dict({"steps": 2}, C.TrainConfig)  # type: ignore[arg-type]


def test_typed_errors_are_flexdownscale_errors() -> None:
    with pytest.raises(FlexDownscaleError):
        C.from_dict(C.TrainConfig, "steps = 2")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.from_dict(C.TrainConfig, {"steps": 2})


# --- B2, B3, D: the Downscaler's arguments ------------------------------------------------

ERA5 = "era5/era5_t2m_uk_2019-03-01_24.nc"


@pytest.fixture(scope="module")
def coarse(shared_data: Path):
    """One ERA5 time step, 64 x 64 fine cells coarsened x4 on the shipped model's lattice."""
    import xarray as xr

    from flexdownscale.data import degrade

    ds = xr.open_dataset(shared_data / ERA5)
    fine = ds[["t2m"]].isel(time=[430], latitude=slice(0, 64), longitude=slice(0, 64))
    return degrade(fine, 4, method="area_mean", boundary="trim").load()


@pytest.fixture(scope="module")
def era5():
    from flexdownscale.pipeline import Downscaler

    return Downscaler.from_pretrained("era5-t2m-x4")


def test_resolve_sampler_options_not_a_mapping() -> None:
    from flexdownscale.config import SamplerConfig
    from flexdownscale.diffusion import resolve_sampler_options

    with pytest.raises(ConfigError, match=r"sampler_options=\{'eta': 1\}"):
        resolve_sampler_options("ddim", "eta=1", SamplerConfig(), argument="sampler_options")
    with pytest.raises(ConfigError, match=r"options=\{'delta': 1\}"):
        resolve_sampler_options("sde", [("delta", 1)], SamplerConfig())
    with pytest.raises(ConfigError, match="is a list; expected a mapping"):
        resolve_sampler_options("sde", [1], SamplerConfig())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler_options": "eta=1"}, r"sampler_options = 'eta=1' is a str.*\{'eta': 1\}"),
        ({"sampler_options": [1]}, "sampler_options = \\[1\\] is a list"),
        ({"variables": 5}, "variables = 5 is a int"),
        ({"variables": {"tas": "t2m"}}, "for a renaming pass rename="),
        ({"rename": {"t2m": 5}}, r"rename\['t2m'\] = 5 is a int"),
    ],
)
def test_downscaler_argument_types(era5, coarse, kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        era5(coarse, **kwargs)


def test_accessor_sampler_options_not_a_mapping(coarse) -> None:
    with pytest.raises(ConfigError, match="sampler_options = 'eta=1' is a str"):
        coarse.flex.downscale(model="era5-t2m-x4", sampler_options="eta=1")


def test_variables_not_in_input_names_near_ones(era5, coarse) -> None:
    from flexdownscale.errors import MissingVariableError

    with pytest.raises(MissingVariableError, match="did you mean 't2m' for 't2n'") as info:
        era5(coarse, variables=["t2n"])
    assert "leave it out" in str(info.value)


# --- B4, B5, E: the metrics' arguments, typed errors everywhere ---------------------------


def _field():
    import numpy as np
    import xarray as xr

    values = np.random.default_rng(0).normal(size=(3, 4, 5))
    values[0, 0, 0] = np.nan
    return xr.DataArray(values, dims=("time", "latitude", "longitude"), name="t2m")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduce_dims": 5}, "reduce_dims=5 is a int; expected a dimension name"),
        ({"preserve_dims": [["time"]]}, "preserve_dims=.* is a list"),
        ({"skipna": "False"}, "skipna='False' is a str; expected True or False"),
        ({"skipna": None}, "skipna=None"),
    ],
)
def test_metrics_refuse_wrong_types(kwargs, match) -> None:
    from flexdownscale import metrics

    da = _field()
    with pytest.raises(ConfigError, match=match):
        metrics.rmse(da, da, **kwargs)


def test_every_score_with_skipna_refuses_a_string() -> None:
    """One check for all of them: ``skipna='False'`` was taken as true (NaN skipped)."""
    import inspect

    from flexdownscale import metrics

    checked = []
    for name in metrics.__all__:
        func = getattr(metrics, name)
        if callable(func) and "skipna" in inspect.signature(func).parameters:
            with pytest.raises(ConfigError, match="skipna='False'"):  # checked first
                func(_field(), skipna="False")
            checked.append(name)
    assert {"rmse", "crps_ensemble", "ensemble_mean", "fss", "rank_histogram"} <= set(checked)


def test_skipna_numpy_bool_is_a_bool() -> None:
    import numpy as np

    from flexdownscale import metrics

    da = _field()
    assert np.isnan(float(metrics.rmse(da, da + 1, skipna=np.False_)))
    assert float(metrics.rmse(da, da + 1, skipna=np.True_)) == pytest.approx(1.0)


def test_not_xarray_is_one_typed_error_everywhere() -> None:
    import numpy as np

    from flexdownscale import data, metrics, plot
    from flexdownscale.errors import DataError, NotXarrayError

    calls = [
        lambda: metrics.rmse(np.zeros(3), _field()),
        lambda: plot.plot_spectra({"truth": np.zeros(4)}),
        lambda: data.degrade(np.zeros((4, 4)), 2),
    ]
    for call in calls:
        with pytest.raises(NotXarrayError, match="must be an xarray Dataset or DataArray") as info:
            call()
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, DataError)
        assert isinstance(info.value, FlexDownscaleError)


def test_downscaler_not_xarray(era5) -> None:
    import numpy as np

    from flexdownscale.errors import NotXarrayError

    with pytest.raises(NotXarrayError, match="got ndarray"):
        era5(np.zeros((4, 4)))


def test_concat_outputs_typed_errors() -> None:
    import numpy as np
    import xarray as xr

    from flexdownscale.errors import DataError
    from flexdownscale.provenance import concat_outputs

    with pytest.raises(DataError, match="no outputs to concatenate along 'start'"):
        concat_outputs([], "start")
    part = xr.Dataset({"v": ("x", np.zeros(2))}, coords={"start": 1})
    with pytest.raises(ConfigError, match="combine_attrs='override'"):
        concat_outputs([part], "start", combine_attrs="override")


def test_unit_comparison_without_conversion_says_the_fix() -> None:
    """Typed errors (UnitsError, ConfigError; still ValueErrors): units.py sits a layer above
    errors.py now, and the message says what to check first."""
    from flexdownscale.errors import ConfigError, UnitsError
    from flexdownscale.units import compare_units

    comparison = compare_units("K", "m")
    with pytest.raises(UnitsError, match=r"check \.conversion is not None"):
        comparison.rule
    with pytest.raises(UnitsError, match="'other_kind': a temperature against a length"):
        comparison.code("t2m")
    with pytest.raises(ConfigError, match=r"water_hint\('tp', form='command'"):
        compare_units("m", "kg m-2").water_hint(form="command")
    assert issubclass(UnitsError, ValueError)


# --- C: warnings point at the user's line -------------------------------------------------


def test_fair_crps_one_member_warns_at_the_callers_line() -> None:
    import numpy as np
    import xarray as xr

    from flexdownscale import metrics
    from flexdownscale.errors import UndefinedMetricWarning

    fcst = xr.DataArray(np.random.default_rng(0).random((5, 1)), dims=("point", "member"))
    obs = xr.DataArray(np.zeros(5), dims="point")
    with pytest.warns(UndefinedMetricWarning, match="one member") as record:
        metrics.crps_ensemble(fcst, obs, fair=True)
    assert record[0].filename == __file__
    values = np.random.default_rng(0).random((6, 2))
    values[:3, 1] = np.nan  # one valid member at 3 points: the kernel's warning
    two = xr.DataArray(values, dims=("point", "member"))
    obs6 = xr.DataArray(np.zeros(6), dims="point")
    with pytest.warns(UndefinedMetricWarning, match="only one ensemble member") as record:
        metrics.crps_ensemble(two, obs6)
    assert record[0].filename == __file__
    with pytest.warns(UndefinedMetricWarning, match="only one ensemble member") as record:
        metrics.crps_ensemble(two, obs6, weights=xr.ones_like(obs6))
    assert record[0].filename == __file__


def test_far_from_training_warns_at_the_callers_line(era5, coarse) -> None:
    from flexdownscale.errors import SkillWarning

    hot = coarse.assign(t2m=coarse.t2m + 60)
    with pytest.warns(SkillWarning, match="standard deviations") as record:
        era5(hot, steps=1)
    far = [w for w in record if "standard deviations" in str(w.message)]
    assert far[0].filename == __file__


# --- D: messages that say what was found and the fix ---------------------------------------


def _small_field():
    import numpy as np
    import xarray as xr

    values = np.random.default_rng(0).normal(size=(4, 64, 64))
    return xr.Dataset(
        {"v": (("time", "latitude", "longitude"), values, {"units": "K"})},
        coords={
            "time": np.arange(4),
            "latitude": np.linspace(50.0, 56.3, 64),
            "longitude": np.linspace(-8.0, -1.7, 64),
        },
    )


def test_empty_training_split_names_the_selection_and_the_labels() -> None:
    from flexdownscale.data import SuperResolutionDataset
    from flexdownscale.errors import DataError

    with pytest.raises(DataError, match="the training split is empty") as info:
        SuperResolutionDataset(
            _small_field(),
            variables=["v"],
            factor=4,
            crop_size=32,
            split_dim="time",
            splits={"validation": [0, 1, 2, 3]},
            normalizer="fit",
        )
    message = str(info.value)
    assert "splits['validation'] = [0, 1, 2, 3] take all of it" in message
    assert "the labels run 0 to 3" in message
    assert "normalizer=Normalizer.fit(...)" in message


def test_normalizer_without_statistics_says_how_to_get_them() -> None:
    from flexdownscale.data import Normalizer
    from flexdownscale.errors import DataError

    with pytest.raises(DataError, match=r"Normalizer\.fit\(ds, variables=\['t2m'\]\)"):
        Normalizer({})
    with pytest.raises(DataError, match="an empty list; pass a Dataset or DataArray"):
        Normalizer.fit([])


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ("text", r"numbers stored as text; convert them: .*astype\(float\)"),
        ("names", r"are not numbers; assign the cell centres"),
    ],
)
def test_string_coordinate_says_the_fix(labels, says) -> None:
    import numpy as np

    from flexdownscale.data import grid_spec
    from flexdownscale.errors import GridError

    ds = _small_field()
    if labels == "text":
        values = ds.longitude.values.astype(str)
    else:
        values = np.array([f"c{i}" for i in range(64)])
    with pytest.raises(GridError, match=says):
        grid_spec(ds.assign_coords(longitude=values))


# --- E: settings the objective ignores -----------------------------------------------------


def test_ignored_settings_by_objective() -> None:
    from flexdownscale.config import DiffusionConfig
    from flexdownscale.diffusion.objectives import _ignored_settings

    assert _ignored_settings(DiffusionConfig()) == {}
    assert _ignored_settings(DiffusionConfig(objective="flow")) == {}
    flow = DiffusionConfig(objective="flow", target="eps", logsnr_min=-10.0, idff_sigma=0.3)
    assert set(_ignored_settings(flow)) == {"target", "logsnr_min", "idff_sigma"}
    idff = DiffusionConfig(objective="idff", idff_sigma=0.3, shift=2.0, base_sigma=0.2)
    assert _ignored_settings(idff) == {
        "shift": (2.0, "objective = 'vp'"),
        "base_sigma": (0.2, "base = 'coarse_plus_noise'"),
    }
    vp = DiffusionConfig(base="coarse_plus_noise", t_min=0.01)
    assert set(_ignored_settings(vp)) == {"base", "t_min"}


def test_trainer_warns_of_diffusion_settings_the_objective_ignores(tmp_path, shared_data) -> None:
    from train_runs import tiny_run_config

    from flexdownscale.errors import FlexDownscaleWarning
    from flexdownscale.train import Trainer

    config = tiny_run_config(
        tmp_path,
        shared_data,
        diffusion={"objective": "flow", "target": "eps"},
        sampler={"sampler": "euler", "steps": 1},
    )
    with pytest.warns(FlexDownscaleWarning, match="ignores") as record:
        Trainer(config)
    said = [w for w in record if "ignores" in str(w.message)]
    assert len(said) == 1
    assert str(said[0].message).startswith(
        "the 'flow' objective ignores diffusion.target = 'eps' (read only with objective = 'vp')"
    )
    assert said[0].filename == __file__
    plain = tiny_run_config(
        tmp_path / "b", shared_data, diffusion={"objective": "flow"}, sampler={"sampler": "euler"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlexDownscaleWarning)
        Trainer(plain)
