"""Model folders: the on-disk format of a trained model, local or on the Hugging Face Hub.

A model folder holds::

    model.safetensors    the weights (safetensors only: nothing is ever unpickled)
    config.json          format version, model / diffusion / sampler configs, variables, units,
                         factor, task, physical condition, SHA-256 of every other file
    normalization.json   per-variable statistics (written by flexdownscale.data.normalize)
    grid.json            training grid spacing / extent and the degradation operator
    README.md            the model card (data, split, training cost, validation skill, licence)

:func:`save_model_folder` writes a folder atomically (into a temporary sibling, then one
rename), :func:`load_model_folder` reads one back and refuses a folder with a missing file, a file
whose checksum does not match, or an unknown format version. Nothing in a folder is executed.

A model is named by a local path, by the name of a model shipped inside the package
(``"kolmogorov-x8"``; see :func:`shipped_models`), or by a Hugging Face Hub id
(``"org/name"``, or ``"org/name@revision"`` for a branch, tag or commit, with the ``hub`` extra
installed).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import glob
import hashlib
import json
import operator
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from ._numbers import finite_real
from ._output import new_hidden
from .config import (
    DiffusionConfig,
    ModelConfig,
    SamplerConfig,
    Task,
    check_model_ranges,
    from_dict,
    to_dict,
)
from .errors import BackendNotAvailableError, ConfigError, ModelFolderError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelFolder",
    "ModelFolderHeader",
    "check_target",
    "import_foreign_checkpoint",
    "load_model_folder",
    "model_card_lines",
    "normalization_transforms",
    "read_model_header",
    "resolve_model_path",
    "save_model_folder",
    "shipped_models",
]

FORMAT_NAME = "flexdownscale-model"
"""The ``format`` entry of a model folder's ``config.json`` (and of its weights' metadata):
what marks a folder as one this package wrote."""
FORMAT_VERSION = 1
"""The ``format_version`` that :func:`save_model_folder` writes; a folder of a higher version
(written by a newer flexdownscale) is refused with a hint to upgrade."""
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
NORMALIZATION_FILE = "normalization.json"
GRID_FILE = "grid.json"
CARD_FILE = "README.md"
_CHECKED_FILES = (WEIGHTS_FILE, NORMALIZATION_FILE, GRID_FILE)
_MODEL_FILES = (CONFIG_FILE, *_CHECKED_FILES, CARD_FILE)
TRANSFORM_ATTR = "flexdownscale_transform"
"""The attribute of each output variable that names the transform its model normalized it
through (``"log1p"``; absent for ``"none"``): ``flexdownscale evaluate`` reads it."""


@dataclass(frozen=True)
class ModelFolder:
    """The contents of a model folder, as loaded.

    Attributes
    ----------
    path : Path
        Where the folder was read from.
    model : ModelConfig
        The backbone configuration the model was trained with.
    diffusion : DiffusionConfig
        The generative objective it was trained with.
    sampler : SamplerConfig
        The default sampling settings.
    variables : tuple of str
        Variable names in channel order.
    units : mapping of str to str
        ``units`` attribute of each variable at training time (``""`` when none).
    factor : int
        Super-resolution factor per axis (1 for forecast models).
    task : {"superres", "forecast"}
        Downscaling or forecasting.
    condition : mapping of str to Any or None
        Physical-condition metadata (``{"name": ..., "scale": ...}``) or ``None``.
    state_dict : mapping of str to torch.Tensor
        The weights, as CPU tensors.
    normalization : mapping of str to Any
        The parsed ``normalization.json``.
    grid : mapping of str to Any
        The parsed ``grid.json``.
    card : str
        The model card (markdown).
    extra : mapping of str to Any
        Any other key of ``config.json`` (kept for forward compatibility).

    Examples
    --------
    >>> folder = load_model_folder("era5-t2m-x4")  # a shipped model
    >>> folder.variables, folder.units, folder.factor, folder.task
    (('t2m',), {'t2m': 'K'}, 4, 'superres')
    >>> folder.model.backbone, folder.diffusion.objective, folder.sampler.sampler
    ('flex', 'vp', 'ddim')
    """

    path: Path
    model: ModelConfig
    diffusion: DiffusionConfig
    sampler: SamplerConfig
    variables: tuple[str, ...]
    units: Mapping[str, str]
    factor: int
    task: str
    condition: Mapping[str, Any] | None
    state_dict: Mapping[str, Any]
    normalization: Mapping[str, Any]
    grid: Mapping[str, Any]
    card: str
    extra: Mapping[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_model_config(path: Path) -> bool:
    """Whether ``path`` is a readable ``config.json`` carrying the model folder format marker."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT_NAME


def _listing(names: list[str], limit: int = 5) -> str:
    """``"a, b, c and 4 more"``."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _overwrite_problem(path: Path) -> str | None:
    """Why the existing ``path`` must not be replaced by a model folder (``None``: it may be).

    Only a model folder holding nothing but the model files, or an empty folder, may be replaced:
    anything else would be deleted with it.
    """
    if path.is_symlink():
        return "it is a symbolic link (give the folder it points to)"
    if not path.is_dir():
        return "it is a file, not a folder"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not entries:
        return None
    if not _is_model_config(path / CONFIG_FILE):
        return f"it is not a flexdownscale model folder (it holds {_listing(entries)})"
    others = [name for name in entries if name not in _MODEL_FILES]
    if others:
        return f"the model folder also holds {_listing(others)}, which replacing it would delete"
    return None


def check_target(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Refuse a destination :func:`save_model_folder` must not write to, before any work.

    Parameters
    ----------
    path
        The destination folder.
    overwrite
        Whether an existing model folder (or empty folder) at ``path`` may be replaced.

    Raises
    ------
    ModelFolderError
        When ``path`` is empty, exists and is not a model folder or an empty folder (whatever
        ``overwrite`` says), or exists and ``overwrite`` is false; when ``path`` cannot be
        created (a file where a folder above it should be, a folder that cannot be written to).

    Examples
    --------
    A new folder passes; a folder holding anything but a model is never replaced:

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> check_target(Path(tmp.name) / "new-model")
    >>> _ = (Path(tmp.name) / "notes.txt").write_text("keep me")
    >>> check_target(tmp.name, overwrite=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ModelFolderError: cannot write ...: it is not a flexdownscale model ...
    >>> tmp.cleanup()
    """
    path = _target_path(path)
    if not (path.exists() or path.is_symlink()):
        _check_creatable(path)
        return
    problem = _overwrite_problem(path)
    if problem is not None:
        # a folder inside it is a way out; inside a file there is none
        example = f" (e.g. {str(path / 'model')!r})" if path.is_dir() else ""
        raise ModelFolderError(
            f"cannot write a model folder to {str(path)!r}: {problem}; overwrite=True only "
            "replaces a model folder or an empty folder, so nothing was written: choose a new "
            f"path{example} or move that content away yourself"
        )
    if not overwrite:
        raise ModelFolderError(
            f"model folder {str(path)!r} already exists; pass overwrite=True to replace it or "
            "choose a new path"
        )


def _target_path(path: str | os.PathLike[str]) -> Path:
    """The folder a model folder is written to: ``~`` expanded (as :func:`resolve_model_path`
    does when reading it back); an empty or blank name is refused (it would be the working
    directory)."""
    if isinstance(path, str) and not path.strip():
        raise ModelFolderError(
            f"the model folder path is empty ({path!r}); give the folder to write, e.g. "
            "'my-model' or '~/models/my-model' (nothing was written)"
        )
    return Path(path).expanduser()


def _check_creatable(path: Path) -> None:
    """Refuse a new ``path`` that cannot be made: its nearest existing folder above must be a
    folder that takes new entries (tried with a temporary folder, removed at once: permission
    bits do not tell, e.g. for root on a read-only or immutable folder)."""
    for above in path.parents:
        if above.exists():
            break
    else:  # pragma: no cover - a relative path's "." exists
        return
    if not above.is_dir():
        raise ModelFolderError(
            f"cannot write a model folder to {str(path)!r}: {str(above)!r}, above it, is a "
            "file, not a folder; choose a path in a folder (nothing was written)"
        )
    try:
        Path(tempfile.mkdtemp(prefix=f".{path.name}.probe.", dir=above)).rmdir()
    except OSError as err:
        raise _unwritable(path, err, f"creating a folder in {str(above)!r}") from err


def _unwritable(path: Path, err: BaseException, what: str) -> ModelFolderError:
    """The :class:`ModelFolderError` for a model folder that could not be written: the
    destination the user gave (not the temporary folder beside it), the cause
    (:func:`flexdownscale._output.write_cause`: an ``OSError``, or safetensors' error of a
    full disk) and the fix."""
    from ._output import write_cause

    why, code = write_cause(err, path.parent)
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that disk or choose a path on another one"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a path in a folder you can write to, or fix that folder's permissions"
    elif code == errno.EFBIG:
        fix = "raise this process's file-size limit (ulimit -f) or choose a path on another disk"
    else:
        fix = "choose another path"
    return ModelFolderError(
        f"cannot write a model folder to {str(path)!r}: {what} failed ({why}); {fix} "
        "(nothing was written)"
    )


def _transform_words(transform: str) -> str:
    """What a normalization transform does to a variable, for a model card or ``info``."""
    if transform == "log1p":
        return (
            "log1p (standardized as log(1 + x); generated values are clipped at 0, the "
            "transform's lower bound)"
        )
    return transform


