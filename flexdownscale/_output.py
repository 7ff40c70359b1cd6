"""Output files and folders: the folders of the commands that write fixed file names (the demo,
``evaluate``) and their locks, files written whole or not at all, and why a write failed in
words."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ._inputs import one_line
from .errors import DataError


def files_in_the_way(
    folder: Path, names: Iterable[str], report: str, is_ours: Callable[[str], bool]
) -> list[str]:
    """The files of ``names`` in ``folder`` that writing there would overwrite, when the folder
    is not one the command wrote before (``[]`` otherwise, or for a folder that does not
    exist yet).

    A folder is the command's own when its ``report`` file's first line passes ``is_ours``:
    its files are the command's to replace. Other files of the folder are never touched, so
    only the names it would write can be in the way.
    """
    if not folder.is_dir() or written_here(folder, report, is_ours):
        return []
    return [name for name in dict.fromkeys(names) if (folder / name).exists()]


def written_here(folder: Path, report: str, is_ours: Callable[[str], bool]) -> bool:
    """Whether ``folder`` holds an earlier output of the command: its ``report`` file's first
    line passes ``is_ours`` (``False`` without that file)."""
    first = folder / report
    if not first.is_file():
        return False
    with first.open(encoding="utf-8", errors="replace") as f:
        return is_ours(f.readline().rstrip("\n"))


#: errno values of ``flock(LOCK_NB)`` on a lock that someone else holds.
LOCK_TAKEN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})


@contextlib.contextmanager
def folder_lock(folder: Path, refusal: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on the existing ``folder`` itself (``flock`` on the folder, no
    lock file left in it) while the block runs; raise ``refusal()`` at once when another
    writer, in this process or another, holds it.

    Where no lock can be taken (no ``fcntl``, a file system without ``flock``) the block
    runs unlocked: the lock keeps two runs of one command from mixing their files, it is no
    precondition of writing. The system drops the lock when the process ends, killed or not.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in LOCK_TAKEN:
                    raise refusal() from None
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing drops the lock


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is a terminal, where a progress bar's carriage-return frames redraw
    one line; ``False`` for a file, a pipe or a CI log (where they would pile up on one line of
    it), and for a missing, replaced (no ``isatty``) or closed stderr."""
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def bar_class() -> Any:
    """tqdm's progress bar class for where this runs: ``tqdm.auto``'s (a widget in a notebook
    that has ipywidgets), but ``tqdm.std``'s in a notebook kernel without ipywidgets, which
    ``tqdm.auto`` also falls back to after a TqdmWarning ("IProgress not found") that the user
    did not ask for."""
    if "ipykernel.zmqshell" in sys.modules and importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def draws_a_bar(tqdm: Any) -> bool:
    """Whether the progress bar class ``tqdm`` (:func:`bar_class`) draws a bar where it is: in a
    notebook (its widget), or on a stderr that is a terminal (:func:`stderr_is_terminal`)."""
    if any("notebook" in klass.__module__ for klass in type.mro(tqdm)):
        return True
    return stderr_is_terminal()


def progress_bar(total: int, desc: str, unit: str, *, leave: bool = True) -> Any:
    """A progress display over ``total`` ``unit``: tqdm's bar where it draws one
    (:func:`draws_a_bar`), else :class:`PlainProgress` lines on stderr (a log file, a pipe, a CI
    log, where the bar's carriage-return frames would pile up on one line). Both take
    ``update(n)``, ``set_postfix_str(text)`` and ``close()``."""
    tqdm = bar_class()
    if draws_a_bar(tqdm):
        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    return PlainProgress(total, desc, unit)


