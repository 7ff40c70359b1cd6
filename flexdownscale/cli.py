"""The ``flexdownscale`` command line.

``flexdownscale info`` prints the version, every backbone and preset with its super-resolution
parameter count, the regridding backends found and the compute device; ``flexdownscale info MODEL``
describes a model folder (variables, factor, grid, training data and skill from its model card).
``flexdownscale downscale IN OUT --model M`` downscales a netCDF/zarr file (zarr out when OUT ends
in ``.zarr``); ``flexdownscale forecast IN OUT --model M --lead-steps N`` runs a forecast model
from the input's last time (or from each ``--start``); ``flexdownscale evaluate PRED TRUTH --out
DIR`` writes a metrics table (markdown) and spectra / rank-histogram plots.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import functools
import importlib.util
import itertools
import json
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._inputs import count_noun as _count
from ._inputs import find_time_dim as _time_dim
from ._inputs import groups_hint as _groups_hint
from ._inputs import is_zarr as _is_zarr
from ._inputs import one_line as _one_line
from ._inputs import open_input as _open

if TYPE_CHECKING:  # the errors module is imported where an error is raised (fast start-up)
    from types import FrameType

    from .errors import DataError

__all__ = ["console_main", "main"]


def _backends() -> list[tuple[str, bool, str]]:
    """Optional backends: (name, available, what it is for / how to get it)."""
    table = [
        ("xarray-regrid", "xarray_regrid", "default regridding (installed with the package)"),
        (
            "xesmf",
            "xesmf",
            "curvilinear regridding: pip install 'flexdownscale[esmf]' + conda esmpy",
        ),
        (
            "huggingface_hub",
            "huggingface_hub",
            "models by Hub id: pip install 'flexdownscale[hub]'",
        ),
        ("accelerate", "accelerate", "training: pip install 'flexdownscale[train]'"),
        (
            "dask.distributed",
            "distributed",
            "inference on a cluster: pip install 'flexdownscale[distributed]'",
        ),
        ("wandb", "wandb", "the wandb logger: pip install 'flexdownscale[wandb]'"),
        ("zarr", "zarr", "zarr stores in and out: pip install 'flexdownscale[zarr]'"),
        (
            "pyproj",
            "pyproj",
            "latitude / longitude of projected outputs: pip install 'flexdownscale[proj]'",
        ),
    ]
    found = []
    for name, module, hint in table:
        try:
            available = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            available = False
        found.append((name, available, hint))
    return found


def _device_line() -> str:
    import torch

    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return f"cuda ({torch.cuda.device_count()} x {', '.join(sorted(names))})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({torch.get_num_threads()} threads)"


def _info_package() -> int:
    import torch

    from ._version import __version__
    from .models.registry import parameter_table

    print(
        f"flexdownscale {__version__} (torch {torch.__version__}, Python {sys.version.split()[0]})"
    )
    print()
    print("backbones (super-resolution model, 1 channel, 128 x 128; parameters):")
    for backbone, preset, count in parameter_table():
        print(f"  {backbone:<5} {preset:<7} {count / 1e6:8.2f} M")
    print()
    print("backends:")
    for name, available, hint in _backends():
        print(f"  {name:<17} {'found' if available else 'missing':<8} {hint}")
    print()
    print(f"device: {_device_line()}")
    return 0


def _info_model(name: str) -> int:
    from .hub import load_model_folder, normalization_transforms, shipped_models
    from .pipeline import _check_weights_fit

    folder = load_model_folder(name)
    # the weights are checked against the architecture of config.json, as loading it to
    # downscale does (shapes only, on the meta device): an edited config is an error, not a card
    backbone = _check_weights_fit(folder)
    count = sum(p.numel() for p in backbone.parameters())
    stored = sorted({str(t.dtype).removeprefix("torch.") for t in folder.state_dict.values()})
    path = Path(folder.path).resolve()
    shipped = shipped_models().get(str(name))
    if shipped is not None and shipped.resolve() != path:  # a local folder takes the name first
        print(f"model: {name} ({path}: a local folder, not the shipped model of this name)")
    else:
        print(f"model: {name} ({path})")
    # a forecast model maps frames to frames on one grid: it has no factor to give
    factor = "" if folder.task == "forecast" else f", factor: {folder.factor}"
    print(f"  task: {folder.task}{factor}")
    described = ", ".join(f"{v} [{folder.units.get(v, '')}]" for v in folder.variables)
    print(f"  variables: {described}")
    transforms = normalization_transforms(folder.normalization)
    if transforms:
        told = "; ".join(f"{v} {words}" for v, words in transforms.items())
        print(f"  normalization transform: {told}")
    print(
        f"  backbone: {folder.model.backbone} {folder.model.preset}, {count / 1e6:.2f} M "
        f"parameters (stored as {', '.join(stored)}; the weights fit the architecture)"
    )
    sampler = folder.sampler
    stored = ", ".join(f"{k}={getattr(sampler, k):g}" for k in ("eta", "delta", "g1", "g2"))
    print(
        f"  objective: {folder.diffusion.objective}; sampler default: {sampler.sampler} "
        f"{sampler.steps} steps (stored options: {stored}; eta for ddim, delta for sde, "
        "g1/g2 for idff)"
    )
    if folder.condition:
        print(f"  physical condition: {json.dumps(dict(folder.condition))}")
    if folder.grid:
        print(f"  grid: {_grid_line(dict(folder.grid), folder.task)}")
    else:  # grid.json holds {}: a model built in Python without grid= and saved
        print(f"  grid: {_unrecorded_grid_words(folder.task, folder.model.past_frames)}")
    print()
    print(folder.card)
    return 0


def _unrecorded_grid_words(task: str, past_frames: int) -> str:
    """The grid line of ``info`` for a folder whose ``grid.json`` is empty: a model built in
    Python without ``grid=`` and saved (a forecast model's past frames come from its
    ``config.json``; no time step is recorded, so the input's spacing is not checked)."""
    words = (
        "not recorded (the model was built in Python without grid= and saved; build it with "
        "grid=<its training dataset>.grid_metadata() to record the training grid)"
    )
    if task == "forecast":
        words += (
            f"; forecast: past frames {past_frames}, time step not recorded (the input's time "
            "spacing is not checked)"
        )
    return words


def _grid_line(grid: dict[str, Any], task: str | None = None) -> str:
    """A model folder's grid record in words (the JSON when it is not the expected record);
    ``task`` is the folder's (a forecast model's grid is told as its cells, not fine cells)."""
    from .hub import _forecast_settings

    spec = grid.get("grid")
    if not isinstance(spec, dict) or not {"kind", "nx", "ny", "dx", "dy", "x0", "y0"} <= set(spec):
        return json.dumps(grid)
    periodic = [a for a in ("x", "y") if spec.get(f"periodic_{a}")]
    # a forecast model's grid is the one grid of its frames, not the fine grid of a downscaling
    forecast = task == "forecast" or _forecast_settings(grid) is not None
    cells = "cells" if forecast else "fine cells"

    def units(axis: str) -> str:
        u = str(spec.get(f"{axis}_units") or "")
        return "" if u in ("", "1") else f" {u}"

    return (
        f"{spec['kind']}, trained on {spec['ny']} x {spec['nx']} {cells} ({spec.get('y')}, "
        f"{spec.get('x')}) of {spec['dy']:g}{units('y')} x {spec['dx']:g}{units('x')} "
        f"from ({spec['y0']:g}, {spec['x0']:g})"
        + (f", periodic in {' and '.join(periodic)}" if periodic else "")
        + _task_words(grid)
    )


def _task_words(grid: dict[str, Any]) -> str:
    """The end of :func:`_grid_line`: a forecast's past frames, lead and time step, else the
    super-resolution settings that are recorded (none of them printed as ``None``)."""
    from .hub import _forecast_settings

    forecast = _forecast_settings(grid)
    if forecast is not None:
        return f"; forecast: {forecast}"
    names = (("degradation", "degradation"), ("upsample", "upsampling"), ("factor", "factor"))
    known = [f"{words} {grid[key]}" for key, words in names if grid.get(key) is not None]
    return f"; {', '.join(known)}" if known else ""


def _os_error_line(err: OSError) -> str:
    """One line for a file-system error: the file and what went wrong with it, and for a
    full disk or a file-size limit (errors of writes only) what to do."""
    if err.filename is not None:
        what = err.strerror or _one_line(err)
        other = f" -> {err.filename2!r}" if err.filename2 is not None else ""
        fix = ""
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            from ._output import write_fix

            fix = f"; {write_fix(err.errno, Path(str(err.filename)).parent)}"
        return f"cannot use {str(err.filename)!r}{other}: {what}{fix}"
    return _one_line(err)


@contextlib.contextmanager
def _group_hint_on_missing_variable(path: str) -> Iterator[None]:
    """Add :func:`_groups_hint` of ``path`` to a ``MissingVariableError`` raised inside: the
    model's variables may be in a netCDF-4 or zarr group of the input."""
    from .errors import MissingVariableError

    try:
        yield
    except MissingVariableError as err:
        hint = _groups_hint(path)
        if not hint:
            raise
        raise MissingVariableError(f"{err}{hint}") from None


def _write_and_tell(out: Any, args: argparse.Namespace) -> None:
    """Write a command's output (:func:`_write_output`) to ``args.output`` and, unless
    ``args.quiet``, say where and its sizes (``wrote out.nc (time: 2, latitude: 64,
    longitude: 96)``)."""
    target, quiet = args.output, args.quiet
    _write_output(out, target)
    args.written = True  # an interrupt from here on: the output is whole (_interrupted_words)
    if not quiet:
        sizes = ", ".join(f"{k}: {v}" for k, v in out.sizes.items() if k != "bnds")
        print(f"wrote {target} ({sizes})")


def _check_device(device: str | None) -> None:
    """Refuse a ``--device`` that is unknown or absent here, before anything is computed."""
    if device is None:
        return
    import torch

    from .errors import ConfigError
    from .models.devices import available_devices, device_unavailable

    available = available_devices()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"--device {device!r} is not a device name; available here: {', '.join(available)} "
            "(or leave --device out: CUDA when available, else the CPU)"
        ) from None
    why = device_unavailable(resolved)  # the Python API's rule (Downscaler, Forecaster)
    if why is not None:
        raise ConfigError(
            f"--device {device!r} is not available ({why}); available here: "
            f"{', '.join(available)} (or leave --device out: CUDA when available, else the CPU)"
        )


