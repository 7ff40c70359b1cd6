"""Unknown keyword arguments of the public functions: Python's TypeError, with the likely name.

``ds.flex.downscale(member=4)`` or ``crps_ensemble(fc, obs, dim="member")`` would otherwise end
in Python's bare "got an unexpected keyword argument"; :func:`keyword_hints` adds "did you mean
'members'?" (or, with no near name, the keywords the function takes). The check reads the
function's code object once, at decoration, so a call costs one set comparison.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

__all__ = ["check_keywords", "keyword_hints", "keyword_names"]

P = ParamSpec("P")
R = TypeVar("R")


def keyword_names(func: Callable[..., Any]) -> frozenset[str] | None:
    """Names ``func`` accepts as keywords; None when it takes ``**kwargs`` (anything goes).

    Parameters
    ----------
    func : callable
        A Python function or method (decorated ones are unwrapped).

    Returns
    -------
    frozenset of str or None
        Its positional-or-keyword and keyword-only parameter names.
    """
    parameters = inspect.signature(inspect.unwrap(func)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def check_keywords(
    given: Iterable[str],
    accepted: frozenset[str],
    called_as: str,
    *,
    hidden: Iterable[str] = ("self", "cls"),
) -> None:
    """Raise Python's TypeError for the first name in ``given`` that ``accepted`` lacks.

    Parameters
    ----------
    given : iterable of str
        The keyword names of a call.
    accepted : frozenset of str
        The names the callee takes (:func:`keyword_names`).
    called_as : str
        How the user wrote the callee, e.g. ``"ds.flex.downscale"`` or ``"crps_ensemble"``.
    hidden : iterable of str, default ("self", "cls")
        Accepted names not to offer as suggestions.

    Raises
    ------
    TypeError
        "<called_as>() got an unexpected keyword argument 'x'", with the closest accepted name
        ("did you mean ...?") or, when none is close, the list of accepted keywords.
    """
    unknown = [name for name in given if name not in accepted]
    if not unknown:
        return
    name = unknown[0]
    offered = sorted(accepted - set(hidden))
    close = difflib.get_close_matches(name, offered, n=1, cutoff=0.6)
    if not close:  # a plural or singular slip ("member" for "members") the ratio may miss
        close = [o for o in offered if o.rstrip("s") == name.rstrip("s")][:1]
    hint = f"did you mean {close[0]!r}?" if close else "its keywords are " + ", ".join(offered)
    raise TypeError(f"{called_as}() got an unexpected keyword argument {name!r}; {hint}")


def keyword_hints(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a public function so that an unknown keyword names the likely one.

    Parameters
    ----------
    func : callable
        A function or method without ``**kwargs`` (returned unchanged if it has them).

    Returns
    -------
    callable
        ``func``, checking its keywords first (:func:`check_keywords`); signature, name and
        docstring are ``func``'s.
    """
    accepted = keyword_names(func)
    if accepted is None:
        return func
    called_as = func.__qualname__.removesuffix(".__init__")  # "Trainer()" as the user wrote it

    @functools.wraps(func)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        if not accepted.issuperset(kwargs):
            check_keywords(kwargs, accepted, called_as)
        return func(*args, **kwargs)

    return checked
