"""Command-line error messages are in command-line words: flag names (``--sampler-option
eta=...``, ``--condition``, ``--seed``), attributes of the input file, the user's own paths;
the library keeps its Python wording for library users."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flexdownscale.cli import cli_spelling, console_main, main
from flexdownscale.data import degrade, normalize_grid
from flexdownscale.errors import SkillWarning

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"
KOLMOGOROV = Path("kolmogorov") / "kf_re4000.nc"
PYTHON_WORDS = ("ds[", "ds.", "da.", "attrs[", "isel", ".sel", "bbox=", "None", "2**63", "argument")


def _run(argv, capsys):
    """(exit status, the one stderr line) of one CLI call."""
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err
    return code, err.strip()


def _no_python(err: str) -> None:
    for word in PYTHON_WORDS:
        assert word not in err, (word, err)


@pytest.fixture(scope="module")
def era5(shared_data, tmp_path_factory):
    """A small coarse ERA5 input (1 time, 8 x 12 cells) for the shipped era5-t2m-x4."""
    root = tmp_path_factory.mktemp("messages")
    ds = xr.open_dataset(shared_data / ERA5)
    fine = normalize_grid(ds.isel(time=[0]))  # latitude ascending, on the model's lattice
    fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    coarse.to_netcdf(root / "coarse.nc")
    return root


@pytest.fixture(scope="module")
def kolmogorov(shared_data, tmp_path_factory):
    """A small coarse Kolmogorov input (8 x 8 cells), without its Reynolds number attribute."""
    root = tmp_path_factory.mktemp("messages_kf")
    ds = xr.open_dataset(shared_data / KOLMOGOROV)
    fine = ds[["vorticity"]].isel(trajectory=3, time=[0], x=slice(0, 64), y=slice(0, 64)).load()
    coarse = degrade(fine, 8)
    coarse["vorticity"].attrs = dict(fine["vorticity"].attrs)
    coarse.attrs = {}
    for dim in ("x", "y"):  # a window of the periodic box is not periodic
        coarse[dim].attrs.pop("periodic", None)
    coarse.to_netcdf(root / "kf.nc")
    return root / "kf.nc"


def test_units_hint_names_the_files_attribute(era5, tmp_path, capsys):
    """The pipeline's ``ds['t2m'].attrs['units'] = 'K'`` is said as the file's attribute."""
    coarse = xr.open_dataset(era5 / "coarse.nc").load()
    no_units = coarse.copy()
    no_units["t2m"].attrs = {k: v for k, v in coarse["t2m"].attrs.items() if k != "units"}
    no_units.to_netcdf(tmp_path / "no_units.nc")
    out = tmp_path / "o.nc"
    argv = ["downscale", str(tmp_path / "no_units.nc"), str(out), "--model", "era5-t2m-x4"]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err.endswith(
        "variable 't2m' has no 'units' attribute; the model expects 'K'. If the values are in "
        "K, set the units attribute of variable 't2m' in the input file to 'K' (with NCO, for "
        "example: ncatted -a units,t2m,o,c,K FILE)"
    )
    _no_python(err)
    number = coarse.copy()
    number["t2m"].attrs = {**coarse["t2m"].attrs, "units": 1}  # not a string
    number.to_netcdf(tmp_path / "number.nc")
    code, err = _run(["downscale", str(tmp_path / "number.nc"), *argv[2:]], capsys)
    assert code == 2
    assert "Set it to the string the values are in, e.g. 'K' (with NCO, for example: " in err
    _no_python(err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sampler", "ddim", "--sampler-option", "eta=-1"], "--sampler-option eta=-1.0 must lie in [0, 1]"),
        (["--sampler", "ddim", "--sampler-option", "eta=nan"], "--sampler-option eta=nan; expected a finite number"),
        (["--sampler", "sde", "--sampler-option", "delta=-1"], "--sampler-option delta=-1.0 must be >= 0"),
        (["--seed", "-1"], f"--seed -1 must be a whole number from 0 to {2**63 - 1}"),
        (["--condition", "inf"], "--condition inf given but model 'era5-t2m-x4' takes no physical condition; leave --condition out"),
    ],
)  # fmt: skip
def test_downscale_option_values_are_named_by_their_flags(era5, tmp_path, capsys, options, message):
    out = tmp_path / "o.nc"
    argv = ["downscale", str(era5 / "coarse.nc"), str(out), "--model", "era5-t2m-x4"]
    code, err = _run([*argv, "--steps", "1", "--quiet", *options], capsys)
    assert code == 2
    assert message in err
    _no_python(err)
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_condition_that_is_not_finite_names_the_flag(kolmogorov, tmp_path, capsys, value):
    out = tmp_path / "o.nc"
    argv = ["downscale", str(kolmogorov), str(out), "--model", "kolmogorov-x8", "--quiet"]
    # "--condition -inf" was an argparse usage error ("expected one argument"), as was any
    # negative number but -1 and -1.5 spellings: only --condition=-inf worked
    for given in ([f"--condition={value}"], ["--condition", value]):
        code, err = _run([*argv, *given], capsys)
        assert code == 2
        assert err.endswith(f"--condition {value}; expected a finite number")
        _no_python(err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("spelling", "value"),
    [("-inf", -np.inf), ("-Infinity", -np.inf), ("-1e3", -1e3), ("-1E+3", -1e3), ("-.5", -0.5),
     ("-.5e-3", -5e-4), ("-1_000.5", -1000.5), ("-2", -2.0), ("-2.5", -2.5)],
)  # fmt: skip
def test_negative_numbers_are_option_values_in_every_spelling(spelling, value):
    """Every spelling of a negative number that float() reads is the value of a number flag
    (--condition, --bbox, --seed; was "expected one argument" for -inf, -1e3, -.5e-3, ...),
    and a flag after a flag that takes a value is still refused as its value."""
    from flexdownscale.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["downscale", "a.nc", "b.nc", "--condition", spelling, "--quiet"])
    assert (args.condition, args.quiet) == (value, True)
    bbox = ["--bbox", spelling, spelling, "2", "61"]
    args = parser.parse_args(["downscale", "a.nc", "b.nc", *bbox, "--seed", "-3"])
    assert (args.bbox, args.seed) == ([value, value, 2.0, 61.0], -3)
    assert parser.parse_args(["demo", "--seed", "-3"]).seed == -3


def test_a_flag_is_not_taken_for_a_negative_number(capsys):
    from flexdownscale.cli import build_parser

    parser = build_parser()
    for argv, said in (
        (["--condition", "--quiet"], "argument --condition: expected one argument"),
        (["--condition", "-x"], "argument --condition: expected one argument"),
        (["--seed", "-1e3"], "argument --seed: invalid int value: '-1e3'"),
        (["--bbox", "-1", "-2", "--quiet"], "argument --bbox: expected 4 arguments"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["downscale", "a.nc", "b.nc", *argv])
        assert capsys.readouterr().err.endswith(f"error: {said}\n")


def test_negative_condition_through_the_command(era5, tmp_path, capsys):
    argv = ["downscale", str(era5 / "coarse.nc"), str(tmp_path / "o.nc"), "--model", "era5-t2m-x4"]
    for spelling, said in (("-1e3", "-1000.0"), ("-.5", "-0.5")):
        code, err = _run([*argv, "--condition", spelling, "--quiet"], capsys)
        assert code == 2
        assert f"--condition {said} given but model 'era5-t2m-x4' takes no physical" in err
        _no_python(err)


def test_missing_condition_names_the_flag_and_the_files_attribute(kolmogorov, tmp_path, capsys):
    argv = ["downscale", str(kolmogorov), str(tmp_path / "o.nc"), "--model", "kolmogorov-x8"]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err.endswith(
        "pass --condition <value> or set the input file's global attribute 'reynolds_number' to it"
    )
    _no_python(err)


def test_no_shipped_model_says_what_was_found_and_how_to_choose(era5, tmp_path, capsys):
    coarse = xr.open_dataset(era5 / "coarse.nc").load().rename(t2m="tas")
    coarse.to_netcdf(tmp_path / "tas.nc")
    argv = ["downscale", str(tmp_path / "tas.nc"), str(tmp_path / "o.nc")]
    code, err = _run(argv, capsys)
    assert code == 2
    assert (
        "no shipped model downscales variables ['tas'] at any factor (no --factor given; "
        "shipped models, for --model: "
        "era5-t2m-x4 (t2m, x4), kolmogorov-x8 (vorticity, x8))" in err
    )
    assert "pass --rename tas=t2m (model 'era5-t2m-x4')" in err
    assert err.endswith(
        "or pass --model path/to/model-folder (a folder written by the training script, or in "
        "Python by Downscaler.save_pretrained) or a Hugging Face Hub id"
    )
    _no_python(err)
    # the advice works: the shipped model under the input's name
    assert main([*argv, "--rename", "tas=t2m", "--steps", "1", "--quiet"]) == 0


def test_demo_seed_below_zero_names_the_flag_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    code, err = _run(["demo", "--out", str(out), "--seed", "-1", "--quiet"], capsys)
    assert code == 2
    assert err == (
        "flexdownscale demo: error: --seed -1 must be a whole number from 0 to "
        f"{2**63 - 1} (2^63 - 1)"
    )
    assert not out.exists()


def test_evaluate_refuses_a_truth_with_the_ensemble_dim(tmp_path, capsys):
    rng = np.random.default_rng(0)
    field = xr.DataArray(
        rng.normal(size=(2, 16, 16)),
        dims=("member", "y", "x"),
        coords={"x": np.arange(16.0), "y": np.arange(16.0)},
        attrs={"units": "1"},
    )
    for axis in ("x", "y"):
        field[axis].attrs = {"units": "km"}
    xr.Dataset({"w": field}).to_netcdf(tmp_path / "p.nc")
    argv = ["evaluate", str(tmp_path / "p.nc"), str(tmp_path / "p.nc"), "--out"]
    code, err = _run([*argv, str(tmp_path / "r")], capsys)
    assert code == 2
    assert err == (
        "flexdownscale evaluate: error: the truth's 'w' has the ensemble dim 'member' (2 values), "
        "but the truth is one realisation: give a truth file without it (one member of it, if it "
        "is an ensemble)"
    )
    assert not (tmp_path / "r").exists()
    xr.Dataset({"w": field.isel(member=[0])}).to_netcdf(tmp_path / "one.nc")
    argv = ["evaluate", str(tmp_path / "p.nc"), str(tmp_path / "one.nc"), "--out"]
    code, err = _run([*argv, str(tmp_path / "r")], capsys)
    assert code == 2
    assert "has the ensemble dim 'member' (1 value), but" in err


def test_unwritable_output_names_the_users_path(era5, tmp_path, capsys, monkeypatch):
    """A folder one cannot write to (read-only, or /proc) is said of the user's output path,
    before the model runs; not of the hidden temporary folder beside it."""
    import tempfile

    target = tmp_path / "locked" / "o.nc"
    target.parent.mkdir()
    real = tempfile.mkdtemp

    def refuse(*args, dir=None, **kwargs):  # what a read-only folder does (root may write)
        if dir is not None and Path(dir) == target.parent:
            name = Path(dir) / f"{kwargs.get('prefix', '')}x{kwargs.get('suffix', '')}"
            raise PermissionError(13, "Permission denied", str(name))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    argv = ["downscale", str(era5 / "coarse.nc"), str(target), "--model", "era5-t2m-x4"]
    code, err = _run(argv, capsys)
    assert code == 2
    assert err == (
        f"flexdownscale downscale: error: cannot write the output {str(target)!r}: creating a "
        f"file in its folder {str(target.parent)!r} failed (Permission denied); write to a "
        "folder you can write to, or fix that folder's permissions"
    )
    monkeypatch.setattr(tempfile, "mkdtemp", real)
    if sys.platform.startswith("linux") and Path("/proc").is_dir():  # no files can be made there
        code, err = _run([*argv[:2], "/proc/o.nc", *argv[3:]], capsys)
        assert code == 2
        assert "cannot write the output '/proc/o.nc': creating a file in its folder '/proc'" in err
        assert ".partial" not in err
        assert ".probe" not in err


def test_a_failed_write_names_the_users_path(era5, tmp_path, capsys, monkeypatch):
    """A write that fails midway (a full disk) names the output, not its temporary copy."""

    def full(self, path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    target = tmp_path / "o.nc"
    argv = ["downscale", str(era5 / "coarse.nc"), str(target), "--model", "era5-t2m-x4"]
    code, err = _run([*argv, "--steps", "1", "--quiet"], capsys)
    assert code == 2
    assert err == (
        f"flexdownscale downscale: error: cannot use {str(target)!r}: No space left on device; "
        f"free space on the disk of {str(tmp_path)!r} or write to another disk"
    )
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left behind


def test_cli_spelling_per_command_and_library_wording():
    """Each command rewrites only its own flags; the library's messages stay Python."""
    from flexdownscale.config import SamplerConfig
    from flexdownscale.diffusion.samplers import resolve_sampler_options
    from flexdownscale.errors import ConfigError

    assert cli_spelling("pass dims={'x': 'i'}", "evaluate") == "pass --dims x=i"
    assert cli_spelling("factor = 8; seed = 3", "evaluate") == "factor = 8; seed = 3"
    assert cli_spelling("seed = 3; members = 1", "demo") == "--seed 3; --members 1"
    assert cli_spelling("seed = 3", "info") == "seed = 3"
    assert cli_spelling("g1 = -1.0 and g2 = 0.0 must be >= 0") == (
        "--sampler-option g1=-1.0 and --sampler-option g2=0.0 must be >= 0"
    )
    assert cli_spelling("sampler_options['g2'] = inf; expected a finite number") == (
        "--sampler-option g2=inf; expected a finite number"
    )
    options = {"eta": float("nan")}
    with pytest.raises(ConfigError, match=r"sampler_options\['eta'\] = nan"):
        resolve_sampler_options("ddim", options, SamplerConfig(), argument="sampler_options")


