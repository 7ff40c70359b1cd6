"""Output folders of the commands that write fixed file names (the demo, ``evaluate``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path


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
    if not folder.is_dir():
        return []
    first = folder / report
    if first.is_file():
        with first.open(encoding="utf-8", errors="replace") as f:
            if is_ours(f.readline().rstrip("\n")):
                return []
    return [name for name in dict.fromkeys(names) if (folder / name).exists()]
