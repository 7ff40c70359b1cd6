"""Writes that fail midway (a full disk, a file-size limit, a read-only folder): each says which
file or folder of the user's could not be written, why and what to do, as a typed error (one
line and exit status 2 on the command line), keeps what was there before whole and leaves no
temporary file behind (reviewer-144). Paths with ``~`` are the home folder's.

The failures are simulated: the writers (safetensors' ``save_file``, accelerate's
``save_state``, ``to_netcdf``, ``savefig``) are replaced by ones that write part of a file and
raise what the real ones raise on a full disk.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from evaluate_files import write_noisy_pair

from flexdownscale import _output
from flexdownscale.errors import CheckpointError, DataError, ModelFolderError

ERA5 = Path("era5") / "era5_t2m_uk_2019-03-01_24.nc"

#: What safetensors raises when the disk fills while it writes (no OSError).
SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
#: What torch.save raises when the disk fills while it writes.
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def _hidden(folder: Path) -> list[str]:
    """The hidden (temporary) entries of ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# the cause of a failed write, in words


def test_the_cause_of_a_write_is_read_from_each_writers_error(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    assert _output.write_cause(OSError(errno.EFBIG, "File too large"), tmp_path) == (
        "File too large",
        errno.EFBIG,
    )
    assert _output.write_cause(SafetensorError(SAFETENSORS_FULL), tmp_path) == (
        "No space left on device",
        errno.ENOSPC,
    )
    # torch.save and netCDF do not say why: a full disk is found from the disk itself
    monkeypatch.setattr(_output, "disk_full", lambda folder: False)
    assert _output.write_cause(RuntimeError(TORCH_FULL), tmp_path) == (
        f"RuntimeError: {TORCH_FULL}",
        None,
    )
    monkeypatch.setattr(_output, "disk_full", lambda folder: True, raising=False)
    why, code = _output.write_cause(RuntimeError("NetCDF: HDF error"), tmp_path)
    assert code == errno.ENOSPC
    assert why == "No space left on device (the writer said RuntimeError: NetCDF: HDF error)"


def test_a_file_written_atomically_keeps_the_earlier_one_whole(tmp_path):
    earlier = tmp_path / "spectra_t2m.png"
    earlier.write_bytes(b"the earlier figure")

    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.EFBIG, "File too large")

    with pytest.raises(DataError) as caught:
        _output.write_atomically(earlier, half_then_full)
    message = str(caught.value)
    assert message.startswith(f"cannot write {str(earlier)!r}: File too large; ")
    assert "ulimit -f" in message
    assert earlier.read_bytes() == b"the earlier figure"
    assert _hidden(tmp_path) == []
    _output.write_text_atomically(earlier, "new")
    assert earlier.read_text() == "new"
    assert _hidden(tmp_path) == []
    assert earlier.stat().st_mode & 0o044  # readable by others, as a file written directly


# ---------------------------------------------------------------------------------------------
# 2. model folders: safetensors' error of a full disk


def _save(path: Path, **kwargs):
    import torch

    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer, VariableStats
    from flexdownscale.hub import save_model_folder

    return save_model_folder(
        path,
        state_dict={"w": torch.ones(2, 3)},
        model=ModelConfig(),
        diffusion=DiffusionConfig(),
        sampler=SamplerConfig(),
        variables=["t2m"],
        units={"t2m": "K"},
        factor=4,
        normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
        grid={"factor": 4},
        card="# my model",
        **kwargs,
    )


