"""What an input path is, checked before xarray opens it: a folder that is not a zarr store, an
empty file, a gzip-compressed one, a file that is not netCDF, HDF5 or zarr, and a netCDF-3 file
shorter than its header says (a truncated download or copy).

xarray's own messages for these mislead ("did not find a match in any of xarray's currently
installed IO backends ... installing additional IO dependencies"), and a truncated netCDF-3
file is no error to it at all: the netCDF library reads the missing bytes as zeros, which a
training run would take for data. :func:`check_input_file` is called by the places that open
input files: :func:`flexdownscale._inputs.open_input` (the command line, ``evaluate``) and
training's datasets (:mod:`flexdownscale.data.datasets`). Not part of the API; no heavy import.

The netCDF-3 header is read as the NetCDF Classic Format Specification lays it out (big-endian;
versions 1 "classic", 2 "64-bit offset" and 5 "64-bit data").
"""

from __future__ import annotations

import os
import shlex
import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["check_input_file", "netcdf3_expected_size"]

_HDF5 = b"\x89HDF\r\n\x1a\n"
_GZIP = b"\x1f\x8b"
_CDF_VERSIONS = (1, 2, 5)
#: The markers of a zarr store's root (format 2: group, array, consolidated metadata, attributes;
#: format 3: zarr.json).
ZARR_MARKERS = (".zgroup", ".zarray", ".zmetadata", ".zattrs", "zarr.json")

# tags and external type sizes of the classic format
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 10, 11, 12
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


class _Cut(Exception):
    """The file ends inside its netCDF-3 header."""


class _Unreadable(Exception):
    """The header is not the classic format's (left to the netCDF library to report)."""


def check_input_file(path: str | Path) -> None:
    """Refuse an input path that xarray would misread or refuse with a misleading message.

    Checked, in this order: a folder must be a zarr store; a file must not be empty, nor
    gzip-compressed (unless it holds netCDF-3, which xarray reads through scipy), and must
    start like netCDF-3 or HDF5 (netCDF-4) or be claimed by another installed xarray backend; a
    netCDF-3 file must be as long as its header says. A path that does not exist, or cannot be
    read, is left to the caller's own message.

    Parameters
    ----------
    path : str or Path
        The input file or zarr store.

    Raises
    ------
    DataError
        Naming the path, what it is and what to do.
    """
    from .errors import DataError

    text = str(path)
    if os.path.isdir(text):
        if not any(os.path.exists(os.path.join(text, m)) for m in ZARR_MARKERS):
            raise DataError(_folder_message(text))
        return
    try:
        size = os.path.getsize(text)
        with open(text, "rb") as f:
            head = f.read(8)
    except OSError:  # missing or unreadable: the caller's message says so
        return
    if size == 0:
        raise DataError(
            f"cannot read {text!r} as netCDF: it is empty (0 bytes): an interrupted download or copy, or a file that was "
            "never written; download, copy or write it again"
        )
    if head.startswith(_GZIP):
        if _gunzipped_head(text)[:4] in (b"CDF\x01", b"CDF\x02"):
            return  # netCDF-3 inside: xarray reads it (through scipy)
        base = text[:-3] if text.endswith(".gz") else f"{os.path.splitext(text)[0]}_gunzipped.nc"
        raise DataError(
            f"cannot read {text!r} as netCDF: it is gzip-compressed: decompress it first (gunzip -c {shlex.quote(text)} > "
            f"{shlex.quote(base)}) and give the file it writes"
        )
    if head[:3] == b"CDF" and (len(head) < 4 or head[3] in _CDF_VERSIONS):
        _check_netcdf3_size(text, size)
        return
    if head.startswith(_HDF5) or _other_backend_opens(text):
        return
    raise DataError(
        f"cannot read {text!r} as netCDF: it is not netCDF, HDF5 or zarr (its first bytes are {head!r}{_kind(head)}); "
        "give a netCDF file (netCDF-3 or netCDF-4) or a zarr store"
    )


def netcdf3_expected_size(path: str | Path) -> int | None:
    """The length a netCDF-3 file needs by its header: the end of its last variable's data.

    Each variable's data starts at its ``begin`` offset; a record variable's last record is
    ``numrecs - 1`` record sizes further on. Padding after the last value is not counted (some
    writers leave it out), so a complete file is never shorter than this.

    Parameters
    ----------
    path : str or Path
        A netCDF-3 file (classic, 64-bit offset or 64-bit data).

    Returns
    -------
    int or None
        The length in bytes; ``None`` when the header is not the classic format's, or its
        record count is "streaming" (not written: the length is not known). A header that is
        itself cut off gives one byte past the file's end.
    """
    try:
        with open(path, "rb") as f:
            return _expected_size(f)
    except _Unreadable:
        return None
    except _Cut:
        return os.path.getsize(path) + 1


def _check_netcdf3_size(path: str, size: int) -> None:
    from .errors import DataError

    expected = netcdf3_expected_size(path)
    if expected is None or size >= expected:
        return
    share = f"{100 * size / expected:.0f}% of it" if expected > size + 1 else "its header is cut"
    raise DataError(
        f"cannot read {path!r} as netCDF: it is shorter than its header says: {size:,} bytes where its variables "
        f"need {expected:,} ({share}); it is truncated (an interrupted download or copy) and "
        "the netCDF library would read the missing values as zeros; download or copy it again"
    )