def _check_output(
    source: str,
    target: str,
    *,
    overwrite: bool = False,
    times: Callable[[], Any] | None = None,
    dims: dict[str, str] | None = None,
) -> None:
    """Refuse an output path that is the input, lies in a missing folder or, unless
    ``overwrite``, holds data that flexdownscale did not write (before computing); with
    ``times`` (giving the input's times, :func:`_times_of`: ``downscale``, whose output has
    the input's times) also an earlier output of other times (:func:`_other_origin`, which
    finds its time dim with ``dims``, the ``--dims`` given)."""
    from ._output import written_through
    from .errors import DataError

    src, dst = Path(source), Path(target)
    same = src.exists() and (
        dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst))
    )
    if same:
        raise DataError(
            f"the output {target!r} is the input file; the input is read while the output is "
            "written, so this would destroy it: give another output path"
        )
    if dst.is_dir() and not _is_zarr(target):
        raise DataError(
            f"the output {target!r} is an existing folder, but a netCDF output is a file: give "
            "a file path, or a name ending in .zarr to write a zarr store"
        )
    if _is_zarr(target):  # before the computation, not when its result is written
        from .data.io import require_zarr

        require_zarr(target, "write")
    if _is_zarr(target) and dst.exists() and not dst.is_dir():
        raise DataError(
            f"the output {target!r} is an existing file, but a zarr store is a folder: give "
            "another path, or a name ending in .nc to write netCDF"
        )
    if _is_zarr(target) and dst.is_dir():
        from ._input_files import ZARR_MARKERS
        from .hub import _listing

        entries = sorted(p.name for p in dst.iterdir())
        if entries and not set(entries) & set(ZARR_MARKERS):
            raise DataError(
                f"the output {target!r} is an existing folder that is not a zarr store (it holds "
                f"{_listing(entries)}); writing the output would replace it: give another path"
            )
    other = None if overwrite else _other_origin(target, times, dims)
    if other is not None:
        raise DataError(
            f"the output {target!r} exists and {other}, so writing the output would replace "
            "it: give another output path, or add --overwrite to replace it"
        )
    dst = written_through(dst)  # a link's target's folder, where _write_output writes
    folder = dst.parent
    if not folder.is_dir():
        import shlex

        state = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(
            f"the folder of the output {target!r}, {str(folder)!r}, {state}; create it first "
            f"(mkdir -p {shlex.quote(str(folder))}) or give another output path"
        )
    import shutil

    # the output is written beside its target first (see _write_output): try that now
    shutil.rmtree(_folder_beside(str(dst), ".probe"))


#: The characters of a shell pattern (``coarse_*.nc``, ``day?.nc``, ``[ab].nc``).
_PATTERN = re.compile(r"[*?[]")


def _check_paths_given(args: argparse.Namespace) -> None:
    """Refuse the paths of a command that it cannot take, before anything is read.

    ``-`` is no file here (netCDF and zarr are read and written at random places, which a pipe
    cannot do), and a path that does not exist but is a shell pattern (quoted, so no shell
    expanded it) is said to be one: every command takes one file per path.
    """
    from .errors import ConfigError

    command = args.command
    roles = {
        "downscale": (("input", "INPUT", True), ("output", "OUTPUT", False)),
        "forecast": (("input", "INPUT", True), ("output", "OUTPUT", False)),
        "evaluate": (
            ("prediction", "PREDICTION", True),
            ("truth", "TRUTH", True),
            ("baseline", "--baseline", True),
            ("out", "--out", False),
        ),
        "demo": (("out", "--out", False),),
    }.get(command, ())
    for name, role, read in roles:
        given = getattr(args, name, None)
        if not isinstance(given, str):
            continue
        if given == "-":
            stream = "standard input" if read else "standard output"
            kind = "folder" if role == "--out" else "file"
            raise ConfigError(
                f"{role} '-': {stream} is not supported (netCDF and zarr are read and written "
                f"at random places, which a pipe cannot do); give a {kind} path (./- for a "
                f"{kind} named '-')"
            )
        if read and not os.path.lexists(given) and _PATTERN.search(given):
            raise ConfigError(_pattern_words(given, role, command))


def _pattern_words(given: str, role: str, command: str) -> str:
    """The message for a quoted shell pattern given as a file: what it matches and how to run
    the command on several files."""
    import glob

    found = sorted(glob.glob(os.path.expanduser(given)))
    if not found:
        matches = "it matches no file"
    else:
        shown = ", ".join(repr(f) for f in found[:3]) + (", ..." if len(found) > 3 else "")
        matches = f"it matches {_count(len(found), 'file')} ({shown})"
    join = f"xr.open_mfdataset({given!r}).to_netcdf('joined.nc')"
    if command == "downscale":
        several = (
            f"run the command once per file (for f in {given}; do flexdownscale downscale "
            '"$f" "${f%.nc}_fine.nc"; done) or join the files into one first (in Python: '
            f"{join})"
        )
    else:
        several = f"join the files into one first (in Python: {join})"
    return (
        f"{role} {given!r} does not exist: it is a file-name pattern, which flexdownscale "
        f"{command} does not expand ({matches}); {command} takes one file as {role}: "
        f"{several}"
    )


def _other_origin(
    target: str, times: Callable[[], Any] | None = None, dims: dict[str, str] | None = None
) -> str | None:
    """Why an existing output path is not flexdownscale's to replace, in words (``"is not an
    earlier output of flexdownscale (...)"``); ``None`` for a path that does not exist, an empty
    file or folder, and an earlier output of ``downscale`` or ``forecast`` (its global
    attributes carry ``flexdownscale_version``), which a re-run replaces.

    With ``times`` (called only for an earlier output of flexdownscale, it gives the times of
    ``downscale``'s input, which its output keeps, as :func:`_times_of` does), an earlier
    output of other times is not a re-run's: it is refused too (its time dim found as the
    input's, with ``dims``, the ``--dims`` given). An unquoted shell
    pattern (``coarse_*.nc``) matching two files puts the second in OUTPUT's place, and that
    second file may be an earlier output of another input (another month, another year),
    which would otherwise be replaced without ``--overwrite``."""

    dst = Path(target)
    if not dst.exists():
        return None
    if (not any(dst.iterdir())) if dst.is_dir() else dst.stat().st_size == 0:
        return None  # nothing in it to lose
    kind = "a zarr store" if _is_zarr(target) else "netCDF"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a probe: the file's own warnings are not news
            with _open(target) as opened:  # the inputs' opener (zarr metadata, groups, ...)
                attrs = dict(opened.attrs)
                earlier = _times_of(opened, dims)
    except Exception:  # any file xarray cannot open is someone else's
        return f"cannot be read as {kind}, so it is not an earlier output of flexdownscale"
    if "flexdownscale_version" in attrs:
        wanted = None if times is None or earlier is None else times()
        if wanted is not None and not _same_values(earlier, wanted):
            return (
                f"is an earlier output of flexdownscale for other times ({_span(earlier)}) "
                f"than the input's ({_span(wanted)}), not this input's (an unquoted "
                "pattern such as coarse_*.nc that matches two files puts the second in "
                "OUTPUT's place)"
            )
        return None  # a re-run of the command: its own output is replaced
    return (
        "is not an earlier output of flexdownscale (its global attributes have no "
        "flexdownscale_version)"
    )


def _times_of(ds: Any, dims: dict[str, str] | None = None) -> Any:
    """The distinct values of ``ds``'s time coordinate, sorted; its time dim is found as the
    commands find it, with ``dims`` (``--dims time=NAME``). ``None`` without one, or for
    values that do not compare."""
    import numpy as np

    from .errors import FlexDownscaleError

    try:
        tdim = _time_dim(ds, dims or {})
    except FlexDownscaleError:  # no time dim, or --dims that the run refuses with its message
        return None
    if tdim not in ds.coords:
        return None
    try:
        return np.unique(np.asarray(ds[tdim].values).ravel())
    except TypeError:  # values of kinds that do not compare
        return None


def _same_values(a: Any, b: Any) -> bool:
    """Whether the times ``a`` and ``b`` (from :func:`_times_of`) are the same."""
    import numpy as np

    try:
        return bool(np.array_equal(a, b))
    except TypeError:  # times of kinds that do not compare: not the same
        return False


def _span(times: Any) -> str:
    """Sorted times in words: ``'3 times from 2019-03-19T00:00:00 to 2019-03-19T02:00:00'``."""
    first, last = _time_label(times[0]), _time_label(times[-1])
    if times.size == 1:
        return f"1 time, {first}"
    return f"{_count(times.size, 'time')} from {first} to {last}"


def _folder_beside(target: str, suffix: str) -> Path:
    """A new hidden folder beside ``target`` (where the output is written before it replaces
    the target); :class:`DataError` naming the user's path when the folder cannot be made."""
    import tempfile

    dst = Path(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=suffix, dir=dst.parent))
    except OSError as err:
        raise _unwritable(target, err) from err


def _unwritable(target: str, err: OSError) -> DataError:
    """The DataError for an output that cannot be written (the folder is read-only, the disk
    full), naming the user's path rather than the hidden temporary one beside it
    (:func:`flexdownscale._output.unwritable_folder`)."""
    from ._output import unwritable_folder

    folder = Path(target).parent
    return unwritable_folder(
        f"write the output {target!r}",
        err,
        folder,
        f"creating a file in its folder {str(folder)!r}",
    )


#: Encoding keys that describe how an input was stored, not what its values mean.
_STORAGE_ENCODING = frozenset(
    {
        "compressor",
        "compressors",
        "filters",
        "serializer",
        "chunks",
        "preferred_chunks",
        "shards",
        "zarr_format",
        "zlib",
        "complevel",
        "shuffle",
        "fletcher32",
        "contiguous",
        "chunksizes",
        "blosc_shuffle",
        "compression",
        "szip_coding",
        "szip_pixels_per_block",
        "endian",
        "source",
        "original_shape",
    }
)


def _write_zarr(ds: Any, target: str) -> None:
    """Write ``ds`` as a zarr store with consolidated metadata (opens without a warning).

    Consolidated metadata is what ``xr.open_zarr`` looks for first; without it, opening warns
    and reads every array's metadata separately. zarr-python notes at write time that
    consolidated metadata is not yet part of the zarr v3 specification; that notice is about
    other zarr implementations (which still read the store, without the shortcut), so it is
    silenced here rather than shown to every CLI user.
    """
    from .data.grid import coordinate_encoding

    # the input's storage settings (a zarr v2 store's Blosc compressor, its chunks) do not fit
    # the store written here (zarr v3 refuses v2 codecs): the writer's own defaults apply
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k not in _STORAGE_ENCODING}
    encoding = coordinate_encoding(ds)
    for name, var in ds.data_vars.items():
        if "member" in var.dims and var.chunks is None:
            # an ensemble in memory: zarr's own chunking split the members (16 into 2 chunks),
            # which the ensemble scores, sorting along them, refuse when the store is opened;
            # one chunk per field holds every member (dask-backed output keeps its chunks)
            whole = ("member", *_grid_dims(var))
            chunks = tuple(
                size if dim in whole else 1 for dim, size in zip(var.dims, var.shape, strict=True)
            )
            encoding[name] = {**encoding.get(name, {}), "chunks": chunks}
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Consolidated metadata is currently not part", category=UserWarning
        )
        ds.to_zarr(target, mode="w", consolidated=True, encoding=encoding)


def _grid_dims(var: Any) -> tuple[Any, ...]:
    """The (y, x) dims of an output variable (its last two when its grid is not recognised)."""
    from .data import grid_spec
    from .errors import FlexDownscaleError

    try:
        spec = grid_spec(var)
    except FlexDownscaleError:
        return tuple(var.dims[-2:])
    return (spec.y, spec.x)