class PlainProgress:
    """Progress as a few whole lines on stderr, for a stderr that is no terminal: a start line,
    a line at each quarter of ``total`` reached, and an end line (at :meth:`close`), in the
    style of training's progress lines::

        downscaling: step 0/12
        downscaling: step 3/12, 1.2 s
        downscaling: step 6/12, 2.5 s
        downscaling: step 9/12, 3.7 s
        downscaling: step 12/12, done in 4.9 s

    Parameters
    ----------
    total : int
        How many ``unit`` there are.
    desc : str
        What runs, the start of each line.
    unit : str
        What is counted (``"step"``, ``"lead"``).
    """

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n, self._quarters, self._postfix = 0, 0, ""
        self._start, self._closed = time.perf_counter(), False
        self._say("")

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; a line when this reaches a new quarter (not the last: that is
        :meth:`close`'s)."""
        self.n += n
        quarters = 4 * self.n // max(self.total, 1)
        if quarters > self._quarters and self.n < self.total:
            self._quarters = quarters
            self._say(f", {time.perf_counter() - self._start:.1f} s")

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """What runs now (``"era5_t2m_x4: plot"``), shown in the next line."""
        self._postfix = text

    def close(self) -> None:
        """The end line (once): done, or where it stopped."""
        if self._closed:
            return
        self._closed = True
        end = "done" if self.n >= self.total else "stopped"
        self._say(f", {end} in {time.perf_counter() - self._start:.1f} s")

    def _say(self, end: str) -> None:
        what = f" ({self._postfix})" if self._postfix else ""
        line = f"{self.desc}: {self.unit} {self.n}/{self.total}{what}{end}"
        with contextlib.suppress(AttributeError, ValueError, OSError):  # no or a closed stderr
            print(line, file=sys.stderr, flush=True)


#: ``"(os error 28)"`` in the message of a Rust writer's I/O error (safetensors' SafetensorError).
_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)")

#: Below this many free bytes a disk counts as full: writers that say only that the write
#: failed (torch.save's "unexpected pos", netCDF's "HDF error") then failed on a full disk.
_FULL_DISK_BYTES = 2**20


def disk_full(folder: str | os.PathLike[str]) -> bool:
    """Whether the disk of ``folder`` (or of its nearest existing parent) has less than a MiB
    left to its users; ``False`` when that cannot be found."""
    place = Path(folder)
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free < _FULL_DISK_BYTES
    except OSError:
        return False


def write_cause(err: BaseException, folder: str | os.PathLike[str]) -> tuple[str, int | None]:
    """Why a write into ``folder`` failed, in words, and the ``errno`` of that cause when it is
    known.

    An ``OSError`` says it itself; safetensors' ``SafetensorError`` carries the number in its
    text (``"I/O error: No space left on device (os error 28)"``); other writers' errors
    (torch.save's ``"unexpected pos 576 vs 534"``, netCDF's ``"NetCDF: HDF error"``) say
    nothing of the cause, and are told as a full disk when the disk of ``folder`` is full.

    >>> write_cause(OSError(28, "No space left on device"), ".")
    ('No space left on device', 28)
    """
    if isinstance(err, OSError) and (err.errno is not None or err.strerror):
        return err.strerror or one_line(err), err.errno
    text = one_line(err)
    number = _OS_ERROR_NUMBER.search(text)
    if number is not None:
        code = int(number.group(1))
        return os.strerror(code), code
    said = text if text.startswith(type(err).__name__) else f"{type(err).__name__}: {text}"
    if disk_full(folder):
        return f"{os.strerror(errno.ENOSPC)} (the writer said {said})", errno.ENOSPC
    return said, None


