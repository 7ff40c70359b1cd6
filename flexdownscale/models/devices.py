"""Which devices the models run on: the one availability rule of ``build_model``, the
:class:`~flexdownscale.pipeline.Downscaler` / ``Forecaster`` calls and ``--device`` (torch only)."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "device_shortfall", "device_unavailable"]


def available_devices() -> list[str]:
    """The devices this machine can run: ``cpu``, then ``cuda`` / ``cuda:<i>``, then ``mps``.

    Returns
    -------
    list of str
        The device names, e.g. ``["cpu"]`` on a machine without a GPU, or
        ``["cpu", "cuda", "cuda:0"]`` with one CUDA device.
    """
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def device_shortfall(device: torch.device) -> tuple[str, str] | None:
    """What this machine lacks to run on ``device``: a CUDA device, or the CUDA index asked for.

    Parameters
    ----------
    device : torch.device
        The device asked for; only ``cuda`` devices can lack anything (other types give
        ``None``).

    Returns
    -------
    tuple of (str, str) or None
        ``(what the machine has, the torch build)``, e.g.
        ``("no CUDA device", "torch 2.5.1, built without CUDA")``; ``None`` when the device is
        there.
    """
    if device.type != "cuda":
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and (device.index is None or device.index < count):
        return None
    have = f"{count} CUDA device{'s' if count != 1 else ''}" if count else "no CUDA device"
    built = "" if torch.backends.cuda.is_built() else ", built without CUDA"
    return have, f"torch {torch.__version__}{built}"


def device_unavailable(device: torch.device) -> str | None:
    """Why this machine cannot run on ``device``, in words, or ``None`` when it can.

    The one availability rule of the Python API and the command line: ``cpu`` (``cpu:0`` is the
    same device), a CUDA device this machine has, and ``mps`` where torch's Apple GPU backend is
    available. Other device types (``xpu``, ``meta``, ...) are refused: the models run on
    these three only.

    Parameters
    ----------
    device : torch.device
        The device asked for.

    Returns
    -------
    str or None
        E.g. ``"this machine has no MPS device; torch 2.5.1, built without MPS"``; ``None``
        when the device is available here.
    """
    if device.type == "cpu":
        if device.index in (None, 0):
            return None
        return (
            f"torch has one CPU device, 'cpu'; the index {device.index} names no other (torch "
            "would silently run on 'cpu')"
        )
    if device.type == "cuda":
        missing = device_shortfall(device)
        return None if missing is None else f"this machine has {missing[0]}; {missing[1]}"
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is not None and backend.is_available():
            if device.index in (None, 0):
                return None
            return f"this machine has one MPS device, 'mps'; torch {torch.__version__}"
        built = "" if backend is not None and backend.is_built() else ", built without MPS"
        return f"this machine has no MPS device; torch {torch.__version__}{built}"
    return f"the models run on 'cpu', 'cuda' and 'mps' devices, not on {device.type!r} devices"