@contextlib.contextmanager
def _own_thread_pool() -> Iterator[None]:
    """Run dask's threaded scheduler on a pool of its own, shut down (running tasks finished,
    queued ones cancelled) on leaving: when a lazy computation fails, dask raises at once while
    other chunks may still be writing, and a temporary output removed then would come back."""
    import dask
    import dask.threaded
    from dask.system import CPU_COUNT

    executor = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    pool = executor(dask.config.get("num_workers", None) or CPU_COUNT)
    try:
        with dask.config.set(pool=pool):
            yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_output(ds: Any, target: str) -> None:
    """Write ``ds`` to ``target`` (netCDF, or a zarr store when it ends in ``.zarr``) atomically.

    The output is written into a fresh hidden folder beside ``target`` and moved into place only
    once complete, so a run that fails midway (e.g. a lazy run meeting NaNs in a later time chunk)
    leaves an earlier ``target`` as it was and no partial file; the temporary folder is removed.
    An earlier zarr store is replaced like a model folder (:func:`flexdownscale.hub._replace`:
    moved aside, put back if the new one cannot take its place). A ``target`` that is a
    symbolic link is written through, as ``cp`` and the shell's ``>`` write: the file or store
    it points to is replaced and the link kept.
    """
    import shutil

    from ._output import written_through
    from .data.grid import coordinate_encoding
    from .errors import FlexDownscaleError
    from .hub import _replace

    dst = written_through(Path(target))  # a link's target, beside which the output is written
    holder = _folder_beside(str(dst), ".partial")
    written = holder / dst.name
    try:
        with _own_thread_pool():
            if _is_zarr(target):
                _write_zarr(ds, str(written))
            else:
                ds.to_netcdf(written, encoding=coordinate_encoding(ds))
        if not dst.is_dir():
            os.replace(written, dst)  # a file (or nothing) at target: one atomic rename
        else:  # an earlier zarr store: a folder cannot be renamed over a non-empty folder
            _replace(dst, written)
    except FlexDownscaleError:  # the run's own errors (NaNs met in a lazy chunk, ...)
        raise
    except OSError as err:
        names = [str(n) for n in (err.filename, err.filename2) if n is not None]
        if any(str(holder) not in n for n in names):
            raise  # another file than the output (an input read lazily): named by itself
        raise _unwritten(target, err, holder) from err  # a full disk: the user's path
    except (RuntimeError, ValueError) as err:  # netCDF's "NetCDF: HDF error" on a full disk
        if _failed_writing(err, holder):
            raise _unwritten(target, err, holder) from err
        raise
    finally:
        if _is_zarr(target):
            from ._output import wait_for_zarr_writes

            wait_for_zarr_writes()
        shutil.rmtree(holder, ignore_errors=True)


def _unwritten(target: str, err: BaseException, holder: Path) -> OSError:
    """The ``OSError`` of an output that could not be written (a full disk, a file-size limit)
    said of ``target``, the user's path, with the cause
    (:func:`flexdownscale._output.write_cause`; zarr's error names no file, netCDF's none of
    its cause); the command prints it as one line naming ``target``."""
    from ._output import write_cause

    why, code = write_cause(err, holder)
    return OSError(code if code is not None else errno.EIO, why, target)


def _failed_writing(err: BaseException, holder: Path) -> bool:
    """Whether ``err``, not an ``OSError``, is a writer's failure to write into ``holder``
    (netCDF's ``"NetCDF: HDF error"`` or ``"NetCDF: ..."`` of a full disk, a file-size limit)
    rather than an error of the computation."""
    from ._output import disk_full

    text = str(err)
    return text.startswith("NetCDF:") or "HDF error" in text or disk_full(holder)


def _downscale(args: argparse.Namespace) -> int:
    from .pipeline import downscaler_for

    _check_device(args.device)
    dims = _merged(args.dims)
    opened: list[Any] = []

    def input_times() -> Any:  # for an earlier output at OUTPUT: the input, opened once
        opened.append(_open(args.input))
        return _times_of(opened[0], dims)

    try:
        _check_output(
            args.input, args.output, overwrite=args.overwrite, times=input_times, dims=dims
        )
    except BaseException:
        for ds in opened:
            ds.close()
        raise
    ds = opened[0] if opened else _open(args.input)
    if args.time_chunk is not None:
        ds = ds.chunk({_time_dim(ds, dims): args.time_chunk})
    rename = _merged(args.rename)
    variables = _merged_list(args.variables)
    with _group_hint_on_missing_variable(args.input):
        downscaler = downscaler_for(
            args.model,
            tuple(map(str, ds.data_vars)),
            rename=rename or None,
            variables=variables,
            factor=args.factor,
        )
        out = _run_downscaler(downscaler, ds, args, variables, rename, dims)
    _write_and_tell(out, args)
    if args.conserve and not args.quiet:
        said = out.attrs.get("flexdownscale_conserve", args.conserve)
        print(f"conserve: {said} (each member's coarse-cell means are the input's)")
    return 0


def _run_downscaler(
    downscaler: Any,
    ds: Any,
    args: argparse.Namespace,
    variables: Any,
    rename: dict[str, Any],
    dims: dict[str, Any],
) -> Any:
    """``downscaler(ds, ...)`` with the options of ``flexdownscale downscale``."""
    keywords = _common_keywords(args, variables, rename, dims)
    if args.time_chunk is not None:  # lazy: the sampling runs during the write, unshown
        keywords["progress"] = False
    return downscaler(
        ds,
        factor=args.factor,
        tile=args.tile,
        overlap=args.overlap,
        bbox=args.bbox,
        **keywords,
        **({"blend": args.blend} if args.blend else {}),
        **({"conserve": args.conserve} if args.conserve else {}),
    )


def _common_keywords(
    args: argparse.Namespace, variables: Any, rename: dict[str, Any], dims: dict[str, Any]
) -> dict[str, Any]:
    """The keywords of a Downscaler or Forecaster call from the options both commands share
    (:func:`_add_sampling_options`, :func:`_add_input_options`, :func:`_add_run_options`)."""
    return {
        "members": args.members,
        "steps": args.steps,
        "sampler": args.sampler,
        "seed": args.seed,
        "variables": variables,
        "rename": rename or None,
        "dims": dims or None,
        "device": args.device,
        "batch_size": args.batch_size,
        "batch_invariant": args.batch_invariant,
        "progress": _progress_bar(args.quiet),
        "condition": args.condition,
        "sampler_options": _merged(args.sampler_option) or None,
    }


def _progress_bar(quiet: bool) -> bool:
    """Whether a command shows its progress: not with ``--quiet``. On a terminal that is tqdm's
    bar; where stderr is no terminal (a pipe, a file, a batch job's log) a few whole lines
    (:class:`flexdownscale._output.PlainProgress`), never the bar's ``\\r`` frames."""
    return not quiet


def _forecast(args: argparse.Namespace) -> int:
    """``flexdownscale forecast``: a forecast model's rollout from the input's last time, or
    from each ``--start`` (one file along ``forecast_reference_time`` for several)."""
    from .errors import ConfigError
    from .pipeline import Forecaster

    if args.model is None:
        raise ConfigError(
            "--model is required: no forecast model ships with this version; give the folder "
            "that the training script exported for a forecast run (e.g. --model run/model) or "
            "its Hugging Face Hub id"
        )
    _check_device(args.device)
    _check_output(args.input, args.output, overwrite=args.overwrite)
    ds = _open(args.input)
    dims = _merged(args.dims)
    forecaster = Forecaster.from_pretrained(args.model)
    stride, words = _model_step_stride(forecaster, ds, dims)
    # frames needed up to a start: the past frames, `stride` input steps apart
    needed = (forecaster.past_frames - 1) * stride + 1
    inputs: list[tuple[Any, Any]] = [(None, ds)]
    if args.start is not None:
        inputs = _inputs_up_to_starts(ds, args.start, dims, needed)
    if stride > 1:
        tdim = _time_dim(ds, dims)
        thinned = [(start, _every_kth_to_last(part, tdim, stride)) for start, part in inputs]
        # a --start's frame count is of the frames the model reads
        inputs = [
            ((start[0], start[1], part.sizes[tdim]) if start is not None else None, part)
            for start, part in thinned
        ]
        if not args.quiet:
            end = "each --start" if args.start is not None else "the input's last time"
            print(f"{words}, ending at {end}")
    with _group_hint_on_missing_variable(args.input):
        forecasts = [_run_forecaster(forecaster, part, args, dims, start) for start, part in inputs]
    if len(forecasts) == 1:
        out = forecasts[0]
    else:
        from .provenance import concat_outputs

        # as docs/inference.md's Python: valid_time 2-D, one row per start (evaluate's form);
        # what differs by start (the condition read at each) is recorded per start
        out = concat_outputs(forecasts, "forecast_reference_time", coords=["valid_time"])
    _write_and_tell(out, args)
    return 0


def _model_step_stride(forecaster: Any, ds: Any, dims: dict[str, str]) -> tuple[int, str]:
    """``(k, words)``: the input steps by a whole fraction ``1 / k`` of the forecast model's
    step (an hourly file, a 6-hourly model: 6), so the model's past frames are every k-th
    input step (:meth:`Forecaster._frame_stride`); ``(1, "")`` when not (or no time
    coordinate: the Forecaster's own checks say what is wrong)."""
    from .errors import DataError

    try:
        tdim = _time_dim(ds, dims)
    except DataError:  # no time dim: the Forecaster's message says so
        return 1, ""
    if tdim not in ds.coords:
        return 1, ""
    return forecaster._frame_stride(ds[tdim])


def _every_kth_to_last(part: Any, tdim: str, k: int) -> Any:
    """``part``'s time steps ``k`` apart ending at its latest (the latest frames in time order,
    whatever the file's order)."""
    import numpy as np

    order = np.argsort(np.asarray(part[tdim].values), kind="stable")
    return part.isel({tdim: order[(order.size - 1) % k :: k]})


def _run_forecaster(
    forecaster: Any,
    ds: Any,
    args: argparse.Namespace,
    dims: dict[str, Any],
    start: tuple[str, str | None, int] | None,
) -> Any:
    """``forecaster(ds, ...)`` with the options of ``flexdownscale forecast``; ``start`` is
    ``(given, the first start with enough frames or None, frames up to it)`` for a
    ``--start``: the Forecaster's error for too few past frames then names the start to give."""
    from .errors import DataError

    rename = _merged(args.rename)
    try:
        return forecaster(
            ds,
            lead_steps=args.lead_steps,
            **_common_keywords(args, _merged_list(args.variables), rename, dims),
        )
    except DataError as err:
        if start is None or start[2] >= forecaster.past_frames:
            raise
        given, first, frames = start
        fix = (
            f"give a --start from {first} on"
            if first is not None
            else "the input holds fewer in all: give an input with more time steps"
        )
        raise DataError(
            f"{err} (--start {given} has {_count(frames, 'time step')} of the input up to and "
            f"including it): {fix}"
        ) from None


def _time_label(value: Any) -> str:
    """A time of the input as ``--start`` takes it: ISO for dates, the number for numbers."""
    import numpy as np

    if isinstance(value, np.datetime64):
        import pandas as pd

        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64):
        import pandas as pd

        return str(pd.Timedelta(value))
    if hasattr(value, "isoformat"):  # a cftime date
        return str(value.isoformat())
    return str(value.item() if isinstance(value, np.generic) else value)


#: An ISO date and time as ``--start`` takes it for a cftime axis (``2000-02-30T06:00``).
_ISO_TIME = re.compile(
    r"(-?\d{1,4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2}(?:\.\d*)?))?)?)?"
)


