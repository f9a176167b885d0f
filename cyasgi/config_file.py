"""``--config FILE`` and ``[tool.cyasgi]`` in ./pyproject.toml: TOML defaults for the command line.

A file only supplies click's ``default_map``, so click keeps its order (command line, then
``CYASGI_*`` variables, then the file, then the built-in defaults) and converts the file's values
with the same types and callbacks as the command line's. ``cyasgi.run()`` and ``Config`` read no file.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from cyasgi.config import STARTUP_FAILURE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

PYPROJECT = "pyproject.toml"
#: The label for errors about pyproject.toml's table (a --config file is named by its path).
PYPROJECT_LABEL = "pyproject.toml [tool.cyasgi]"
#: The key for the APP argument.
APP_KEY = "app"

#: Where the last command line's settings came from (a path, or pyproject.toml's table), for the
#: start-up log line of ``cyasgi.run``; None: no file.
read_from: str | None = None


class ConfigFileError(click.ClickException):
    """A config file that cannot be used: click prints ``Error: <message>``, the exit code is 3."""

    exit_code = STARTUP_FAILURE


def option_keys(command: click.Command) -> dict[str, click.Parameter]:
    """Every key a file may set, kebab-case and snake_case, mapped to its parameter."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if isinstance(param, click.Argument):
            names = [APP_KEY] if param.name == "app" else []
        elif isinstance(param, click.Option) and param.expose_value:
            # --version and --config act at once (eager, no value): not settings.
            names = [opt[2:] for opt in param.opts if opt.startswith("--")]
        else:
            continue
        for name in names:
            keys[name] = param
            keys[name.replace("-", "_")] = param
    return keys


def negated_keys(command: click.Command) -> dict[str, str]:
    """``no-access-log`` -> ``access-log``: the off side of a flag pair is not a key of its own."""
    negated: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.secondary_opts:
            primary = next(opt[2:] for opt in param.opts if opt.startswith("--"))
            for opt in param.secondary_opts:
                negated[opt[2:]] = primary
                negated[opt[2:].replace("-", "_")] = primary
    return negated


def describe(value: Any) -> str:
    """A TOML value as the user wrote it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def expected_kind(param: click.Parameter) -> tuple[str, tuple[type, ...]]:
    """What one value of ``param`` must be in TOML: (words for the message, accepted types)."""
    kind = param.type
    if (isinstance(param, click.Option) and param.is_flag) or isinstance(kind, click.types.BoolParamType):
        return "true or false", (bool,)
    if isinstance(kind, click.types.IntParamType):
        return "an integer", (int,)
    if isinstance(kind, click.types.FloatParamType):
        return "a number", (int, float)
    return "a string", (str,)


def check_value(label: str, key: str, param: click.Parameter, value: Any) -> Any:
    """The file's value for ``param`` if its TOML type fits; click checks the rest (choices, ranges)."""
    words, types = expected_kind(param)
    if param.multiple:
        if isinstance(value, str):
            value = [value]  # one value for a repeatable option, as on the command line
        wrong = f"{label}: '{key}' must be an array of strings, got"
        if not isinstance(value, list):
            raise ConfigFileError(f"{wrong} {describe(value)}")
        for item in value:
            if not isinstance(item, types) or (bool not in types and isinstance(item, bool)):
                raise ConfigFileError(f"{wrong} {describe(item)} in it")
        return value
    # TOML's true is also an int in Python: only a flag takes a boolean.
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        raise ConfigFileError(f"{label}: '{key}' must be {words}, got {describe(value)}")
    return value


def unknown_key_message(
    label: str, key: str, keys: dict[str, click.Parameter], negated: dict[str, str]
) -> str:
    if key in negated:
        return f"{label}: '{key}' is not a key; write '{negated[key]} = false'"
    if key in ("config", "version", "help"):
        return f"{label}: '{key}' cannot be set in a config file"
    kebab = sorted(name for name in keys if "_" not in name)
    close = difflib.get_close_matches(key.replace("_", "-"), kebab, n=1)
    if close:
        return f"{label}: unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"{label}: unknown key '{key}' (the keys are 'app' and the long options of --help, without '--')"


def to_default_map(
    label: str, table: dict[str, Any], command: click.Command
) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's table as click's ``default_map`` (parameter name -> value), checked key by key,
    and the key each parameter was given as."""
    keys = option_keys(command)
    negated = negated_keys(command)
    defaults: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in table.items():
        param = keys.get(key)
        if param is None or param.name is None:
            raise ConfigFileError(unknown_key_message(label, key, keys, negated))
        if param.name in defaults:
            raise ConfigFileError(f"{label}: '{key}' and '{given_as[param.name]}' are the same option")
        defaults[param.name] = check_value(label, key, param, value)
        given_as[param.name] = key
    return defaults, given_as


def parse(path: str, label: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
        # loads(): tomli before 1.2 has no binary load().
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigFileError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{label}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigFileError(f"{label}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 only
        raise ConfigFileError(f"{label}: not valid TOML: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:  # its message ends with "(at line L, column C)"
        raise ConfigFileError(f"{label}: not valid TOML: {exc}") from None


def pyproject_table(document: dict[str, Any], path: str) -> dict[str, Any] | None:
    """``[tool.cyasgi]`` of a pyproject.toml, or None when there is none."""
    tool = document.get("tool")
    if not isinstance(tool, dict) or "cyasgi" not in tool:
        return None
    table = tool["cyasgi"]
    if not isinstance(table, dict):
        raise ConfigFileError(f"{path}: 'tool.cyasgi' must be a table, got {describe(table)}")
    return table


def load(
    path: str | None, command: click.Command
) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """(label, default_map, keys as written) from ``--config PATH``, else from ./pyproject.toml's
    ``[tool.cyasgi]``; None when neither is there.

    A --config file holds the keys at its top level; one named pyproject.toml is read as such.
    """
    if path == "":
        raise ConfigFileError("--config needs a file name")
    if path is not None:
        document = parse(path, path)
        if os.path.basename(path) == PYPROJECT:
            table = pyproject_table(document, path)
            label = f"{path} [tool.cyasgi]"
            if table is None:
                raise ConfigFileError(f"{path}: has no [tool.cyasgi] table")
        else:
            table, label = document, path
    else:
        if not os.path.isfile(PYPROJECT):
            return None
        table = pyproject_table(parse(PYPROJECT, PYPROJECT), PYPROJECT)
        label = PYPROJECT_LABEL
        if table is None:
            return None
    return (label, *to_default_map(label, table, command))


def load_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The eager ``--config`` option: runs before the other options are read, so they see the file."""
    global read_from
    if ctx.resilient_parsing:  # shell completion: never fail, never read files
        return
    read_from = None
    loaded = load(value, ctx.command)
    if loaded is None:
        return
    label, defaults, given_as = loaded
    read_from = label
    ctx.meta["cyasgi.config_file"] = (label, given_as)
    # A default_map given by a caller (tests, an embedding command) keeps its own entries.
    ctx.default_map = {**defaults, **(ctx.default_map or {})}


class ConfigFileCommand(click.Command):
    """A command whose values from the config file fail with the file's name and exit code 3.

    A bad value on the command line or in a ``CYASGI_*`` variable stays click's usage error (exit 2).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            param = exc.param
            if param is None or param.name is None:
                raise
            if ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT_MAP:
                raise
            label, given_as = ctx.meta.get("cyasgi.config_file", ("config file", {}))
            key = given_as.get(param.name, param.name)
            raise ConfigFileError(f"{label}: '{key}': {exc.message}") from None
