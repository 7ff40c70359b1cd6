"""What a file holds where flexdownscale does not read it: netCDF-4 and zarr groups, and
whether a zarr store carries consolidated metadata.

``xr.open_dataset(path)`` and ``xr.open_zarr(path)`` read the root group only; variables
written into a group (``ds.to_netcdf(path, group="forecast")``, ``ds.to_zarr(store,
group="forecast")``) are not seen, and the root looks empty. These helpers
list the groups that hold variables, for the messages of the places that open files (the
command line, training's files): they are called only when the root lacks what is wanted, so a
file in the usual layout costs nothing. :func:`zarr_consolidated` tells the places that open a
store whether to ask for consolidated metadata (asking a store without it makes xarray warn).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

__all__ = [
    "group_advice",
    "netcdf_groups",
    "store_groups",
    "zarr_consolidated",
    "zarr_groups",
]


def netcdf_groups(path: str | Path) -> list[str]:
    """The groups of a netCDF-4 file that hold data variables, as paths (``"forecast"``,
    ``"run1/members"``), in the file's order.

    Coordinates and netCDF dimensions (HDF5 dimension scales) do not count: a group that holds
    only those has no variable to read. Files that are not HDF5 (netCDF-3, zarr stores) have no
    groups.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    list of str
        The group paths; empty for a file without groups, a file h5py cannot open, or one whose
        groups hold no data variable.
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        return []
    if not Path(path).is_file():
        return []
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset) or "/" not in name:
            return
        if obj.attrs.get("CLASS") is not None:  # a coordinate or a bare dimension
            return
        group = name.rsplit("/", 1)[0]
        if group not in found:
            found.append(group)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError):  # not an HDF5 file: netCDF-3 has no groups
        return []
    return found


def zarr_groups(path: str | Path) -> list[str]:
    """The groups of a zarr store (format 2 or 3) that hold data variables, as paths
    (``"forecast"``, ``"run1/members"``), in the store's order.

    An array named like its only dimension is a coordinate and does not count.

    Parameters
    ----------
    path : str or Path
        The store (a folder).

    Returns
    -------
    list of str
        The group paths; empty for a store without groups, or one zarr cannot open.
    """
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr comes with xarray's zarr support
        return []
    if not Path(path).is_dir():
        return []
    found: list[str] = []

    def visit(group: object, prefix: str) -> None:
        for name, array in group.arrays():  # type: ignore[attr-defined]
            dims = array.attrs.get("_ARRAY_DIMENSIONS") or getattr(
                array.metadata, "dimension_names", None
            )
            if prefix and list(dims or ()) != [name] and prefix[:-1] not in found:
                found.append(prefix[:-1])
        for name, sub in group.groups():  # type: ignore[attr-defined]
            visit(sub, f"{prefix}{name}/")

    try:
        visit(zarr.open_group(str(path), mode="r"), "")
    except Exception:  # not a zarr store (or a damaged one): no groups to name
        return []
    return found


def require_zarr(path: str | Path, action: Literal["read", "write"]) -> None:
    """Raise ``BackendNotAvailableError`` when the zarr package, which xarray needs to read or
    write the zarr store ``path``, is not installed (an optional extra of flexdownscale).

    Without it xarray raises its own ``ImportError`` from deep inside ``open_zarr`` /
    ``to_zarr``: for an output, after the whole computation. Call this before any.

    Parameters
    ----------
    path : str or Path
        The store (a folder whose name ends in ``.zarr``).
    action : {"read", "write"}
        What is asked of it, for the message.
    """
    import importlib.util

    from ..errors import BackendNotAvailableError

    if importlib.util.find_spec("zarr") is None:
        other = "a netCDF file (a name ending in .nc)" if action == "write" else "netCDF input"
        raise BackendNotAvailableError(
            f"cannot {action} the zarr store {str(path)!r}: the zarr package is not installed; "
            f"install it with pip install 'flexdownscale[zarr]', or {action} {other} instead"
        )


def zarr_consolidated(path: str | Path) -> bool:
    """Whether the zarr store at ``path`` carries consolidated metadata.

    ``xr.open_zarr`` asks for it by default and, on a store without it (``to_zarr(...,
    consolidated=False)``, stores other tools write), warns "Failed to open Zarr store with
    consolidated metadata" before reading the store array by array: pass
    ``consolidated=zarr_consolidated(path)`` to read either kind without that warning, and
    the metadata in one read where it is there.

    Parameters
    ----------
    path : str or Path
        The store (a folder).

    Returns
    -------
    bool
        True for a format-2 store with a ``.zmetadata`` file and a format-3 store whose root
        ``zarr.json`` has a ``consolidated_metadata`` entry; False otherwise (also for a
        path that is not a store).
    """
    import json

    root = Path(path)
    if (root / ".zmetadata").is_file():
        return True
    try:
        meta = json.loads((root / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("consolidated_metadata") is not None


def store_groups(path: str | Path) -> list[str]:
    """:func:`zarr_groups` of a folder (a zarr store), :func:`netcdf_groups` of a file."""
    return zarr_groups(path) if Path(path).is_dir() else netcdf_groups(path)


def group_advice(
    path: str | Path, groups: list[str], *, form: Literal["command", "both"] = "command"
) -> str:
    """Where the variables of ``path`` are and how to go on: the words after a message that
    found no (or not the wanted) variable at the file's root.

    Parameters
    ----------
    path : str or Path
        The file or zarr store.
    groups : list of str
        Its groups that hold variables (:func:`store_groups`); not empty.
    form : {"command", "both"}
        ``"command"``: extract the group to a flat file (``ncks``, or an xarray line run with
        ``python -c``; a zarr store's group is copied to a store of its own), for the command line and a training configuration; ``"both"`` adds
        that a Dataset opened from the group may be passed in place of the path (the Python
        API).

    Returns
    -------
    str
        E.g. ``the file has variables in group(s) ['forecast'], which flexdownscale does
        not read (only the root group): extract one to a flat file first, ncks -G : -g
        forecast in.nc in_forecast.nc``, and the xarray line.
    """
    path = str(path)
    group = groups[0]
    source = Path(path.rstrip("/"))
    flat = str(source.with_name(f"{source.stem}_{group.replace('/', '_')}{source.suffix}"))
    store = source.is_dir()
    opened = (
        f"xr.open_zarr({path!r}, group={group!r})"
        if store
        else f"xr.open_dataset({path!r}, group={group!r})"
    )
    python = f"import xarray as xr; {opened}.{'to_zarr' if store else 'to_netcdf'}({flat!r})"
    # double quotes read best around Python's single-quoted strings, when the shell leaves it be
    quoted = f'"{python}"' if not set(python) & set('"$`\\!') else shlex.quote(python)
    if store:
        text = (
            f"the zarr store has variables in group(s) {groups}, which flexdownscale does not "
            f"read (only the root group): copy one to a store of its own first, python -c "
            f"{quoted}"
        )
    else:
        text = (
            f"the file has variables in group(s) {groups}, which flexdownscale does not read "
            f"(only the root group): extract one to a flat file first, ncks -G : -g {group} "
            f"{shlex.quote(path)} {shlex.quote(flat)} (NCO), or python -c {quoted}"
        )
    if form == "both":
        text += f"; or, in Python, pass {opened} in place of the path"
    return text