def _start_value(text: str, times: Any) -> Any:
    """``--start TEXT`` as a value of the input's time coordinate ``times`` (dates parsed as
    ISO, numbers as numbers); ``None`` when ``text`` is not such a value."""
    import numpy as np
    import pandas as pd

    kind = times.dtype.kind
    try:
        if kind == "M":
            stamp = pd.Timestamp(text)
            if stamp.tzinfo is not None:  # an aware time: the axis's naive times are UTC
                stamp = stamp.tz_convert("UTC").tz_localize(None)
            return np.datetime64(stamp.to_datetime64())
        if kind == "m":
            return np.timedelta64(pd.Timedelta(text).to_timedelta64())
        if kind in "iuf":
            return float(text)
        if kind == "O" and times.size and hasattr(times.flat[0], "calendar"):
            match = _ISO_TIME.fullmatch(text.strip())
            if match is None:
                return None
            *whole, second = (0 if part is None else part for part in match.groups())
            seconds = float(second)
            fields = [int(part) for part in whole] + [int(seconds)]
            micro = round((seconds - int(seconds)) * 1e6)
            sample = times.flat[0]
            return type(sample)(*fields, micro, calendar=sample.calendar)
    except (ValueError, TypeError, OverflowError):
        return None
    return None


def _inputs_up_to_starts(
    ds: Any, starts: list[str], dims: dict[str, str], past_frames: int
) -> list[tuple[tuple[str, str | None, int], Any]]:
    """Per ``--start``, in time order: ``(given, the first start with ``past_frames`` frames
    up to it or None, frames up to it)`` and the input up to and including it. DataError for a
    start that is not one of the input's times (naming the nearest and the range) or that is
    given twice."""
    import numpy as np

    from .errors import DataError

    tdim = _time_dim(ds, dims, "--start")
    if tdim not in ds.coords:
        raise DataError(
            f"--start given but the input's time dim {tdim!r} has no coordinate, so its steps "
            "have no times to name; leave --start out (the forecast starts from the last step) "
            "or give the input a time coordinate"
        )
    times = np.asarray(ds[tdim].values)
    ordered = np.sort(times, kind="stable")
    span = (
        f"the input's {tdim!r} holds {_count(times.size, 'time')} from "
        f"{_time_label(ordered[0])} to {_time_label(ordered[-1])}"
    )
    example = {
        "M": "ISO dates such as 2019-03-01T12:00",
        "O": "ISO dates such as 2019-03-01T12:00",
        "m": "durations such as '1 day 06:00:00' or 30h",
    }.get(times.dtype.kind, "numbers")
    found: dict[Any, tuple[str, int]] = {}
    for text in starts:
        value = _start_value(text, times)
        if value is None:
            raise DataError(
                f"--start {text!r} is not a time of the input's kind; give {example} ({span})"
            )
        if times.dtype.kind in "iuf":
            hits = np.flatnonzero(np.isclose(times, value, rtol=1e-9, atol=0.0))
        else:
            hits = np.flatnonzero(times == value)
        if hits.size == 0:
            before, after = ordered[ordered < value], ordered[ordered > value]
            nearest = [_time_label(t) for t in (*before[-1:], *after[:1])]
            are = "are" if len(nearest) > 1 else "is"
            raise DataError(
                f"--start {text} is not one of the input's times; the nearest {are} "
                f"{' and '.join(nearest)} ({span}): give one of the input's times"
            )
        if hits.size > 1:
            raise DataError(
                f"--start {text}: the input's {tdim!r} holds that time {hits.size} times; the "
                "past frames must be distinct times (drop the duplicates from the input file)"
            )
        position = int(hits[0])
        if position in {p for _, p in found.values()}:
            raise DataError(f"--start names the time {_time_label(times[position])} twice")
        found[text] = (_time_label(times[position]), position)
    first = _time_label(ordered[past_frames - 1]) if ordered.size >= past_frames else None
    inputs = []
    for text, (_, position) in sorted(found.items(), key=lambda item: times[item[1][1]]):
        up_to = np.flatnonzero(times <= times[position])
        inputs.append(((text, first, int(up_to.size)), ds.isel({tdim: up_to})))
    return inputs


def _pairs(text: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}`` (an argparse type: a clear usage error)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not NAME=VALUE; expected e.g. tas=t2m (several: tas=t2m,u=u10)"
            )
        pairs[key] = value
    if not pairs:
        raise argparse.ArgumentTypeError("expected NAME=VALUE, e.g. tas=t2m")
    return pairs


def _number_pairs(text: str) -> dict[str, float]:
    """``"delta=0.5"`` -> ``{"delta": 0.5}`` (an argparse type)."""
    pairs = _pairs(text)
    try:
        return {key: float(value) for key, value in pairs.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: values must be numbers, e.g. delta=0.5"
        ) from None


def _conserve_value(text: str) -> str | dict[str, str]:
    """``"additive"`` -> ``"additive"`` (every variable); ``"tp=multiplicative,t2m=additive"``
    -> ``{"tp": "multiplicative", "t2m": "additive"}`` (an argparse type: a usage error for
    an unknown mode, or a mode for all mixed with modes per variable)."""
    from .pipeline import _CONSERVE_MODES  # Downscaler.__call__'s modes (a downscale loads it)

    choices = "additive, multiplicative, or VARIABLE=MODE per variable, e.g. tp=multiplicative"
    items = [part.strip() for part in text.split(",") if part.strip()]
    if len(items) == 1 and "=" not in items[0]:
        if items[0] not in _CONSERVE_MODES:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {choices})")
        return items[0]
    modes: dict[str, str] = {}
    for item in items:
        name, sep, mode = (part.strip() for part in item.partition("="))
        if not sep:
            raise argparse.ArgumentTypeError(
                f"{text!r} mixes {item!r}, one mode for every variable, with VARIABLE=MODE; "
                "give one mode for all (--conserve additive) or a mode per variable "
                "(--conserve t2m=additive,tp=multiplicative)"
            )
        if not name or mode not in _CONSERVE_MODES:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {item!r}: expected VARIABLE=MODE with MODE additive or "
                "multiplicative, e.g. tp=multiplicative"
            )
        modes[name] = mode
    if not modes:
        raise argparse.ArgumentTypeError(f"expected a mode: choose from {choices}")
    return modes


class _ConserveAction(argparse.Action):
    """``--conserve``, repeatable: one mode for every variable (a later one wins), or
    ``VARIABLE=MODE`` pairs merged into one mapping; mixing the two is a usage error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest, None)
        if given is None or (isinstance(given, str) and isinstance(values, str)):
            setattr(namespace, self.dest, values)
        elif isinstance(given, dict) and isinstance(values, dict):
            setattr(namespace, self.dest, {**given, **values})
        else:
            bare, pairs = (given, values) if isinstance(given, str) else (values, given)
            spelled = ",".join(f"{k}={v}" for k, v in pairs.items())
            raise argparse.ArgumentError(
                self,
                f"{bare!r}, one mode for every variable, cannot be combined with modes per "
                f"variable ({spelled}); give one mode for all (--conserve {bare}) or a mode "
                "for each variable to constrain (--conserve t2m=additive --conserve "
                "tp=multiplicative; the variables left out are not constrained)",
            )


def _positive_int(text: str) -> int:
    """``"24"`` -> ``24``; zero, negative or not a whole number: a usage error (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number; give the number of time steps per chunk, "
            "e.g. 24, or leave the option out to process the input in one piece"
        )
    return value


def _fss_windows_option(text: str) -> list[int]:
    """``evaluate --fss-window``'s argparse type: comma-separated positive whole numbers (grid
    cells); a usage error otherwise."""
    windows = []
    for item in text.split(","):
        try:
            window = int(item.strip())
        except ValueError:
            window = 0
        if window < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give the FSS windows' sides in grid cells, positive whole numbers "
                "separated by commas (e.g. 5,25), or leave the option out for "
                "the default"
            )
        windows.append(window)
    return windows


def _evaluate_steps(text: str) -> int:
    """``evaluate --time-chunk``'s argparse type: :func:`_positive_int`, whose usage error
    says what leaving the option out does for ``evaluate`` (chunks of a set size)."""
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        from .evaluation import CHUNK_BYTES

        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number; give the number of time steps per chunk, "
            f"e.g. 24, or leave the option out for chunks of about "
            f"{CHUNK_BYTES // 2**20} MB of the prediction"
        ) from None


def _demo_case(text: str) -> str:
    """A demo case as ``--case`` takes it: the case's name (``era5_t2m_x4``) or, the same
    with hyphens, the name of the shipped model it runs (``era5-t2m-x4``)."""
    return text.strip().replace("-", "_")


def _names(text: str) -> list[str]:
    """``"u10,v10"`` -> ``["u10", "v10"]`` (an argparse type)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected variable names, e.g. t2m or u10,v10")
    return names


def _merged(groups: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The union of repeated ``NAME=VALUE`` options (a later one wins)."""
    merged: dict[str, Any] = {}
    for group in groups or []:
        merged.update(group)
    return merged


def _merged_list(groups: list[list[str]] | None) -> list[str] | None:
    """The concatenation of repeated ``--variables`` options; ``None`` when none was given."""
    return None if not groups else [name for group in groups for name in group]


#: Keyword arguments of :meth:`Downscaler.__call__` and their ``flexdownscale downscale`` flags.
_FLAGS = {
    "model": "--model",
    "factor": "--factor",
    "members": "--members",
    "steps": "--steps",
    "sampler": "--sampler",
    "seed": "--seed",
    "tile": "--tile",
    "overlap": "--overlap",
    "blend": "--blend",
    "bbox": "--bbox",
    "variables": "--variables",
    "rename": "--rename",
    "dims": "--dims",
    "device": "--device",
    "batch_size": "--batch-size",
    "condition": "--condition",
    "sampler_options": "--sampler-option",
    "conserve": "--conserve",
}
#: The flags of the other commands that share a keyword's name and meaning with the library.
_COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "downscale": _FLAGS,
    "forecast": {
        **{
            k: v
            for k, v in _FLAGS.items()
            if k not in {"factor", "tile", "overlap", "blend", "bbox", "conserve"}
        },
        "lead_steps": "--lead-steps",
    },
    "demo": {"members": "--members", "seed": "--seed", "output": "--out"},
    "evaluate": {"dims": "--dims"},
    "info": {},
}
_VALUE = (
    r"\{[^{}]*\}|\[[^\[\]]*\]|\([^()]*\)|'[^']*'|\"[^\"]*\"|<[^<>]*>|None"
    r"|-?\d[\w.+-]*|-?inf\b|nan\b"
)
_NUMBER = r"-?(?:\d[\w.+-]*|inf\b|nan\b)"
#: The sampler options (``--sampler-option NAME=VALUE``) that library messages name.
_SAMPLER_OPTION = re.compile(rf"(?<![\w.'\"-])(eta|delta|g1|g2) = ({_NUMBER})")


def _keyword_pattern(flags: dict[str, str]) -> re.Pattern[str] | None:
    """``name = value`` / ``name=value`` of the keywords in ``flags`` (none: ``None``)."""
    if not flags:
        return None
    return re.compile(rf"(?<![\w.'\"])({'|'.join(flags)}) ?= ?({_VALUE})")


