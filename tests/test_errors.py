from __future__ import annotations

import inspect

import pytest

from flexdownscale import errors


def _error_classes():
    return [
        obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__
    ]


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
