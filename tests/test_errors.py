from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import flexdownscale
from flexdownscale import errors


def _classes(base):
    return [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, base) and obj.__module__ == errors.__name__
    ]


def _error_classes():
    return [cls for cls in _classes(Exception) if not issubclass(cls, Warning)]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_flexdownscale_error_and_a_builtin(cls):
    assert issubclass(cls, errors.FlexDownscaleError)
    if cls is not errors.FlexDownscaleError:
        builtin = [
            b
            for b in cls.__mro__
            if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
        ]
        assert builtin, f"{cls.__name__} should also derive from a builtin exception"
    assert cls.__name__ in errors.__all__


def test_missing_variable_message_is_not_quoted():
    err = errors.MissingVariableError("variable 't2m' not found; available: ['tas']")
    assert str(err) == "variable 't2m' not found; available: ['tas']"


@pytest.mark.parametrize("cls", _classes(Warning), ids=lambda c: c.__name__)
def test_every_warning_is_a_flexdownscale_warning_and_a_user_warning(cls):
    # one filter for all of the package's warnings; existing UserWarning filters keep working
    assert issubclass(cls, errors.FlexDownscaleWarning)
    assert issubclass(cls, UserWarning)
    assert cls.__name__ in errors.__all__


def _warning_calls():
    """Every ``warnings.warn(...)`` call in the package: (file, line, category expression)."""
    package = Path(flexdownscale.__file__).parent
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "warn"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "warnings"
            ):
                category = node.args[1] if len(node.args) > 1 else None
                for keyword in node.keywords:
                    if keyword.arg == "category":
                        category = keyword.value
                name = None if category is None else ast.unparse(category)
                yield f"{path.relative_to(package)}:{node.lineno}", name


def test_every_warning_the_package_issues_is_one_of_its_warning_classes():
    """A user silences or escalates the package's warnings by category
    (``warnings.filterwarnings("ignore", category=SkillWarning)``) and the command line tells
    them from other libraries' by it: a ``warnings.warn`` with a plain ``UserWarning`` (or none)
    would slip through both."""
    calls = list(_warning_calls())
    assert len(calls) >= 10  # the scan sees the package's calls
    wrong = [
        (where, name)
        for where, name in calls
        if name is None
        or not issubclass(getattr(errors, name, Warning), errors.FlexDownscaleWarning)
    ]
    assert not wrong, f"warnings.warn calls without a FlexDownscaleWarning category: {wrong}"


def test_a_skill_warning_can_be_silenced_by_category_alone():
    """The crps fair-one-member warning is an UndefinedMetricWarning (also a RuntimeWarning,
    as numpy's NaN warnings); a filter on SkillWarning leaves it, one on the base silences it."""
    from flexdownscale.metrics import crps_ensemble

    fcst = xr.DataArray(np.array([[1.0], [2.0]]), dims=("point", "member"))
    obs = xr.DataArray(np.array([1.5, 2.5]), dims="point")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=errors.SkillWarning)
        crps_ensemble(fcst, obs, fair=True)
    assert [w.category for w in caught] == [errors.UndefinedMetricWarning]
    assert issubclass(caught[0].category, RuntimeWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=errors.FlexDownscaleWarning)
        crps_ensemble(fcst, obs, fair=True)
    assert caught == []