def _flag_value(name: str, literal: str) -> str:
    """A Python literal of keyword ``name`` spelled as the value of its command-line flag."""
    if literal.startswith("<"):
        return literal
    if literal == "[...]":
        return "NAME,NAME,..."
    if literal in ("nan", "inf", "-inf"):
        return literal
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal
    if value is None:
        return "(left out)"
    if isinstance(value, dict):
        return ",".join(f"{k}={'...' if v is Ellipsis else v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        sep = " " if name == "bbox" else ","
        return sep.join("..." if v is Ellipsis else str(v) for v in value)
    return str(value)


def _ncatted(attribute: str, values: dict[str, str]) -> str:
    """How to set ``attribute`` of each variable to its value in ``values`` in a netCDF file
    with NCO, as a hint: ``with NCO, for example: ncatted -a 'units,t2m,o,c,K' FILE``."""
    import shlex

    edits = " ".join(
        f"-a {shlex.quote(f'{attribute},{variable},o,c,{value}')}"
        for variable, value in values.items()
    )
    return f"with NCO, for example: ncatted {edits} FILE"


#: The pipeline's fix for a condition attribute that disagrees with the source used:
#: ``ds.attrs.pop('re') (or ds.attrs['re'] = 4000.0)``, or ``ds['v'].attrs`` for a variable's.
_STALE_CONDITION = re.compile(
    r"(ds\.attrs|ds\['(?P<var>[^']*)'\]\.attrs)\.pop\('(?P<name>[^']*)'\) "
    r"\(or \1\['(?P=name)'\] = (?P<value>[^)]*)\)"
)


def _stale_condition_fix(match: re.Match[str]) -> str:
    """:data:`_STALE_CONDITION`'s fix as an edit of the input file with NCO's ncatted."""
    import shlex

    name, value, variable = match["name"], match["value"], match["var"]
    owner = "global" if variable is None else variable
    what = (
        f"the input file's global attribute {name!r}"
        if variable is None
        else f"the attribute {name!r} of variable {variable!r} in the input file"
    )
    delete = shlex.quote(f"{name},{owner},d,,")
    update = shlex.quote(f"{name},{owner},o,d,{value}")
    return (
        f"delete {what} (with NCO, for example: ncatted -a {delete} FILE) or set it to {value} "
        f"(ncatted -a {update} FILE)"
    )


def cli_spelling(message: str, command: str = "downscale") -> str:
    """``message`` with the Python hints of the library spelled for the command line.

    Keywords that are flags of ``command`` become those flags (``seed = -1`` is ``--seed -1``);
    sampler options become ``--sampler-option NAME=VALUE``; fixes spelled in xarray (setting an
    attribute, filling gaps) are said as changes to the file.

    >>> cli_spelling("pass rename={'tas': 't2m'} or variables=[...] in the model's order")
    "pass --rename tas=t2m or --variables NAME,NAME,... in the model's order"
    >>> cli_spelling("factor = 8 but the model downscales by 4 only; use factor=4")
    '--factor 8 but the model downscales by 4 only; use --factor 4'
    >>> cli_spelling("members = 0 must be a positive integer or None")
    '--members 0 must be a positive integer, or leave --members out'
    >>> cli_spelling("eta = -1.0 must lie in [0, 1] (0: deterministic DDIM, 1: ancestral)")
    '--sampler-option eta=-1.0 must lie in [0, 1] (0: deterministic DDIM, 1: ancestral)'
    """
    flags = _COMMAND_FLAGS.get(command, {})
    # a model of the other task: the other command, not the Python class or accessor
    message = message.replace(
        "Downscaler needs a super-resolution model (use ds.flex.forecast for forecast models)",
        "flexdownscale downscale needs a super-resolution model; run a forecast model with "
        "flexdownscale forecast IN OUT --model M --lead-steps N",
    )
    message = message.replace(
        "use Downscaler or ds.flex.downscale for super-resolution models",
        "flexdownscale forecast needs a forecast model; run a super-resolution model with "
        "flexdownscale downscale IN OUT --model M",
    )

    def flag(match: re.Match[str]) -> str:
        name, literal = match.group(1), match.group(2)
        value = _flag_value(name, literal)
        if value == "(left out)":
            return f"no {flags[name]}"
        return f"{flags[name]} {value}"

    if "sampler_options" in flags:  # one option: --sampler-option NAME=VALUE
        message = re.sub(
            rf"\bsampler_options\['(\w+)'\] = ({_NUMBER})", r"--sampler-option \1=\2", message
        )
        message = _SAMPLER_OPTION.sub(r"--sampler-option \1=\2", message)
    if "condition" in flags:  # the pipeline's name for the keyword it was given
        message = message.replace("(from the condition= argument)", "(from --condition)")
        message = message.replace("the condition= argument", "condition")
        message = re.sub(
            r"takes no physical condition; drop it\b",
            "takes no physical condition; leave --condition out",
            message,
        )
        message = re.sub(
            r"or set ds\.attrs\[('[^']*')\] = <value> \(or da\.attrs\['[^']*'\] for a DataArray\)",
            r"or set the input file's global attribute \1 to it",
            message,
        )
    # the condition's sources disagree (pipeline): the stale attribute is deleted or set in
    # the file, with NCO ("global" names the file's own attributes)
    message = message.replace(
        "(xr.concat keeps the first dataset's attributes, which .sel does not update)",
        "(a file joined from several keeps the first one's attributes, which selecting one "
        "value does not update)",
    )
    message = _STALE_CONDITION.sub(_stale_condition_fix, message)
    if "factor" in flags:  # no factor given: the shipped models at every factor were searched
        message = message.replace(
            " at any factor (shipped models: ",
            " at any factor (no --factor given; shipped models, for --model: ",
        )
    keyword = _keyword_pattern(flags)
    if keyword is not None:
        message = keyword.sub(flag, message)
    # "None" is how Python leaves a keyword out; on the command line the option is left out
    message = re.sub(
        r"(--[a-z][\w-]*) (\S+) must be a positive integer or None\b",
        r"\1 \2 must be a positive integer, or leave \1 out",
        message,
    )
    message = message.replace(
        "must be in [0, 2**63) (a non-negative 63-bit integer)",
        f"must be a whole number from 0 to {2**63 - 1} (2^63 - 1)",
    )
    # the pipeline's Python for units: on the command line, the file's attribute is meant
    message = re.sub(
        r"Set it if the values are in ([^:]*): ds\['([^']*)'\]\.attrs\['units'\] = '([^']*)'",
        lambda m: (
            f"If the values are in {m[1]}, set the units attribute of variable {m[2]!r} in the "
            f"input file to {m[3]!r} ({_ncatted('units', {m[2]: m[3]})})"
        ),
        message,
    )
    message = re.sub(
        r"e\.g\. ds\['([^']*)'\]\.attrs\['units'\] = '([^']*)'",
        lambda m: f"e.g. {m[2]!r} ({_ncatted('units', {m[1]: m[2]})})",
        message,
    )
    message = re.sub(
        r"set attrs\['units'\] = ('[^']*')", r"set the variable's units attribute to \1", message
    )
    message = re.sub(
        r"; convert first: ds\[.*?\.assign_attrs\(units=[^)]*\)",
        "; convert the input file first (the values and the variable's units attribute)",
        message,
    )
    # data fixes the pipeline spells in xarray: on the command line they are done to the file
    message = message.replace(
        "fill them first (e.g. ds.fillna(...) or ds.interpolate_na(dim=...))",
        "fill them in the input file first (e.g. with xarray's fillna or interpolate_na)",
    )
    message = message.replace(
        "mask them (ds.where(np.isfinite(ds))) and fill them",
        "mask them in the input file and fill them",
    )
    # a file holds no stacked (MultiIndex) dim: one file per value, as a forecast is told
    message = re.sub(
        r"select or stack the extra dims \['([^']*)'(, [^\]]*)?\] first",
        lambda m: (
            f"select one value of the extra dims ['{m[1]}'{m[2] or ''}] in the input file "
            f"first and run each value as its own file (e.g. "
            f"xr.open_dataset(IN).isel({m[1]}=0).to_netcdf(ONE))"
        ),
        message,
    )
    message = re.sub(
        r"select one value of (\['([^']*)'[^\]]*\]) \(e\.g\. ds\.isel\([^)]*\)\) and forecast "
        r"each in turn",
        r"select one value of \1 in the input file and forecast each as its own file (e.g. "
        r"xr.open_dataset(IN).isel(\2=0).to_netcdf(ONE))",
        message,
    )
    # "with bbox= " inside a sentence, or "with bbox=" ending the message (the halo warning)
    message = re.sub(r"\bwith bbox=(?= |$)", "with --bbox", message)
    message = re.sub(r"\(bbox=\)", "(--bbox)", message)
    # the periodic-attribute warning: the attribute is set in the file
    one = r"ds\['([^']*)'\]\.attrs\[.periodic.\] = .true."
    found = re.findall(one, message)
    if found:
        names = " and ".join(map(repr, found))
        edits = _ncatted("periodic", dict.fromkeys(found, "true"))
        message = re.sub(
            rf"set {one}(; {one})*",
            lambda _: f'set the attribute periodic = "true" on {names} in the input file ({edits})',
            message,
        )
    # the window-of-a-periodic-box warning: the attribute is deleted from the file
    one = r"ds\['([^']*)'\]\.attrs\.pop\(.periodic.\)"
    found = re.findall(one, message)
    if found:
        import shlex

        edits = " ".join(f"-a {shlex.quote(f'periodic,{name},d,,')}" for name in found)
        message = re.sub(
            rf"\({one}(; {one})*\)",
            lambda _: (
                f"(delete the attribute periodic of {' and '.join(map(repr, found))} in the "
                f"input file, with NCO, for example: ncatted {edits} FILE)"
            ),
            message,
        )
    # fields at several values of the condition: on the command line, one file per value
    message = re.sub(
        r"\(ds\.isel along [^)]*\)", "(an input file holding those fields only)", message
    )
    # the forecaster's fixes spelled in xarray (past frames, dims, training region)
    message = message.replace(
        "fill them first (infinite values: mask them with ds.where(np.isfinite(ds)))",
        "fill them in the input file first (infinite values too)",
    )
    message = re.sub(  # a dims mapping is AXIS=DIM pairs on the command line
        r"--dims \{([^{}]*)\}",
        lambda m: "--dims " + ",".join(map("=".join, re.findall(r"'(\w+)': '?(\w+)'?", m[1]))),
        message,
    )
    # one extra dim and no time dim: --dims time=DIM runs it as time, which needs no new file
    message = re.sub(
        r"(select one value of the extra dims \['(\w+)'\] in the input file first and run each "
        r"value as its own file \(e\.g\. .*?\(ONE\)\)), or downscale each of its (\d+) fields on its "
        r"own \(as training takes each '\w+' as a sample\): pass (--dims time=\w+), which runs "
        r"('\w+' as the time dim and keeps its name in the output)",
        r"pass \4 to downscale each of its \3 fields on its own (as training takes each '\2' as a "
        r"sample), which runs \5; or \1",
        message,
    )
    message = re.sub(
        r"\(select it: ds\.sel\([^)]*\)\)",
        "(an input file holding that region only)",
        message,
    )
    message = message.replace("or leave tile unset", "or leave --tile out")
    message = message.replace("(bbox=...)", "(--bbox X_MIN Y_MIN X_MAX Y_MAX)")
    message = message.replace(  # a one-cell axis (grid.py): the file is what to widen
        "(a wider .sel / .isel, or bbox= on the whole field;",
        "(an input file holding a wider region, or --bbox on the whole field;",
    )
    if "sampler_options" in flags:
        message = re.sub(r"(?<![\w.'\"-])sampler_options\b", "--sampler-option", message)
    return _file_fixes(message)


#: The grid checks' fixes, spelled in xarray (grid.py), as changes to the input file; a
#: replacement's ``{0}`` is the library's own xarray code, kept as the example.
_FILE_FIXES: tuple[tuple[str, str], ...] = (
    (
        r"Sort it first, e\.g\. (ds\.sortby\(('[^']*')\))",
        r"Sort the input file along \2 first (with xarray, for example: \1)",
    ),
    (
        r"Drop the duplicates, e\.g\. (ds\.drop_duplicates\(('[^']*')\))",
        r"Drop the duplicates from the input file first (with xarray, for example: \1)",
    ),
    (
        r"Assign one, e\.g\. (ds\.assign_coords\((\w+)=np\.arange\(n\) \* spacing\))",
        r"Add a coordinate variable '\2' holding the cell centres to the input file (with "
        r"xarray, for example: \1)",
    ),
    (
        r"Drop it, e\.g\. (ds\.isel\(\w+=slice\(None, -1\)\)) \(drop_duplicates does not see "
        r"it, the values differ\)",
        r"Drop that last column from the input file (with xarray, for example: \1; "
        r"drop_duplicates does not see it, the values differ)",
    ),
    (
        r"Drop one of them, e\.g\. with (ds\.isel\(\w+=\.\.\.\))",
        r"Drop one of them from the input file (with xarray, for example: \1, selecting the "
        r"other columns)",
    ),
    (
        r"Drop the polar rows first, e\.g\. (ds\.isel\(\w+=slice\(1, -1\)\))",
        r"Drop the polar rows from the input file first (with xarray, for example: \1)",
    ),
    (
        r"convert them: (ds = ds\.assign_coords\(\w+=90 - ds\['[^']*'\]\));",
        r"convert them to latitudes (90 minus the value) in the input file (with xarray, for "
        r"example: \1);",
    ),
    (
        r"negate it and label it (degrees_\w+): (ds = ds\.assign_coords\(\w+=-ds\['[^']*'\]"
        r"\.assign_attrs\(units='[^']*'\)\))",
        r"negate it in the input file and set its units attribute to '\1' (with xarray, for "
        r"example: \2)",
    ),
    (
        r"Drop it first: (ds\.drop_vars\(('[^']*')\))",
        r"Drop it from the input file first (with xarray, for example: \1)",
    ),
    (
        r"Regrid to a regular grid first \((flexdownscale\.data\.regrid\.regrid)\)",
        r"Regrid the input file to a regular grid first (in Python, for example with \1)",
    ),
    # the package's Python functions for a fix no command does: said to be Python
    (r"\((flexdownscale\.data\.\w+)\)", r"(in Python, \1)"),
    (
        r"e\.g\. with (flexdownscale\.data\.regrid) or coarsen_grid",
        r"e.g. in Python with \1 or coarsen_grid",
    ),
    (r"; (flexdownscale\.data\.degrade)\)", r"; in Python, \1)"),
    (r"e\.g\. (flexdownscale\.data\.regrid\.regrid\()", r"e.g. in Python, \1"),
    (  # a model folder is what the training script writes
        r"\(export one with Downscaler\.save_pretrained or the training script\)",
        r"(the training script writes one; in Python, Downscaler.save_pretrained does)",
    ),
    (
        r"\(a folder written by Downscaler\.save_pretrained or the training script\)",
        r"(a folder written by the training script, or in Python by "
        r"Downscaler.save_pretrained)",
    ),
)


def _file_fixes(message: str) -> str:
    """``message`` with the grid checks' xarray fixes said as changes to the input file (the
    xarray code kept as an example) and a coordinate's units attribute set with NCO."""
    for pattern, replacement in _FILE_FIXES:
        message = re.sub(pattern, replacement, message)
    return re.sub(
        r"Convert it or fix the attribute: ds\['([^']*)'\]\.attrs\['units'\] = '([^']*)'",
        lambda m: (
            f"Convert it to {m[2]} in the input file, or if its values are in {m[2]} already, "
            f"set its units attribute to {m[2]!r} ({_ncatted('units', {m[1]: m[2]})})"
        ),
        message,
    )


def _evaluate(args: argparse.Namespace) -> int:
    """``flexdownscale evaluate``: :func:`flexdownscale.evaluation.evaluate` with the command's
    options; the report it wrote is printed."""
    from .evaluation import evaluate

    report = evaluate(
        args.prediction,
        args.truth,
        out=args.out,
        dims=_merged(args.dims),
        rename=_merged(args.rename),
        time_chunk=args.time_chunk,
        threshold=args.threshold,
        fss_windows=[w for given in args.fss_window for w in given] if args.fss_window else None,
        baseline=args.baseline,
    )
    print(report, end="")
    return 0


#: What argparse takes for a negative number, not an option: ``-`` then a digit or ``.digit``
#: (``-1``, ``-1e3``, ``-.5``, ``-1_000``), or ``-inf``, ``-infinity``, ``-nan`` in any case.
_NEGATIVE_NUMBER = re.compile(r"^-\.?\d|^-(?:inf|infinity|nan)$", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """An argument parser that reads every spelling of a negative number that ``float`` takes
    as a value, ``--condition -inf`` or ``--bbox -1e1 49 2 61``; argparse's own pattern (``-1``
    and ``-1.5`` only, in Python 3.11) took ``-inf`` and ``-1e3`` for options ("expected one
    argument"). Subparsers are made of this class too (argparse's default ``parser_class``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def format_usage(self) -> str:
        """argparse's, with the options the command checks itself shown as required."""
        with self._usage_required():
            return super().format_usage()

    def format_help(self) -> str:
        """argparse's, with the options the command checks itself shown as required."""
        with self._usage_required():
            return super().format_help()

    @contextlib.contextmanager
    def _usage_required(self) -> Iterator[None]:
        """Mark the actions tagged ``usage_required`` required while the usage is written.

        ``forecast --model`` is required, but the command refuses its absence itself, with the
        fix in its own words (argparse's "the following arguments are required" has none); the
        usage line still shows it without brackets.
        """
        tagged = [a for a in self._actions if getattr(a, "usage_required", False)]
        for action in tagged:
            action.required = True
        try:
            yield
        finally:
            for action in tagged:
                action.required = False

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        """argparse's, but an unknown option is told by the command it was given to (its usage
        line, not the top-level one), naming the commands that have it."""
        parsed, extras = self.parse_known_args(args, namespace)
        if not extras:
            return parsed
        commands = {
            name: command
            for action in self._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, command in action.choices.items()
        }
        given = getattr(parsed, "command", None)
        elsewhere: dict[tuple[str, ...], list[str]] = {}  # other commands -> their flags given
        for flag in dict.fromkeys(word.split("=", 1)[0] for word in extras):
            owners = tuple(
                name
                for name, command in commands.items()
                if name != given
                and flag.startswith("--")
                and flag in command._option_string_actions
            )
            if owners:
                elsewhere.setdefault(owners, []).append(flag)
        notes = [
            f"{' and '.join(flags)} {'is an option' if len(flags) == 1 else 'are options'} of "
            f"{' and '.join(f'flexdownscale {name}' for name in owners)}, not of {given}"
            for owners, flags in elsewhere.items()
        ]
        message = f"unrecognized arguments: {' '.join(extras)}"
        message += f" ({'; '.join(notes)})" if notes else ""
        commands.get(given, self).error(message)


#: ``--quiet``'s help (the bar is drawn on a terminal only: a log gets whole lines, no frames).
_QUIET_HELP = (
    "no progress or summary (default: a summary on stdout, and on stderr a progress bar on a "
    "terminal, or a line at each quarter of the work in a log file)"
)

#: Where a help line's model-set default is seen.
_MODEL_SHOWS = "shown by flexdownscale info MODEL"

#: Each command's examples, the end of its ``--help`` (the top-level one's first).
_EXAMPLES = {
    "flexdownscale": """\
examples:
  flexdownscale demo                                  # the shipped sample, offline
  flexdownscale downscale coarse.nc fine.nc --members 8
  flexdownscale evaluate fine.nc truth.nc --out report
  flexdownscale info era5-t2m-x4                      # a model's card and defaults

Each command's options: flexdownscale COMMAND --help. Documentation: the section "Command
line" of the Inference guide (https://flexdownscale.readthedocs.io).""",
    "info": """\
examples:
  flexdownscale info                  # version, backbones, backends, device
  flexdownscale info era5-t2m-x4      # a shipped model: variables, factor, sampler defaults
  flexdownscale info runs/exp1/model  # a model folder that training exported""",
    "downscale": """\
examples:
  flexdownscale downscale coarse.nc fine.nc --members 8      # the shipped model that fits
  flexdownscale downscale coarse.nc fine.zarr --model my-model --time-chunk 24
  flexdownscale downscale tas.nc fine.nc --rename tas=t2m --bbox -10 49 2 61
  flexdownscale downscale coarse.nc fine.nc --members 16 --sampler sde --steps 20

INPUT and OUTPUT are one file each (no '-', no patterns: run the command once per file).
An existing OUTPUT is replaced only when it is an earlier output of the input's times (else
add --overwrite); OUTPUT's folder must exist (it is never made: a mistyped path is not
created). Ctrl-C stops the command and writes nothing.""",
    "forecast": """\
examples:
  flexdownscale forecast past.nc fc.nc --model run/model --lead-steps 24 --members 8
  flexdownscale forecast past.nc fc.nc --model run/model --lead-steps 8 \\
      --start 2019-03-01T00:00 2019-03-02T00:00    # one forecast per start

INPUT and OUTPUT are one file each; OUTPUT is written as downscale's is.""",
    "demo": """\
examples:
  flexdownscale demo                                  # both cases, into flexdownscale-demo/
  flexdownscale demo --case era5-t2m-x4 --members 4 --out demo""",
    "evaluate": """\
examples:
  flexdownscale evaluate fine.nc truth.nc --out report
  flexdownscale evaluate fine.nc truth.nc --out report --baseline bilinear.nc
  flexdownscale evaluate rain.nc radar.nc --out report --threshold '0.2 mm' --fss-window 3,9

--out is made if it does not exist (with the folders above it: a folder of reports, as
mkdir -p makes it; a file output's folder, downscale's, must exist). The report is moved
into --out only once complete, so an interrupted run leaves it as it was.""",
}


def _add_sampling_options(command: argparse.ArgumentParser) -> None:
    """The ensemble and sampler options of ``downscale`` and ``forecast`` (the same meaning)."""
    command.add_argument(
        "--members",
        type=int,
        default=None,
        help="ensemble size (default: one sample without a member dim; --members 1 gives a "
        "member dim of size 1)",
    )
    command.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"sampler steps (default: the model's, {_MODEL_SHOWS})",
    )
    command.add_argument(
        "--sampler",
        default=None,
        choices=["ddim", "euler", "heun", "sde", "idff"],
        help="sampler: ddim (vp models), euler or heun (ODE solvers), sde (Langevin steps: "
        "better calibrated ensembles) or idff (idff models) (default: the model's; which "
        f"suit it and its default are {_MODEL_SHOWS})",
    )
    command.add_argument(
        "--sampler-option",
        type=_number_pairs,
        action="append",
        default=None,
        metavar="NAME=VALUE[,...]",
        help="sampler option: eta (ddim), delta (sde: Langevin strength), g1/g2 (idff); e.g. "
        "--sampler sde --steps 20 --sampler-option delta=0.5 for calibrated ensembles "
        f"(default: the model's stored options, {_MODEL_SHOWS})",
    )
    command.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random draws: the same seed, the same output (default: 0)",
    )


