"""Config: app loading, interface detection, env files, logging configuration, default headers."""

from __future__ import annotations

import functools
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from cyasgi.config import LOGGING_CONFIG, Config, ConfigError, _detect_interface
from cyasgi.importer import ImportFromStringError, import_from_string
from cyasgi.logging import TRACE_LOG_LEVEL, AccessFormatter, DefaultFormatter
from cyasgi.middleware.asgi2 import ASGI2Middleware
from cyasgi.middleware.message_logger import MessageLoggerMiddleware
from cyasgi.middleware.proxy_headers import ProxyHeadersMiddleware
from cyasgi.middleware.wsgi import WSGIMiddleware
from tests import apps
from tests.utils import make_config


def loaded(app: Any, **kwargs: Any) -> Config:
    config = make_config(app, **kwargs)
    config.load()
    return config


def inner_app(config: Config) -> Any:
    """The app under the proxy-headers wrapper Config.load adds by default."""
    app = config.loaded_app
    assert isinstance(app, ProxyHeadersMiddleware)
    return app.app


# Import strings ----------------------------------------------------------------------------------


def test_import_string_with_dotted_attributes():
    assert import_from_string("tests.apps:hello") is apps.hello
    assert import_from_string("tests.apps:nested.inner.app") is apps.hello
    assert import_from_string(apps.hello) is apps.hello  # a non-string is the app itself


@pytest.mark.parametrize(
    ("import_str", "message"),
    [
        ("tests.missing_module:app", 'Could not import module "tests.missing_module".'),
        ("tests.apps:missing", 'Attribute "missing" not found in module "tests.apps".'),
        ("tests.apps:nested.missing", 'Attribute "nested.missing" not found in module "tests.apps".'),
        ("tests.apps", 'Import string "tests.apps" must be in format "<module>:<attribute>".'),
        ("tests.apps:", 'Import string "tests.apps:" must be in format "<module>:<attribute>".'),
        (":app", 'Import string ":app" must be in format "<module>:<attribute>".'),
    ],
)
def test_import_string_errors(import_str, message):
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(import_str)
    assert str(info.value) == message


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A directory on sys.path for modules a test writes; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_nested_module_not_found_is_reraised_unchanged(module_dir):
    (module_dir / "broken_app.py").write_text("import module_that_is_not_installed\napp = None\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("broken_app:app")
    assert info.type is ModuleNotFoundError
    assert info.value.name == "module_that_is_not_installed"


def test_missing_submodule_of_existing_package_is_a_clear_error():
    with pytest.raises(ImportFromStringError, match='Could not import module "tests.nope.deeper"'):
        import_from_string("tests.nope.deeper:app")


def test_bad_import_string_exits_3_with_one_line(caplog):
    config = make_config("tests.apps:missing")
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == 3
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        'Error loading ASGI app. Attribute "missing" not found in module "tests.apps".'
    ]


# Factories -----------------------------------------------------------------------------------------


def test_factory_flag_calls_the_factory(caplog):
    config = loaded("tests.apps:create_app", factory=True)
    assert inner_app(config) is apps.echo
    assert "factory detected" not in caplog.text


def test_factory_without_flag_is_used_with_a_warning(caplog):
    config = loaded("tests.apps:create_app")
    assert inner_app(config) is apps.echo
    assert "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly." in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]


def test_factory_flag_on_a_plain_app_exits_3(caplog):
    config = make_config("tests.apps:hello", factory=True)
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == 3
    assert "Error loading ASGI app factory:" in caplog.text


def test_plain_app_is_not_mistaken_for_a_factory(caplog):
    config = loaded(apps.hello)
    assert inner_app(config) is apps.hello
    assert "factory" not in caplog.text


# Interfaces ----------------------------------------------------------------------------------------


class Asgi3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await apps.hello(scope, receive, send)


class AwaitableClass:
    """A class whose instances are awaitable: ASGI3 by uvicorn's rule."""

    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        self.args = (scope, receive, send)

    def __await__(self) -> Any:
        return apps.hello(*self.args).__await__()


class WsgiCallable:
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return apps.wsgi_app(environ, start_response)


def decorated(func: Any) -> Any:
    @functools.wraps(func)
    async def wrapper(*args: Any) -> None:
        await func(*args)

    return wrapper


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (apps.hello, "asgi3"),
        (Asgi3Instance(), "asgi3"),
        (AwaitableClass, "asgi3"),
        (decorated(apps.hello), "asgi3"),
        (functools.partial(apps.lifespan, state=None), "asgi3"),
        (Starlette(), "asgi3"),
        (apps.ASGI2App, "asgi2"),
        (apps.asgi2_function, "asgi2"),
        (apps.wsgi_app, "wsgi"),
        (WsgiCallable(), "wsgi"),
    ],
)
def test_interface_detection(app, interface):
    assert _detect_interface(app) == interface
    config = loaded(app)
    assert config.interface == interface
    assert config.asgi_version == ("2.0" if interface == "asgi2" else "3.0")
    wrapper = {"asgi3": type(None), "asgi2": ASGI2Middleware, "wsgi": WSGIMiddleware}[interface]
    if interface == "asgi3":
        assert inner_app(config) is app
    else:
        assert isinstance(inner_app(config), wrapper)


def test_explicit_interface_wins_over_detection():
    config = loaded(apps.wsgi_app, interface="asgi2")
    assert isinstance(inner_app(config), ASGI2Middleware)
    config = loaded(apps.hello, interface="wsgi")
    assert isinstance(inner_app(config), WSGIMiddleware)
    assert config.ws_protocol_class is None  # no WebSockets for a WSGI app


# Env files ------------------------------------------------------------------------------------------


def test_env_file_sets_unset_variables_only(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("CYASGI_TEST_NEW=from-file\nCYASGI_TEST_KEPT=from-file\n")
    for name in ("CYASGI_TEST_NEW", "CYASGI_TEST_KEPT"):
        monkeypatch.setenv(name, "x")  # so monkeypatch removes them again afterwards
    monkeypatch.delenv("CYASGI_TEST_NEW")
    monkeypatch.setenv("CYASGI_TEST_KEPT", "from-environment")

    make_config(apps.hello, env_file=env_file)

    import os

    assert os.environ["CYASGI_TEST_NEW"] == "from-file"
    assert os.environ["CYASGI_TEST_KEPT"] == "from-environment"


def test_env_file_can_set_web_concurrency_and_forwarded_allow_ips(tmp_path, monkeypatch):
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    env_file = tmp_path / ".env"
    env_file.write_text("WEB_CONCURRENCY=4\nFORWARDED_ALLOW_IPS=10.0.0.0/8\n")
    config = make_config(apps.hello, env_file=str(env_file))
    assert config.workers == 4
    assert config.forwarded_allow_ips == "10.0.0.0/8"


# Logging configuration ----------------------------------------------------------------------------


def file_logging_dict(log_file: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "custom %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}},
        "loggers": {"uvicorn.error": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }


def as_yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config)


def as_ini(log_file: Path) -> str:
    return textwrap.dedent(
        f"""\
        [loggers]
        keys=root,error

        [handlers]
        keys=file

        [formatters]
        keys=plain

        [logger_root]
        level=WARNING
        handlers=

        [logger_error]
        level=INFO
        handlers=file
        propagate=0
        qualname=uvicorn.error

        [handler_file]
        class=FileHandler
        formatter=plain
        args=({str(log_file)!r},)

        [formatter_plain]
        format=custom %(name)s %(levelname)s %(message)s
        """
    )


@pytest.mark.parametrize("kind", ["ini", "json", "yaml", "yml", "dict", "pathlike"])
def test_log_config_formats(tmp_path, kind):
    log_file = tmp_path / "server.log"
    as_dict = file_logging_dict(log_file)
    source: Any
    if kind == "dict":
        source = as_dict
    else:
        suffix = "json" if kind == "pathlike" else kind
        path = tmp_path / f"logging.{suffix}"
        text = {"ini": as_ini(log_file), "yaml": as_yaml(as_dict), "yml": as_yaml(as_dict)}.get(suffix)
        path.write_text(text if text is not None else json.dumps(as_dict))
        source = path if kind == "pathlike" else str(path)

    Config(apps.hello, log_config=source)
    logger = logging.getLogger("uvicorn.error")
    logger.info("hello from %s", kind)
    for handler in logger.handlers:
        handler.flush()
        handler.close()

    assert log_file.read_text() == f"custom uvicorn.error INFO hello from {kind}\n"


def test_log_config_dict_is_not_modified_by_use_colors():
    config = json.loads(json.dumps(LOGGING_CONFIG))
    Config(apps.hello, log_config=config, use_colors=False)
    assert config == LOGGING_CONFIG
    assert "use_colors" not in config["formatters"]["access"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("critical", 50), ("error", 40), ("warning", 30), ("info", 20), ("debug", 10), ("trace", 5),
        ("DEBUG", 10), (15, 15),
    ],
)
def test_log_levels(level, expected):
    Config(apps.hello, log_config=None, log_level=level)
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        assert logging.getLogger(name).level == expected
    assert logging.getLevelName(TRACE_LOG_LEVEL) == "TRACE"


