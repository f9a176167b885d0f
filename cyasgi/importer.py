"""Turn ``"package.module:attr.attr"`` into the object it names."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(Exception):
    pass


def import_from_string(import_str: Any) -> Any:
    """Return the object named by ``module:attribute``; non-strings are returned unchanged.

    Errors are one-line ``ImportFromStringError`` messages for the user's own mistakes (a missing
    module or attribute, a malformed string). An import that fails *inside* the user's module
    (a nested ``ModuleNotFoundError``, a syntax error) propagates unchanged so its traceback shows.
    """
    if not isinstance(import_str, str):
        return import_str

    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            raise
        raise ImportFromStringError(f'Could not import module "{module_str}".') from None

    instance: Any = module
    try:
        for attr_str in attrs_str.split("."):
            instance = getattr(instance, attr_str)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance
