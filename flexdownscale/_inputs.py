"""The input files of the commands (``downscale``, ``forecast``, ``evaluate``): opening a netCDF
file or zarr store, the time dim an option is about, and words for the messages about them.

Shared by :mod:`flexdownscale.cli` and :mod:`flexdownscale.evaluation`; not part of the API.
The heavy imports (xarray, the data layer) are made inside the functions: importing this
module is fast, as the command line's start-up needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def one_line(err: BaseException) -> str:
    """``str(err)`` with its whitespace (newlines included) collapsed, for one-line messages."""
    return " ".join(str(err).split()) or type(err).__name__


def is_zarr(path: str) -> bool:
    """Whether ``path`` names a zarr store (its name ends in ``.zarr``), not a netCDF file."""
    return path.rstrip("/").endswith(".zarr")


def open_input(path: str) -> Any:
    """Open a netCDF file or a zarr store (lazily).

    A folder is read as a zarr store, whatever its name, as training reads its files. A failure
    is a :class:`~flexdownscale.errors.DataError` naming the path; so is a path that is not
    netCDF or zarr, empty, gzip-compressed or truncated (:func:`~flexdownscale._input_files.
    check_input_file`).
    """
    import xarray as xr

    from ._input_files import check_input_file
    from .errors import DataError

    if not Path(path).exists():
        raise DataError(f"input {path!r} does not exist")
    store = is_zarr(path) or Path(path).is_dir()  # read as a zarr store, as training does
    kind = "a zarr store" if store else "netCDF"
    if store:
        from .data.io import require_zarr

        require_zarr(path, "read")
    check_input_file(path)
    try:
        if store:
            from .data.io import zarr_consolidated

            ds = xr.open_zarr(path, consolidated=zarr_consolidated(path))
        else:
            ds = xr.open_dataset(path)
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read {path!r} as {kind}: {one_line(err)} (inputs are netCDF files or zarr "
            "stores)"
        ) from err
    if not ds.data_vars:  # an empty root: the variables may be in a netCDF-4 or zarr group
        from .data.io import group_advice, store_groups

        groups = store_groups(path)
        if groups:
            ds.close()
            raise DataError(f"{path!r} has no variable at its root; {group_advice(path, groups)}")
    return ds


def groups_hint(*paths: str) -> str:
    """``"; 'in.nc' also has group(s) [...]: ..."`` for files whose netCDF-4 (or zarr) groups hold
    variables (read only on the way to an error: the message about a variable not found)."""
    from .data.io import group_advice, store_groups

    hints = []
    for path in paths:
        groups = store_groups(path)
        if groups:
            hints.append(f"; {path!r} has groups too: {group_advice(path, groups)}")
    return "".join(hints)


def count_noun(n: int, noun: str) -> str:
    """``"1 value"``, ``"2 values"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def find_time_dim(ds: Any, dims: dict[str, str], option: str = "--time-chunk") -> str:
    """The time dim ``option`` (``--time-chunk``, ``--start``) is about: ``--dims time=...``,
    else the one found (CF attributes or common names, as the Downscaler finds it); a
    DataError when there is none."""
    from .data.grid import find_axes
    from .errors import DataError, GridError

    found = dims.get("time")
    if found is None:
        try:
            found = find_axes(ds, dims=dims or None).time
        except GridError:
            found = next((d for d in ("time", "valid_time") if d in ds.dims), None)
    if found is None or found not in ds.dims:
        raise DataError(
            f"{option} given but the input has no time dim (dims: "
            f"{', '.join(map(str, ds.dims))}); name it with --dims time=NAME"
        )
    return str(found)