def _expected_size(f: BinaryIO) -> int | None:
    def read(n: int) -> bytes:
        data = f.read(n)
        if len(data) < n:
            raise _Cut
        return data

    magic = read(4)
    version = magic[3]
    if magic[:3] != b"CDF" or version not in _CDF_VERSIONS:
        raise _Unreadable
    count_fmt, count_size = (">Q", 8) if version == 5 else (">I", 4)
    offset_fmt, offset_size = (">I", 4) if version == 1 else (">Q", 8)

    def count() -> int:
        return int(struct.unpack(count_fmt, read(count_size))[0])

    def tag() -> int:
        return int(struct.unpack(">I", read(4))[0])

    def skip_padded(n: int) -> None:
        read(n + (-n % 4))

    def list_header(expected_tag: int) -> int:
        found = tag()
        n = count()
        if found == 0 and n == 0:  # ABSENT
            return 0
        if found != expected_tag:
            raise _Unreadable
        return n

    def skip_attributes() -> None:
        for _ in range(list_header(_NC_ATTRIBUTE)):
            skip_padded(count())  # name
            nc_type = tag()
            if nc_type not in _TYPE_SIZES:
                raise _Unreadable
            skip_padded(count() * _TYPE_SIZES[nc_type])

    numrecs = count()
    if numrecs == (1 << (8 * count_size)) - 1:  # STREAMING: the count was never written
        return None
    lengths = []
    for _ in range(list_header(_NC_DIMENSION)):
        skip_padded(count())  # name
        lengths.append(count())
    skip_attributes()
    # (is a record variable, bytes of one record or of the whole variable, begin)
    variables: list[tuple[bool, int, int]] = []
    for _ in range(list_header(_NC_VARIABLE)):
        skip_padded(count())  # name
        dimids = [count() for _ in range(count())]
        if any(d >= len(lengths) for d in dimids):
            raise _Unreadable
        skip_attributes()
        nc_type = tag()
        if nc_type not in _TYPE_SIZES:
            raise _Unreadable
        count()  # vsize: computed below, as it is 2**32 - 1 for large variables
        begin = int(struct.unpack(offset_fmt, read(offset_size))[0])
        shape = [lengths[d] for d in dimids]
        is_record = bool(shape) and shape[0] == 0
        nbytes = _TYPE_SIZES[nc_type]
        for n in shape[1:] if is_record else shape:
            nbytes *= n
        variables.append((is_record, nbytes, begin))
    records = [nbytes for is_record, nbytes, _ in variables if is_record]
    # a record holds each record variable's slab padded to 4 bytes, except when there is one
    recsize = records[0] if len(records) == 1 else sum(n + (-n % 4) for n in records)
    end = f.tell()
    for is_record, nbytes, begin in variables:
        if nbytes == 0 or (is_record and numrecs == 0):
            continue
        last = begin + (numrecs - 1) * recsize if is_record else begin
        end = max(end, last + nbytes)
    return end


def _gunzipped_head(path: str) -> bytes:
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            return f.read(4)
    except (OSError, EOFError, zlib.error):
        return b""


def _other_backend_opens(path: str) -> bool:
    """Whether an installed xarray backend other than the netCDF ones claims ``path`` (GRIB
    through cfgrib, GeoTIFF through rioxarray): then xarray is left to read it."""
    import xarray as xr

    for name, engine in xr.backends.list_engines().items():
        if name in ("netcdf4", "h5netcdf", "scipy", "zarr", "store"):
            continue
        try:
            if engine.guess_can_open(path):
                return True
        except Exception:  # a third-party backend's guess failing is a "no"
            continue
    return False


def _kind(head: bytes) -> str:
    """``": a PNG image"`` for the first bytes of a few formats mistaken for data files."""
    kinds = {
        b"\x89PNG": "a PNG image",
        b"GRIB": "a GRIB file: convert it to netCDF, e.g. with ecCodes' grib_to_netcdf",
        b"PK\x03\x04": "a zip archive: unzip it first",
        b"%PDF": "a PDF document",
        b"<!DO": "an HTML page, e.g. a login or error page saved instead of the data",
        b"<htm": "an HTML page, e.g. a login or error page saved instead of the data",
        b"\xff\xd8\xff": "a JPEG image",
        b"BZh": "bzip2-compressed: decompress it first (bunzip2)",
        b"\xfd7zXZ": "xz-compressed: decompress it first (unxz)",
        b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it first (unzstd)",
    }
    for start, kind in kinds.items():
        if head.startswith(start):
            return f": {kind}"
    return ""


def _folder_message(path: str) -> str:
    found = sorted(Path(path).glob("*.nc"))
    inside = ""
    if found:
        n = len(found)
        glob_hint = os.path.join(path.rstrip("/"), "*.nc")
        inside = (
            f"; it holds {n} netCDF file{'' if n == 1 else 's'} ({found[0].name!r}"
            f"{', ...' if n > 1 else ''}): give one of them, or in training's data.paths a "
            f"glob such as {glob_hint!r}"
        )
    return (
        f"cannot read {path!r} as a zarr store: it is a folder that holds none of "
        f"{', '.join(ZARR_MARKERS)}, not a zarr store; inputs are netCDF files or zarr "
        f"stores{inside}"
    )