def normalization_transforms(normalization: Mapping[str, Any]) -> dict[str, str]:
    """The variables of a parsed ``normalization.json`` normalized through a transform other
    than ``"none"``, with what the transform does in words.

    Parameters
    ----------
    normalization : mapping of str to Any
        The parsed ``normalization.json`` (:attr:`ModelFolder.normalization`,
        ``{"format_version": 1, "variables": [{"name", "transform", "mean", "std", ...}]}``).

    Returns
    -------
    dict of str to str
        ``{"tp": "log1p (standardized as log(1 + x); generated values are clipped at 0, ...)"}``;
        empty when every variable is normalized without a transform (or the record is not of
        that form).

    Examples
    --------
    >>> normalization_transforms(
    ...     {"variables": [{"name": "tp", "transform": "log1p"}, {"name": "t2m"}]}
    ... )["tp"][:5]
    'log1p'
    """
    variables = normalization.get("variables") if isinstance(normalization, Mapping) else None
    found: dict[str, str] = {}
    for entry in variables if isinstance(variables, list) else []:
        if not isinstance(entry, Mapping):
            continue
        transform = entry.get("transform", "none")
        if isinstance(transform, str) and transform != "none":
            found[str(entry.get("name"))] = _transform_words(transform)
    return found


def model_card_lines(
    condition: Mapping[str, Any] | None, normalization: Mapping[str, Any]
) -> list[str]:
    """Markdown bullet lines for a generated model card: the model's physical condition (its
    name, scale and the range trained on) and the variables normalized through a transform,
    each only when the model has one.

    Parameters
    ----------
    condition : mapping of str to Any or None
        The model's condition metadata (``{"name": ..., "scale": ..., "range": [low, high]}``,
        :attr:`ModelFolder.condition`); ``None`` for an unconditioned model.
    normalization : mapping of str to Any
        The parsed ``normalization.json`` (:attr:`ModelFolder.normalization`).

    Returns
    -------
    list of str
        Zero, one or two lines, e.g. ``"- physical condition: `reynolds_number` (the network
        sees reynolds_number / 40000), trained on 1000 to 4000; ..."`` and
        ``"- normalization transform: `tp` log1p (...)"``.

    Examples
    --------
    >>> model_card_lines(None, {"variables": [{"name": "t2m", "transform": "none"}]})
    []
    """
    lines = []
    if condition and condition.get("name"):
        name = str(condition["name"])
        scale = condition.get("scale", 1.0)
        seen = condition.get("range")
        trained = ""
        if isinstance(seen, list | tuple) and len(seen) == 2:
            low, high = (float(v) for v in seen)
            trained = (
                f", trained on {low:g}" if low == high else f", trained on {low:g} to {high:g}"
            )
        lines.append(
            f"- physical condition: `{name}` (the network sees {name} / {float(scale):g})"
            f"{trained}; at inference `condition=` or the input's `{name}` (a scalar "
            "coordinate, else a global attribute)"
        )
    transforms = normalization_transforms(normalization)
    if transforms:
        lines.append(
            "- normalization transform: "
            + "; ".join(f"`{name}` {words}" for name, words in transforms.items())
        )
    return lines


def _forecast_settings(grid: Mapping[str, Any]) -> str | None:
    """A forecast model's task in words, from its ``grid.json``: past frames, lead and the
    time step, e.g. ``"past frames 2, lead 1 (one model step = 1 step of the training frames),
    time step 1 hour (3600 s)"``; ``None`` for a record without ``past_frames`` (a
    super-resolution model)."""
    past = grid.get("past_frames")
    if isinstance(past, bool) or not isinstance(past, int):
        return None
    words = f"past frames {past}"
    lead = grid.get("lead")
    if isinstance(lead, int) and not isinstance(lead, bool):
        words += (
            f", lead {lead} (one model step = {lead} step{'s' if lead != 1 else ''} of the "
            "training frames)"
        )
    step = grid.get("time_step")
    value = step.get("value") if isinstance(step, Mapping) else None
    units = step.get("units") if isinstance(step, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return words + ", time step not recorded (the training frames have no time coordinate)"
    if units == "s":
        spans = (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0))
        span = next(((n, d) for n, d in spans if value >= d and value % d == 0), None)
        if span is None:
            return words + f", time step {value:g} s"
        count = value / span[1]
        return words + f", time step {count:g} {span[0]}{'s' if count != 1 else ''} ({value:g} s)"
    if units in (None, "", "1"):
        return words + f", time step {value:g} (the time coordinate has no units)"
    return words + f", time step {value:g} {units}"