def _add_input_options(command: argparse.ArgumentParser) -> None:
    """How ``downscale`` and ``forecast`` read the input: its variables, dims and condition."""
    command.add_argument(
        "--variables",
        type=_names,
        action="append",
        default=None,
        metavar="NAME[,NAME]",
        help="the input's variables that play the model's, in the model's order (default: "
        "the input's variables of the model's names)",
    )
    command.add_argument(
        "--rename",
        type=_pairs,
        action="append",
        default=None,
        metavar="IN=MODEL[,...]",
        help="input name = model name (repeatable), e.g. --rename tas=t2m (default: the input's "
        "own names)",
    )
    command.add_argument(
        "--dims",
        type=_pairs,
        action="append",
        default=None,
        metavar="AXIS=DIM[,...]",
        help="name the grid's dimensions when they are not recognised, e.g. x=i,y=j,time=t "
        "(default: recognised by their names and attributes)",
    )
    command.add_argument(
        "--condition",
        type=float,
        default=None,
        help="physical condition of a conditioned model (e.g. the Reynolds number); default: "
        "read from the input: its coordinate or variable of the condition's name, else its "
        "global attribute, else its variables' attribute",
    )


def _add_run_options(command: argparse.ArgumentParser, batch: str, one: str) -> None:
    """The network's batch and device options of ``downscale`` and ``forecast``; ``batch`` is
    what a network call takes several of (``"tiles"``, ``"members"``), ``one`` one of them."""
    command.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"{batch} per network call (default: auto, as many as fit the device's memory)",
    )
    command.add_argument(
        "--batch-invariant",
        action="store_true",
        help=f"run the network {one} at a time: output bit-identical for any --batch-size "
        "(slower; default: off)",
    )
    command.add_argument(
        "--device",
        default=None,
        help="where the network runs: cpu, cuda, cuda:1, mps, ... (default: cuda when "
        "available, else the CPU)",
    )