def test_a_full_disk_while_saving_the_weights_names_the_model_folder(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    folder = _save(tmp_path / "my-model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"part of the weights")
        raise SafetensorError(SAFETENSORS_FULL)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(ModelFolderError) as caught:
        _save(folder, overwrite=True)
    message = str(caught.value)
    assert message.startswith(f"cannot write a model folder to {str(folder)!r}: ")
    assert "(No space left on device); free space on that disk" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the earlier folder
    assert _hidden(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# 3, 4. training states


def _train_config(tmp_path: Path, shared_data: Path) -> tuple[Path, dict]:
    """A tiny run of 2 steps, a state at each (both kept), no validation: its run.toml and
    its values."""
    from train_runs import tiny_run_values

    from flexdownscale.train import dump_toml

    values = tiny_run_values(tmp_path, shared_data, steps=2, eval_every=0, total_limit=2)
    path = tmp_path / "run.toml"
    path.write_text(dump_toml(values), encoding="utf-8")
    return path, values


@pytest.mark.slow
def test_a_full_disk_while_saving_a_training_state(tmp_path, shared_data, monkeypatch, capsys):
    """The command line: one line naming the state, the cause and the state a resume starts
    from, exit status 2, the incomplete state removed; a resume removes an incomplete state of
    any step, and a state whose EMA (safetensors) cannot be written is said the same way."""
    import accelerate
    import safetensors.torch
    from safetensors import SafetensorError

    from flexdownscale.config import TrainConfig, from_dict
    from flexdownscale.train import Trainer, list_states, main

    config, values = _train_config(tmp_path, shared_data)
    checkpoints = tmp_path / "run" / "checkpoints"
    real = accelerate.Accelerator.save_state
    calls = []

    def full_at_the_second(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        if len(calls) == 1:
            return real(self, output_dir, **kwargs)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"part of a state")
        raise RuntimeError(TORCH_FULL)

    monkeypatch.setattr(accelerate.Accelerator, "save_state", full_at_the_second)
    monkeypatch.setattr(_output, "disk_full", lambda folder: True, raising=False)
    capsys.readouterr()
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    second = checkpoints / "step_00000002"
    assert f"flexdownscale.train: error: cannot save the training state {str(second)!r}: " in line
    assert "No space left on device (the writer said RuntimeError: [enforce fail" in line
    assert "free space on the disk of" in line
    assert line.endswith(
        "The incomplete state was removed; the previous state step_00000001 is kept, and "
        "--resume starts from it"
    )
    assert "Traceback" not in err
    assert [p.name for p in checkpoints.iterdir()] == ["step_00000001"]
    monkeypatch.undo()

    # an incomplete state of another step (a save that failed on a full disk before this fix)
    stale = checkpoints / ".tmp_step_00000007"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"part of a state")
    trainer = Trainer(from_dict(TrainConfig, values), resume=True)
    trainer.load_latest_state()
    assert not stale.exists()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"part of the EMA")
        raise SafetensorError(SAFETENSORS_FULL)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(CheckpointError) as caught:
        trainer.save_state()  # step 1 again: its complete state stays
    message = str(caught.value)
    assert message.startswith(
        f"cannot save the training state {str(checkpoints / 'step_00000001')!r}: No space left "
        "on device; free space"
    )
    assert message.endswith(
        "the previous state step_00000001 is kept, and resume=True starts from it"
    )
    assert [p.name for p in checkpoints.iterdir()] == ["step_00000001"]
    assert [p.name for p in list_states(tmp_path / "run")] == ["step_00000001"]


# ---------------------------------------------------------------------------------------------
# 5, 6. the outputs of downscale and forecast


@pytest.fixture
def era5_coarse(shared_data, tmp_path_factory) -> Path:
    """coarse.nc: an ERA5 hour coarsened 4x (8 x 12 cells), the shipped model's input."""
    from flexdownscale.data import degrade, normalize_grid

    with xr.open_dataset(shared_data / ERA5) as ds:
        fine = normalize_grid(ds.isel(time=[0]))  # latitude ascending, on the model's lattice
        fine = fine.isel(latitude=slice(0, 32), longitude=slice(0, 48)).load()
    coarse = degrade(fine, 4)
    coarse["t2m"].attrs = dict(fine["t2m"].attrs)
    path = tmp_path_factory.mktemp("full_disk_downscale") / "coarse.nc"
    coarse.to_netcdf(path)
    return path


@pytest.fixture
def small() -> xr.Dataset:
    values = np.arange(12, dtype="float32").reshape(3, 4)
    return xr.Dataset(
        {"t2m": (("latitude", "longitude"), values)},
        coords={"latitude": [50.0, 51.0, 52.0], "longitude": [0.0, 1.0, 2.0, 3.0]},
    )


def test_a_netcdf_output_on_a_full_disk_names_the_output(
    tmp_path, era5_coarse, monkeypatch, capsys
):
    """netCDF's error says nothing of the cause, nor of the file: the command's line names
    the output, the cause (the full disk) and the error; nothing is left behind."""
    from flexdownscale.cli import main

    target = tmp_path / "out.nc"
    target.write_bytes(b"")  # an empty file is replaced

    def hdf_error(self, path=None, *args, **kwargs):
        Path(path).write_bytes(b"part of a file")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    monkeypatch.setattr(_output, "disk_full", lambda folder: True, raising=False)
    argv = ["downscale", str(era5_coarse), str(target), "--model", "era5-t2m-x4", "--steps", "1"]
    assert main([*argv, "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"flexdownscale downscale: error: cannot use {str(target)!r}: No space left on device "
        "(the writer said RuntimeError: NetCDF: HDF error); free space on the disk of "
        f"{str(tmp_path)!r} or write to another disk\n"
    )
    assert target.read_bytes() == b""
    assert _hidden(tmp_path) == []


def test_a_zarr_output_on_a_full_disk_names_the_output_and_leaves_no_folder(
    tmp_path, small, monkeypatch
):
    """zarr's error has no file name; the temporary folder is removed (chunks zarr still
    writes after the failure: tests/test_zarr_late_writes.py)."""
    from flexdownscale import cli

    target = tmp_path / "out.zarr"

    def full(ds, written):
        Path(written).mkdir()
        (Path(written) / "zarr.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "_write_zarr", full)
    with pytest.raises(OSError) as caught:
        cli._write_output(small, str(target))
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert cli._os_error_line(caught.value) == (
        f"cannot use {str(target)!r}: No space left on device; free space on the disk of "
        f"{str(tmp_path)!r} or write to another disk"
    )
    # reading errors get no write fix
    missing = OSError(errno.ENOENT, "No such file or directory", str(tmp_path / "in.nc"))
    assert cli._os_error_line(missing).endswith("in.nc': No such file or directory")
    assert list(tmp_path.iterdir()) == []


def test_the_command_quotes_a_missing_folder_and_expands_the_home_folder(
    tmp_path, monkeypatch, capsys
):
    from flexdownscale.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["downscale", "in.nc", "with space/out.nc"]) == 2
    assert "(mkdir -p 'with space')" in capsys.readouterr().err
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert main(["downscale", "in.nc", "~/out.nc"]) == 2
    err = capsys.readouterr().err
    assert f"the folder of the output {str(home / 'out.nc')!r}" in err
    assert f"(mkdir -p {home})" in err


# ---------------------------------------------------------------------------------------------
# 7, 8. evaluate's report


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory) -> Path:
    """truth.nc (two ERA5 hours, 16 x 24) and pred.nc (two noisy members of it)."""
    return write_noisy_pair(shared_data, tmp_path_factory.mktemp("full_disk_evaluate"), 2)


def test_a_report_rewritten_on_a_full_disk_keeps_its_files_whole(files, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from flexdownscale.evaluation import evaluate

    out = tmp_path / "ev"
    evaluate(files / "pred.nc", files / "truth.nc", out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def too_large(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"part of a figure")
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(Figure, "savefig", too_large)
    with pytest.raises(DataError) as caught:
        evaluate(files / "pred.nc", files / "truth.nc", out=out)
    assert str(caught.value).startswith(
        f"cannot write {str(out / 'spectra_t2m.png')!r}: File too large; "
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_report_folder_that_cannot_be_made_is_a_typed_error_naming_it(
    files, tmp_path, monkeypatch, capsys
):
    from flexdownscale.cli import main
    from flexdownscale.evaluation import evaluate

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = str(tmp_path / "ro" / "ev")
    with pytest.raises(DataError) as caught:
        evaluate(files / "pred.nc", files / "truth.nc", out=out)
    expected = (
        f"cannot use {out!r}: Read-only file system; write to a folder you can write to, or "
        "fix that folder's permissions"
    )
    assert str(caught.value) == expected
    argv = ["evaluate", str(files / "pred.nc"), str(files / "truth.nc"), "--out", out]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"flexdownscale evaluate: error: {expected}\n"


def test_evaluate_expands_the_home_folder(files, tmp_path, monkeypatch):
    from flexdownscale.evaluation import evaluate

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(files / "pred.nc", home / "pred.nc")
    shutil.copy(files / "truth.nc", home / "truth.nc")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    evaluate("~/pred.nc", "~/truth.nc", out="~/r", baseline="~/pred.nc")
    assert (home / "r" / "metrics.md").is_file()
    assert (home / "r" / "baseline" / "metrics.md").is_file()
    assert json.loads((home / "r" / "metrics.json").read_text())[0]["baseline"]["file"] == str(
        home / "pred.nc"
    )
    assert not (tmp_path / "~").exists()


# ---------------------------------------------------------------------------------------------
# 8, 10. the demo


def test_a_failed_demo_removes_the_folder_it_made_and_expands_the_home_folder(
    tmp_path, monkeypatch
):
    from flexdownscale import demo

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    seen = []

    def full(out, chosen, **kwargs):
        seen.append(out)
        (out / "era5_t2m_x4.nc").write_bytes(b"a case written before the disk filled")
        raise _output.unwritable_file(out / "x.png", OSError(errno.ENOSPC, "No space left"))

    monkeypatch.setattr(demo, "_run_cases", full)
    with pytest.raises(DataError, match=r"cannot write '.*x\.png': No space left; free space"):
        demo.run_demo("~/demo", log=None, progress=False)
    assert seen == [home / "demo"]
    assert not (home / "demo").exists()  # a new run would refuse its files as not a demo's
    assert not (tmp_path / "~").exists()
    # an earlier demo's folder is not removed
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.md").write_text("# flexdownscale demo\n")
    with pytest.raises(DataError):
        demo.run_demo(earlier, log=None, progress=False)
    assert (earlier / "report.md").read_text() == "# flexdownscale demo\n"
