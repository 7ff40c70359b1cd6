"""The input files of the commands (``downscale``, ``forecast``, ``evaluate``): opening a netCDF
file or zarr store, the time dim an option is about, and words for the messages about them.

Shared by :mod:`flexdownscale.cli` and :mod:`flexdownscale.evaluation`; not part of the API.
The heavy imports (xarray, the data layer) are made inside the functions: importing this
module is fast, as the command line's start-up needs.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any


class _NetCDFLock:
    """The process-wide lock around netCDF / HDF5 calls: re-entrant for the thread holding it.

    netCDF-C and HDF5 are not thread-safe. xarray takes its netCDF lock (``HDF5_LOCK`` and
    ``NETCDFC_LOCK`` of :mod:`xarray.backends.locks`) around opening a file and around every
    later read of it, but not while ``open_dataset`` reads the variables' metadata, so
    threads opening files at once crash the process (pydata/xarray#4100, #9779). This lock
    takes xarray's locks, so it excludes every netCDF read of the process while held, and
    may be taken again by its holder, so the open it is held around (and which, given
    ``lock=``, takes it again) does not deadlock.
    """

    def __init__(self) -> None:
        try:
            from xarray.backends.locks import HDF5_LOCK, NETCDFC_LOCK, combine_locks
        except ImportError:  # pragma: no cover - an xarray without them: a lock of our own
            self._base: Any = threading.Lock()
        else:
            self._base = combine_locks([NETCDFC_LOCK, HDF5_LOCK])
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (again, when this thread holds it); ``False`` when not ``blocking``
        and another thread holds it. ``timeout`` is accepted for the lock protocol and not
        used."""
        me = threading.get_ident()
        if self._owner == me:  # only this thread sets the owner to itself
            self._count += 1
            return True
        if not self._base.acquire(blocking):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self) -> None:
        """Give back one hold; the last one frees the lock."""
        if self._owner != threading.get_ident():
            raise RuntimeError("cannot release the netCDF lock: this thread does not hold it")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._base.release()

    def locked(self) -> bool:
        """Whether a thread holds the lock."""
        return self._owner is not None

    def held_here(self) -> bool:
        """Whether this thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> _NetCDFLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # a lazily read dataset sent to another process (dask) takes that process's lock
        return netcdf_lock, ()


_LOCK: _NetCDFLock | None = None
_LOCK_MADE = threading.Lock()


def netcdf_lock() -> _NetCDFLock:
    """The process's one netCDF lock (made on first use: xarray is imported then).

    Hold it around a netCDF open and the reads made right after it (``with netcdf_lock():``);
    :func:`open_netcdf` does, and hands it to xarray for the file's later reads.
    """
    global _LOCK
    with _LOCK_MADE:
        if _LOCK is None:
            _LOCK = _NetCDFLock()
        return _LOCK


def open_netcdf(path: str | Path, **kwargs: Any) -> Any:
    """``xr.open_dataset(path, **kwargs)`` holding :func:`netcdf_lock`, which the dataset's
    later (lazy) reads take too: safe while other threads open or read netCDF files through
    this package or xarray."""
    import xarray as xr

    lock = netcdf_lock()
    with lock:
        return xr.open_dataset(path, lock=lock, **kwargs)


def one_line(err: BaseException) -> str:
    """``str(err)`` with its whitespace (newlines included) collapsed, for one-line messages."""
    return " ".join(str(err).split()) or type(err).__name__


def is_zarr(path: str) -> bool:
    """Whether ``path`` names a zarr store (its name ends in ``.zarr``), not a netCDF file."""
    return path.rstrip("/").endswith(".zarr")


def is_store(path: str) -> bool:
    """Whether ``path`` is read as a zarr store: a ``.zarr`` name, or a folder whatever its name
    (as training reads its files); else it is read as a netCDF file."""
    return is_zarr(path) or Path(path).is_dir()


def open_input(path: str) -> Any:
    """Open a netCDF file or a zarr store (lazily).

    A folder is read as a zarr store, whatever its name, as training reads its files. A failure
    is a :class:`~flexdownscale.errors.DataError` naming the path; so is a path that is not
    netCDF or zarr, empty, gzip-compressed or truncated (:func:`~flexdownscale._input_files.
    check_input_file`). A netCDF file is opened holding :func:`netcdf_lock`, which its later
    reads take too: threads may call this at once.
    """
    import xarray as xr

    from ._input_files import check_input_file
    from .errors import DataError

    if not Path(path).exists():
        raise DataError(f"input {path!r} does not exist")
    store = is_store(path)
    kind = "a zarr store" if store else "netCDF"
    if store:
        from .data.io import require_zarr

        require_zarr(path, "read")
    check_input_file(path)
    # netCDF-C and HDF5 are not thread-safe: opens in threads (evaluate, a service) crash the
    # process without the lock, which the file's later reads take too (open_netcdf)
    with contextlib.nullcontext() if store else netcdf_lock():
        try:
            if store:
                from .data.io import zarr_consolidated

                ds = xr.open_zarr(path, consolidated=zarr_consolidated(path))
            else:
                ds = open_netcdf(path)
        except (OSError, ValueError) as err:
            raise DataError(
                f"cannot read {path!r} as {kind}: {one_line(err)} (inputs are netCDF files or "
                "zarr stores)"
            ) from err
        if not ds.data_vars:  # an empty root: the variables may be in a netCDF-4 or zarr group
            from .data.io import group_advice, store_groups

            groups = store_groups(path)
            if groups:
                ds.close()
                raise DataError(
                    f"{path!r} has no variable at its root; {group_advice(path, groups)}"
                )
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
