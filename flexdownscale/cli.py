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
import functools
import importlib.util
import itertools
import json
import os
import re
import sys
import warnings
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._json import finite_or_null, non_finite_word

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
    print(f"  grid: {_grid_line(dict(folder.grid), folder.task)}")
    print()
    print(folder.card)
    return 0


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


def _one_line(err: BaseException) -> str:
    """``str(err)`` with its whitespace (newlines included) collapsed, for one-line messages."""
    return " ".join(str(err).split()) or type(err).__name__


def _os_error_line(err: OSError) -> str:
    """One line for a file-system error: the file and what went wrong with it."""
    if err.filename is not None:
        what = err.strerror or _one_line(err)
        other = f" -> {err.filename2!r}" if err.filename2 is not None else ""
        return f"cannot use {str(err.filename)!r}{other}: {what}"
    return _one_line(err)


def _is_zarr(path: str) -> bool:
    return path.rstrip("/").endswith(".zarr")


def _open(path: str) -> Any:
    """Open a netCDF file or a zarr store (lazily).

    A failure is a :class:`~flexdownscale.errors.DataError` naming the path.
    """
    import xarray as xr

    from .errors import DataError

    if not Path(path).exists():
        raise DataError(f"input {path!r} does not exist")
    kind = "a zarr store" if _is_zarr(path) else "netCDF"
    if _is_zarr(path):
        from .data.io import require_zarr

        require_zarr(path, "read")
    try:
        if _is_zarr(path):
            from .data.io import zarr_consolidated

            ds = xr.open_zarr(path, consolidated=zarr_consolidated(path))
        else:
            ds = xr.open_dataset(path)
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read {path!r} as {kind}: {_one_line(err)} (inputs are netCDF files, or zarr "
            "stores whose name ends in .zarr)"
        ) from err
    if not ds.data_vars:  # an empty root: the variables may be in a netCDF-4 or zarr group
        from .data.io import group_advice, store_groups

        groups = store_groups(path)
        if groups:
            ds.close()
            raise DataError(f"{path!r} has no variable at its root; {group_advice(path, groups)}")
    return ds


def _groups_hint(*paths: str) -> str:
    """``"; 'in.nc' also has group(s) [...]: ..."`` for files whose netCDF-4 (or zarr) groups hold
    variables (read only on the way to an error: the message about a variable not found)."""
    from .data.io import group_advice, store_groups

    hints = []
    for path in paths:
        groups = store_groups(path)
        if groups:
            hints.append(f"; {path!r} has groups too: {group_advice(path, groups)}")
    return "".join(hints)


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


def _write_and_tell(out: Any, target: str, quiet: bool) -> None:
    """Write a command's output (:func:`_write_output`) and, unless ``quiet``, say where and
    its sizes (``wrote out.nc (time: 2, latitude: 64, longitude: 96)``)."""
    _write_output(out, target)
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


def _check_output(source: str, target: str) -> None:
    """Refuse an output path that is the input or lies in a missing folder (before computing)."""
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
        from .hub import _listing

        entries = sorted(p.name for p in dst.iterdir())
        if entries and not set(entries) & {".zgroup", ".zarray", ".zmetadata", "zarr.json"}:
            raise DataError(
                f"the output {target!r} is an existing folder that is not a zarr store (it holds "
                f"{_listing(entries)}); writing the output would replace it: give another path"
            )
    folder = dst.parent
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(
            f"the folder of the output {target!r}, {str(folder)!r}, {state}; create it first "
            f"(mkdir -p {folder}) or give another output path"
        )
    import shutil

    # the output is written beside its target first (see _write_output): try that now
    shutil.rmtree(_folder_beside(target, ".probe"))


def _folder_beside(target: str, suffix: str) -> Path:
    """A new hidden folder beside ``target`` (where the output is written before it replaces
    the target); :class:`DataError` naming the user's path when the folder cannot be made."""
    import tempfile

    dst = Path(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=suffix, dir=dst.parent))
    except OSError as err:
        raise _unwritable(target, err) from err