def write_fix(code: int | None, folder: str | os.PathLike[str]) -> str:
    """What to do about a write into ``folder`` that failed with the error number ``code``."""
    if code == errno.ENOSPC:
        return f"free space on the disk of {str(folder)!r} or write to another disk"
    if code == errno.EDQUOT:
        return (
            f"free space within your disk quota on the disk of {str(folder)!r} (or have it "
            "raised) or write to another disk"
        )
    if code == errno.EFBIG:
        return (
            "the file is larger than this process may write (ulimit -f) or than the file "
            "system allows; raise the limit or write to another disk"
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "write to a folder you can write to, or fix that folder's permissions"
    return "write to another path"


def unwritable_file(path: str | os.PathLike[str], err: BaseException) -> DataError:
    """The :class:`~flexdownscale.errors.DataError` for the file ``path`` that could not be
    written: the path, the cause (:func:`write_cause`) and the fix (:func:`write_fix`)."""
    folder = Path(path).parent
    why, code = write_cause(err, folder)
    return DataError(f"cannot write {str(path)!r}: {why}; {write_fix(code, folder)}")


#: The errors of making a file or folder whose cause :func:`write_fix` tells what to do about.
_TOLD = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


def unwritable_folder(
    what: str,
    err: BaseException,
    folder: str | os.PathLike[str],
    doing: str | None = None,
) -> DataError:
    """The :class:`~flexdownscale.errors.DataError` for an output that could not be made or
    written in ``folder`` (the command line's output, the demo's folder, evaluate's report).

    It says ``"cannot {what}: "``, then the cause (:func:`write_cause`; ``"{doing} failed
    (cause)"`` when ``doing`` says what was tried), then what to do, told apart by the cause's
    ``errno``: a full disk or quota (``ENOSPC``, ``EDQUOT``): free space or write to another
    disk; a folder one cannot write in (``EACCES``, ``EPERM``, ``EROFS``): write elsewhere or
    fix its permissions; a missing ``folder`` (``ENOENT``): make it; any other cause: the
    system's message alone.

    Parameters
    ----------
    what : str
        What could not be done, after ``"cannot "``: ``"write the output '/data/out.nc'"``.
    err : BaseException
        The error of the failed write.
    folder : str or os.PathLike
        The folder the output was made in: its disk is looked at, and a fix names it.
    doing : str, optional
        The step that failed (``"creating a file in its folder '/data'"``).

    Returns
    -------
    DataError
        The error to raise, ``from err``.

    Examples
    --------
    >>> str(unwritable_folder("use 'r'", OSError(errno.ENOENT, "No such file or directory"), "d"))
    "cannot use 'r': No such file or directory; the folder 'd' does not exist: make it (mkdir -p d) or write to a folder that exists"
    """
    import shlex

    why, code = write_cause(err, folder)
    said = why if doing is None else f"{doing} failed ({why})"
    if code in _TOLD:
        said += f"; {write_fix(code, folder)}"
    elif code == errno.ENOENT:
        said += (
            f"; the folder {str(folder)!r} does not exist: make it (mkdir -p "
            f"{shlex.quote(str(folder))}) or write to a folder that exists"
        )
    return DataError(f"cannot {what}: {said}")


def written_through(path: Path) -> Path:
    """Where a write to ``path`` lands: ``path`` itself, or its final target when it is a
    symbolic link (outputs are written through links, as ``cp`` and the shell's ``>`` write)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def new_hidden(parent: Path, prefix: str, suffix: str = "", *, folder: bool = False) -> Path:
    """A new empty file (or, with ``folder``, folder) in ``parent`` of a name no other has:
    ``prefix``, random letters, ``suffix`` (``.out.nc.3f9a0c1e.nc``).

    It is made with the permissions of a new file (``0o666``) or folder (``0o777``) less the
    umask, which the system applies as it creates it, as ``open`` and ``mkdir`` make files:
    not ``mkstemp``'s and ``mkdtemp``'s owner-only ones, so no ``chmod`` is needed once it is
    moved into place (reading the umask means setting it, for the whole process: another
    thread creating a file then would get the wrong permissions).

    Parameters
    ----------
    parent : Path
        The folder it is made in.
    prefix, suffix : str
        The start and end of its name.
    folder : bool
        Make a folder, not a file.

    Returns
    -------
    Path
        The new file or folder.

    Raises
    ------
    OSError
        When it cannot be made (a read-only or full disk, a missing ``parent``).
    """
    for _ in range(100):
        made = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if folder:
                os.mkdir(made, 0o777)
            else:
                flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
                os.close(os.open(made, flags, 0o666))
        except FileExistsError:
            continue
        return made
    raise FileExistsError(errno.EEXIST, f"no unused name {prefix}...{suffix} in", str(parent))


def write_atomically(
    path: Path, write: Callable[[Path], object], shown: Path | None = None
) -> None:
    """Write the file ``path`` whole or not at all: ``write`` is called with a new hidden file
    beside it (of the same suffix, which picks the format of ``savefig`` and ``to_netcdf``),
    moved onto ``path`` once written, so an earlier file at ``path`` is replaced only by a
    complete one.

    On failure (a full disk, a file-size limit) the temporary file is removed and a
    :class:`~flexdownscale.errors.DataError` names ``path``, the cause and the fix
    (:func:`unwritable_file`); an earlier file at ``path`` is left as it was. Errors of
    flexdownscale raised by ``write`` pass unchanged. A ``path`` that is a symbolic link is
    written through (the file it points to is replaced, the link kept), as ``cp`` writes.
    ``shown`` is the path the messages name, when not ``path`` (a file written into a hidden
    folder first, said of its place in the user's folder).
    """
    from .errors import FlexDownscaleError

    shown, path = shown or path, written_through(path)  # the user's path, in messages
    try:
        tmp = new_hidden(path.parent, f".{path.name}.", path.suffix)
    except OSError as err:
        raise unwritable_file(shown, err) from err
    try:
        write(tmp)
        os.replace(tmp, path)
    except FlexDownscaleError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:
        unwritable = unwritable_file(shown, err)  # while the disk is still full
        tmp.unlink(missing_ok=True)
        raise unwritable from err
    except BaseException:  # KeyboardInterrupt: no half-written file left behind either
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str, shown: Path | None = None) -> None:
    """``path.write_text(text, encoding="utf-8")`` through :func:`write_atomically` (whose
    messages name ``shown``, when given)."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), shown)


def write_figure(
    fig: Any,
    path: Path,
    dpi: int,
    metadata: dict[str, str] | None = None,
    shown: Path | None = None,
) -> Path:
    """Save the matplotlib figure ``fig`` to ``path`` (format from its suffix) whole or not at
    all (:func:`write_atomically`, whose ``DataError`` names ``shown``, else ``path``); returns
    ``path``. ``metadata`` are text entries added to those matplotlib writes (a PNG's text
    chunks, read back with :func:`png_text`)."""
    extra = {} if metadata is None else {"metadata": dict(metadata)}
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=dpi, **extra), shown)
    return path