def test_unknown_log_level_is_a_config_error():
    with pytest.raises(ConfigError, match="Unknown log level 'verbose'"):
        Config(apps.hello, log_config=None, log_level="verbose")


def test_trace_level_wraps_the_app_in_the_message_logger():
    config = loaded(apps.hello, log_level="trace")
    assert isinstance(inner_app(config), MessageLoggerMiddleware)
    config = loaded(apps.hello, log_level="debug")
    assert inner_app(config) is apps.hello


def test_default_logging_config_installs_uvicorn_loggers():
    Config(apps.hello)
    error, access = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")
    root = logging.getLogger("uvicorn")
    assert [type(h.formatter) for h in root.handlers] == [DefaultFormatter]
    assert [type(h.formatter) for h in access.handlers] == [AccessFormatter]
    assert error.getEffectiveLevel() == logging.INFO
    assert not access.propagate


def test_access_log_off_removes_access_handlers():
    Config(apps.hello, access_log=False)
    access = logging.getLogger("uvicorn.access")
    assert access.handlers == []
    assert not access.propagate
    assert not access.hasHandlers()


# Colours ---------------------------------------------------------------------------------------------


def info_record(msg: str = "Started", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_colours_on_and_off():
    coloured = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=True)
    plain = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)
    assert coloured.format(info_record()) == "\x1b[32mINFO\x1b[0m:     Started"
    assert plain.format(info_record()) == "INFO:     Started"
    # A record's color_message is used only with colours.
    record = info_record("plain %s", color_message="coloured %s")
    record.args = ("x",)
    assert coloured.format(record).endswith(" coloured x")
    assert plain.format(record).endswith(" plain x")


def test_colours_follow_the_tty(monkeypatch):
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stderr", Stream(True))
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert DefaultFormatter().use_colors is True  # stderr
    assert AccessFormatter().use_colors is False  # stdout
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert DefaultFormatter().use_colors is False


def test_use_colors_setting_reaches_the_formatters():
    for setting in (True, False):
        Config(apps.hello, use_colors=setting)
        handlers = logging.getLogger("uvicorn").handlers + logging.getLogger("uvicorn.access").handlers
        assert [h.formatter.use_colors for h in handlers] == [setting, setting]  # type: ignore[attr-defined]


# Access log format ---------------------------------------------------------------------------------