def _count(n: int, noun: str) -> str:
    """``"1 value"``, ``"2 values"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _unwritable(target: str, err: OSError) -> DataError:
    """The DataError for an output that cannot be written (the folder is read-only, say),
    naming the user's path rather than the hidden temporary one beside it."""
    from .errors import DataError

    why = err.strerror or _one_line(err)
    return DataError(
        f"cannot write the output {target!r}: creating a file in its folder "
        f"{str(Path(target).parent)!r} failed ({why}); give an output path in a folder you can "
        "write to"
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


#: How much of the prediction ``evaluate`` reads and scores at a time when no ``--time-chunk``
#: is given: as many time steps (fields, with all their members and the whole grid, of every
#: variable) as fit in this many bytes, at least one. The scores' float64 intermediates (the
#: spectra above all) take about 10 times a chunk per thread while it is scored.
_EVALUATE_CHUNK_BYTES = 16 * 2**20


def _stream(ds: Any, chunks: dict[str, int]) -> Any:
    """``ds`` with its data variables dask-backed (read lazily, chunk by chunk), in chunks of
    ``chunks`` (dim: length) and whole along every other dim. Coordinates are left as they
    are."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        out[name] = var.variable.chunk({d: chunks.get(str(d), -1) for d in var.dims})
    return out


def _steps_per_chunk(ds: Any, along: Sequence[str], given: int | None) -> int:
    """The time steps per chunk: ``given`` (``--time-chunk``), else as many fields (one index
    along each of the dims ``along``, with all the other dims) of the data variables of ``ds``
    that have those dims as fit in :data:`_EVALUATE_CHUNK_BYTES`, at least one."""
    if given is not None:
        return given
    field = 0
    for var in ds.data_vars.values():
        if all(d in var.dims for d in along):
            count = 1
            for d in along:
                count *= var.sizes[d]
            field += var.dtype.itemsize * var.size // max(count, 1)
    return max(1, _EVALUATE_CHUNK_BYTES // max(field, 1))


def _stream_prediction(
    pred: Any, dims: dict[str, str], lead_dim: str | None, given: int | None
) -> tuple[Any, str | None, int]:
    """The prediction ready to be read in time chunks, the name its time dim will have
    (``lead_dim`` for a forecast, whose leads become a series along it; ``None`` without a
    time dim) and the time steps per chunk (``given``, or :func:`_steps_per_chunk`'s).

    Forecasts from several starts are made one series of (start, lead) fields, which reads a
    netCDF file whole: they are chunked here (:func:`_stream`) along their starts, every lead
    in each chunk, and a chunk holds whole starts. By default a zarr store's chunks are read
    whole (a chunk is a whole number of them, when they are not larger). A prediction without
    a time dim is one chunk; with ``--time-chunk`` (``given``) that is :func:`_time_dim`'s
    DataError.
    """
    from .errors import DataError

    if lead_dim is not None:
        start = _forecast_starts(pred)
        if start is None or pred.sizes[start] == 1:
            return pred, lead_dim, _steps_per_chunk(pred, ["lead"], given)
        leads = pred.sizes["lead"]
        starts = max(1, _steps_per_chunk(pred, ["lead", start], given) // leads)
        return _stream(pred, {start: starts}), lead_dim, starts * leads
    try:
        time = _time_dim(pred, _dims_in(pred, dims) or {})
    except DataError:
        if given is not None:
            raise
        return pred, None, 1
    steps = _steps_per_chunk(pred, [time], given)
    stored = [
        var.chunksizes[time][0]
        for var in pred.data_vars.values()
        if var.chunks is not None and time in var.dims
    ]
    if given is None and stored and max(stored) <= steps:
        steps -= steps % max(stored)
    return pred, time, steps


def _read_chunk(fields: dict[str, Any], dim: str | None, start: int, stop: int) -> dict[str, Any]:
    """The values of ``fields`` (lazy DataArrays) from ``start`` to ``stop`` along ``dim``, as
    numpy arrays: one time chunk of every scored variable of both files, read in one task."""
    import dask
    import numpy as np

    out = {}
    for name, field in fields.items():
        part = field.isel({dim: slice(start, stop)}) if dim in field.dims else field
        data = part.data  # a lazily indexed file reads the chunk here; a zarr store is dask
        if dask.is_dask_collection(data):
            (data,) = dask.compute(data, scheduler="synchronous")
        out[name] = np.asarray(data)
    return out


def _streamed(
    pred: Any, truth: Any, names: list[str], dim: str | None, steps: int
) -> tuple[Any, Any, dict[str, int]]:
    """``pred`` and ``truth`` with the variables ``names`` dask-backed in chunks of ``steps``
    along ``dim`` (the whole field without it), whole along every other dim (the ensemble
    scores sort along the members and the spectra transform the grid), and the read task of
    each time chunk with its position (for :func:`_chunk_by_chunk`).

    Each time chunk of every variable of both files is read by one task (:func:`_read_chunk`),
    so that its scores can all be computed as soon as it is read, and it freed: a dask array
    per file let dask's scheduler read the whole prediction before it had the truth's chunks
    to score it with. The truth is read only where the prediction is (its grid points, times
    and the prediction's label of a dim only it has).
    """
    import uuid

    import dask
    import dask.array as da

    fields = {f"{side}:{v}": obj[v] for v in names for side, obj in (("p", pred), ("t", truth))}
    size = pred.sizes.get(dim, 1) if dim is not None else 1
    bounds = [(a, min(a + steps, size)) for a in range(0, size, steps)] or [(0, size)]
    token = uuid.uuid4().hex
    reader = dask.delayed(
        functools.partial(_read_chunk, fields), name=f"read-{token}", pure=True, traverse=False
    )
    chunks = [
        reader(dim, a, b, dask_key_name=f"flexdownscale-evaluate-read-{token}-{i}")
        for i, (a, b) in enumerate(bounds)
    ]
    order = {f"flexdownscale-evaluate-read-{token}-{i}": i for i in range(len(bounds))}

    def streamed(key: str) -> Any:
        field = fields[key]
        if dim is None or dim not in field.dims:  # one field: read once, with the first chunk
            data = da.from_delayed(chunks[0][key], shape=field.shape, dtype=field.dtype)
            return field.copy(deep=False, data=data)
        axis = field.dims.index(dim)
        parts = []
        for chunk, (a, b) in zip(chunks, bounds, strict=True):
            shape = list(field.shape)
            shape[axis] = b - a
            parts.append(da.from_delayed(chunk[key], shape=tuple(shape), dtype=field.dtype))
        return field.copy(deep=False, data=da.concatenate(parts, axis=axis))

    pred, truth = pred.copy(), truth.copy()
    for v in names:
        pred[v], truth[v] = streamed(f"p:{v}"), streamed(f"t:{v}")
    return pred, truth, order


def _chunk_by_chunk(reads: dict[str, int]) -> Any:
    """A dask scheduler callback that runs the ready tasks of the earliest time chunk first.

    ``reads`` gives the read task of each time chunk (:func:`_streamed`) with its position. A
    task takes the latest chunk it needs (a task of one chunk, that chunk; a sum over chunks,
    the last of them), and a task that needs none (the zeros xarray's NaN-skipping sums start
    from, say) the earliest chunk that needs it. The local scheduler runs the most recently
    readied task first but started from dask's static order, which for many scores of the same
    chunks could read every chunk before scoring one (the whole file in memory); in chunk
    order a chunk's scores are done before more than the next chunk is read. With another
    scheduler, or a dask whose scheduler state differs, it does nothing.
    """
    import bisect

    from dask.callbacks import Callback

    rank: dict[Hashable, int] = {}
    placed: set[Hashable] = set()

    def priority(key: Hashable) -> int:  # the ready list runs from its end: latest chunk first
        return -rank.get(key, -1)

    def start_state(dsk: Any, state: dict[str, Any]) -> None:
        ready, needs, needed_by = (state.get(k) for k in ("ready", "dependencies", "dependents"))
        if rank or not isinstance(ready, list) or needs is None or needed_by is None:
            return
        left = {key: len(needs[key]) for key in needs}
        todo = [key for key, n in left.items() if not n]
        walk = []
        while todo:  # a topological order
            key = todo.pop()
            walk.append(key)
            for later in needed_by.get(key, ()):
                left[later] -= 1
                if not left[later]:
                    todo.append(later)
        for key in walk:
            if key in reads:
                rank[key] = reads[key]
            else:
                ranks = [rank[d] for d in needs[key] if d in rank]
                if ranks:
                    rank[key] = max(ranks)
        for key in reversed(walk):
            if key not in rank:
                ranks = [rank[d] for d in needed_by.get(key, ()) if d in rank]
                rank[key] = min(ranks) if ranks else -1
        ready.sort(key=priority)
        placed.update(ready)

    def posttask(key: Hashable, result: Any, dsk: Any, state: dict[str, Any], worker: Any) -> None:
        ready = state.get("ready")
        if not rank or not isinstance(ready, list):
            return
        new = []
        while ready and ready[-1] not in placed:  # the tasks this one readied, at the end
            new.append(ready.pop())
        for task in reversed(new):
            placed.add(task)
            bisect.insort(ready, task, key=priority)

    return Callback(start_state=start_state, posttask=posttask)


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
    moved aside, put back if the new one cannot take its place).
    """
    import shutil

    from .data.grid import coordinate_encoding
    from .hub import _replace

    dst = Path(target)
    holder = _folder_beside(target, ".partial")
    written = holder / dst.name
    try:
        with _own_thread_pool():
            if _is_zarr(target):
                _write_zarr(ds, str(written))
            else:
                ds.to_netcdf(written, encoding=coordinate_encoding(ds))
        if not dst.is_dir() or dst.is_symlink():
            os.replace(written, dst)  # a file (or nothing) at target: one atomic rename
        else:  # an earlier zarr store: a folder cannot be renamed over a non-empty folder
            _replace(dst, written)
    except OSError as err:  # a full disk, say: said of the user's path, not the hidden one
        names = (err.filename, err.filename2)
        if any(n is not None and str(holder) in str(n) for n in names):
            raise OSError(err.errno, err.strerror or _one_line(err), target) from err
        raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _time_dim(ds: Any, dims: dict[str, str], option: str = "--time-chunk") -> str:
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


def _downscale(args: argparse.Namespace) -> int:
    from .pipeline import downscaler_for

    _check_device(args.device)
    _check_output(args.input, args.output)
    ds = _open(args.input)
    dims = _merged(args.dims)
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
    _write_and_tell(out, args.output, args.quiet)
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
    return downscaler(
        ds,
        factor=args.factor,
        tile=args.tile,
        overlap=args.overlap,
        bbox=args.bbox,
        **_common_keywords(args, variables, rename, dims),
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
        "progress": not args.quiet,
        "condition": args.condition,
        "sampler_options": _merged(args.sampler_option) or None,
    }


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
    _check_output(args.input, args.output)
    ds = _open(args.input)
    dims = _merged(args.dims)
    forecaster = Forecaster.from_pretrained(args.model)
    inputs: list[tuple[Any, Any]] = [(None, ds)]
    if args.start is not None:
        inputs = _inputs_up_to_starts(ds, args.start, dims, forecaster.past_frames)
    with _group_hint_on_missing_variable(args.input):
        forecasts = [_run_forecaster(forecaster, part, args, dims, start) for start, part in inputs]
    if len(forecasts) == 1:
        out = forecasts[0]
    else:
        from .provenance import concat_outputs

        # as docs/inference.md's Python: valid_time 2-D, one row per start (evaluate's form);
        # what differs by start (the condition read at each) is recorded per start
        out = concat_outputs(forecasts, "forecast_reference_time", coords=["valid_time"])
    _write_and_tell(out, args.output, args.quiet)
    return 0


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


def _evaluate_steps(text: str) -> int:
    """``evaluate --time-chunk``'s argparse type: :func:`_positive_int`, whose usage error
    says what leaving the option out does for ``evaluate`` (chunks of a set size)."""
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number; give the number of time steps per chunk, "
            f"e.g. 24, or leave the option out for chunks of about "
            f"{_EVALUATE_CHUNK_BYTES // 2**20} MB of the prediction"
        ) from None


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
    message = re.sub(r"\bwith bbox= ", "with --bbox ", message)
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


def _runs(values: Any, missing: Any, limit: int = 3) -> str:
    """``"a .. b, c"``: the runs of consecutive ``values`` where ``missing`` is true."""
    runs: list[str] = []
    start = None
    for i, miss in enumerate([*missing, False]):
        if miss and start is None:
            start = i
        elif not miss and start is not None:
            lo, hi = values[start], values[i - 1]
            runs.append(f"{lo:g}" if i - 1 == start else f"{lo:g} .. {hi:g}")
            start = None
    shown = ", ".join(runs[:limit])
    return shown + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")


def _truth_on_prediction_grid(
    pred: Any, truth: Any, dims: tuple[str, str], *, periods: dict[str, float] | None = None
) -> Any:
    """The truth at the prediction's grid points (nearest within 1e-3 cells), else GridError.

    ``periods`` gives the dims compared modulo their period: 360 degrees for longitude (either
    convention on each side), the box length for a periodic domain (a prediction cut across
    the seam keeps coordinates beyond the box, e.g. x from -0.5 on [0, 2 pi)). A periodic axis
    (``periodic = "true"``) that the prediction covers only in part (a ``--bbox`` crop) loses
    that attribute: a crop does not wrap around. An axis covered whole (perhaps rotated
    across its seam) keeps it.
    """
    import numpy as np
    import pandas as pd

    from .errors import GridError

    periods = periods or {}

    positions = {}
    for dim in dims:
        if dim not in truth.indexes:
            raise GridError(
                f"the truth has no {dim!r} coordinate (its dims: {tuple(map(str, truth.dims))}); "
                "give truth on the fine grid the prediction was made on"
            )
        want = np.asarray(pred[dim].values, dtype=float)
        have = np.asarray(truth[dim].values, dtype=float)
        step = float(np.abs(np.diff(want)).mean()) if want.size > 1 else 1.0
        tol = 1e-3 * step
        if dim in periods:  # the truth's coordinates in the prediction's range
            low = want.min() - tol
            have = (have - low) % periods[dim] + low
        order = np.argsort(have, kind="stable")
        index = pd.Index(have[order])
        if not index.is_unique:
            raise GridError(f"the truth's {dim!r} coordinate has repeated values")
        found = index.get_indexer(want, method="nearest", tolerance=tol)
        found = np.where(found < 0, -1, order[np.maximum(found, 0)])
        missing = found < 0
        if missing.any():
            raise GridError(
                f"the truth does not cover the prediction grid: {int(missing.sum())} of the "
                f"{want.size} prediction {dim} values have no truth point within {tol:.3g} "
                f"({_runs(want, missing)}; prediction {dim} {want.min():g} .. {want.max():g}, "
                f"truth {have.min():g} .. {have.max():g}); give truth covering the whole "
                "prediction grid, on the fine grid the prediction was made on"
            )
        positions[dim] = found
    # a crop of a periodic axis does not wrap: its spectra are those of a limited area (DCT)
    whole = {dim: np.unique(positions[dim]).size == truth.sizes[dim] for dim in dims}
    truth = truth.isel(positions)

    def attrs(dim: str) -> dict[str, Any]:
        kept = dict(truth[dim].attrs)
        if not whole[dim]:
            kept.pop("periodic", None)
        return kept

    return truth.assign_coords({d: (d, pred[d].values, attrs(d)) for d in dims})


def _truth_at_prediction_times(pred: Any, truth: Any, dim: str, limit: int = 3) -> Any:
    """The truth at the prediction's times, else DataError naming the missing ones (each time
    once: forecasts from several starts repeat the valid times where they overlap)."""
    from .errors import DataError
    from .metrics._utils import _calendar

    wanted = pred.indexes[dim]
    ours, theirs = _calendar(wanted), _calendar(truth.indexes[dim])
    if ours is not None and theirs is not None and ours != theirs:
        raise DataError(
            f"the prediction's {dim} is in the {ours} and the truth's in the {theirs}: the "
            "same dates in two calendars never match; convert one file to the other's "
            f"calendar first (with xarray, for example: ds.convert_calendar("
            f"{ours.split()[0]!r}"
            + (", use_cftime=False)" if "datetime64" in ours else ")")
            + " on the truth)"
        )
    distinct = wanted.unique()
    missing = distinct[~distinct.isin(truth.indexes[dim])]
    if len(missing):
        shown = ", ".join(str(t) for t in missing[:limit])
        more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
        raise DataError(
            f"the truth lacks {len(missing)} of the prediction's {len(distinct)} {dim} values "
            f"({shown}{more}); give truth for every predicted time"
        )
    return truth.sel({dim: wanted})


def _dims_in(ds: Any, dims: dict[str, str]) -> dict[str, str] | None:
    """The entries of a ``--dims`` override that name dims of ``ds`` (the prediction and the
    truth may name their time dims differently)."""
    return {axis: dim for axis, dim in dims.items() if dim in ds.dims} or None


def _forecast_starts(pred: Any) -> str | None:
    """The dim of a forecast's start times: the dim other than ``lead`` of a 2-D
    ``valid_time`` (forecasts from several starts concatenated along
    ``forecast_reference_time``), or a ``forecast_reference_time`` dim beside a ``valid_time``
    along ``lead`` only. ``None`` for one forecast, whose start is a scalar."""
    stamp = pred.coords.get("valid_time")
    if stamp is not None and stamp.ndim == 2 and "lead" in stamp.dims:
        return str(next(d for d in stamp.dims if d != "lead"))
    return "forecast_reference_time" if "forecast_reference_time" in pred.dims else None


def _forecast_leads(pred: Any, dims: dict[str, str]) -> str | None:
    """The name the time dim of a forecast's leads takes (``valid_time``, or a ``--dims time=``
    name), when ``pred`` is a forecast: a ``lead`` dim with a ``valid_time`` coordinate along it
    (and along the starts, for forecasts from several, see :func:`_forecast_starts`) and no
    other time dim. ``None`` for other predictions."""
    from .data.grid import find_axes

    stamp = pred.coords.get("valid_time")
    start = _forecast_starts(pred)
    if "lead" not in pred.dims or stamp is None:
        return None
    if stamp.dims != ("lead",) and set(stamp.dims) != {"lead", start}:
        return None
    name = dims.get("time", "valid_time")
    if name == start:  # the start times are no time dim of the fields: they are matched by
        name = "valid_time"  # valid_time like the leads
    if name not in ("lead", "valid_time"):
        for v in pred.data_vars:  # a time dim of its own: not a forecast's leads
            if find_axes(pred[v], dims=_dims_in(pred, dims)).time not in (None, start):
                return None
    return name


def _forecast_series(pred: Any) -> tuple[Any, list[int], int]:
    """A forecast as a series of fields along ``valid_time`` (the ``lead`` dim's place), the
    lead of each field and the number of start times.

    One forecast (no start dim, or a start dim of one value) gives its leads in order; several
    starts give every (start, lead) pair, start by start, so a valid time repeats where the
    forecasts overlap. DataError for several starts with one ``valid_time`` for all (xarray's
    ``concat`` keeps the first forecast's valid times unless told to concatenate them).
    """
    import numpy as np

    from .errors import DataError

    start = _forecast_starts(pred)
    if start is not None and pred.sizes[start] == 1:  # one start, kept as a dim
        pred, start = pred.isel({start: 0}), None
    leads = [int(k) for k in np.asarray(pred["lead"].values)]
    if start is None:
        return pred.swap_dims({"lead": "valid_time"}).drop_vars("lead"), leads, 1
    if start not in pred["valid_time"].dims:
        raise DataError(
            f"the forecast has {pred.sizes[start]} {start!r} values but one valid_time along "
            "lead for all of them (xarray's concat kept the first forecast's): concatenate the "
            f"forecasts with their valid times, xr.concat(forecasts, dim={start!r}, "
            "coords=['valid_time'])"
        )
    stamp = pred["valid_time"].transpose(start, "lead")
    gaps = np.asarray(stamp.isnull().values)
    if gaps.any():  # concat pads a forecast with fewer leads with NaN fields and NaT times
        counts = (~gaps).sum(axis=1)
        shortest = int(counts.min())
        raise DataError(
            f"the forecasts from the {pred.sizes[start]} {start!r} values have different numbers "
            f"of leads ({shortest} to {int(counts.max())}): concatenating them filled the "
            "missing leads with NaN fields and no valid_time. Give every forecast the same "
            f"leads, e.g. xr.concat([f.isel(lead=slice(0, {shortest})) for f in forecasts], "
            f"dim={start!r}, coords=['valid_time'])"
        )
    series = pred.stack({"_start_lead": (start, "lead")}, create_index=False)
    series = series.swap_dims({"_start_lead": "valid_time"}).drop_vars(["lead", start])
    return series, leads * pred.sizes[start], pred.sizes[start]


def _truth_in_time_with(
    pred: Any,
    truth: Any,
    names: list[str],
    dims: dict[str, str] | None = None,
    member_dim: str = "member",
) -> Any:
    """The truth at the prediction's time(s), however each side stores time, else DataError.

    A time dim (under any name) on both sides: matched by value. A single field on one side:
    matched by its scalar time coordinate, or, without one, only against a truth of one time.
    The truth is never broadcast across the prediction's times. ``dims`` is the ``--dims``
    override (applied to each file where it names one of its dims); ``member_dim`` the
    prediction's ensemble dim.
    """
    import numpy as np

    from .data.grid import find_axes
    from .errors import DataError

    dims = dims or {}
    paxes = find_axes(pred[names[0]], dims=_dims_in(pred, dims))
    ptime = paxes.time
    ttime = find_axes(truth[names[0]], dims=_dims_in(truth, dims)).time
    unknown = [
        str(d) for d in pred[names[0]].dims if d not in (paxes.y, paxes.x, ptime, member_dim)
    ]
    if ptime is None and ttime is not None and unknown:
        raise DataError(
            f"the prediction has dims {unknown} that are neither its grid nor {member_dim!r}; "
            f"if {unknown[0]!r} is its time dim, pass --dims time={unknown[0]}"
        )
    if ptime is not None and ttime is not None:
        if ttime != ptime:
            truth = truth.rename({ttime: ptime})
        return _truth_at_prediction_times(pred, truth, ptime)
    if ptime is not None:  # the truth is a single field
        stamp = truth.coords.get(ptime)
        if pred.sizes[ptime] == 1 and (stamp is None or stamp.ndim == 0):
            if stamp is not None and stamp.values != pred[ptime].values[0]:
                raise DataError(
                    f"the truth is for {ptime} = {stamp.values} but the prediction for "
                    f"{pred[ptime].values[0]}; give the truth for the predicted time"
                )
            return truth.drop_vars(ptime, errors="ignore").expand_dims({ptime: pred[ptime]})
        raise DataError(
            f"the prediction has {pred.sizes[ptime]} {ptime!r} values but the truth has no time "
            "dim; give truth for every predicted time"
        )
    if ttime is not None:  # the prediction is a single field
        stamp = next(
            (pred.coords[c] for c in (ttime, "time", "valid_time") if c in pred.coords), None
        )
        if stamp is not None and stamp.ndim == 0:
            hit = np.flatnonzero(truth[ttime].values == stamp.values)
            if hit.size == 0:
                raise DataError(
                    f"the prediction is for {stamp.name} = {stamp.values}, which the truth's "
                    f"{ttime!r} does not have; give truth for the predicted time"
                )
            return truth.isel({ttime: int(hit[0])}, drop=True)
        if truth.sizes[ttime] == 1:
            return truth.isel({ttime: 0}, drop=True)
        raise DataError(
            f"the prediction is a single field with no time coordinate but the truth has "
            f"{truth.sizes[ttime]} {ttime!r} values; select the matching truth time first"
        )
    for name in ("time", "valid_time"):  # two single fields: their time stamps must agree
        a, b = pred.coords.get(name), truth.coords.get(name)
        if a is not None and b is not None and a.ndim == b.ndim == 0 and a.values != b.values:
            raise DataError(
                f"the truth is for {name} = {b.values} but the prediction for {a.values}; give "
                "the truth for the predicted time"
            )
    return truth


def _check_same_units(
    pred: Any,
    truth: Any,
    names: list[str],
    truth_path: str = "TRUTH",
    renames: dict[str, str] | None = None,
) -> None:
    """UnitsError when a variable's units differ between prediction and truth (compared as
    units: ``m s**-1`` and ``m/s`` are the same). For a water depth against a mass per area
    (``mm`` and ``kg m-2``) the message gives the commands that convert the truth file
    ``truth_path`` (whose variables ``renames`` renamed, truth name to prediction name) into
    the prediction's units, for liquid water."""
    from .errors import UnitsError
    from .units import compare_units

    for v in names:
        a, b = pred[v].attrs.get("units"), truth[v].attrs.get("units")
        if a is None and b is None:
            continue
        if a is None or b is None:  # one file says, the other cannot be checked against it
            has, lacks = ("prediction", "truth") if b is None else ("truth", "prediction")
            raise UnitsError(
                f"variable {v!r} is in {a if b is None else b!r} in the {has} but has no "
                f"'units' attribute in the {lacks}; set it in the {lacks} file (after "
                "converting the values if they are in other units)"
            )
        units = compare_units(str(a), str(b))
        if units.outcome == "same":
            continue
        if units.outcome == "convertible":
            raise UnitsError(
                f"variable {v!r} is in {a!r} in the prediction but in {b!r} in the truth "
                f"({units.rule}); convert one of them (values and attrs['units']) so both are "
                "in the same units"
            )
        if units.outcome == "not_a_unit":  # an attribute that names no unit: wrong metadata
            sides = [
                ("prediction", str(a), units.found_kind),
                ("truth", str(b), units.expected_kind),
            ]
            unknown = [(side, u) for side, u, kind in sides if kind is None]
            said = [
                f"the {side}'s 'units' attribute "
                + ("is empty" if not u.strip() else f"is {u!r}, not a unit flexdownscale reads")
                for side, u in unknown
            ]
            if len(unknown) == 1:
                side, _ = unknown[0]
                other = str(b if side == "prediction" else a)
                fix = (
                    f" (the other file says {other!r}); set it to what the values are in, e.g. "
                    f"ncatted -a units,{v},o,c,'{other}' FILE"
                )
            else:  # neither names a unit: no example to take from the other file
                fix = (
                    "; set each to what the values are in, in a CF spelling ('K', 'degC', "
                    f"'hPa', 'm s-1', '1'), e.g. ncatted -a units,{v},o,c,'K' FILE"
                )
            raise UnitsError(f"variable {v!r}: {' and '.join(said)}{fix}")
        own = {new: old for old, new in (renames or {}).items()}.get(v, v)  # the truth file's
        water = compare_units(str(b), str(a)).water_hint(
            own,
            form="words" if _is_zarr(truth_path) else "command",
            target=f"{own!r} in the truth",
            file=truth_path,
        )
        if water is not None:  # the prediction is in the model's units: the truth is converted
            raise UnitsError(
                f"variable {v!r} is {units.found_kind} in the prediction ({a!r}) but "
                f"{units.expected_kind} in the truth ({b!r}): not the same kind of quantity, but "
                f"{water}. Otherwise check that both files hold the same variable (if the truth "
                "names it otherwise: --rename TRUTH=PREDICTION)"
            )
        raise UnitsError(
            f"variable {v!r} is {units.found_kind} in the prediction ({a!r}) but "
            f"{units.expected_kind} in the truth ({b!r}): not the same kind of quantity, so no "
            "conversion makes them comparable; check that both files hold the same variable "
            "(if the truth names it otherwise: --rename TRUTH=PREDICTION) and that each 'units' "
            "attribute says what its values are in"
        )


_REPORT_TITLE = "# Evaluation of "


def _check_report_folder(out: Path, names: list[str], given: str) -> None:
    """Refuse a report folder where ``evaluate`` would overwrite files that are not its own.

    The report has fixed names (``metrics.md``, ``metrics.json``, ``metrics_by_lead.json``,
    ``spectra_<var>.png``, ``rank_histogram_<var>.png``); an earlier evaluation's folder (its
    ``metrics.md`` starts with the report's title) is written over, and other files are never
    touched. A folder of the user's with a file of one of those names is refused before
    anything is computed: nothing of theirs is lost.
    """
    from ._output import files_in_the_way
    from .errors import DataError

    if out.exists() and not out.is_dir():
        raise DataError(f"--out {given!r} is a file, not a folder; give a folder for the report")
    fixed = ["metrics.md", "metrics.json", "metrics_by_lead.json"]
    fixed += [f"{kind}_{v}.png" for v in names for kind in ("spectra", "rank_histogram")]
    found = files_in_the_way(out, fixed, "metrics.md", lambda line: line.startswith(_REPORT_TITLE))
    if found:
        raise DataError(
            f"--out {given!r} holds {', '.join(found)}, which the report would overwrite, and "
            "it is not an earlier evaluation's folder (its metrics.md is not a report of "
            "flexdownscale evaluate); give a new or empty folder, or move those files away"
        )


def _evaluate(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from . import metrics
    from .data.grid import find_axes, grid_spec, normalize_grid
    from .errors import DataError, GridError, MissingVariableError
    from .plot import plot_rank_histogram, plot_spectra

    dims = _merged(args.dims)
    member_dim = dims.pop("member", "member")  # the ensemble dim is no grid axis
    pred = _open(args.prediction)
    truth = _open(args.truth)
    # what made the prediction (model, sampler, steps, ...): the spread/skill of one model's
    # ensemble differs with them, so the report says them
    provenance = _prediction_provenance(pred.attrs)
    renames = _merged(args.rename)
    absent = [name for name in renames if name not in truth.data_vars]
    if absent:
        raise MissingVariableError(
            f"--rename names {absent}, which the truth does not hold (its variables: "
            f"{list(map(str, truth.data_vars))}); give TRUTH=PREDICTION with the truth's name "
            "first, e.g. --rename tas=t2m"
        )
    taken = [new for old, new in renames.items() if new in truth.variables and new != old]
    if taken:
        raise MissingVariableError(
            f"--rename would give the truth a second {taken[0]!r} (it holds one already); "
            f"drop the rename to score its own {taken[0]!r}, or remove that variable first"
        )
    truth = truth.rename(renames)
    # a forecast (the Forecaster's output): its leads are matched to the truth at valid_time,
    # the time dim of its leads for the checks below, and scored per lead as well
    lead_dim = _forecast_leads(pred, dims)
    # read lazily in chunks along time (the members and the grid whole): memory holds a few
    # chunks, not the file; every score is computed in one pass over the files (below)
    pred, time_dim, steps = _stream_prediction(pred, dims, lead_dim, args.time_chunk)
    leads, starts = None, 1
    if lead_dim is not None:
        pred, leads, starts = _forecast_series(pred)
        pred = pred.rename(valid_time=lead_dim) if lead_dim != "valid_time" else pred
        dims["time"] = lead_dim
    truth = normalize_grid(truth, dims=_dims_in(truth, dims))
    names = _fields_in_common(pred, truth, _dims_in(pred, dims))
    if not names:
        pred_names, truth_names = list(map(str, pred.data_vars)), list(map(str, truth.data_vars))
        example = f"{truth_names[0]}={pred_names[0]}" if pred_names and truth_names else "tas=t2m"
        raise MissingVariableError(
            f"prediction variables {pred_names} and truth variables {truth_names} have none "
            f"in common; if the truth names a variable otherwise, say which: --rename {example} "
            f"(truth name = prediction name){_groups_hint(args.prediction, args.truth)}"
        )
    _check_same_units(pred, truth, names, args.truth, renames)
    for v in names:  # the truth is one realisation
        if member_dim in truth[v].dims and member_dim not in pred[v].dims:
            raise DataError(
                f"the truth's {v!r} has the ensemble dim {member_dim!r} "
                f"({_count(truth.sizes[member_dim], 'value')}) and the prediction's has none: "
                "were the files given the other way round? The prediction comes first: "
                "flexdownscale evaluate PREDICTION TRUTH --out DIR"
            )
        if member_dim in truth[v].dims:
            raise DataError(
                f"the truth's {v!r} has the ensemble dim {member_dim!r} "
                f"({_count(truth.sizes[member_dim], 'value')}), but the truth is one "
                f"realisation: give a truth file without it (one {member_dim} of it, if it is "
                "an ensemble)"
            )
    pdims, tdims = _dims_in(pred, dims), _dims_in(truth, dims)
    axes = find_axes(pred[names[0]], dims=pdims)
    # fields of the prediction the truth has no variable for: not scored, and said so
    unscored = [
        str(v)
        for v, field in pred.data_vars.items()
        if v not in truth.data_vars and {axes.y, axes.x} <= set(field.dims)
    ]
    if unscored:
        from ._stack import user_stacklevel
        from .errors import FlexDownscaleWarning

        warnings.warn(
            f"the truth has no {', '.join(map(repr, unscored))}: "
            f"{'it is' if len(unscored) == 1 else 'they are'} not scored (only "
            f"{', '.join(map(repr, names))}); give truth with those variables to score them",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
    periods = {axes.x: 360.0} if grid_spec(pred[names[0]], dims=pdims).kind == "latlon" else {}
    tspec = grid_spec(truth[names[0]], dims=tdims)
    if tspec.kind != "latlon":  # a doubly periodic box, say: its length along each dim
        for dim, n, step, periodic in (
            (tspec.x, tspec.nx, tspec.dx, tspec.periodic_x),
            (tspec.y, tspec.ny, tspec.dy, tspec.periodic_y),
        ):
            if periodic:
                periods[dim] = n * step
    truth = _truth_on_prediction_grid(pred, truth, (axes.y, axes.x), periods=periods)
    truth = _truth_in_time_with(pred, truth, names, dims, member_dim)
    for v in names:  # a dim only the truth has would be averaged over: pick the prediction's
        for d in [d for d in truth[v].dims if d not in pred[v].dims]:
            label = pred[v].coords.get(d)
            if label is not None and label.ndim == 0 and d in truth.coords:
                try:  # the prediction was made for one value of it (trajectory = 3, say)
                    truth = truth.sel({d: label.values})
                    continue
                except KeyError:
                    pass
            raise DataError(
                f"the truth's {v!r} has a dim {str(d)!r} ({truth.sizes[d]} values) that the "
                f"prediction lacks: every score would pool the prediction against all of them. "
                f"Give truth for the prediction's {str(d)!r} only (cut it out of the truth file), "
                "or a prediction along it"
            )
    for v in names:  # a dim only the prediction has would be averaged as if it were space
        extra = [str(d) for d in pred[v].dims if d not in truth[v].dims and d != member_dim]
        if extra:
            raise DataError(
                f"the prediction's {v!r} has dims {extra} that the truth lacks; if "
                f"{extra[0]!r} is the ensemble dim, pass --dims member={extra[0]}, else select "
                "one value of it (or give truth along it)"
            )
    # both files read in time chunks, each chunk once per pass (one for the checks, one for
    # the scores), every score of a chunk computed before more chunks are read
    pred, truth, reads = _streamed(pred, truth, names, time_dim, steps)
    finite, empty, missing_by_name = _compute_together(
        reads,
        [np.isfinite(pred[v]).any() for v in names],
        [truth[v].isnull().all() for v in names],
        [
            {name: field.isnull().sum() for name, field in (("prediction", p), ("truth", t))}
            for p, t in ((pred[v], truth[v]) for v in names)
        ],
    )
    for v, found in zip(names, finite, strict=True):
        if not bool(found):
            raise DataError(
                f"the prediction's {v!r} has no finite value; check the file (a failed run, or "
                "a fill value that was not decoded?)"
            )
    if any(bool(none) for none in empty):
        raise GridError(
            "the truth has no values on the prediction grid; give truth on the fine grid "
            "the prediction was made on"
        )
    out = Path(args.out)
    _check_report_folder(out, names, args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics_by_lead.json").unlink(missing_ok=True)  # an earlier forecast's, if any
    has_members = member_dim in pred.dims and pred.sizes[member_dim] > 1
    spatial = [axes.y, axes.x]
    spec = grid_spec(truth[names[0]], dims=_dims_in(truth, dims))
    # latitude grids: means weighted by cell area (WeatherBench practice); projected and
    # physics grids have equal cells. Doubly periodic domains: plain FFT spectra; a crop of one
    # (the truth's periodic attribute is dropped for an axis covered in part): the DCT.
    weights = (
        metrics.area_weights(truth[names[0]], dims=spatial)
        if spec.kind in ("latlon", "rotated")
        else None
    )
    method = "fft" if spec.periodic_x and spec.periodic_y else "dct"
    rows = []
    gaps: list[str] = []
    spectra: dict[str, Any] = {}  # per variable: every field's spectrum (prediction, truth)
    curves: dict[str, Any] = {}  # per variable: the spectra averaged over members and times
    histograms: dict[str, Any] = {}
    for v, counts in zip(names, missing_by_name, strict=True):
        p, t = pred[v], truth[v]
        # spectra need gap-free fields (an FFT / DCT over the grid): a masked field (land,
        # missing cells) is scored on its valid points, without the spectral entries
        missing = {name: int(n) for name, n in counts.items()}
        spectra[v] = None
        if any(missing.values()):
            gaps.append(
                f"`{v}` ("
                + ", ".join(f"{n} missing values in the {w}" for w, n in missing.items() if n)
                + ")"
            )
        else:  # member spectra are averaged, not the mean's
            spectra[v] = tuple(
                metrics.power_spectrum(f, dims=spatial, method=method) for f in (p, t)
            )
            curves[v] = tuple(metrics.sample_mean_spectrum(s) for s in spectra[v])
        rows.append(
            {
                "variable": v,
                "units": str(p.attrs.get("units", "")),
                **_pooled_scores(p, t, member_dim, weights, has_members, curves.get(v)),
            }
        )
        if has_members:
            histograms[v] = metrics.rank_histogram(p, t, member_dim=member_dim, weights=weights)
    by_lead = _scores_by_lead(
        pred, truth, names, lead_dim, leads, member_dim, weights, has_members, spectra
    )
    # every score, spectrum and rank histogram of every variable (pooled and per lead)
    # together: one more pass over the files
    rows, by_lead, curves, histograms = _compute_together(reads, rows, by_lead, curves, histograms)
    rows, by_lead = _floats(rows), _floats(by_lead)
    import matplotlib.pyplot as plt

    for v in names:
        if v in curves:
            pred_curve, truth_curve = curves[v]
            fig = plot_spectra(
                {"truth": truth_curve, "prediction": pred_curve},
                reference="truth",
                title=f"{v}: power spectra",
            )
            fig.savefig(out / f"spectra_{v}.png", dpi=100)
        if has_members:
            if not np.isfinite(np.asarray(histograms[v].values, dtype=float)).any():
                # nothing to rank: the plot's own error, which says why from the fields
                plot_rank_histogram(pred[v], truth[v], member_dim=member_dim, weights=weights)
            fig = plot_rank_histogram(histograms[v], title=f"{v}: rank histogram")
            fig.savefig(out / f"rank_histogram_{v}.png", dpi=100)
        plt.close("all")
    columns = list(rows[0])
    weighting = (
        "weighted by cell area (cos latitude)" if weights is not None else "over all grid points"
    )
    if has_members:
        scores = (
            f"CRPS fair, spread/skill Fortin-corrected over the {pred.sizes[member_dim]} "
            f"members; LSD: log-spectral distance of the member-averaged {method.upper()} power "
            "spectra."
        )
    else:  # one field per point: the ensemble scores are not computed, say so
        scores = (
            f"one prediction per point (no {member_dim!r} dim of two or more members): no CRPS, "
            f"spread/skill or rank histogram; LSD: log-spectral distance of the {method.upper()} "
            "power spectra."
        )
    lines = [
        f"{_REPORT_TITLE}{args.prediction} against {args.truth}",
        "",
        f"Means {weighting}; {scores}",
        "",
        _provenance_words(provenance, int(pred.sizes.get(member_dim, 1))),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [_table_cell(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if not has_members:  # no ensemble: the prediction's own RMSE and MAE (same JSON keys)
        lines[lines.index("| " + " | ".join(columns) + " |")] = _heading(columns)
    if by_lead:
        n_leads = len(by_lead) // len(names)
        said = (
            f"the forecasts' {n_leads} leads, each over the {starts} starts: every field against "
            "the truth at its own valid_time; the table above pools them all"
            if starts > 1
            else f"the forecast's {n_leads} leads, each against the truth at its valid_time; the "
            "table above pools them"
        )
        lines += [
            "",
            f"By lead ({said}):",
            "",
            "| " + " | ".join(by_lead[0]) + " |" if has_members else _heading(list(by_lead[0])),
            "|" + "---|" * len(by_lead[0]),
        ]
        lines += ["| " + " | ".join(_table_cell(r[c]) for c in by_lead[0]) + " |" for r in by_lead]
    spelled = _non_finite_words([*rows, *by_lead])  # what inf, nan and n/a in the tables mean
    if spelled:
        lines += ["", spelled]
    if unscored:
        lines += [
            "",
            "Not scored (the truth has no such variable): "
            + ", ".join(f"`{v}`" for v in unscored)
            + ".",
        ]
    if gaps:
        lines += [
            "",
            "Scores over the valid points only; no LSD or spectrum plot for "
            + ", ".join(gaps)
            + ": spectra need gap-free fields (fill or crop the gaps to get them).",
        ]
    (out / "metrics.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # strict JSON: a score that is NaN or infinite is null, and "non_finite" says which it was
    strict = [_strict_row(row) for row in rows]
    if provenance:  # each row says what made the prediction (absent: the file does not say)
        strict = [{**row, "prediction": provenance} for row in strict]
    (out / "metrics.json").write_text(
        json.dumps(strict, indent=2, allow_nan=False), encoding="utf-8"
    )
    if by_lead:
        strict = [_strict_row(row) for row in by_lead]
        (out / "metrics_by_lead.json").write_text(
            json.dumps(strict, indent=2, allow_nan=False), encoding="utf-8"
        )
    print("\n".join(lines))
    return 0


def _fields_in_common(pred: Any, truth: Any, dims: dict[str, str] | None) -> list[str]:
    """The prediction's variables on its (y, x) grid that the truth holds too, in the
    prediction's order: the fields to score. A grid-mapping variable (``crs``,
    ``rotated_pole``) or ``time_bnds`` written as a data variable, as CDO and CORDEX files
    have them, is no field (it crashed the scores, or made the grid unfindable when it came
    first). Without a findable grid every shared variable is returned, for the grid's own
    error to speak."""
    from .data.grid import find_axes
    from .errors import GridError

    shared = [v for v in map(str, pred.data_vars) if v in truth.data_vars]
    try:
        axes = find_axes(pred, dims=dims)
    except GridError:
        return shared
    return [v for v in shared if {axes.y, axes.x} <= set(pred[v].dims)]


def _scores_by_lead(
    pred: Any,
    truth: Any,
    names: list[str],
    lead_dim: str | None,
    leads: list[int] | None,
    member_dim: str,
    weights: Any,
    has_members: bool,
    spectra: dict[str, Any],
) -> list[dict[str, Any]]:
    """Rows of the per-lead table of a forecast (``lead_dim`` the time dim of its fields,
    ``leads`` the lead of each field; none for other predictions): per variable and lead, the
    columns of the pooled table, each over that lead's field: RMSE, MAE and bias of the
    ensemble mean, for an ensemble the fair CRPS and the spread/skill ratio, and the LSD of the
    member-averaged spectra (``spectra``: per variable, the spectra of every field of the
    prediction and the truth, or ``None`` for a variable with gaps, which gets no LSD, as in
    the pooled table). Forecasts from several starts (a lead repeated) get a row per lead over
    that lead's fields from all starts, with their count (``starts``) in place of the one valid
    time. The scores are lazy, as :func:`_pooled_scores`'s: the caller computes them."""
    from . import metrics

    if lead_dim is None or leads is None:
        return []
    fields = {k: [i for i, lead in enumerate(leads) if lead == k] for k in dict.fromkeys(leads)}
    if len(fields) < len(leads):
        pooled = []
        for v in names:
            p, t = pred[v], truth[v]
            for k, at in fields.items():
                curves = (  # no LSD for a variable with gaps, as in the pooled table
                    None
                    if spectra[v] is None
                    else tuple(
                        metrics.sample_mean_spectrum(s.isel({lead_dim: at})) for s in spectra[v]
                    )
                )
                scores = _pooled_scores(
                    p.isel({lead_dim: at}),
                    t.isel({lead_dim: at}),
                    member_dim,
                    weights,
                    has_members,
                    curves,
                )
                pooled.append({"variable": v, "lead": k, "starts": len(at), **scores})
        return pooled
    rows = []
    for v in names:
        p, t = pred[v], truth[v]
        mean = p.mean(member_dim) if member_dim in p.dims else p
        scores = {
            "RMSE (ens. mean)": metrics.rmse(mean, t, weights=weights, preserve_dims=lead_dim),
            "MAE (ens. mean)": metrics.mae(mean, t, weights=weights, preserve_dims=lead_dim),
            "bias": metrics.bias(mean, t, weights=weights, preserve_dims=lead_dim),
        }
        if has_members:
            scores["CRPS"] = metrics.crps_ensemble(
                p, t, member_dim=member_dim, weights=weights, preserve_dims=lead_dim
            )
            scores["spread/skill"] = metrics.spread_skill_ratio(
                p, t, member_dim=member_dim, weights=weights, preserve_dims=lead_dim
            )
        lsd = (  # as in the pooled table, on each lead's fields
            metrics.log_spectral_distance(
                *(metrics.sample_mean_spectrum(s, keep=[lead_dim]) for s in spectra[v])
            )
            if spectra[v] is not None
            else None
        )
        for k in range(pred.sizes[lead_dim]):
            row: dict[str, Any] = {"variable": v, "lead": leads[k]}
            row["valid_time"] = str(pred[lead_dim].values[k])
            row.update({name: score.isel({lead_dim: k}) for name, score in scores.items()})
            row["LSD (dB)"] = lsd.isel({lead_dim: k}) if lsd is not None else None
            rows.append(row)
    return rows


def _pooled_scores(
    p: Any,
    t: Any,
    member_dim: str,
    weights: Any,
    has_members: bool,
    curves: tuple[Any, Any] | None,
) -> dict[str, Any]:
    """The pooled table's scores of prediction fields ``p`` against truth ``t`` over all their
    points: RMSE, MAE and bias of the ensemble mean, the fair CRPS and spread/skill ratio for an
    ensemble, and the LSD of ``curves``, the spectra of the prediction and the truth each
    averaged over its other dims (members, times;
    :func:`~flexdownscale.metrics.sample_mean_spectrum`); ``None`` without
    ``curves`` (fields with gaps). Each score is lazy, a 0-d DataArray (dask-backed for
    chunked fields): the caller computes them all together (:func:`_compute_together`)."""
    from . import metrics

    mean = p.mean(member_dim) if member_dim in p.dims else p
    scores: dict[str, Any] = {
        "RMSE (ens. mean)": metrics.rmse(mean, t, weights=weights),
        "MAE (ens. mean)": metrics.mae(mean, t, weights=weights),
        "bias": metrics.bias(mean, t, weights=weights),
    }
    if has_members:
        scores["CRPS"] = metrics.crps_ensemble(p, t, member_dim=member_dim, weights=weights)
        scores["spread/skill"] = metrics.spread_skill_ratio(
            p, t, member_dim=member_dim, weights=weights
        )
    scores["LSD (dB)"] = metrics.log_spectral_distance(*curves) if curves is not None else None
    return scores


#: A warning's count of points (the fair CRPS's "... (N point(s))").
_POINTS = re.compile(r"\((\d+) point\(s\)\)")


def _compute_together(reads: dict[str, int], *lazy: Any) -> tuple[Any, ...]:
    """``lazy`` (lists, tuples and dicts of xarray objects and plain values) with every
    dask-backed object computed, all in one ``dask.compute``: each chunk of the files (read by
    the tasks ``reads``, see :func:`_streamed`) is read once for all of them, and freed once
    they have used it (:func:`_chunk_by_chunk`).

    Floating-point errors are ignored, as where the scores were built: xarray's arithmetic
    ignores them (a spread/skill of 1 / 0 is ``inf``, said in the report) and the metrics
    ignore those they expect (the log of a zero power), but a dask-backed score meets them
    later, in the compute, where numpy would warn of each. A warning that counts points (the
    fair CRPS's "only one ensemble member is valid (N point(s))") comes from every chunk with
    that chunk's count: it is given once, with the count of all chunks, after the compute.
    """
    import dask
    import numpy as np

    from .errors import UndefinedMetricWarning

    counted: list[tuple[str, type[Warning]]] = []
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: Any, *where: Any) -> None:
            if _POINTS.search(str(message)) and issubclass(category, UndefinedMetricWarning):
                counted.append((str(message), category))
            else:
                shown(message, category, *where)

        warnings.showwarning = show
        warnings.filterwarnings("always", message=r".*\(\d+ point\(s\)\)")  # every chunk's
        with _chunk_by_chunk(reads), np.errstate(all="ignore"):
            done = tuple(dask.compute(*lazy))
    totals: dict[tuple[str, str, type[Warning]], int] = {}
    for text, category in counted:  # one per text, its chunks' counts summed, in their order
        found = _POINTS.search(text)
        if found is not None:
            key = (text[: found.start()], text[found.end() :], category)
            totals[key] = totals.get(key, 0) + int(found[1])
    for (head, tail, _), total in totals.items():  # UndefinedMetricWarning only (counted)
        warnings.warn(f"{head}({total} point(s)){tail}", UndefinedMetricWarning, stacklevel=2)
    return done


def _floats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics rows with each computed score (a 0-d DataArray) as a Python float."""
    import xarray as xr

    return [
        {k: float(value) if isinstance(value, xr.DataArray) else value for k, value in row.items()}
        for row in rows
    ]


def _heading(columns: list[str]) -> str:
    """A metrics table's heading row for a prediction without an ensemble: ``RMSE`` and ``MAE``
    of the prediction itself, not of an "ens. mean" (``metrics.json`` keeps its keys)."""
    return "| " + " | ".join(c.removesuffix(" (ens. mean)") for c in columns) + " |"


def _strict_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row for strict JSON: each NaN or infinite score ``null`` (as a score left out
    is), and a ``"non_finite"`` entry, when there is one, saying which it was
    (``{"LSD (dB)": "inf"}``), so a reader can tell a prediction with power where the truth has
    none (``inf``) and an undefined score (``nan``, 0 / 0) from one not computed."""
    strict = {k: finite_or_null(value) for k, value in row.items()}
    spelled = {k: word for k, value in row.items() if (word := non_finite_word(value)) is not None}
    if spelled:
        strict["non_finite"] = spelled
    return strict


def _non_finite_words(rows: list[dict[str, Any]]) -> str:
    """The metrics report's note on the cells it spells ``inf``, ``nan`` and ``n/a`` (each
    only when a table has one), or ``""``."""
    cells = [value for row in rows for value in row.values()]
    words = {non_finite_word(value) for value in cells} | ({"n/a"} if None in cells else set())
    said = {
        "inf": "`inf`: infinite (an LSD or ratio against a truth with no power where the "
        "prediction has some: maximally wrong, not missing)",
        "-inf": "`-inf`: minus infinity (as `inf`, the other way round)",
        "nan": "`nan`: undefined (0 / 0: a spread/skill of an ensemble whose members and "
        "truth agree everywhere, or spectra with no power on either side)",
        "n/a": "`n/a`: not computed (a field with gaps gets no LSD: see below)",
    }
    notes = [text for word, text in said.items() if word in words]
    if not notes:
        return ""
    return (
        "Cells: "
        + "; ".join(notes)
        + ". metrics.json holds null for each, with a non_finite entry naming inf and nan."
    )


def _table_cell(value: Any) -> str:
    """A metrics-table cell: numbers to 4 significant digits, a left-out score as ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


#: The ``flexdownscale_*`` attributes of a prediction the package wrote (see
#: ``pipeline._provenance_attrs``) that say what made it, with their names in the report.
_PROVENANCE = (
    ("flexdownscale_model", "model"),
    ("flexdownscale_version", "version"),
    ("flexdownscale_objective", "objective"),
    ("flexdownscale_sampler", "sampler"),
    ("flexdownscale_sampler_options", "sampler_options"),
    ("flexdownscale_steps", "steps"),
    ("flexdownscale_members", "members"),
    ("flexdownscale_seed", "seed"),
    ("flexdownscale_lead_steps", "lead_steps"),
    ("flexdownscale_conserve", "conserve"),
)


def _attr_value(value: Any) -> Any:
    """A netCDF / zarr attribute as a plain JSON value (numpy scalars and one-element arrays
    as Python numbers, other arrays as lists; a non-finite float as ``None``)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str | int | float | bool | list) and value is not None:
        value = str(value)
    return finite_or_null(value)


def _prediction_provenance(attrs: Any) -> dict[str, Any]:
    """What made a prediction, from the ``flexdownscale_*`` attributes the package writes:
    model, version, generative objective, sampler, its options, steps, members, seed, a
    forecast's lead steps and the physical condition used (``condition``: name to value), each
    only when recorded; an empty dict for a file that records none of them (not written by
    flexdownscale)."""
    found = {key: _attr_value(attrs[name]) for name, key in _PROVENANCE if name in attrs}
    prefix = "flexdownscale_condition_"
    condition = {
        str(name).removeprefix(prefix): _attr_value(value)
        for name, value in attrs.items()
        if str(name).startswith(prefix)
    }
    if found and condition:
        found["condition"] = condition
    return found


def _told(value: Any) -> str:
    """A recorded value in the report's words: a list (one value per part of a file joined by
    :func:`~flexdownscale.provenance.concat_outputs`, e.g. per forecast start) as
    ``1000.0, 4000.0 (one per part, in file order)``."""
    if isinstance(value, list):
        return f"{', '.join(_told(v) for v in value)} (one per part, in file order)"
    return str(value)


def _provenance_words(found: dict[str, Any], members_in_file: int) -> str:
    """The report's line on what made the prediction (:func:`_prediction_provenance`), or that
    the file does not say; ``members_in_file`` is told beside a different recorded count (a file
    cut to some of its members keeps the count it was written with)."""
    if not found:
        return (
            "Prediction: not recorded (the file has no flexdownscale_model, _sampler or _steps "
            "attributes: it was not written by flexdownscale, or they were removed), so this "
            "report cannot say which model, sampler and steps made it."
        )
    parts = []
    if "model" in found:
        version = f" (flexdownscale {found['version']})" if "version" in found else ""
        parts.append(f"model `{found['model']}`{version}")
    if "objective" in found:
        parts.append(f"objective {found['objective']}")
    if "sampler" in found:
        options = f" ({found['sampler_options']})" if found.get("sampler_options") else ""
        parts.append(f"sampler {found['sampler']}{options}")
    if "steps" in found:
        parts.append(f"{found['steps']} step{'' if found['steps'] == 1 else 's'}")
    if "members" in found:
        held = "" if found["members"] == members_in_file else f" ({members_in_file} in the file)"
        plural = "" if found["members"] == 1 else "s"
        parts.append(f"{found['members']} member{plural}{held}")
    if "seed" in found:
        parts.append(f"seed{'s' if isinstance(found['seed'], list) else ''} {_told(found['seed'])}")
    if "lead_steps" in found:
        plural = "" if found["lead_steps"] == 1 else "s"
        parts.append(f"forecast {found['lead_steps']} step{plural} ahead")
    if "condition" in found:
        told = ", ".join(f"{k} = {_told(v)}" for k, v in found["condition"].items())
        parts.append(f"condition {told}")
    if "conserve" in found:  # the coarse-cell constraint changes the scores (bias, above all)
        parts.append(f"coarse-cell constraint {_told(found['conserve'])}")
    # the objective is recorded since 0.1.0's development (files written before lack it)
    missing = [k for k in ("model", "objective", "sampler", "steps") if k not in found]
    gap = f"; {', '.join(missing)} not recorded" if missing else ""
    return f"Prediction (as its file records): {', '.join(parts)}{gap}."


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


def _add_sampling_options(command: argparse.ArgumentParser) -> None:
    """The ensemble and sampler options of ``downscale`` and ``forecast`` (the same meaning)."""
    command.add_argument(
        "--members", type=int, default=None, help="ensemble size (default: 1, no member dim)"
    )
    command.add_argument("--steps", type=int, default=None, help="sampler steps (model default)")
    command.add_argument(
        "--sampler", default=None, choices=["ddim", "euler", "heun", "sde", "idff"]
    )
    command.add_argument(
        "--sampler-option",
        type=_number_pairs,
        action="append",
        default=None,
        metavar="NAME=VALUE[,...]",
        help="sampler option: eta (ddim), delta (sde: Langevin strength), g1/g2 (idff); e.g. "
        "--sampler sde --steps 20 --sampler-option delta=0.5 for calibrated ensembles",
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
        help="the input's variables that play the model's, in the model's order",
    )
    command.add_argument(
        "--rename",
        type=_pairs,
        action="append",
        default=None,
        metavar="IN=MODEL[,...]",
        help="input name = model name (repeatable), e.g. --rename tas=t2m",
    )
    command.add_argument(
        "--dims",
        type=_pairs,
        action="append",
        default=None,
        metavar="AXIS=DIM[,...]",
        help="name the grid's dimensions when they are not recognised, e.g. x=i,y=j,time=t",
    )
    command.add_argument(
        "--condition",
        type=float,
        default=None,
        help="physical condition of a conditioned model (e.g. the Reynolds number); default: "
        "read from the input's attributes",
    )


def _add_run_options(command: argparse.ArgumentParser, batch: str, one: str) -> None:
    """The network's batch and device options of ``downscale`` and ``forecast``; ``batch`` is
    what a network call takes several of (``"tiles"``, ``"members"``), ``one`` one of them."""
    command.add_argument("--batch-size", type=int, default=None, help=f"{batch} per network call")
    command.add_argument(
        "--batch-invariant",
        action="store_true",
        help=f"run the network {one} at a time: output bit-identical for any --batch-size (slower)",
    )
    command.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flexdownscale`` command."""
    parser = _Parser(
        prog="flexdownscale",
        description="Downscale climate and physics fields with FLEX diffusion models.",
    )
    from ._version import __version__

    parser.add_argument(
        "--version", action="version", version=f"flexdownscale {__version__}"
    )  # the version alone; `flexdownscale info` gives torch, the backends and the device too
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="package, backbones, backends and device; or a model's card")
    info.add_argument("model", nargs="?", help="a model folder, shipped model name or Hub id")

    down = sub.add_parser("downscale", help="downscale a netCDF / zarr file with a model")
    down.add_argument("input", help="coarse input file (netCDF or .zarr)")
    down.add_argument("output", help="output file: netCDF, or zarr when it ends in .zarr")
    down.add_argument("--model", default=None, help="model folder, shipped name or Hub id")
    down.add_argument("--factor", type=int, default=None, help="must be the model's factor")
    _add_sampling_options(down)
    down.add_argument("--tile", type=int, default=None, help="tile side in fine cells (x16)")
    down.add_argument("--overlap", type=int, default=None, help="tile overlap in fine cells")
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
        help="downscale only this region (grid units, e.g. degrees east / north)",
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
        help="process lazily in chunks of this many time steps",
    )
    down.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    fc = sub.add_parser("forecast", help="forecast from a netCDF / zarr file with a forecast model")
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
    fc.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    demo = sub.add_parser(
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
        choices=["era5_t2m_x4", "kolmogorov_x8"],
        help="run only this case (repeatable; default: both)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    ev = sub.add_parser("evaluate", help="metrics table and plots of a prediction vs the truth")
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
        help="truth variable name = prediction variable name (repeatable), e.g. --rename tas=t2m",
    )
    ev.add_argument(
        "--time-chunk",
        type=_evaluate_steps,
        default=None,
        metavar="STEPS",
        help="read and score the files in chunks of this many time steps, every member and the "
        "whole grid in each (default: as many as fit in "
        f"{_EVALUATE_CHUNK_BYTES // 2**20} MB of the prediction)",
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
    not with an error line."""
    try:
        return _run(sys.argv[1:], command_line=True)
    except BrokenPipeError:
        # nothing more can reach the reader; point stdout at devnull so that the interpreter's
        # flush at exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


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
    """Run the parsed command; a package or file-system error is one line and exit status 2."""
    from .errors import FlexDownscaleError

    try:
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
                progress=not args.quiet,
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