#: The first bytes of every PNG file.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_text(path: Path) -> dict[str, str]:
    """The uncompressed text entries (``tEXt`` chunks) of the PNG file ``path`` before its image
    data, as matplotlib writes its ``metadata``; ``{}`` for a file that is not a PNG or cannot
    be read."""
    found: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                return {}
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return found
                size, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind in (b"IDAT", b"IEND") or size > 2**20:
                    return found
                data = f.read(size)
                f.seek(4, os.SEEK_CUR)  # the chunk's CRC
                if kind == b"tEXt" and b"\0" in data:
                    key, _, text = data.partition(b"\0")
                    found[key.decode("latin-1")] = text.decode("latin-1")
    except OSError:
        return {}


def wait_for_zarr_writes(timeout: float = 60.0) -> None:
    """Wait (up to ``timeout`` seconds) for the tasks still running on zarr's event loop.

    zarr writes an array's chunks as tasks of its own loop, in a thread of its own; when one
    fails (a full disk) the error reaches the caller while the others still run, and each of
    them makes its chunk's folders again: a temporary store removed before they end comes
    back. The loop is zarr's, for the whole process: this waits for every task on it, other
    threads' writes included, not only those of one store. Nothing to wait for when zarr has
    not started its loop (or is not zarr 3); it reads zarr 3's ``zarr.core.sync.loop``.
    """
    import asyncio
    from concurrent.futures import TimeoutError as FutureTimeout

    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def others() -> None:
        running = asyncio.all_tasks() - {asyncio.current_task()}
        if running:
            await asyncio.wait(running, timeout=timeout)

    with contextlib.suppress(FutureTimeout):
        asyncio.run_coroutine_threadsafe(others(), loop).result(timeout + 1)
