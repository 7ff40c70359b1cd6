"""``flexdownscale info`` of a forecast model printed ``task: forecast, factor: 1`` and "trained
on 64 x 64 fine cells" (reviewer-79): a forecast model maps frames to frames on one grid, so it
has no factor and no fine cells. Its header gives the task alone and its grid line the cells;
a super-resolution model keeps both words."""

from __future__ import annotations

from train_runs import tiny_forecast_config

from flexdownscale.cli import _grid_line, main
from flexdownscale.train import Trainer

_SPEC = {"kind": "projected", "nx": 8, "ny": 6, "dx": 1.0, "dy": 1.0, "x0": 0.0, "y0": 0.0}


def _info_lines(name: str, capsys) -> list[str]:
    capsys.readouterr()
    assert main(["info", name]) == 0
    return capsys.readouterr().out.splitlines()


def test_grid_line_says_cells_for_a_forecast_and_fine_cells_for_downscaling():
    spec = {**_SPEC, "x": "x", "y": "y"}
    forecast = {"grid": spec, "past_frames": 2, "lead": 1, "time_step": None}
    assert _grid_line(forecast).startswith("projected, trained on 6 x 8 cells (y, x) of 1 x 1")
    # a record without past frames is told by the folder's task
    assert "trained on 6 x 8 cells (y, x)" in _grid_line({"grid": spec}, "forecast")
    superres = {"grid": spec, "factor": 4}
    assert "trained on 6 x 8 fine cells (y, x)" in _grid_line(superres, "superres")
    assert "trained on 6 x 8 fine cells (y, x)" in _grid_line(superres)


def test_info_of_a_forecast_model_gives_no_factor_and_no_fine_cells(tmp_path, shared_data, capsys):
    folder = Trainer(tiny_forecast_config(tmp_path, shared_data)).export()
    lines = _info_lines(str(folder), capsys)
    header = [line for line in lines if line.strip().startswith("task:")]
    assert header == ["  task: forecast"]
    (grid,) = [line for line in lines if line.strip().startswith("grid:")]
    assert " cells (" in grid, grid
    assert "fine cells" not in grid, grid
    assert "; forecast: past frames 2, lead 1" in grid
    # a shipped downscaling model keeps its factor and fine cells
    lines = _info_lines("era5-t2m-x4", capsys)
    assert "  task: superres, factor: 4" in lines
    (grid,) = [line for line in lines if line.strip().startswith("grid:")]
    assert " fine cells (" in grid, grid