def save_model_folder(
    path: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, Any],
    model: ModelConfig,
    diffusion: DiffusionConfig,
    sampler: SamplerConfig,
    variables: tuple[str, ...] | list[str],
    units: Mapping[str, str],
    factor: int,
    normalization: Mapping[str, Any],
    grid: Mapping[str, Any],
    card: str,
    task: str = "superres",
    condition: Mapping[str, Any] | None = None,
    dtype: Any = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically.

    Everything :func:`load_model_folder` checks is checked first (the same checks): a folder
    that would not load is not written.

    Parameters
    ----------
    path
        Destination folder (``~`` is expanded). Written to a temporary sibling first, then
        renamed into place, so a crash never leaves a half-written folder under ``path``.
    state_dict
        Model weights (tensors); stored with safetensors. Tensors sharing memory are copied.
    model, diffusion, sampler
        Configurations stored in ``config.json``.
    variables, units, factor
        Metadata the inference pipeline checks inputs against (with ``task`` and
        ``condition``): a non-empty list of distinct names in channel order, a mapping of
        variable name to units string, a whole number >= 1 (1 for forecast models).
    normalization, grid
        JSON-serialisable dicts written to ``normalization.json`` (statistics of every
        variable, :meth:`flexdownscale.data.Normalizer.to_dict`) and ``grid.json`` (the
        training data's ``grid_metadata()``; for a super-resolution model its ``factor``, when
        recorded, is ``factor``).
    card
        Model card text (markdown).
    task, condition
        Metadata the inference pipeline checks inputs against: ``"superres"`` or
        ``"forecast"`` (``model.task`` must say the same), and the physical condition
        (``{"name": ..., "scale": ...}``, ``None`` for an unconditioned model).
    dtype
        Optional torch dtype to cast every floating-point tensor to: ``torch.float16``,
        ``torch.bfloat16``, ``torch.float32`` or ``torch.float64``. For a backbone's weights use
        :func:`flexdownscale.models.export_state_dict` instead (``dtype=None`` here): it keeps
        the time embeddings' frequencies float32, which bfloat16 would round.
    extra
        Further JSON-serialisable metadata stored under ``config.json["extra"]``.
    overwrite
        Replace an existing model folder (one whose ``config.json`` is a flexdownscale model
        config and that holds nothing but the model files) or an existing empty folder. Anything
        else at ``path`` (a run folder, a folder of other models, a file) is never replaced.

    Returns
    -------
    pathlib.Path
        The folder's path (``~`` expanded).

    Raises
    ------
    ConfigError
        When ``model``, ``diffusion`` or ``sampler`` holds a value out of its range (the ranges
        :func:`load_model_folder` checks, e.g. ``sampler.steps`` >= 1): such a folder would not
        load.
    ModelFolderError
        When the folder would not load (``"cannot save a model folder to ...: its config.json
        would have factor = 0, ..."``: variables empty or repeated, units not strings,
        ``factor`` not a whole number >= 1 or not the grid's, ``task`` not ``model.task``'s,
        ``condition`` not a mapping, normalization statistics missing for a variable, a
        ``grid`` entry of the wrong type, a NaN or infinite weight, ``dtype`` not a float
        dtype, metadata that is not JSON); when ``path`` is empty, exists and is not a model
        folder or an empty folder (whatever ``overwrite`` says), or exists and ``overwrite`` is
        false; when it cannot be written (a read-only folder, a full disk: the message names
        ``path`` and the cause, and nothing is left behind). Nothing is written in any case.

    Examples
    --------
    A folder written and read back (a real one holds a backbone's
    :func:`~flexdownscale.models.export_state_dict`):

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    >>> from flexdownscale.data import Normalizer, VariableStats
    >>> tmp = tempfile.TemporaryDirectory()
    >>> state = {"w": torch.ones(2, 3)}
    >>> path = save_model_folder(
    ...     Path(tmp.name) / "my-model",
    ...     state_dict=state,
    ...     model=ModelConfig(),
    ...     diffusion=DiffusionConfig(),
    ...     sampler=SamplerConfig(),
    ...     variables=["t2m"],
    ...     units={"t2m": "K"},
    ...     factor=4,
    ...     normalization=Normalizer({"t2m": VariableStats(mean=280.0, std=5.0)}).to_dict(),
    ...     grid={"factor": 4},
    ...     card="# my model",
    ... )
    >>> sorted(p.name for p in path.iterdir())
    ['README.md', 'config.json', 'grid.json', 'model.safetensors', 'normalization.json']
    >>> folder = load_model_folder(path)
    >>> folder.variables, torch.equal(folder.state_dict["w"], state["w"])
    (('t2m',), True)
    >>> tmp.cleanup()
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from ._version import __version__

    path = _target_path(path)
    if dtype is not None and str(dtype) not in _FLOAT_DTYPES:
        raise ModelFolderError(
            f"cannot save a model folder to {str(path)!r}: dtype={dtype!r} is not a floating-"
            f"point torch dtype the folder can store; use one of {', '.join(_FLOAT_DTYPES)} "
            "(nothing was written)"
        )
    try:  # a folder that load_model_folder would refuse is not written
        check_model_ranges(model, diffusion, sampler)
        from_dict(ModelConfig, to_dict(model))  # as loading reads them back
        from_dict(DiffusionConfig, to_dict(diffusion))
        from_dict(SamplerConfig, to_dict(sampler))
    except ConfigError as err:
        raise ConfigError(
            f"not saving a model folder to {str(path)!r}: {err}, and a folder with it would not "
            "load; build the model with that setting in range (e.g. sampler=SamplerConfig(...) "
            "of the Downscaler or Forecaster)"
        ) from err
    config: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": to_dict(model),
        "diffusion": to_dict(diffusion),
        "sampler": to_dict(sampler),
        # as given when not of the expected kind: the checks below name the value
        "variables": list(variables) if isinstance(variables, list | tuple) else variables,
        "units": dict(units) if isinstance(units, Mapping) else units,
        "factor": _whole_number(factor),
        "task": task,
        "condition": dict(condition) if isinstance(condition, Mapping) else condition,
        "weights_dtype": None,
        "sha256": {},
        "extra": dict(extra) if isinstance(extra, Mapping) else ({} if extra is None else extra),
    }
    texts = {  # as loading will read them: JSON text, decoded again for the checks
        CONFIG_FILE: _json_text(config, path, "the configuration (variables, units, ...)", False),
        NORMALIZATION_FILE: _json_text(normalization, path, "normalization"),
        GRID_FILE: _json_text(grid, path, "grid"),
    }
    try:
        read = {name: json.loads(text) for name, text in texts.items()}
        for name in (NORMALIZATION_FILE, GRID_FILE):
            _check_object(read[name], name)
        checked = _checked_entries(read[CONFIG_FILE])
        _check_contents(checked, read[NORMALIZATION_FILE], read[GRID_FILE])
    except _Refused as refused:
        raise refused.saving(path) from None
    check_target(path, overwrite=overwrite)
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous().clone()
    problem = _weights_problem(tensors)
    if problem is not None:
        raise ModelFolderError(
            f"cannot save a model folder to {str(path)!r}: the weights {problem[1]}; "
            f"{problem[2]} (nothing was written)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # with a new folder's permissions (less the umask), as the folder is moved into place
        tmp = new_hidden(path.parent, f".{path.name}.", folder=True)
    except OSError as err:
        raise _unwritable(path, err, f"creating a folder in {str(path.parent)!r}") from err
    try:
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": FORMAT_NAME})
        (tmp / NORMALIZATION_FILE).write_text(texts[NORMALIZATION_FILE], encoding="utf-8")
        (tmp / GRID_FILE).write_text(texts[GRID_FILE], encoding="utf-8")
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        config["weights_dtype"] = _weights_dtype(tensors)
        config["sha256"] = {name: _sha256(tmp / name) for name in _CHECKED_FILES}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        # safetensors writes its file owner-only (0600): give every file the permissions the
        # text files got as new files (0o666 less the umask, as the system applied it)
        usual = (tmp / CARD_FILE).stat().st_mode & 0o777
        for child in tmp.iterdir():  # flush to disk before the rename makes the folder visible
            child.chmod(usual)
            with child.open("rb") as fh:
                os.fsync(fh.fileno())
        if path.exists() or path.is_symlink():
            _replace(path, tmp)
        else:
            tmp.rename(path)
    except BaseException as err:
        if isinstance(err, OSError | SafetensorError) and not isinstance(err, ModelFolderError):
            # disk full, permissions: name the user's path, not the temporary folder
            # (safetensors' own error of a full disk is no OSError)
            unwritable = _unwritable(path, err, "writing its files")
            shutil.rmtree(tmp, ignore_errors=True)
            raise unwritable from err
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


#: The dtypes a model folder's floating-point weights may have (what loading checks for NaN).
_FLOAT_DTYPES = ("torch.float32", "torch.bfloat16", "torch.float16", "torch.float64")


def _whole_number(value: Any) -> Any:
    """``value`` as a Python int when it is an integer of any kind (``numpy.int64``), else as
    given (a bool, float or string is then refused by the checks, naming it)."""
    if isinstance(value, bool):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def _json_text(value: Any, path: Path, what: str, sort_keys: bool = True) -> str:
    """``value`` as the JSON text a model folder file holds; ModelFolderError when it has
    something JSON cannot hold (a tensor, a numpy array, a set)."""
    try:
        return json.dumps(value, indent=2, sort_keys=sort_keys)
    except (TypeError, ValueError) as err:
        raise ModelFolderError(
            f"cannot save a model folder to {str(path)!r}: {what} holds a value JSON cannot "
            f"hold ({err}); give plain numbers, strings, lists and dicts (nothing was written)"
        ) from err


def _weights_problem(tensors: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """Why loading refuses these weights, as ``(kind, what, fix)``: floating-point tensors of a
    dtype a folder does not store (``"dtype"``) or holding NaN or infinite values
    (``"finite"``); ``None`` when it does not."""
    odd = [
        n for n, t in tensors.items() if t.is_floating_point() and str(t.dtype) not in _FLOAT_DTYPES
    ]
    if odd:
        kinds = sorted({str(tensors[n].dtype) for n in odd})
        return (
            "dtype",
            f"are stored as {', '.join(kinds)} ({len(odd)} of {len(tensors)} tensors, the "
            f"first {odd[0]!r})",
            f"store them as one of {', '.join(_FLOAT_DTYPES)}",
        )
    broken = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(tensor.isfinite().all())
    ]
    if broken:
        return (
            "finite",
            f"hold NaN or infinite values ({len(broken)} of {len(tensors)} tensors, the first "
            f"{broken[0]!r})",
            "the model would output NaN only. It comes from a diverged training or was edited; "
            "export it from a good training state (python -m flexdownscale.train --config "
            "run.toml --export-only)",
        )
    return None


def _weights_dtype(tensors: Mapping[str, Any]) -> str | None:
    """The dtype holding most of the floating-point numbers (``"torch.bfloat16"``), or ``None``.

    A bfloat16 export keeps a few float32 buffers (the time embeddings' frequencies); which
    tensor comes first must not decide what the folder says.
    """
    counts: dict[str, int] = {}
    for tensor in tensors.values():
        if tensor.is_floating_point():
            counts[str(tensor.dtype)] = counts.get(str(tensor.dtype), 0) + tensor.numel()
    return max(counts, key=counts.__getitem__) if counts else None


def _replace(path: Path, new: Path) -> None:
    """Put the folder ``new`` in place of the existing ``path``, which is deleted afterwards.

    The previous folder is first moved into a fresh hidden folder of the same parent (a unique
    name: nothing of the user's is touched) and moved back when ``new`` cannot be put in place,
    so a failure or an interrupt leaves ``path`` as it was.
    """
    holder = Path(tempfile.mkdtemp(prefix=_previous_prefix(path), dir=path.parent))
    previous = holder / path.name
    try:
        path.rename(previous)
        try:
            new.rename(path)
        except BaseException:
            previous.rename(path)
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            holder.rmdir()  # only when empty: a previous folder that could not go back stays
        raise
    shutil.rmtree(holder, ignore_errors=True)


def _previous_prefix(path: Path) -> str:
    """The start of the name of the hidden folder that holds the previous folder ``path`` while
    :func:`_replace` puts a new one in its place (``.model.previous.k3j_x``)."""
    return f".{path.name}.previous."


def _read_bytes(path: Path) -> bytes:
    """A model folder's file, whole (ModelFolderError when it cannot be read)."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ModelFolderError(
            f"cannot read {str(path)!r} ({err.strerror or err}); check that it is a file you can "
            "read, or re-download / re-export the model"
        ) from err


def _decode_text(data: bytes, path: Path) -> str:
    """``data``, the bytes of the file ``path``, decoded as UTF-8 (ModelFolderError when they
    are not UTF-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ModelFolderError(
            f"{str(path)!r} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}); "
            "the file is damaged or not what a model folder holds: re-download or re-export the "
            "model"
        ) from err


def _read_text(path: Path) -> str:
    """A model folder's text file, decoded as UTF-8 (ModelFolderError when it is not, or when it
    cannot be read)."""
    return _decode_text(_read_bytes(path), path)


def _parse_json(data: bytes, path: Path) -> Any:
    """The JSON value of ``data``, the bytes of the file ``path`` (ModelFolderError when they
    are not UTF-8 JSON)."""
    try:
        return json.loads(_decode_text(data, path))
    except json.JSONDecodeError as err:
        raise ModelFolderError(
            f"{str(path)!r} is not valid JSON ({err}); the folder is damaged"
        ) from err


def _read_json(path: Path) -> Any:
    """A model folder's JSON file, read and parsed (ModelFolderError when it cannot be)."""
    return _parse_json(_read_bytes(path), path)


def _json_kind(value: Any) -> str:
    """The JSON type of ``value`` in words (``"a list"``, ``"a string"``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


_EDITED = "the file was edited or damaged: correct that entry or re-download / re-export the model"


class _Refused(Exception):
    """What :func:`load_model_folder` refuses in one file of a model folder, worded for either
    side: :meth:`loading` a folder (it was edited or damaged) or :meth:`saving` one (the
    arguments would write a folder that does not load).

    ``found`` starts with ``has`` or ``holds`` (``"has factor = 0, expected ..."``); ``fix`` is
    the way out when loading, ``save_fix`` when saving.
    """

    def __init__(
        self, file: str, found: str, *, fix: str = _EDITED, save_fix: str = "correct that argument"
    ) -> None:
        super().__init__(f"{file} {found}")
        self.file, self.found, self.fix, self.save_fix = file, found, fix, save_fix

    def loading(self, folder: Path) -> ModelFolderError:
        return ModelFolderError(f"{str(folder / self.file)!r} {self.found}; {self.fix}")

    def saving(self, target: Path) -> ModelFolderError:
        verb, _, rest = self.found.partition(" ")
        would = {"has": "would have", "holds": "would hold"}.get(verb, verb)
        return ModelFolderError(
            f"cannot save a model folder to {str(target)!r}: its {self.file} {would} {rest}, "
            f"which loading refuses; {self.save_fix} (nothing was written)"
        )


def _check_object(value: Any, file: str) -> None:
    """_Refused unless ``value`` (``normalization.json``, ``grid.json``) is a JSON object."""
    if not isinstance(value, dict):
        raise _Refused(
            file,
            f"holds {_json_kind(value)}, expected a JSON object ({{...}})",
            fix="the file was edited or damaged: re-download or re-export the model",
            save_fix=f"pass a dict as {file.removesuffix('.json')}",
        )


def _parse_object(data: bytes, path: Path) -> dict[str, Any]:
    """``data``, the bytes read from the JSON file ``path`` that must hold an object
    (``normalization.json``, ``grid.json``), parsed (ModelFolderError otherwise)."""
    value = _parse_json(data, path)
    try:
        _check_object(value, path.name)
    except _Refused as refused:
        raise refused.loading(path.parent) from None
    return value


def _check_normalization(values: Mapping[str, Any], variables: tuple[str, ...]) -> None:
    """_Refused unless ``normalization.json`` holds valid statistics of ``variables``."""
    from .data.normalize import Normalizer
    from .errors import DataError

    try:
        normalizer = Normalizer.from_dict(values)
    except DataError as err:
        raise _Refused(
            NORMALIZATION_FILE,
            f"holds no valid statistics: {err}",
            fix="the file was edited or damaged: re-download or re-export the model",
            save_fix="pass a Normalizer's to_dict() (flexdownscale.data.Normalizer)",
        ) from None
    missing = [v for v in variables if v not in normalizer.variables]
    if missing:
        raise _Refused(
            NORMALIZATION_FILE,
            f"has no statistics for {missing} (it has {list(normalizer.variables)})",
            fix="the model's variables need them: re-export the model",
            save_fix="the model's variables need them: fit the normalization on every variable "
            "(Normalizer.fit)",
        )


def _bad_entry(
    file: str, key: str, value: Any, expected: str, save_fix: str = "correct that argument"
) -> _Refused:
    shown = json.dumps(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return _Refused(file, f"has {key} = {shown}, expected {expected}", save_fix=save_fix)


def _is_text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_whole(value: Any) -> bool:
    """Whether ``value`` is a JSON whole number (not a boolean) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a finite number (not a boolean; an integer too large for a float is
    not), by the package's one rule (:func:`flexdownscale._numbers.finite_real`)."""
    return finite_real(value) is not None


def _is_positive(value: Any) -> bool:
    """Whether ``value`` is a finite number > 0 (:func:`_is_number`)."""
    number = finite_real(value)
    return number is not None and number > 0


#: The entries of ``config.json``'s ``model``, ``diffusion`` and ``sampler`` settings that decide
#: what a loaded model computes. Every folder flexdownscale writes holds them (format_version 1
#: always has, shipped models included), so one without them was edited: a default in their
#: place need not be the training's (a flow model would run as VP). Settings that may be unset
#: (left out when ``None``: ``model.out_channels``, ``patch_size``, ``physical_condition``,
#: ``diffusion.loss``) or only matter to training (``dropout``, ...) may be missing.
_REQUIRED_SETTINGS = {
    "model": ("backbone", "preset", "in_channels", "task", "past_frames", "conditioning"),
    "diffusion": (
        "objective",
        "target",
        "logsnr_min",
        "logsnr_max",
        "shift",
        "base",
        "base_sigma",
        "t_min",
        "t_max",
        "idff_sigma",
        "idff_c",
    ),
    "sampler": ("sampler", "steps", "eta", "delta", "g1", "g2"),
}


def _checked_entries(config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a model ``config.json`` (format already checked), their types checked
    (_Refused when one is wrong or missing).

    Returns ``variables`` (tuple), ``units``, ``factor``, ``task``, ``condition``, ``extra``,
    ``model``, ``diffusion`` and ``sampler``, with the defaults of optional entries.
    """
    if "variables" not in config:
        raise _Refused(
            CONFIG_FILE,
            "has no 'variables' entry, expected the list of the model's variable names in "
            'channel order (e.g. ["t2m"])',
            fix="re-download or re-export the model",
        )
    variables = config["variables"]
    if (
        not isinstance(variables, list)
        or not variables
        or not all(isinstance(v, str) and v for v in variables)
        or len(set(variables)) != len(variables)
    ):
        raise _bad_entry(
            CONFIG_FILE,
            "variables",
            variables,
            'a non-empty list of distinct names, e.g. ["t2m"]',
            "give the model's variable names, each once, in channel order",
        )
    checked: dict[str, Any] = {"variables": tuple(variables)}
    units = config.get("units", {})
    if not _is_text_map(units):
        raise _bad_entry(
            CONFIG_FILE,
            "units",
            units,
            'an object of units per variable, e.g. {"t2m": "K"}',
            'give units as a dict of variable name to units string ("" for none)',
        )
    checked["units"] = dict(units)
    factor = config.get("factor", 1)
    if not _is_whole(factor):
        raise _bad_entry(
            CONFIG_FILE,
            "factor",
            factor,
            "a whole number >= 1 (1 for forecast models)",
            "give factor as a whole number >= 1",
        )
    checked["factor"] = factor
    task = config.get("task", "superres")
    if task not in get_args(Task):
        raise _bad_entry(CONFIG_FILE, "task", task, " or ".join(map(json.dumps, get_args(Task))))
    checked["task"] = task
    condition = config.get("condition")
    if condition is not None and not isinstance(condition, dict):
        raise _bad_entry(
            CONFIG_FILE,
            "condition",
            condition,
            'null or an object {"name": ..., "scale": ...}',
            'give condition as None or a dict {"name": ..., "scale": ...}',
        )
    checked["condition"] = condition
    for key in ("extra", "model", "diffusion", "sampler"):
        value = config.get(key, {})
        if not isinstance(value, dict):
            raise _bad_entry(CONFIG_FILE, key, value, "an object ({...})", f"give {key} as a dict")
        checked[key] = value
    absent = [
        name
        for section, keys in _REQUIRED_SETTINGS.items()
        for name in (
            [section]
            if section not in config
            else [f"{section}.{key}" for key in keys if key not in checked[section]]
        )
    ]
    if absent:
        raise _Refused(
            CONFIG_FILE,
            f"has no {_listing(absent)} entr{'y' if len(absent) == 1 else 'ies'}, which every "
            "folder flexdownscale writes records (the settings the model was trained with: a "
            "default in their place need not be the training's, e.g. a flow model would run as "
            "vp)",
            fix="the file was edited or damaged: restore it from where the folder came "
            "(download or copy the model again) or export the model again from its training run "
            "(python -m flexdownscale.train --config run.toml --export-only) or with "
            "save_pretrained",
        )
    return checked


def _checked_config(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """:func:`_checked_entries` and the ``sha256`` entry of the ``config.json`` of ``folder``,
    ModelFolderError naming the file when one is wrong."""
    try:
        checked = _checked_entries(config)
        if "sha256" not in config:
            raise _Refused(
                CONFIG_FILE,
                f"has no 'sha256' entry, expected the checksums of {', '.join(_CHECKED_FILES)}",
                fix="re-download or re-export the model",
            )
        if not _is_text_map(config["sha256"]):
            raise _bad_entry(
                CONFIG_FILE,
                "sha256",
                config["sha256"],
                "an object of SHA-256 hex digests per file name",
            )
    except _Refused as refused:
        raise refused.loading(folder) from None
    checked["sha256"] = config["sha256"]
    return checked


def _check_format(config: Any, folder: Path, name_or_path: str | os.PathLike[str]) -> None:
    """ModelFolderError unless ``config`` is a flexdownscale model config of a format version
    this package reads."""
    file = folder / CONFIG_FILE
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise ModelFolderError(
            f"{str(file)!r} is not a flexdownscale model config "
            f"(format={config.get('format') if isinstance(config, dict) else None!r}); for a foreign "
            "checkpoint use flexdownscale.hub.import_foreign_checkpoint"
            + _shadow_hint(name_or_path, folder)
        )
    version = config.get("format_version")
    if _is_whole(version) and version > FORMAT_VERSION:
        raise ModelFolderError(
            f"model folder {str(folder)!r} has format_version {version!r}; this flexdownscale reads "
            f"up to {FORMAT_VERSION}: upgrade flexdownscale"
        )
    if "format_version" not in config:
        refused = _Refused(
            CONFIG_FILE, "has no 'format_version' entry", fix="re-download or re-export the model"
        )
        raise refused.loading(folder)
    if not _is_whole(version):
        expected = f"a whole number from 1 to {FORMAT_VERSION} (the folder format's version)"
        raise _bad_entry(CONFIG_FILE, "format_version", version, expected).loading(folder)


def _check_contents(
    checked: Mapping[str, Any], normalization: Mapping[str, Any], grid: Mapping[str, Any]
) -> None:
    """_Refused unless ``config.json``'s ``model.task`` (of the checked entries ``checked``),
    ``normalization.json`` and ``grid.json`` fit the folder's task, variables and factor."""
    model_task = checked["model"].get("task", "superres")
    if model_task != checked["task"]:  # the network's inputs follow model.task
        raise _bad_entry(
            CONFIG_FILE,
            "model.task",
            model_task,
            f"{json.dumps(checked['task'])}, the folder's task",
            "give task= the task of the model's ModelConfig",
        )
    _check_normalization(normalization, checked["variables"])
    _check_grid(grid, checked["task"], checked["factor"])


def _check_grid(grid: Mapping[str, Any], task: str, factor: int) -> None:
    """_Refused unless the entries of ``grid.json`` have the types and values inference reads
    (each may be missing: a model built from its parts records what it has). Other entries are
    kept as they are."""
    from .data.degrade import Degradation, Upsampling

    def words(choices: tuple[str, ...]) -> str:
        return " or ".join(map(json.dumps, choices))

    checks = (  # entry, whether its value is valid, what is expected
        (
            "degradation",
            lambda v: v is None or v in get_args(Degradation),
            words(get_args(Degradation)),
        ),
        ("sigma", lambda v: v is None or _is_positive(v), "null or a number > 0"),
        ("upsample", lambda v: v in get_args(Upsampling), words(get_args(Upsampling))),
        ("factor", _is_whole, "a whole number >= 1"),
        ("crop_size", lambda v: v is None or _is_whole(v), "null or a whole number >= 1"),
        ("past_frames", _is_whole, "a whole number >= 1"),
        ("lead", _is_whole, "a whole number >= 1"),
        ("time_dim", lambda v: v is None or isinstance(v, str), "null or a dimension name"),
        (
            "time_step",
            lambda v: (
                v is None
                or (
                    isinstance(v, dict)
                    and _is_positive(v.get("value"))
                    and isinstance(v.get("units"), str)
                )
            ),
            'null or {"value": a number > 0, "units": a string}',
        ),
        ("grid", lambda v: v is None or isinstance(v, dict), "null or a grid description"),
    )
    for key, valid, expected in checks:
        if key in grid and not valid(grid[key]):
            raise _bad_entry(GRID_FILE, f"{key}", grid[key], expected, _GRID_SAVE_FIX)
    if task == "superres" and grid.get("factor", factor) != factor:
        raise _bad_entry(
            GRID_FILE,
            "factor",
            grid["factor"],
            f"{factor}, the factor of {CONFIG_FILE}",
            "give factor= the factor the grid metadata records (the training's)",
        )
    if grid.get("grid"):
        _check_grid_spec(grid["grid"])


_GRID_SAVE_FIX = "pass the grid metadata of the training data (its grid_metadata())"


def _check_grid_spec(spec: dict[str, Any]) -> None:
    """_Refused unless ``grid.json``'s ``grid`` entry is a grid description
    (:meth:`flexdownscale.data.GridSpec.to_dict`) with entries of the right types."""
    from .data.grid import GridSpec, Kind
    from .errors import GridError

    text = ("a string", lambda v: isinstance(v, str))
    count = ("a whole number >= 1", _is_whole)
    number = ("a finite number", _is_number)
    spacing = ("a number > 0", _is_positive)
    flag = ("true or false", lambda v: isinstance(v, bool))
    kinds = get_args(Kind)
    checks = {
        "x": text,
        "y": text,
        "kind": (" or ".join(map(json.dumps, kinds)), lambda v: v in kinds),
        "nx": count,
        "ny": count,
        "x0": number,
        "y0": number,
        "dx": spacing,
        "dy": spacing,
        "x_units": text,
        "y_units": text,
        "periodic_x": flag,
        "periodic_y": flag,
        "time": ("null or a dimension name", lambda v: v is None or isinstance(v, str)),
        "crs": ("null or an object", lambda v: v is None or isinstance(v, dict)),
    }
    for key, (expected, valid) in checks.items():
        if key in spec and not valid(spec[key]):
            raise _bad_entry(GRID_FILE, f"grid.{key}", spec[key], expected, _GRID_SAVE_FIX)
    try:
        GridSpec.from_dict(spec)
    except (GridError, TypeError, ValueError) as err:
        raise _Refused(
            GRID_FILE,
            f"has a grid entry that is not a grid description ({err})",
            save_fix=_GRID_SAVE_FIX,
        ) from None


@dataclass(frozen=True)
class ModelFolderHeader:
    """What a model folder's ``config.json`` says it does, read without checking or loading it.

    For choosing among folders (e.g. the shipped models); :func:`load_model_folder` checks and
    loads the chosen one.

    Attributes
    ----------
    path : Path
        The model folder.
    task : str
        ``"superres"`` (downscaling) or ``"forecast"``.
    variables : tuple of str
        The model's variable names in channel order.
    factor : int
        Refinement factor per axis (1 for forecast models).

    Examples
    --------
    The shipped models by what they do, without loading their weights:

    >>> headers = [read_model_header(path) for path in shipped_models().values()]
    >>> [(h.path.name, h.task, h.variables, h.factor) for h in headers]
    [('era5-t2m-x4', 'superres', ('t2m',), 4), ('kolmogorov-x8', 'superres', ('vorticity',), 8)]
    """

    path: Path
    task: str
    variables: tuple[str, ...]
    factor: int


def read_model_header(path: str | os.PathLike[str]) -> ModelFolderHeader:
    """The :class:`ModelFolderHeader` of the local model folder ``path`` (only its config).

    Parameters
    ----------
    path : str or os.PathLike
        A local model folder (``~`` is expanded; no shipped name or Hub id: see
        :func:`resolve_model_path`).

    Returns
    -------
    ModelFolderHeader
        The task, variables and factor its ``config.json`` records; the weights, checksums and
        other files are not read.

    Raises
    ------
    ModelFolderError
        When ``path`` is not a folder (missing, or a file: a model folder's own file gets
        "pass its folder"), or its ``config.json`` is missing, not JSON, not a flexdownscale
        model config, of an unknown format version, or an entry has the wrong type or is
        missing.

    Examples
    --------
    >>> header = read_model_header(shipped_models()["kolmogorov-x8"])
    >>> header.task, header.variables, header.factor
    ('superres', ('vorticity',), 8)

    A shipped model's name is not a local folder:

    >>> read_model_header("kolmogorov-x8")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ModelFolderError: no model folder at 'kolmogorov-x8' (a shipped model ...
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        if folder.exists():
            raise ModelFolderError(_not_a_folder(str(path), folder))
        shipped = shipped_models().get(str(path))
        hint = (
            f" (a shipped model has that name: its folder is "
            f"flexdownscale.hub.shipped_models()[{str(path)!r}])"
            if shipped is not None
            else ""
        )
        raise ModelFolderError(
            f"no model folder at {str(path)!r}{hint}; read_model_header reads a local folder "
            "(resolve_model_path turns a shipped name or Hub id into one)"
        )
    if not (folder / CONFIG_FILE).is_file():
        raise ModelFolderError(
            f"model folder {str(folder)!r} has no {CONFIG_FILE}; a model folder needs "
            f"{CONFIG_FILE}, {WEIGHTS_FILE}, {NORMALIZATION_FILE}, {GRID_FILE} and {CARD_FILE} "
            "(export one with Downscaler.save_pretrained or the training script)"
        )
    config = _read_json(folder / CONFIG_FILE)
    _check_format(config, folder, path)
    checked = _checked_config(config, folder)
    return ModelFolderHeader(
        path=folder, task=checked["task"], variables=checked["variables"], factor=checked["factor"]
    )


def _not_a_folder(text: str, path: Path) -> str:
    """Why the file ``path`` (given as ``text``) is not a model folder, and what to pass."""
    if path.name in _MODEL_FILES:
        return (
            f"{text!r} is a file of a model folder ({path.name}), not the folder: pass its "
            f"folder, {str(path.parent)!r}"
        )
    return (
        f"{text!r} is a file, not a model folder (a folder holding {CONFIG_FILE}, {WEIGHTS_FILE}, "
        f"{NORMALIZATION_FILE}, {GRID_FILE} and {CARD_FILE}); pass a model folder, or read the "
        "weights of another code base's checkpoint with flexdownscale.hub.import_foreign_checkpoint"
    )


def _shadow_hint(name_or_path: str | os.PathLike[str], path: Path) -> str:
    """For a local folder in the working directory that is not a model folder and has the name
    of a shipped model: that the shipped model exists, is hidden by the folder and how to reach
    it (``""`` otherwise)."""
    shipped = shipped_models().get(path.name)
    if shipped is None or shipped.resolve() == path.resolve():
        return ""
    if path.resolve() != (Path.cwd() / path.name).resolve():  # only a bare name finds it
        return ""
    return (
        f"; a shipped model is also named {path.name!r}, but the local folder of that name is "
        f"taken first: to load the shipped one, rename or move that folder, work from another "
        f"directory, or pass the shipped folder's path, flexdownscale.hub.shipped_models()"
        f"[{path.name!r}] ({str(shipped)!r})"
    )


def _incomplete(
    name_or_path: str | os.PathLike[str],
    path: Path,
    hub_id: tuple[str, str | None] | None,
    missing: list[str],
) -> ModelFolderError:
    """The ModelFolderError for a folder without all the model files: which, and the way out
    (a Hub model's download command; a run folder's model; a shipped model hidden by a local
    folder)."""
    needs = (
        f"a model folder needs {CONFIG_FILE}, {WEIGHTS_FILE}, {NORMALIZATION_FILE}, {GRID_FILE} "
        f"and {CARD_FILE}"
    )
    if hub_id is not None:
        repo_id, revision = hub_id
        what = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
        return ModelFolderError(
            f"the Hugging Face Hub model {what} lacks {', '.join(missing)} in its copy in the "
            f"local cache ({str(path)!r}); {needs}. Either the repository does not hold a "
            "complete flexdownscale model folder, or its cached copy is incomplete (an "
            f"interrupted download): download it again ({_download_command(repo_id, revision)}) "
            "and pass DIR, or check the id"
        )
    inner = path / "model"  # a training run folder keeps its exported model there
    hint = (
        f"; {str(path)!r} looks like a training run folder: its exported model is {str(inner)!r}"
        if (inner / CONFIG_FILE).is_file()
        else " (export one with Downscaler.save_pretrained or the training script)"
        + _shadow_hint(name_or_path, path)
    )
    return ModelFolderError(
        f"model folder {str(path)!r} is missing {', '.join(missing)}; {needs}{hint}"
    )


def load_model_folder(name_or_path: str | os.PathLike[str]) -> ModelFolder:
    """Load a model folder after checking it.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A local folder, a shipped model name or a Hugging Face Hub id (see
        :func:`resolve_model_path`).

    Returns
    -------
    ModelFolder
        The folder's configurations, weights (CPU tensors), normalization, grid and card.

    Raises
    ------
    ModelFolderError
        When a file is missing (for a Hub model: its id and the download command; for a local
        folder hiding a shipped model of its name: how to reach that model), a checksum does
        not match (the file was changed after export), the format is unknown or newer than this
        package, an entry of ``config.json`` or ``grid.json`` has the wrong type or is missing
        (``model``, ``diffusion`` and ``sampler`` must hold the settings that decide what the
        model computes, e.g. ``diffusion.objective``), the configs hold a value out of its range
        (the ranges a training configuration is held to, e.g. ``sampler.steps`` >= 1), or a
        weight is NaN or infinite; or the folder was replaced while it was read (saved again
        at that moment) on three tries in a row.

    Notes
    -----
    Each file is read once and its checksum checked on the bytes it is loaded from, all the
    checksums those of the one ``config.json`` read: a folder replaced while it is read (by
    ``save_pretrained(..., overwrite=True)`` in another thread or process) never loads as a mix
    of its two versions. Such a read is tried again twice (after 0.02 s and 0.1 s).

    Examples
    --------
    >>> folder = load_model_folder("kolmogorov-x8")  # a shipped model
    >>> folder.condition["name"], folder.condition["scale"], folder.model.physical_condition
    ('reynolds_number', 40000.0, True)

    A file changed after export no longer matches its checksum:

    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> copy = shutil.copytree(folder.path, Path(tmp.name) / "copy")
    >>> _ = (copy / "grid.json").write_text("{}")
    >>> load_model_folder(copy)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flexdownscale.errors.ModelFolderError: grid.json in '...' does not match the checksum ...
    >>> tmp.cleanup()
    """
    path, hub_id = _resolve(name_or_path)
    failure: ModelFolderError | None = None
    for pause in (*_RELOAD_PAUSES, None):
        before = _folder_identity(path)
        try:
            folder = _load_folder(name_or_path, path, hub_id)
        except ModelFolderError as err:
            if _folder_identity(path) == before:
                raise
            failure = err  # the folder was replaced meanwhile: what was read may mix two saves
        else:
            if _folder_identity(path) == before:
                return folder
            failure = None  # whole as checked, but the card may be of the other save
        if pause is not None:
            time.sleep(pause)
    raise ModelFolderError(
        f"model folder {str(path)!r} was being replaced (saved again, e.g. by save_pretrained "
        f"or a training's export) while it was read, {len(_RELOAD_PAUSES) + 1} times in a "
        "row; nothing of it was used: load it again once the save is done"
        + (f" (the last try found: {failure})" if failure is not None else "")
    ) from failure


#: The pauses (seconds) before :func:`load_model_folder` reads a folder again that was replaced
#: while it was read (a save of the same folder at the same moment); then it gives up.
_RELOAD_PAUSES = (0.02, 0.1)


def _folder_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the folder ``path`` is replaced (its device, inode, modification and
    change times), ``None`` when there is none now."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns


def _in_file_order(tensors: dict[str, Any], data: bytes) -> dict[str, Any]:
    """``tensors``, loaded from the safetensors bytes ``data``, in the order the file stores
    them (as ``safetensors.torch.load_file`` gives them; messages name the first of a kind)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    offsets = {name: entry["data_offsets"][0] for name, entry in header.items() if name in tensors}
    return {name: tensors[name] for name in sorted(tensors, key=lambda n: (offsets[n], n))}


def _load_folder(
    name_or_path: str | os.PathLike[str], path: Path, hub_id: tuple[str, str | None] | None
) -> ModelFolder:
    """One read of the model folder ``path`` for :func:`load_model_folder`.

    Each file is read once: its checksum is checked on the bytes read and those bytes are
    parsed, and every checksum comes from the one ``config.json`` read first, so files of two
    saves of the folder (replaced while it is read) never pass as one model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    missing = [n for n in _MODEL_FILES if not (path / n).is_file()]
    if missing:
        raise _incomplete(name_or_path, path, hub_id, missing)
    config = _read_json(path / CONFIG_FILE)
    _check_format(config, path, name_or_path)
    checked = _checked_config(config, path)
    recorded = checked["sha256"]
    data: dict[str, bytes] = {}
    for name in _CHECKED_FILES:
        if name not in recorded:
            raise ModelFolderError(
                f"{str(path / CONFIG_FILE)!r} records no checksum for {name} (its sha256 entry "
                f"has {', '.join(map(repr, recorded)) or 'none'}); re-download or re-export the "
                "model"
            )
        data[name] = _read_bytes(path / name)
        if recorded[name] != hashlib.sha256(data[name]).hexdigest():
            raise ModelFolderError(
                f"{name} in {str(path)!r} does not match the checksum recorded in {CONFIG_FILE}: "
                "the file was modified or damaged after export; re-download or re-export the model"
            )
    try:
        state_dict = _in_file_order(load(data[WEIGHTS_FILE]), data.pop(WEIGHTS_FILE))
    except (SafetensorError, ValueError) as err:
        raise ModelFolderError(
            f"cannot read weights from {str(path / WEIGHTS_FILE)!r}: {err}; the file is damaged "
            "or not a safetensors file (its checksum in config.json was recorded for it "
            "afterwards): re-download or re-export the model"
        ) from err
    problem = _weights_problem(state_dict)
    if problem is not None:
        # a NaN weight makes every output NaN: refused here rather than written as a NaN ensemble
        raise ModelFolderError(
            f"the weights in {str(path / WEIGHTS_FILE)!r} {problem[1]}: {problem[2]} or "
            "download it again"
        )
    try:
        model = from_dict(ModelConfig, checked["model"])
        diffusion = from_dict(DiffusionConfig, checked["diffusion"])
        sampler = from_dict(SamplerConfig, checked["sampler"])
    except ConfigError as err:
        raise ModelFolderError(
            f"invalid configuration in {str(path / CONFIG_FILE)!r}: {err}"
        ) from err
    try:  # the ranges a training configuration is held to: caught here, not at the first call
        check_model_ranges(model, diffusion, sampler)
    except ConfigError as err:
        raise ModelFolderError(
            f"{str(path / CONFIG_FILE)!r}: {err}; the file was edited or damaged: restore the "
            f"folder's {CONFIG_FILE} from where it came (download or copy the model again) or "
            "export the model again from its training run (python -m flexdownscale.train "
            "--config run.toml --export-only)"
        ) from err
    normalization = _parse_object(data[NORMALIZATION_FILE], path / NORMALIZATION_FILE)
    grid = _parse_object(data[GRID_FILE], path / GRID_FILE)
    try:
        _check_contents(checked, normalization, grid)
    except _Refused as refused:
        raise refused.loading(path) from None
    return ModelFolder(
        path=path,
        model=model,
        diffusion=diffusion,
        sampler=sampler,
        variables=checked["variables"],
        units=checked["units"],
        factor=checked["factor"],
        task=checked["task"],
        condition=checked["condition"],
        state_dict=state_dict,
        normalization=normalization,
        grid=grid,
        card=_read_text(path / CARD_FILE),
        extra=dict(checked["extra"]),
    )


def _shipped_root() -> Path:
    return Path(str(resources.files("flexdownscale") / "_data" / "models"))


def shipped_models() -> dict[str, Path]:
    """Models shipped inside the package.

    Returns
    -------
    dict of str to Path
        Model name (e.g. ``"era5-t2m-x4"``) to its folder, sorted by name; empty when the
        package was installed without them.

    Examples
    --------
    >>> models = shipped_models()
    >>> list(models)
    ['era5-t2m-x4', 'kolmogorov-x8']
    >>> sorted(p.name for p in models["era5-t2m-x4"].iterdir())
    ['README.md', 'config.json', 'grid.json', 'model.safetensors', 'normalization.json']
    """
    root = _shipped_root()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


#: How a Hub model is written besides ``org/name``: the address a browser shows and the
#: ``hf://`` form of huggingface_hub's file system (datasets and spaces are not models).
_HUB_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf://")


def _hub_reference(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of a text shaped like a Hub id, ``org/name`` or
    ``org/name@revision`` (a branch, tag or commit), also written ``hf://org/name`` or as the
    model page's address (``https://huggingface.co/org/name``, ``.../tree/<revision>``);
    ``None`` for anything else."""
    for prefix in _HUB_PREFIXES:
        if text.startswith(prefix):
            text = text.removeprefix(prefix).rstrip("/")
            repo, tree, revision = text.partition("/tree/")
            if tree and revision and "@" not in repo:
                text = f"{repo}@{revision}"
            break
    if text.startswith((".", "/", "~")):
        return None
    repo, at, revision = text.partition("@")
    org, slash, name = repo.partition("/")
    if not (slash and org and name) or "/" in name or (at and not revision):
        return None
    return repo, revision or None


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a model reference into a local folder.

    Order: an existing local folder; a shipped model name; a Hugging Face Hub id ``org/name``, or
    ``org/name@revision`` for a branch, tag or commit (the form provenance records; also
    written ``hf://org/name`` or as the model page's address ``https://huggingface.co/org/name``
    or ``.../tree/<revision>``), downloaded with ``huggingface_hub.snapshot_download``, which
    needs the ``hub`` extra. A full 40-character commit hash is looked up in the local
    Hugging Face cache first (a commit never changes): a cached copy is used without asking the
    Hub, so an offline machine does not wait for the Hub's retries.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A local folder (``~`` is expanded), a shipped model name or a Hub id.

    Returns
    -------
    Path
        The local folder: the given one, the shipped model's, or the Hub download in the local
        Hugging Face cache (only a model folder's five files are fetched).

    Raises
    ------
    ModelFolderError
        When ``name_or_path`` is empty, a file (a model folder's own file, e.g. its
        ``config.json``, gets "pass its folder") or none of these (a near miss of a shipped
        name gets "did you mean ...?"), or the download fails (the message says that no local
        folder has that name, in case it was a mistyped path). A model missing from the local
        Hugging Face cache while ``HF_HUB_OFFLINE`` is set, or while the Hub cannot be reached,
        is named as such, with the way out: download it where there is internet (``hf download
        org/name --local-dir DIR``), copy ``DIR`` over and pass its path.
    BackendNotAvailableError
        For a Hub id without ``huggingface_hub`` installed.

    Examples
    --------
    >>> resolve_model_path("era5-t2m-x4") == shipped_models()["era5-t2m-x4"]
    True
    >>> from flexdownscale.errors import ModelFolderError
    >>> try:
    ...     resolve_model_path("era5_t2m_x4")
    ... except ModelFolderError as err:
    ...     print(str(err).split(";")[0])
    no model folder at 'era5_t2m_x4' (did you mean the shipped model 'era5-t2m-x4'?)
    """
    return _resolve(name_or_path)[0]


def _resolve(name_or_path: str | os.PathLike[str]) -> tuple[Path, tuple[str, str | None] | None]:
    """:func:`resolve_model_path`, and the ``(repo_id, revision)`` of the Hub model the folder
    is the cached copy of (``None`` for a local folder or a shipped model)."""
    shipped = shipped_models()
    if isinstance(name_or_path, str) and not name_or_path.strip():
        # Path("") is the working directory: never a model the user meant
        raise ModelFolderError(
            f"the model name is empty ({name_or_path!r}); give a shipped model "
            f"({', '.join(shipped) or 'none shipped'}), a model folder's path or a Hugging Face "
            "Hub id 'org/name'"
        )
    path = Path(name_or_path).expanduser()
    if _is_folder(path):
        return path, None
    text = str(name_or_path)
    if text in shipped:
        return shipped[text], None
    if path.exists():
        raise ModelFolderError(_not_a_folder(text, path))
    hub_id = _hub_reference(text)
    if hub_id is not None:
        repo_id, revision = hub_id
        try:
            from huggingface_hub import snapshot_download
        except ImportError as err:
            raise BackendNotAvailableError(
                f"no local folder {text!r} and no shipped model by that name "
                f"({', '.join(shipped) or 'none shipped'}); to load it from the Hugging Face Hub "
                "install the hub extra: pip install 'flexdownscale[hub]'"
            ) from err
        # Only the files of a model folder: nothing else in the repository is fetched (no pickles).
        allow = list(_MODEL_FILES)
        pinned = {} if revision is None else {"revision": revision}
        if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
            # a commit never changes: a complete cached copy needs no network (offline,
            # huggingface_hub would retry the Hub for half a minute before using it)
            with contextlib.suppress(OSError, ValueError):
                cached = Path(
                    snapshot_download(
                        repo_id=repo_id, allow_patterns=allow, local_files_only=True, **pinned
                    )
                )
                if all((cached / name).is_file() for name in _MODEL_FILES):
                    return cached, hub_id
        try:
            return Path(snapshot_download(repo_id=repo_id, allow_patterns=allow, **pinned)), hub_id
        except (OSError, ValueError) as err:  # hub errors: HTTP, not found, offline, bad id
            # from None: the message says the cause; huggingface_hub's chain (connection
            # errors inside a LocalEntryNotFoundError) filled a notebook cell with 24k
            # characters of traceback. It stays reachable as the error's ``hub_error``.
            problem = _fetch_error(text, repo_id, revision, err)
            problem.hub_error = err
            raise problem from None
    lowered = {name.lower(): name for name in shipped}
    close = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=0.75)
    guess = f" (did you mean the shipped model {lowered[close[0]]!r}?)" if close else ""
    raise ModelFolderError(
        f"no model folder at {text!r}{guess}; give a local folder, a shipped model "
        f"({', '.join(shipped) or 'none shipped'}) or a Hugging Face Hub id 'org/name' "
        "(or 'org/name@revision')"
    )


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder, looked at again after a moment when it is missing while a
    save of it is under way (while ``save_model_folder`` replaces a folder, its path is missing
    for a moment: a hidden folder holds the previous one, :func:`_previous_prefix`). A file is
    no folder at once."""
    if path.is_dir():
        return True
    if path.exists():  # a file (no wait), or the folder a save has just put in place
        return path.is_dir()
    try:
        saving = any(path.parent.glob(f"{glob.escape(_previous_prefix(path))}*"))
    except (OSError, ValueError):  # a parent that cannot be listed, a name glob refuses
        saving = False
    for pause in _RELOAD_PAUSES if saving else ():
        time.sleep(pause)
        if path.is_dir():
            return True
    return False


def _hub_offline() -> bool:
    """Whether huggingface_hub's offline mode is on (``HF_HUB_OFFLINE=1``), as it reads it."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - only called after a Hub download was tried
        return False
    check = getattr(constants, "is_offline_mode", None)  # newer huggingface_hub
    return bool(check() if callable(check) else getattr(constants, "HF_HUB_OFFLINE", False))


def _download_command(repo_id: str, revision: str | None) -> str:
    """The shell command that downloads a Hub model into a folder ``DIR``, for the installed
    huggingface_hub (its CLI is ``hf`` from 0.34, ``huggingface-cli`` before)."""
    try:
        from huggingface_hub import __version__ as version
    except ImportError:  # pragma: no cover - only called after a Hub download was tried
        version = ""
    numbers = [int(part) for part in re.findall(r"\d+", version)[:2]]
    cli = "huggingface-cli" if len(numbers) == 2 and tuple(numbers) < (0, 34) else "hf"
    pin = f" --revision {revision}" if revision else ""
    return f"{cli} download {repo_id}{pin} --local-dir DIR"


def _fetch_error(
    text: str, repo_id: str, revision: str | None, err: BaseException
) -> ModelFolderError:
    """The :class:`ModelFolderError` for a Hub id that could not be fetched: what was found and,
    for a copy missing from the local cache, the way out that fits the offline setting."""
    names = {cls.__name__ for cls in type(err).__mro__}
    reason = err.__cause__ or err.__context__
    offline = _hub_offline() or any(
        cls.__name__ == "OfflineModeIsEnabled" for cls in type(reason).__mro__
    )
    what = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    fix = (
        f"download it on a machine with internet ({_download_command(repo_id, revision)}), "
        "copy DIR here and pass its path, or check the path if you meant a local folder"
    )
    if "OfflineModeIsEnabled" in names or ("LocalEntryNotFoundError" in names and offline):
        return ModelFolderError(
            f"no local folder {text!r}, and {what} is not in the local Hugging Face cache "
            f"(HF_HUB_OFFLINE is set, so nothing is downloaded); {fix}"
        )
    if "LocalEntryNotFoundError" in names:  # the Hub could not be reached, nothing cached
        why = f"{type(reason).__name__}: {' '.join(str(reason).split())}" if reason else ""
        status = getattr(getattr(reason, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 500:  # reached, but it answered an error
            return ModelFolderError(
                f"no local folder {text!r}, and the Hugging Face Hub answered with a server "
                f"error (HTTP {status}; {why}) with no copy of {what} in the local cache; the "
                f"Hub is having trouble, not your network: try again later, or {fix}"
            )
        return ModelFolderError(
            f"no local folder {text!r}, and the Hugging Face Hub could not be reached"
            f"{f' ({why})' if why else ''} with no copy of {what} in the local cache; "
            f"check your network, or {fix}"
        )
    cause = " ".join(str(err).split()) or "no details"
    return ModelFolderError(
        f"no local folder {text!r} and could not fetch it from the Hugging Face Hub "
        f"({type(err).__name__}: {cause}); check the path, or the id"
        f"{' and revision' if revision else ''} and your network"
    )


def _weights_only_refusal(err: BaseException) -> str | None:
    """What ``torch.load(weights_only=True)`` refused (e.g. ``Unsupported global: GLOBAL
    builtins.print``, or ``Unsupported global: GLOBAL posix.system, whose module posix is
    blocked``; ``Unsupported operand 96`` for bytes that are no pickle) when ``err`` is its
    refusal, without torch's advice to load the file unsafely; ``None`` for any other error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    blocked = re.search(r"unsupported GLOBAL (\S+) whose module (\S+?)\.? is blocked", text)
    if blocked:  # torch >= 2.6 words the modules it never loads (os, posix, sys, nt) so
        return f"Unsupported global: GLOBAL {blocked[1]}, whose module {blocked[2]} is blocked"
    refused = re.search(
        r"WeightsUnpickler error:\s*([^\n]+?)(?: was not an allowed| Please|\n|$)", text
    )
    return refused.group(1).strip() if refused else None


def _load_error_gist(err: BaseException) -> str:
    """``err`` of ``torch.load`` on one line: the refusal, or the first line of torch's text
    without its advice to load the file with ``weights_only=False``."""
    refused = _weights_only_refusal(err)
    if refused:
        return refused
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    text = re.sub(r"In PyTorch 2\.6, we changed.*?trusted source\.", "", text, flags=re.S)
    text = text.replace("Weights only load failed.", "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    gist = re.split(r"(?<=\.)\s", lines[0])[0] if lines else ""  # its first sentence
    if re.search(r"weights_only\W*(?:set to\W*|=\W*)False", gist):  # advice in other words
        gist = ""
    if len(gist) > 300:
        gist = gist[:300] + " ..."
    return f"{type(err).__name__}: {gist}" if gist else type(err).__name__


#: torch's refusals of bytes that are no checkpoint (not of an object in one)
_NOT_A_PICKLE = re.compile(r"Unsupported operand|String is too long|Invalid magic number")


def _is_safetensors(path: Path) -> bool:
    """Whether the file starts as a safetensors file does: the length of a JSON header that fits
    in the file, then the header's ``{``."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= size <= path.stat().st_size - 8


def _entries_words(entries: Mapping[str, Any]) -> str:
    """``"its entries: 'ema', 'epoch'"``, or for many ``"its 358 entries: 'a', ... and 353
    more"``; a dict of tensors is said to be a state dict itself."""
    names = [repr(name) for name in entries]
    words = (
        f"its entries: {', '.join(names)}"
        if len(names) <= 5
        else f"its {len(names)} entries: {_listing(names)}"
    )
    if entries and all(_is_tensor(v) for v in entries.values()):
        words += "; it is itself a state dict of tensors: leave key= out"
    return words


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _key_words(parts: tuple[str, ...]) -> str:
    """The ``key=`` that reaches ``parts``: dotted (``'lightning.state_dict'``), or a tuple
    when a name holds a dot itself."""
    return repr(".".join(parts)) if not any("." in p for p in parts) else repr(parts)


def _state_dicts_inside(value: Any, parts: tuple[str, ...] = (), depth: int = 3) -> list[str]:
    """The ``key=`` of each non-empty dict of tensors inside the entry ``value`` of a checkpoint
    (reached by the names ``parts``; nested up to ``depth`` levels below it), as
    :func:`_key_words` writes them."""
    found = []
    for name, inner in value.items() if isinstance(value, dict) else ():
        if not isinstance(name, str) or not isinstance(inner, dict):
            continue
        if inner and all(_is_tensor(v) for v in inner.values()):
            found.append(_key_words((*parts, name)))
        elif depth > 1:
            found += _state_dicts_inside(inner, (*parts, name), depth - 1)
    return found


def _pick_entry(state: Any, key: str | Sequence[str], path: Path) -> tuple[Any, tuple[str, ...]]:
    """The entry ``key`` of the checkpoint ``state`` and the names leading to it: ``key`` is a
    top-level name, a dotted path (``"lightning.state_dict"``) or a sequence of names
    (``("lightning", "state_dict")``)."""
    if isinstance(key, str):
        parts = (key,) if isinstance(state, dict) and key in state else tuple(key.split("."))
    else:
        parts = tuple(key)
    node = state
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        asked = _key_words(parts)
        if depth == 0:
            where = (
                f" ({_entries_words(node)})"
                if isinstance(node, dict)
                else f" (it holds a {type(node).__name__}, not a dict of entries)"
            )
            raise ModelFolderError(f"checkpoint {str(path)!r} has no entry {asked}{where}")
        above = _key_words(parts[:depth])
        inside = (
            _entries_words(node)
            if isinstance(node, dict)
            else f"it is a {type(node).__name__}, not a dict of entries"
        )
        raise ModelFolderError(
            f"checkpoint {str(path)!r} has no entry {asked}: its entry {above} has no "
            f"{part!r} ({inside})"
        )
    return node, parts


def import_foreign_checkpoint(
    path: str | os.PathLike[str], *, key: str | Sequence[str] | None = None
) -> dict[str, Any]:
    """Read the weights of a checkpoint written by another code base (e.g. the FLEX reference).

    Safetensors files are read with safetensors (recognised by their content, whatever the
    file's name); PyTorch checkpoints are read with ``torch.load(..., weights_only=True)``, which
    refuses arbitrary objects, so no code from the file runs. Key renaming to our module names
    is the caller's job.

    Parameters
    ----------
    path
        The checkpoint file (``~`` is expanded).
    key
        Optional entry of a dict checkpoint holding the state dict: a name (``"model"``,
        ``"ema"``), a dotted path into nested dicts (``"lightning.state_dict"``; a top-level
        name holding a dot is taken as it is) or a sequence of names
        (``("lightning", "state_dict")``, for names holding dots).

    Returns
    -------
    dict of str to torch.Tensor
        The state dict (name -> tensor).

    Raises
    ------
    ModelFolderError
        When the file is missing or empty; damaged or not a PyTorch checkpoint (random bytes, a
        truncated download, a plain pickle: nothing in it is run); holds objects
        ``weights_only`` refuses (the message names the object, e.g. ``posix.system``; it is
        never unpickled); has no entry ``key`` (the message lists a few of its entries and
        their count); or holds no state dict of tensors under ``key`` (a checkpoint dict such
        as ``{"model": ..., "epoch": 3}`` names the ``key=`` of each state dict inside, nested
        ones as a dotted path), or an empty one.

    Examples
    --------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> torch.save({"lightning": {"state_dict": {"w": torch.ones(2)}}}, f"{folder}/ckpt.pt")
    >>> import_foreign_checkpoint(f"{folder}/ckpt.pt", key="lightning.state_dict")["w"]
    tensor([1., 1.])
    """
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelFolderError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0 and path.suffix != ".safetensors":
        raise ModelFolderError(
            f"checkpoint {str(path)!r} is empty (0 bytes): the download or copy failed; fetch it "
            "again"
        )
    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelFolderError(
                f"{str(path)!r} is not a readable safetensors file ({err}); it is damaged or "
                "incomplete: download or convert it again"
            ) from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError and others for unsafe content
            # the refused object only: torch's text goes on to advise weights_only=False
            gist = _load_error_gist(err)
            if not isinstance(err, pickle.UnpicklingError) or _NOT_A_PICKLE.search(gist):
                raise ModelFolderError(
                    f"{str(path)!r} is damaged or not a PyTorch checkpoint: torch.load could not "
                    f"read it ({gist}); nothing in it was run. Download or copy it again if it "
                    "was cut short, or save it with torch.save (or safetensors) where it was "
                    "written"
                ) from err
            blocked = re.search(r"GLOBAL (\S+), whose module \S+ is blocked", gist)
            fix = (
                f"Weights have no reason to call {blocked[1]}, which unpickling it would run: do "
                "not load this file"
                if blocked
                else "Convert it to safetensors in the environment that wrote it, if you trust "
                "the file"
            )
            raise ModelFolderError(
                f"{str(path)!r} cannot be loaded safely: torch.load(weights_only=True) refused "
                f"it ({gist}); it is not unpickled. {fix}"
            ) from err
    parts: tuple[str, ...] = ()
    entry = ""
    if key is not None:
        state, parts = _pick_entry(state, key, path)
        entry = f" entry {key!r}" if isinstance(key, str) else f" entry {_key_words(parts)}"
    if not isinstance(state, dict):
        raise ModelFolderError(
            f"checkpoint {str(path)!r}{entry} does not hold a state dict (it holds a "
            f"{type(state).__name__})"
        )
    if not state:
        raise ModelFolderError(
            f"checkpoint {str(path)!r}{entry} holds an empty state dict (no tensors): there are no "
            "weights to import; check the file, or the key="
        )
    other = [name for name, value in state.items() if not _is_tensor(value)]
    if other:  # a checkpoint dict ({"model": ..., "epoch": 3}), not the state dict itself
        inner = _state_dicts_inside(state, parts)
        hint = f"pass key= one of {', '.join(inner[:5])}" if inner else "pass key=..."
        raise ModelFolderError(
            f"checkpoint {str(path)!r}{entry} is not a state dict of tensors: its entries "
            f"{', '.join(map(repr, other[:5]))}{' ...' if len(other) > 5 else ''} are not "
            f"tensors; {hint} to pick the state dict inside"
        )
    return dict(state)