def _add_overwrite_option(command: argparse.ArgumentParser) -> None:
    """``--overwrite`` of ``downscale`` and ``forecast``: replace an existing output that
    flexdownscale did not write (an earlier output of theirs is replaced without it)."""
    command.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUTPUT that flexdownscale did not write (default: off; an "
        "earlier output of downscale or forecast is replaced without it, for downscale one of "
        "the input's times only)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flexdownscale`` command."""
    # evaluate's defaults, for its help
    from .evaluation import CHUNK_BYTES, FSS_WINDOWS, WET_RATE_MM_PER_HOUR

    parser = _Parser(
        prog="flexdownscale",
        description="Downscale climate and physics fields with FLEX diffusion models.",
        epilog=_EXAMPLES["flexdownscale"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A sub-command's parser, its examples at the end of its help."""
        return sub.add_parser(
            name,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    from ._version import __version__

    parser.add_argument(
        "--version", action="version", version=f"flexdownscale {__version__}"
    )  # the version alone; `flexdownscale info` gives torch, the backends and the device too
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = command("info", help="package, backbones, backends and device; or a model's card")
    info.add_argument(
        "model",
        nargs="?",
        help="a model folder, shipped model name or Hub id (default: describe the package)",
    )

    down = command("downscale", help="downscale a netCDF / zarr file with a model")
    down.add_argument("input", help="coarse input file (netCDF or .zarr)")
    down.add_argument("output", help="output file: netCDF, or zarr when it ends in .zarr")
    down.add_argument(
        "--model",
        default=None,
        help="model folder, shipped model name or Hub id (default: the shipped model whose "
        "variables the input holds, at --factor when given)",
    )
    down.add_argument(
        "--factor",
        type=int,
        default=None,
        help=f"downscaling factor: the model's, a check (default: the model's, {_MODEL_SHOWS})",
    )
    _add_sampling_options(down)
    down.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in fine cells, a multiple of 16 and of the factor (default: 256, "
        "rounded up to such a multiple); a field no longer than it along an axis runs as one "
        "tile",
    )
    down.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="tile overlap in fine cells (default: about tile/4, rounded up so that the stride "
        "tile - overlap is a multiple of the factor)",
    )
    down.add_argument(
        "--blend",
        default=None,
        choices=["uniform", "cosine", "gaussian"],
        help="tile weights where tiles overlap (default: cosine)",
    )
    down.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        default=None,
        metavar=("X_MIN", "Y_MIN", "X_MAX", "Y_MAX"),
        help="downscale only this region (grid units, e.g. degrees east / north; default: the "
        "whole field)",
    )
    down.add_argument(
        "--conserve",
        type=_conserve_value,
        action=_ConserveAction,
        default=None,
        metavar="[VARIABLE=]MODE[,...]",
        help="make each member's area mean over every coarse cell equal the input's value; "
        "MODE additive (fields of both signs) or multiplicative (values >= 0: zero cells stay "
        "zero, for precipitation); one MODE for every variable, or VARIABLE=MODE (the model's "
        "names), comma-separated or repeated, e.g. --conserve t2m=additive --conserve "
        "tp=multiplicative, the others not constrained (default: no constraint)",
    )
    _add_input_options(down)
    _add_run_options(down, "tiles", "one tile")
    down.add_argument(
        "--time-chunk",
        type=_positive_int,
        default=None,
        metavar="STEPS",
        help="process lazily in chunks of this many time steps, a chunk in memory at a time "
        "(default: the whole input at once)",
    )
    _add_overwrite_option(down)
    down.add_argument("--quiet", action="store_true", help=_QUIET_HELP)

    fc = command("forecast", help="forecast from a netCDF / zarr file with a forecast model")
    fc.add_argument("input", help="input file (netCDF or .zarr) holding the past frames")
    fc.add_argument("output", help="output file: netCDF, or zarr when it ends in .zarr")
    fc_model = fc.add_argument(
        "--model",
        default=None,
        help="forecast model folder or Hub id (required: no forecast model ships)",
    )
    fc_model.usage_required = True  # type: ignore[attr-defined]  # _forecast refuses its absence
    fc.add_argument(
        "--lead-steps",
        type=int,
        required=True,
        metavar="N",
        help="number of model time steps to forecast",
    )
    fc.add_argument(
        "--start",
        nargs="+",
        default=None,
        metavar="TIME",
        help="forecast start(s): times of the input (e.g. 2019-03-01T12:00, or 15.5 on a "
        "numeric axis), each forecast from the input up to it; several give one file along "
        "forecast_reference_time (default: the input's last time)",
    )
    _add_sampling_options(fc)
    _add_input_options(fc)
    _add_run_options(fc, "members", "one member")
    _add_overwrite_option(fc)
    fc.add_argument("--quiet", action="store_true", help=_QUIET_HELP)

    demo = command(
        "demo", help="downscale the shipped real-data sample offline; write data, plots, report"
    )
    demo.add_argument(
        "--out", default="flexdownscale-demo", help="output folder (default: flexdownscale-demo)"
    )
    demo.add_argument(
        "--members", type=int, default=8, help="ensemble size, at least 2 (default: 8)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the ensemble draws (default: 0)")
    demo.add_argument(
        "--case",
        action="append",
        default=None,
        type=_demo_case,
        choices=["era5_t2m_x4", "kolmogorov_x8"],
        help="run only this case (repeatable; default: both); the shipped model's name, "
        "era5-t2m-x4, is taken too",
    )
    demo.add_argument("--quiet", action="store_true", help=_QUIET_HELP)

    ev = command("evaluate", help="metrics table and plots of a prediction vs the truth")
    ev.add_argument("prediction", help="downscaled file (netCDF or .zarr), with or without members")
    ev.add_argument("truth", help="fine-grid truth (netCDF or .zarr)")
    ev.add_argument("--out", required=True, help="folder for metrics.md, metrics.json and plots")
    ev.add_argument(
        "--dims",
        type=_pairs,
        action="append",
        default=None,
        metavar="AXIS=DIM[,...]",
        help="name dimensions that are not recognised, e.g. time=step (applied to each file "
        "that has that dim); member=NAME names the prediction's ensemble dim (default: member)",
    )
    ev.add_argument(
        "--rename",
        type=_pairs,
        action="append",
        default=None,
        metavar="TRUTH=PREDICTION[,...]",
        help="truth variable name = prediction variable name (repeatable), e.g. --rename "
        "tas=t2m (default: the same names)",
    )
    ev.add_argument(
        "--baseline",
        default=None,
        metavar="FILE",
        help="a baseline prediction of the same truth (e.g. the coarse input interpolated), "
        "scored the same way into OUT/baseline/; metrics.md compares RMSE, CRPS and LSD with it "
        "(default: none)",
    )
    ev.add_argument(
        "--time-chunk",
        type=_evaluate_steps,
        default=None,
        metavar="STEPS",
        help="read and score the files in chunks of this many time steps, every member and the "
        "whole grid in each (default: as many as fit in "
        f"{CHUNK_BYTES // 2**20} MB of the prediction)",
    )
    ev.add_argument(
        "--threshold",
        default=None,
        metavar="'VALUE UNITS'",
        help="wet/dry threshold of precipitation variables, with its units, e.g. '0.1 kg m-2', "
        "'0.1 mm' or '0.5 mm/h' (converted into each variable's units; default: a rain rate "
        f"of {WET_RATE_MM_PER_HOUR:g} mm/h, over the truth's time step for amounts)",
    )
    ev.add_argument(
        "--fss-window",
        type=_fss_windows_option,
        action="append",
        default=None,
        metavar="CELLS[,...]",
        help="sides of the square windows of the FSS of precipitation, in grid cells "
        f"(repeatable; default: {','.join(map(str, FSS_WINDOWS))})",
    )
    return parser


def _tolerant_terminal() -> None:
    """Print what the terminal's encoding cannot show as escapes instead of failing.

    Under an ASCII locale (``LC_ALL=C`` without Python's UTF-8 mode) a model card or a unit
    holding a degree sign raised UnicodeEncodeError while printing, after the work was done; it
    is printed as the escape ``\\xb0`` instead. Files are always written as UTF-8.
    """
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        reconfigure = getattr(stream, "reconfigure", None)
        if encoding not in ("utf8", "utf16", "utf32") and reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line from Python; returns the exit status.

    ``argv`` are the command's words (default: ``sys.argv[1:]``). Warnings stay Python's, with or
    without ``argv`` (``warnings.catch_warnings`` and ``pytest.warns`` see them); the installed
    ``flexdownscale`` command runs :func:`console_main`, which prints them as lines of the command.
    """
    return _run(argv, command_line=False)


def console_main() -> int:
    """The ``flexdownscale`` command (also ``python -m flexdownscale``): :func:`main` on
    ``sys.argv[1:]``, with warnings printed as one line of the command, in its words.

    When the reader of the output stops early (``flexdownscale info | head``) the command ends
    quietly with status 141 (128 + SIGPIPE, as the shell reports for tools a closed pipe ends),
    not with an error line. Ctrl-C (SIGINT), or SIGTERM (what ``kill``, ``timeout`` and a batch
    scheduler such as SLURM send), prints one line saying what the command left (outputs are
    written whole or not at all: the hidden temporary ones are removed) and ends the process
    as that signal does (the shell's status 130 or 143); a second signal while the command
    stops does not interrupt its clean-up."""
    with _stopping_once():
        try:
            status = _run(sys.argv[1:], command_line=True)
        except KeyboardInterrupt as stop:  # before a command ran (while parsing, importing)
            print(f"flexdownscale: {_stop_words(stop)}; nothing was written", file=sys.stderr)
            status = _stop_status(stop)
        except BrokenPipeError:
            # nothing more can reach the reader; point stdout at devnull so that the
            # interpreter's flush at exit does not raise again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        if status in (INTERRUPTED, TERMINATED):
            return _end_stopped(status)
    return status


def _run(argv: Sequence[str] | None, *, command_line: bool) -> int:
    """Parse ``argv`` and run the command; ``command_line``: warnings in the command's words."""
    _tolerant_terminal()
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        if not command_line:
            return _command(args)
        warnings.showwarning = functools.partial(_show_warning, args.command)
        try:
            return _command(args)
        except Warning as err:  # python -W error, PYTHONWARNINGS=error: one line, not a traceback
            line = _warning_error(err, args.command)
            print(f"flexdownscale {args.command}: error: {line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM: one line of what is left
            line = _interrupted_words(args)
            print(f"flexdownscale {args.command}: {_stop_words(stop)}; {line}", file=sys.stderr)
            return _stop_status(stop)


#: The exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2, as the shell reports it.
INTERRUPTED = 130

#: The exit status of a command stopped by SIGTERM: 128 + 15, as the shell reports it.
TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM while a command runs (:func:`_stopping_once`): a
    ``KeyboardInterrupt``, so that it stops the command as Ctrl-C does (the clean-up of every
    ``except KeyboardInterrupt`` and ``finally`` runs, hidden temporary outputs are removed)."""


def _stop_words(stop: KeyboardInterrupt) -> str:
    """How the command was stopped, at the start of its last line."""
    return "stopped by SIGTERM" if isinstance(stop, _Terminated) else "interrupted"


def _stop_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a command that ``stop`` stopped: 143 for SIGTERM, else 130."""
    return TERMINATED if isinstance(stop, _Terminated) else INTERRUPTED


def _interrupted_words(args: argparse.Namespace) -> str:
    """What an interrupted command left, in words (the end of its ``interrupted;`` line).

    Outputs are written whole or not at all (a hidden temporary file or folder, removed when
    the command stops), so an interrupted ``downscale`` or ``forecast`` leaves an earlier
    output as it was; ``evaluate`` moves its report into ``--out`` only once it is complete.
    """
    command, existed = args.command, getattr(args, "existed", False)
    if command in ("downscale", "forecast"):
        if getattr(args, "written", False):
            return f"{args.output!r} was written before the interrupt"
        left = "is left as it was" if existed else "was not created"
        return f"the output was not written: {args.output!r} {left}"
    if command == "evaluate":
        left = "is left as it was" if existed else "was not created"
        return f"the report was not written: --out {args.out!r} {left}"
    if command == "demo":
        if not existed:
            return f"the demo was not written: {args.out!r} was not created"
        return f"{args.out!r} may hold part of this demo's files; run the demo again to complete it"
    return "nothing was written"


@contextlib.contextmanager
def _stopping_once() -> Iterator[None]:
    """While the command runs, make the first Ctrl-C (SIGINT) raise ``KeyboardInterrupt``, as
    Python's own handler does, and the first SIGTERM :class:`_Terminated` (Python's default
    ends the process at once, leaving the hidden temporary output and no line); later signals
    wait for the command to stop rather than interrupt its clean-up. The handlers found are
    put back on leaving.

    A lazy computation's clean-up waits for the chunks running in dask's threads (a network
    call cannot be stopped midway); a second ``KeyboardInterrupt`` there ended the interpreter
    while those threads were inside torch, which aborted the process (``terminate called
    without an active exception``, a core dump) and could leave its hidden temporary output
    behind. A signal that is not at Python's default (SIGINT ignored in a background job,
    SIGTERM ignored by ``nohup``-like launchers, either handled by a caller) is left alone, and
    so is everything outside the main thread, where no handler can be set.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def on_stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if len(received) == 2:  # said once: further signals change nothing
            os.write(
                2,
                b"flexdownscale: stopping: the computations running now end first "
                + f"(kill -KILL {os.getpid()} stops at once)\n".encode(),
            )

    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    found = {number: signal.getsignal(number) for number in defaults}
    ours = [number for number, default in defaults.items() if found[number] is default]
    for number in ours:
        signal.signal(number, on_stop)
    try:
        yield
    finally:
        for number in ours:
            if signal.getsignal(number) is on_stop:  # not since set to SIG_DFL to end
                signal.signal(number, found[number])


def _end_stopped(status: int) -> int:
    """End the process as the signal that stopped the command ends a program (SIGINT for the
    status 130, SIGTERM for 143: the shell's status), after its one line: a shell loop
    (``for f in *.nc; do flexdownscale downscale ...; done``) then stops at Ctrl-C, as it does
    for a command that SIGINT killed, instead of going on with the next file, and a batch
    scheduler sees the job ended by its signal. Returns ``status`` where the signal cannot end
    the process."""
    import signal

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if os.name == "posix":
        number = signal.SIGTERM if status == TERMINATED else signal.SIGINT
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return status


#: The Python modules of the warnings machinery (``_py_warnings`` in newer Pythons): their
#: frames are skipped to find the code that raised a warning.
_WARNINGS_MODULES = ("warnings", "_py_warnings")


def _warning_error(err: Warning, command: str) -> str:
    """The line of a warning that the warnings filter turned into an error (``python -W error``,
    ``PYTHONWARNINGS``): said as such, in the words of :func:`_show_warning`."""
    # the code that raised the warning: the innermost frame that is not the warnings module's
    raised = err.__traceback__
    while raised is not None and raised.tb_next is not None:
        inner = raised.tb_next
        if inner.tb_frame.f_globals.get("__name__") in _WARNINGS_MODULES:
            break
        raised = inner
    frame, lasti = (None, -1) if raised is None else (raised.tb_frame, raised.tb_lasti)
    text = _warning_text(err, type(err), frame, lasti, command)
    return (
        "a warning was turned into an error by the warnings filter (python -W error or "
        f"PYTHONWARNINGS): {text}"
    )


def _show_warning(
    command: str,
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line of the command (``flexdownscale downscale: warning: ...``)
    instead of Python's file, line and source of the caller: the package's own warnings in
    command-line words, others (numpy, xarray, dask, ...) with their category and origin
    (``RuntimeWarning from numpy: Mean of empty slice.``), as they are not the package's."""
    caller = sys._getframe(1)
    text = _warning_text(message, category, caller, caller.f_lasti, command)
    print(f"flexdownscale {command}: warning: {text}", file=sys.stderr if file is None else file)


def _warning_text(
    message: Warning | str,
    category: type[Warning],
    frame: FrameType | None,
    lasti: int,
    command: str,
) -> str:
    """A warning's text on one line: the package's own (a
    :class:`~flexdownscale.errors.FlexDownscaleWarning`) in the command's flag words, another
    library's with its category and its origin (:func:`_warning_origin` of ``frame``)."""
    from .errors import FlexDownscaleWarning

    text = " ".join(str(message).split())
    if issubclass(category, FlexDownscaleWarning):
        return cli_spelling(text, command)
    return f"{category.__name__} from {_warning_origin(frame, lasti)}: {text}"


#: The start of a ``warnings.warn(...)`` call in source code.
_WARN_CALL = re.compile(r"(?:warnings\.)?warn(?:_explicit)?\(")


def _warning_origin(frame: FrameType | None, lasti: int) -> str:
    """Where another library's warning comes from, in words.

    The first frame from ``frame`` (at instruction offset ``lasti``) outward that is not the
    ``warnings`` module's is the code that raised the warning. Standing at a ``warn(...)`` call,
    it raised the warning itself, and its top-level package names it (``"numpy"``). Otherwise
    the warning is one of compiled code it called (numpy's floating-point warnings have no
    Python frame of their own): ``"compiled code called by MODULE"``.
    """
    import linecache

    while frame is not None and frame.f_globals.get("__name__") in _WARNINGS_MODULES:
        frame = frame.f_back
        lasti = -1 if frame is None else frame.f_lasti
    if frame is None:
        return "Python"
    code = frame.f_code
    module = str(frame.f_globals.get("__name__") or code.co_filename)
    line, _, column, _ = next(itertools.islice(code.co_positions(), max(lasti, 0) // 2, None))
    source = linecache.getline(code.co_filename, line or 0)
    calls_warn = not source or column is None or bool(_WARN_CALL.match(source, column))
    if not calls_warn:
        return f"compiled code called by {module}"
    return module.partition(".")[0]


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command; a package or file-system error is one line and exit status 2.

    A leading ``~`` of the input and output paths is the home folder, as a shell expands it
    where it is not quoted (``evaluate``'s files are expanded by
    :func:`~flexdownscale.evaluation.evaluate`, a model by its loader)."""
    from .errors import FlexDownscaleError

    for name in ("input", "output", "out"):  # a quoted '~/x.nc': no shell expanded it
        given = getattr(args, name, None)
        if isinstance(given, str):
            setattr(args, name, os.path.expanduser(given))
    # what was there before the command ran: an interrupt's line says what it left
    target = getattr(args, "output", None) or getattr(args, "out", None)
    args.existed = isinstance(target, str) and os.path.lexists(target)
    try:
        _check_paths_given(args)
        if args.command == "info":
            return _info_model(args.model) if args.model else _info_package()
        if args.command == "downscale":
            return _downscale(args)
        if args.command == "forecast":
            return _forecast(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "demo":
            from .demo import run_demo
            from .errors import ConfigError

            # run_demo refuses an --out that is a file (or holds files of the user's) itself
            if args.members < 2:
                raise ConfigError(
                    f"--members {args.members}: the demo needs an ensemble of at least 2"
                )
            from .diffusion.samplers import check_seed

            check_seed(args.seed)  # before the output folder is made
            run_demo(
                args.out,
                members=args.members,
                seed=args.seed,
                progress=_progress_bar(args.quiet),
                cases=tuple(dict.fromkeys(args.case)) if args.case else None,  # each once
                log=None if args.quiet else print,
            )
            return 0
    except FlexDownscaleError as err:
        message = cli_spelling(_one_line(err), args.command)
        print(f"flexdownscale {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # reading or writing a file: one line naming it
        if isinstance(err, BrokenPipeError) and err.filename is None:
            raise  # the reader of the output stopped (| head): console_main ends quietly
        print(f"flexdownscale {args.command}: error: {_os_error_line(err)}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console_main())