def test_warnings_are_one_line_in_command_line_words(kolmogorov, tmp_path, capsys, monkeypatch):
    """Run as the command, a warning was Python's ``.../bin/flexdownscale:6: UserWarning: ...
    (from the condition= argument) ...`` and the source line ``sys.exit(main())``; it is one
    line of the command now. Called from Python, ``main`` leaves warnings to Python."""
    import warnings

    out = tmp_path / "o.nc"
    argv = ["downscale", str(kolmogorov), str(out), "--model", "kolmogorov-x8"]
    argv += ["--condition", "100", "--steps", "1", "--quiet"]
    monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert console_main() == 0
    assert capsys.readouterr().err == (
        "flexdownscale downscale: warning: reynolds_number = 100 (from --condition) is outside "
        "what model 'kolmogorov-x8' was trained on (1000 to 4000); the model extrapolates and "
        "its skill there is unknown\n"
    )
    assert out.exists()
    with pytest.warns(SkillWarning, match=r"from the condition= argument"):
        assert main(argv) == 0
    # main() without arguments reads sys.argv but is still a Python call: Python's warnings
    # (it took the command's one-line form, as only the command should)
    with pytest.warns(SkillWarning, match=r"from the condition= argument"):
        assert main() == 0
    assert "flexdownscale downscale: warning:" not in capsys.readouterr().err