def access_record(*args: Any) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_access_format():
    fmt = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    formatter = AccessFormatter(fmt, use_colors=False)
    line = formatter.format(access_record("127.0.0.1:5000", "GET", "/path?q", "1.1", 200))
    assert line == 'INFO:     127.0.0.1:5000 - "GET /path?q HTTP/1.1" 200 OK'
    assert formatter.format(access_record("[::1]:1", "POST", "/", "1.0", 599)).endswith('"POST / HTTP/1.0" 599 ')


def test_access_format_escapes_control_characters():
    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    line = formatter.format(access_record("1.2.3.4:5\n", "GET", "/a\x1b[31mred\r\nINFO: forged", "1.1", 404))
    assert line == '1.2.3.4:5\\x0a - "GET /a\\x1b[31mred\\x0d\\x0aINFO: forged HTTP/1.1" 404 Not Found'
    assert "\n" not in line and "\x1b" not in line


def test_access_format_colours():
    formatter = AccessFormatter('%(request_line)s %(status_code)s', use_colors=True)
    line = formatter.format(access_record("c", "GET", "/", "1.1", 500))
    assert line == "\x1b[1mGET / HTTP/1.1\x1b[0m \x1b[91m500 Internal Server Error\x1b[0m"


# Default headers, misc (HTTP/2: test_http2_settings.py) --------------------------------------------


def test_headers_are_encoded_lowercase_with_server_first():
    config = loaded(apps.hello, headers=[("X-Custom", "A: b"), ("X-Other", "2")])
    assert config.encoded_headers == [(b"server", b"cyasgi"), (b"x-custom", b"A: b"), (b"x-other", b"2")]


def test_custom_server_header_replaces_the_default():
    config = loaded(apps.hello, headers=[("Server", "mine")])
    assert config.encoded_headers == [(b"server", b"mine")]
    config = loaded(apps.hello, server_header=False)
    assert config.encoded_headers == []


@pytest.mark.parametrize(
    "header", [("Bad Name", "v"), ("X-Split", "a\r\nSet-Cookie: x"), ("", "v"), ("X-Nul", "a\x00")]
)
def test_invalid_default_headers_are_refused(header):
    config = make_config(apps.hello, headers=[header])
    with pytest.raises(ConfigError):
        config.load()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_parser_whose_package_is_missing_is_refused_at_start_up(monkeypatch, http):
    """httptools is not a dependency on PyPy: --http httptools there without it is a clear error."""
    from cyasgi.protocols.http import foreign as parsers

    monkeypatch.setitem(parsers.PARSER_PACKAGES, http, "cyasgi_tests_no_such_package")
    with pytest.raises(ConfigError, match=f"--http {http} needs the 'cyasgi_tests_no_such_package' package"):
        make_config(apps.hello, http=http).load()
    make_config(apps.hello, http="auto").load()  # auto never needs it