def test_the_installed_command_and_python_m_print_warnings_as_lines(kolmogorov, tmp_path):
    """The ``flexdownscale`` script is :func:`console_main` (``main`` keeps Python warnings),
    and ``python -m flexdownscale`` runs the command the same way."""
    import subprocess
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="flexdownscale")
    assert script.value == "flexdownscale.cli:console_main"
    out = tmp_path / "o.nc"
    argv = ["downscale", str(kolmogorov), str(out), "--model", "kolmogorov-x8"]
    argv += ["--condition", "100", "--steps", "1", "--quiet"]
    run = subprocess.run(
        [sys.executable, "-m", "flexdownscale", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.startswith(
        "flexdownscale downscale: warning: reynolds_number = 100 (from --condition) is outside"
    )
    assert run.stderr.count("\n") == 1, run.stderr
    assert out.exists()


def test_a_one_cell_axis_is_said_in_command_line_words(era5, tmp_path, capsys):
    one_row = tmp_path / "row.nc"
    xr.open_dataset(era5 / "coarse.nc").isel(latitude=[0]).to_netcdf(one_row)
    code, err = _run(
        ["downscale", str(one_row), str(tmp_path / "o.nc"), "--model", "era5-t2m-x4"], capsys
    )
    assert code == 2
    assert "an input file holding a wider region, or --bbox on the whole field" in err
    for word in PYTHON_WORDS:
        assert word not in err, (word, err)


def test_inference_warnings_are_said_in_command_line_words(era5, tmp_path, capsys, monkeypatch):
    """The tile, domain and periodic-attribute warnings told a command-line user to leave
    ``tile`` unset, to use ``bbox=...`` and to set ``ds['x'].attrs["periodic"]``."""
    import warnings

    from flexdownscale.cli import cli_spelling
    from flexdownscale.data.grid import GridSpec
    from flexdownscale.pipeline import _warn_periodic_attribute

    coarse = xr.open_dataset(era5 / "coarse.nc")
    far = tmp_path / "far.nc"
    coarse.assign_coords(longitude=coarse.longitude + 90.0).to_netcdf(far)
    runs = (
        [str(era5 / "coarse.nc"), str(tmp_path / "a.nc"), "--tile", "16", "--overlap", "8"],
        [str(far), str(tmp_path / "b.nc")],
    )
    for files in runs:
        argv = ["downscale", *files, "--model", "era5-t2m-x4", "--steps", "1", "--quiet"]
        monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            assert console_main() == 0
    err = capsys.readouterr().err
    assert "Use --tile 32 or larger, or leave --tile out" in err
    assert "(--bbox X_MIN Y_MIN X_MAX Y_MAX)" in err
    box = {"kind": "projected", "nx": 16, "ny": 16, "dx": 0.25, "dy": 0.25, "x0": 0.0, "y0": 0.0}
    trained = GridSpec(x="x", y="y", periodic_x=True, periodic_y=True, **box)
    with pytest.warns(SkillWarning, match="periodic") as caught:
        _warn_periodic_attribute(GridSpec(x="x", y="y", **box), trained, 1, "box")
    said = cli_spelling(str(caught[0].message))
    assert (
        "set the attribute periodic = \"true\" on 'x' and 'y' in the input file (with NCO, for "
        "example: ncatted -a periodic,x,o,c,true -a periodic,y,o,c,true FILE)"
    ) in said
    for word in PYTHON_WORDS:
        assert word not in err + said, word


def test_other_libraries_warnings_say_what_they_are(tmp_path, capsys, monkeypatch):
    """A warning of numpy (or of any code outside the package) was printed like the package's
    own, ``flexdownscale downscale: warning: Mean of empty slice.``, hiding where it came from;
    it names its category and origin now. The package's own warnings keep the plain form."""
    import warnings

    import flexdownscale.cli as cli

    def check_device(device):  # the first step of the command: meet warnings from elsewhere
        np.mean(np.array([]))  # numpy's own warnings.warn
        np.log(np.zeros(1))  # numpy's compiled code, called from here (no numpy frame)

    monkeypatch.setattr(cli, "_check_device", check_device)
    argv = ["downscale", str(tmp_path / "missing.nc"), str(tmp_path / "o.nc"), "--quiet"]
    monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert console_main() == 2
    lines = capsys.readouterr().err.splitlines()
    with warnings.catch_warnings(record=True) as seen:  # numpy's words (they vary by version)
        warnings.simplefilter("always")
        np.mean(np.array([]))
    empty, divide = (str(w.message) for w in seen)  # "Mean of empty slice", "invalid value ..."
    prefix = "flexdownscale downscale: warning: RuntimeWarning from "
    assert lines[0] == f"{prefix}numpy: {empty}"
    # numpy's mean then divides 0 by 0 in compiled code: named by the numpy module calling it
    assert lines[1].startswith(f"{prefix}compiled code called by numpy.")
    assert lines[1].endswith(f": {divide}")
    assert lines[2] == (
        f"{prefix}compiled code called by {__name__}: divide by zero encountered in log"
    )
    assert lines[3].startswith("flexdownscale downscale: error: input ")
    assert len(lines) == 4


def test_a_warning_made_an_error_is_one_line_and_status_2(
    kolmogorov, tmp_path, capsys, monkeypatch
):
    """``python -W error::UserWarning -m flexdownscale.cli downscale ...`` ended in a Python
    traceback (exit 1) when the package warned; it is one error line now, exit 2, saying that a
    warning was made an error. ``main`` from Python keeps the exception."""
    import subprocess
    import warnings

    out = tmp_path / "o.nc"
    argv = ["downscale", str(kolmogorov), str(out), "--model", "kolmogorov-x8"]
    argv += ["--condition", "100", "--steps", "1", "--quiet"]
    said = (
        "flexdownscale downscale: error: a warning was turned into an error by the warnings "
        "filter (python -W error or PYTHONWARNINGS): reynolds_number = 100 (from --condition) "
        "is outside what model 'kolmogorov-x8' was trained on (1000 to 4000); the model "
        "extrapolates and its skill there is unknown\n"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-m", "flexdownscale.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert (run.returncode, run.stderr) == (2, said)
    assert not out.exists()
    monkeypatch.setattr(sys, "argv", ["flexdownscale", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PYTHONWARNINGS=error
        assert console_main() == 2
        assert capsys.readouterr().err == said
        # a warning of another library, made an error: its category and origin
        monkeypatch.setattr("flexdownscale.cli._check_device", lambda _: np.mean(np.array([])))
        assert console_main() == 2
        err = capsys.readouterr().err
        assert err.startswith(
            "flexdownscale downscale: error: a warning was turned into an error by the warnings "
            "filter (python -W error or PYTHONWARNINGS): RuntimeWarning from numpy: Mean of empty"
        )
        assert err.count("\n") == 1
        monkeypatch.undo()
        with pytest.raises(SkillWarning, match="from the condition= argument"):
            main(argv)
    assert not out.exists()


def _global(lon, lat=(-60.0, -30.0, 0.0, 30.0, 60.0)):
    """A small global 2 m temperature field on the given longitudes (a time of the sample)."""
    lat = np.asarray(lat)
    return xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), np.full((1, lat.size, len(lon)), 280.0))},
        coords={
            "time": [np.datetime64("2019-03-01T00")],
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", np.asarray(lon, dtype=float), {"units": "degrees_east"}),
        },
    ).assign(t2m=lambda d: d["t2m"].assign_attrs(units="K"))


def _south(ds):
    lat = (-ds["latitude"]).assign_attrs({**ds["latitude"].attrs, "units": "degrees_south"})
    return ds.assign_coords(latitude=lat)


def _rotated(ds):
    ds = ds.drop_vars(["latitude_bnds", "longitude_bnds"]).rename(latitude="rlat", longitude="rlon")
    ds["rlat"].attrs = {"standard_name": "grid_latitude", "units": "radians"}
    ds["rlon"].attrs = {"standard_name": "grid_longitude", "units": "degrees"}
    return ds


def _irregular(ds):
    step = np.zeros(ds.sizes["latitude"])
    step[3] = 0.2
    return ds.assign_coords(latitude=(ds["latitude"] + step).assign_attrs(ds["latitude"].attrs))


@pytest.mark.parametrize(
    ("case", "edit", "said"),
    [
        ("unsorted", lambda ds: ds.isel(latitude=[1, 0, *range(2, ds.sizes["latitude"])]),
         "coordinate 'latitude' is not monotonic; expected strictly increasing or decreasing "
         "values. Sort the input file along 'latitude' first (with xarray, for example: "
         "ds.sortby('latitude'))"),
        ("duplicated", lambda ds: ds.isel(longitude=[0, 0, *range(1, ds.sizes["longitude"])]),
         "Drop the duplicates from the input file first (with xarray, for example: "
         "ds.drop_duplicates('longitude'))"),
        ("no coordinate", lambda ds: ds.drop_vars(["longitude", "longitude_bnds"]),
         "dimension 'longitude' has no coordinate values; expected a 1-D coordinate giving the "
         "cell centres. Add a coordinate variable 'longitude' holding the cell centres to the "
         "input file (with xarray, for example: ds.assign_coords(longitude=np.arange(n) * "
         "spacing))"),
        ("colatitudes", lambda ds: ds.assign_coords(latitude=ds["latitude"] + 50.0),
         "If these are colatitudes (0 at the north pole), convert them to latitudes (90 minus "
         "the value) in the input file (with xarray, for example: ds = ds.assign_coords("
         "latitude=90 - ds['latitude'])); if the axis is not a latitude"),
        ("degrees south", _south,
         "coordinate 'latitude' is in 'degrees_south', which count the other way; negate it in "
         "the input file and set its units attribute to 'degrees_north' (with xarray, for "
         "example: ds = ds.assign_coords(latitude=-ds['latitude'].assign_attrs("
         "units='degrees_north')))"),
        ("cyclic point", lambda _: _global(np.arange(0.0, 361.0, 30.0)),
         "Drop that last column from the input file (with xarray, for example: "
         "ds.isel(longitude=slice(None, -1)); drop_duplicates does not see it, the values "
         "differ)"),
        ("same place", lambda _: _global([*np.arange(30.0, 331.0, 30.0), 0.0, 360.0]),
         "longitude 'longitude' has values [0.0, 360.0] that are the same place (360 degrees "
         "apart); expected each longitude once. Drop one of them from the input file (with "
         "xarray, for example: ds.isel(longitude=...), selecting the other columns)"),
        ("irregular", _irregular,
         "expected a regular grid. Regrid the input file to a regular grid first (in Python, "
         "for example with flexdownscale.data.regrid.regrid)"),
        ("rotated units", _rotated,
         "rotated-pole coordinate 'rlat' has units 'radians'; expected 'degrees'. Convert it "
         "to degrees in the input file, or if its values are in degrees already, set its units "
         "attribute to 'degrees' (with NCO, for example: ncatted -a units,rlat,o,c,degrees "
         "FILE)"),
    ],
)  # fmt: skip
def test_grid_fixes_are_said_as_changes_to_the_file(era5, tmp_path, capsys, case, edit, said):
    """The grid checks said their fixes in xarray (``Sort it first, e.g. ds.sortby('x')``); the
    command says what to do to the input file, the xarray code kept as an example."""
    path = tmp_path / "in.nc"
    edit(xr.open_dataset(era5 / "coarse.nc").load()).to_netcdf(path)
    out = tmp_path / "o.nc"
    code, err = _run(["downscale", str(path), str(out), "--model", "era5-t2m-x4"], capsys)
    assert code == 2
    assert err.startswith("flexdownscale downscale: error: ")
    assert said in err
    # the xarray example is the only Python in the line
    prose = err.split(" (with xarray, for example: ")[0].split(" (in Python, for example with")[0]
    _no_python(prose)
    assert not out.exists()


def test_model_folder_and_unreachable_grid_fixes_in_command_line_words(tmp_path, capsys):
    """The model-folder messages named Downscaler.save_pretrained only; the polar-row and
    one-grid-dim fixes (not reached with the shipped models' grids: their checks run in the
    library) are said as changes to the file too."""
    from flexdownscale.data.grid import _on_grid, refine_coord
    from flexdownscale.errors import GridError

    empty = tmp_path / "my-model"
    empty.mkdir()
    code, err = _run(["info", str(empty)], capsys)
    assert code == 2
    assert err.endswith(
        "README.md (the training script writes one; in Python, Downscaler.save_pretrained does)"
    )
    with pytest.raises(GridError) as polar:
        refine_coord(np.arange(80.0, 91.0), 4, latitude=True, name="lat")
    assert cli_spelling(str(polar.value)).endswith(
        "Drop the polar rows from the input file first (with xarray, for example: "
        "ds.isel(lat=slice(1, -1)))"
    )
    field = xr.DataArray(np.zeros(3), dims="y")
    with pytest.raises(GridError) as one_dim:
        _on_grid("mask", field, "y", "x")
    assert cli_spelling(str(one_dim.value)).endswith(
        "Drop it from the input file first (with xarray, for example: ds.drop_vars('mask'))"
    )


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """``flexdownscale info | head -1`` printed ``flexdownscale info: error: [Errno 32] Broken
    pipe`` after the line head showed; a closed pipe now ends the command quietly (status 141,
    128 + SIGPIPE, as the shell reports for tools a closed pipe ends)."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "flexdownscale", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_package_functions_in_grid_fixes_are_said_to_be_python(era5, tmp_path, capsys):
    """Grid fixes named the package's Python functions bare ("regrid the input onto that
    lattice (flexdownscale.data.regrid)") to a command-line user, as if a command did them;
    they are said to be Python, as the irregular-grid fix already was."""
    ds = xr.open_dataset(era5 / "coarse.nc").load()
    shifted = ds.assign_coords(latitude=ds["latitude"] + 0.25 * 0.25)  # a quarter fine cell
    shifted.to_netcdf(tmp_path / "in.nc")
    argv = ["downscale", str(tmp_path / "in.nc"), str(tmp_path / "o.nc"), "--model", "era5-t2m-x4"]
    code, err = _run(argv, capsys)
    assert code == 2
    assert "offset by" in err
    assert err.endswith("the input onto that lattice (in Python, flexdownscale.data.regrid)")
    said = {
        "regrid the input onto the model's kind of grid (flexdownscale.data.regrid) or use": (
            "regrid the input onto the model's kind of grid (in Python, "
            "flexdownscale.data.regrid) or use"
        ),
        "regrid the input to that spacing first, e.g. with flexdownscale.data.regrid or "
        "coarsen_grid": "regrid the input to that spacing first, e.g. in Python with "
        "flexdownscale.data.regrid or coarsen_grid",
        "along y (axis sorted ascending; flexdownscale.data.degrade); otherwise regrid": (
            "along y (axis sorted ascending; in Python, flexdownscale.data.degrade); otherwise "
            "regrid"
        ),
        "regrid first, e.g. flexdownscale.data.regrid.regrid(ds, target, backend='xesmf') (pip": (
            "regrid first, e.g. in Python, flexdownscale.data.regrid.regrid(ds, target, "
            "backend='xesmf') (pip"
        ),
    }
    for message, expected in said.items():
        assert cli_spelling(message) == expected


def test_variable_messages_name_the_flags_and_the_input_as_given(era5, tmp_path, capsys):
    """Three messages about the input's variables (reviewer-50): one said "needs model=" to a
    command-line user; --variables tas with --rename tas=t2m said "variables ['tas'] are not in
    the input (['t2m'])" of a file holding tas only (the input after renaming); a units error
    for --variables sp named the model's 't2m', not the file's sp."""
    ds = xr.open_dataset(era5 / "coarse.nc").load()
    ds.rename(t2m="tas").to_netcdf(tmp_path / "tas.nc")
    two = ds.assign(sp=(ds["t2m"] * 0 + 1e5).assign_attrs(units="Pa"))
    two.to_netcdf(tmp_path / "two.nc")
    out = str(tmp_path / "o.nc")
    code, err = _run(["downscale", str(tmp_path / "two.nc"), out, "--variables", "t2m,sp"], capsys)
    assert code == 2
    assert "mapping other names onto a model's needs the model: --model <name or folder> (" in err
    _no_python(err)
    argv = ["downscale", str(tmp_path / "tas.nc"), out, "--model", "era5-t2m-x4"]
    code, err = _run([*argv, "--variables", "tas", "--rename", "tas=t2m"], capsys)
    assert code == 2
    assert err == (
        "flexdownscale downscale: error: variables ['tas'] were renamed by --rename tas=t2m; "
        "give the names after renaming, --variables t2m, or leave out --rename tas=t2m: "
        "--variables tas alone maps the input's names onto the model's"
    )
    argv = ["downscale", str(tmp_path / "two.nc"), out, "--model", "era5-t2m-x4"]
    code, err = _run([*argv, "--variables", "sp"], capsys)
    assert code == 2
    assert err == (
        "flexdownscale downscale: error: variable 'sp' (the model's 't2m') is in 'Pa', a "
        "pressure, but the model expects 'K', a temperature: no conversion exists between them. "
        "If this is not the model's variable, pass that one (--variables NAME,NAME,... or "
        "--rename yours=t2m). If it is and the attribute is wrong, fix the attribute. If the "
        "values are in K, set the units attribute of variable 'sp' in the input file to 'K' "
        "(with NCO, for example: ncatted -a units,sp,o,c,K FILE)"
    )
    # in Python the fix names the input's variable too
    from flexdownscale.errors import UnitsError

    celsius = ds.rename(t2m="sp").assign(sp=lambda d: (d.sp - 273.15).assign_attrs(units="degC"))
    with pytest.raises(UnitsError) as raised:
        celsius.flex.downscale(model="era5-t2m-x4", variables=["sp"])
    assert str(raised.value).endswith(
        "convert first: ds['sp'] = (ds['sp'] + 273.15).assign_attrs(units='K')"
    )
    assert not Path(out).exists()


def test_grid_coordinates_along_dims_without_values_get_the_swap(era5, tmp_path, capsys):
    """Grid dims j / i carrying 1-D latitude(j) / longitude(i) (CF auxiliary coordinates): the
    three errors led in a circle (find the dims; --dims with the coordinates: not dimensions;
    with the dims: no values, assign some) and none said the fix that works, swap_dims
    (reviewer-50). Each names it now, and following it downscales."""
    ds = (
        xr.open_dataset(era5 / "coarse.nc")
        .load()
        .drop_vars(["latitude_bnds", "longitude_bnds"], errors="ignore")
    )
    aux = ds.rename_dims(latitude="j", longitude="i")
    aux.to_netcdf(tmp_path / "aux.nc")
    swap = (
        ". The data has 1-D coordinates along dimensions without values ('latitude' along 'j', "
        "'longitude' along 'i'): make them the dimensions first (with xarray, for example: ds = "
        "ds.swap_dims({'j': 'latitude', 'i': 'longitude'}))"
    )
    argv = ["downscale", str(tmp_path / "aux.nc"), str(tmp_path / "o.nc"), "--model"]
    argv.append("era5-t2m-x4")
    for dims, start in (
        ([], "could not find the x and y dimension among ['time', 'j', 'i']; "),
        (["--dims", "x=longitude,y=latitude"], "--dims x=longitude names a dimension that is "),
        (["--dims", "x=i,y=j"], "dimension 'i' has no coordinate values, but coordinate "),
    ):
        code, err = _run([*argv, *dims], capsys)
        assert code == 2
        assert err.startswith(f"flexdownscale downscale: error: {start}")
        assert err.endswith(swap)
    aux.swap_dims(j="latitude", i="longitude").to_netcdf(tmp_path / "swapped.nc")
    argv[1] = str(tmp_path / "swapped.nc")
    code, _ = _run([*argv, "--quiet", "--steps", "1"], capsys)
    assert code == 0


def test_the_window_of_a_periodic_box_warning_says_how_to_drop_the_attribute_in_the_file():
    from flexdownscale.cli import cli_spelling

    python = (
        "select the window with bbox= (it reads the window with context from its neighbours), "
        "or drop the attribute (ds['x'].attrs.pop(\"periodic\"); ds['y'].attrs.pop(\"periodic\")) "
        "to silence this warning"
    )
    assert cli_spelling(python) == (
        "select the window with --bbox (it reads the window with context from its neighbours), "
        "or drop the attribute (delete the attribute periodic of 'x' and 'y' in the input file, "
        "with NCO, for example: ncatted -a periodic,x,d,, -a periodic,y,d,, FILE) to silence "
        "this warning"
    )


def test_a_level_dim_is_told_to_run_as_time_first(tmp_path, capsys):
    """A file of levels and no time: ``--dims time=level`` runs it as it is, so the command
    line says that first; making one file per level is the other way (it came first, and the
    option came last, after an xarray line)."""
    import flexdownscale as fd

    sample = fd.demo.open_sample("era5_t2m_uk").isel(time=0)
    coarse = degrade(sample, 4, boundary="trim")
    levels = xr.concat([coarse, coarse + 1.0], dim="level").assign_coords(level=[850, 500])
    path = tmp_path / "levels.nc"
    levels.drop_vars("time").to_netcdf(path)
    assert main(["downscale", str(path), str(tmp_path / "out.nc"), "--members", "2"]) == 2
    said = capsys.readouterr().err
    assert (
        "— pass --dims time=level to downscale each of its 2 fields on its own (as training "
        "takes each 'level' as a sample), which runs 'level' as the time dim and keeps its name "
        "in the output; or select one value of the extra dims ['level'] in the input file first "
        "and run each value as its own file (e.g. xr.open_dataset(IN).isel(level=0)"
    ) in said
    args = ["downscale", str(path), str(tmp_path / "out.nc"), "--members", "2", "--quiet"]
    assert main([*args, "--dims", "time=level"]) == 0