def test_forwarded_allow_ips_default(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert make_config(apps.hello).forwarded_allow_ips == "127.0.0.1,::1"


def test_workers_default(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert make_config(apps.hello).workers == 1
    assert make_config(apps.hello, workers=0).workers == 1  # uvicorn's "workers or 1"


def test_setup_event_loop_is_gone():
    with pytest.raises(AttributeError, match="get_loop_factory"):
        make_config(apps.hello).setup_event_loop()


def test_app_taking_any_arguments_is_not_mistaken_for_a_factory(caplog):
    app = decorated(apps.hello)  # (*args): callable with no arguments, returns a coroutine
    config = loaded(app)
    assert inner_app(config) is app
    assert "factory" not in caplog.text


def test_async_factory_is_refused(caplog):
    async def create() -> Any:
        return apps.hello

    config = make_config(create, factory=True)
    with pytest.raises(SystemExit) as info:
        config.load()
    assert info.value.code == 3
    assert "factories must be sync" in caplog.text


# bind_socket (the parent's socket for --workers / --reload) ---------------------------------------


def test_bind_socket_failure_exits_3(caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = make_config(apps.hello, port=taken.getsockname()[1])
        with pytest.raises(SystemExit) as info:
            config.bind_socket()
    assert info.value.code == 3
    assert "Address already in use" in caplog.text or "address already in use" in caplog.text


def test_bind_socket_uds_and_port_0(tmp_path, caplog):
    import os
    import stat

    caplog.set_level(logging.INFO)
    path = tmp_path / "bound.sock"
    with make_config(apps.hello, uds=str(path)).bind_socket() as sock:
        assert sock.get_inheritable()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    with make_config(apps.hello).bind_socket() as sock:
        port = sock.getsockname()[1]
    assert f"cyasgi running on unix socket {path} (Press CTRL+C to quit)" in caplog.messages
    assert f"cyasgi running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in caplog.messages


def test_missing_env_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        make_config(apps.hello, env_file=tmp_path / "missing.env")


@pytest.mark.parametrize(("value", "workers"), [("3", 3), ("0", 1), ("many", None)])
def test_web_concurrency_values(monkeypatch, value, workers):
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    if workers is None:
        with pytest.raises(ConfigError, match="WEB_CONCURRENCY must be a number of workers, not 'many'"):
            make_config(apps.hello)
    else:
        assert make_config(apps.hello).workers == workers


# Error types: uvicorn's, so that `except` clauses written for it still catch ------------------------


@pytest.mark.parametrize(
    ("settings", "kind", "message"),
    [
        ({"log_level": "verbose"}, KeyError, "Unknown log level 'verbose'; use one of critical, "),
        ({"log_config": "/nonexistent/logging.json"}, FileNotFoundError, "/nonexistent/logging.json"),
        ({"env_file": "/nonexistent/.env"}, ValueError, "does not exist"),
    ],
)
def test_config_errors_are_uvicorns_types(settings, kind, message):
    with pytest.raises(kind) as info:
        Config(apps.hello, **settings)
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith(message) or message in str(info.value)  # no KeyError quotes around it


def test_broken_log_config_keeps_the_builtin_type_of_the_error(tmp_path):
    path = tmp_path / "logging.json"
    path.write_text("{[ not json")
    with pytest.raises(ValueError, match="Could not load the logging configuration") as info:  # JSONDecodeError's
        Config(apps.hello, log_config=str(path))
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({"http": "tests.no_such_module:Protocol"}, ImportFromStringError),
        ({"ws": "tests.apps:no_such_protocol"}, ImportFromStringError),
        ({"headers": [("x-snowman", "\u2603")]}, ValueError),
    ],
)
def test_load_errors_are_uvicorns_types(settings, kind):
    with pytest.raises(kind) as info:
        make_config(apps.hello, **settings).load()
    assert isinstance(info.value, ConfigError)
    assert "\n" not in str(info.value)


def test_missing_parser_package_is_a_module_not_found_error(monkeypatch):
    from cyasgi.protocols.http import foreign as parsers

    monkeypatch.setitem(parsers.PARSER_PACKAGES, "httptools", "cyasgi_tests_no_such_package")
    with pytest.raises(ModuleNotFoundError, match="needs the 'cyasgi_tests_no_such_package' package"):
        make_config(apps.hello, http="httptools").load()


def test_config_errors_of_other_types_pickle_as_themselves():
    import pickle

    from cyasgi.config import config_error

    error = config_error("no certificate", RuntimeError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert isinstance(copy, RuntimeError) and isinstance(copy, ConfigError)
    assert str(copy) == "no certificate"


def test_resolve_reload_patterns_takes_uvicorns_keywords(tmp_path, monkeypatch):
    from cyasgi.config import resolve_reload_patterns

    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    patterns, directories = resolve_reload_patterns(patterns_list=["*.py", "src"], directories_list=[])
    assert patterns == ["*.py", "src"]
    assert directories == [(tmp_path / "src").resolve()]
