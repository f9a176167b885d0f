"""The ``cyasgi`` command line: uvicorn 0.54's options, defaults, env vars, exit codes and messages.

Process-level behaviour runs a real ``python -m cyasgi`` subprocess. The option-to-setting mapping
(every option, every env var) is checked in-process with click's runner, which is exact and fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import platform
import re
import socket
import sys
from pathlib import Path
from typing import Any

import click
import click.testing
import httpx
import pytest
from click.testing import CliRunner

import cyasgi
from cyasgi.config import LOGGING_CONFIG, Config
from tests.utils import ROOT, WAIT, run_cli, run_cli_to_exit

# uvicorn's own --help, kept in tests/data so the suite runs anywhere; checked against shared/ when present.
FROM_REFERENCE = ROOT / "tests" / "data" / "uvicorn-0.54-help.txt"
# `cyasgi.main` the attribute is the click command (as in uvicorn); the module is this one.
cli = importlib.import_module("cyasgi.main")

REFERENCE_HELP = [
    ROOT.parent / "shared" / "reference" / "uvicorn-0.54-help.txt",
    Path("/work/shared/reference/uvicorn-0.54-help.txt"),
]


# --help: the same options, defaults and texts as uvicorn ---------------------------------------


def squash(text: str) -> str:
    return " ".join(text.split())


LIMIT_OPTIONS_HELP = """
  --limit-request-head-size INTEGER Maximum size in bytes of a request line and its header fields
    together; a larger request head gets 431. [default: 65536]
  --limit-request-headers INTEGER Maximum number of header fields in a request; more get 431.
    [default: 100]
  --limit-request-body-size INTEGER Maximum size in bytes of a request body; a larger one gets 413
    before the application reads past the limit. Off by default.
  --limit-keep-alive-requests INTEGER Maximum number of requests served on one connection; the last
    response closes it. Off by default.
"""
TIMEOUT_OPTIONS_HELP = """
  --timeout-header-read FLOAT Seconds a client has, from connecting or from the end of the previous
    response, to send a complete request head; after that it gets 408 and the connection is closed.
    0 turns it off. [default: 30.0]
"""
ACCESS_LOG_FORMAT_HELP = """
  --access-log-format [text|json] Access log lines as text (the log config's formatter) or as one JSON
    object per line. [default: text]
"""
SHUTDOWN_OPTIONS_HELP = """
  --shutdown-delay FLOAT Seconds to keep serving after SIGTERM/SIGINT, with --health-path answering
    503, before the graceful shutdown starts (so load balancers notice). [default: 0]
  --health-path TEXT Answer GET/HEAD requests to this path in the server itself: 200, or 503 once
    shutdown has begun. Off by default.
"""
METRICS_OPTIONS_HELP = """
  --metrics-bind HOST:PORT Serve Prometheus metrics on this separate address (with --workers, every
    worker's, added up). Needs cyasgi[metrics]. Off by default.
  --metrics-path TEXT Also answer GET/HEAD requests to this path on the main port with the metrics. Off
    by default.
"""
#: --http2 is uvicorn's flag with cyasgi's own meaning (no --http zttp needed); its tunables follow it.
HTTP2_HELP = """
  --http2 Enable HTTP/2: h2c with prior knowledge on the HTTP/1.1 port, and ALPN h2 with --ssl-*.
"""
HTTP2_OPTIONS_HELP = """
  --http2-max-concurrent-streams INTEGER HTTP/2: streams a client may have open at once; one more is
    refused (REFUSED_STREAM). [default: 100]
  --http2-initial-stream-window-size INTEGER HTTP/2: bytes of request body a stream may send before the
    application reads it. [default: 262144]
  --http2-initial-connection-window-size INTEGER HTTP/2: the same for all the streams of a connection
    together (65535 at least). [default: 1048576]
  --http2-max-frame-size INTEGER HTTP/2: largest frame payload accepted, 16384 to 16777215 bytes.
    [default: 16384]
  --http2-max-header-list-size INTEGER HTTP/2: largest decoded header list of a request, in bytes.
    [default: 65536]
  --http2-keep-alive-interval FLOAT HTTP/2: seconds between PINGs on an idle connection. Off by default.
  --http2-keep-alive-timeout FLOAT HTTP/2: seconds to wait for a PING's answer before closing the
    connection. [default: 20.0]
  --http2-stall-timeout FLOAT HTTP/2: seconds a response may wait for flow-control window before its
    stream is reset. [default: 60.0]
  --http2-max-rapid-resets INTEGER HTTP/2: streams a client may reset on one connection before it is
    closed (ENHANCE_YOUR_CALM). [default: 100]
  --http2-max-empty-data-frames INTEGER HTTP/2: empty DATA frames a client may send on one connection
    before it is closed. [default: 100]
  --http2-max-control-frames INTEGER HTTP/2: SETTINGS, PING, PRIORITY and WINDOW_UPDATE frames a client
    may send in one read before the connection is closed. [default: 1000]
  --http2-max-stream-errors INTEGER HTTP/2: streams the server may reset for a client's errors on one
    connection before it is closed. [default: 1000]
"""
BIND_HELP = """
  --bind ADDRESS Listen on this address: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N. Repeat it for
    several listeners. Replaces the default 127.0.0.1:8000; --host/--port, --uds and --fd, when given,
    add theirs.
"""
CONFIG_HELP = """
  --config FILE Read defaults for these options from a TOML file (keys are the option names, e.g. port =
    8080). Without it, [tool.cyasgi] of ./pyproject.toml is read if present.
"""
NEW_OPTIONS = set(
    re.findall(
        r"--[a-z0-9-]+",
        LIMIT_OPTIONS_HELP
        + TIMEOUT_OPTIONS_HELP
        + ACCESS_LOG_FORMAT_HELP
        + SHUTDOWN_OPTIONS_HELP
        + METRICS_OPTIONS_HELP
        + HTTP2_OPTIONS_HELP,
    )
)
HTTP2_OPTIONS = set(re.findall(r"--[a-z0-9-]+", HTTP2_OPTIONS_HELP))


def test_help_is_uvicorns_help_with_cyasgis_http2_bind_and_config_file():
    reference = FROM_REFERENCE.read_text()
    # run_cli runs `python -m cyasgi`, which click names as such (uvicorn does the same).
    expected = reference.replace("Usage: uvicorn", "Usage: python -m cyasgi").replace("uvicorn", "cyasgi")
    # --loop is uvicorn's, zuvloop included; zttp is accepted but not listed (it runs cyasgi's own
    # HTTP/1.1, as auto).
    assert "--loop [auto|asyncio|uvloop|zuvloop]" in expected
    expected = expected.replace("[auto|h11|httptools|zttp]", "[auto|cyasgi|h11|httptools]")
    # The config file option comes first (docs/settings.md#config-file).
    expected = expected.replace("Options:", "Options: " + squash(CONFIG_HELP), 1)
    # Several listeners, right after uvicorn's one-address options (docs/settings.md#listeners).
    uvicorn_fd = "--fd INTEGER                    Bind to socket from this file descriptor.\n"
    assert uvicorn_fd in expected
    expected = expected.replace(uvicorn_fd, uvicorn_fd + squash(BIND_HELP) + "\n")
    # --http2 is there, with its own text (it needs no --http zttp), and then its tunables.
    uvicorn_http2 = "--http2                         Enable HTTP/2 support. Requires --http zttp.\n"
    assert uvicorn_http2 in expected
    expected = expected.replace(uvicorn_http2, HTTP2_HELP.strip() + "\n" + HTTP2_OPTIONS_HELP.strip() + "\n")
    # cyasgi's one addition, right after --workers (docs/deployment.md).
    expected = expected.replace(
        "Not valid with --reload.",
        "Not valid with --reload. --reuse-port Give each worker its own listening socket with SO_REUSEPORT "
        "(Linux: the kernel spreads new connections evenly over the workers) instead of one socket shared "
        "by all. TCP only.",
    )

    # The request limits of docs/reliability.md, beside uvicorn's own limits and timeouts.
    expected = squash(expected).replace(
        "workers restarting simultaneously. [default: 0]",
        "workers restarting simultaneously. [default: 0] " + squash(LIMIT_OPTIONS_HELP),
    )
    expected = expected.replace(
        "worker to respond to a healthcheck. [default: 5]",
        "worker to respond to a healthcheck. [default: 5] " + squash(TIMEOUT_OPTIONS_HELP),
    )
    # Operable shutdown and JSON access lines (docs/deployment.md, docs/logging.md).
    expected = expected.replace(
        "Enable/Disable access log.", "Enable/Disable access log. " + squash(ACCESS_LOG_FORMAT_HELP)
    )
    expected = expected.replace(
        "wait for graceful shutdown.",
        "wait for graceful shutdown. " + squash(SHUTDOWN_OPTIONS_HELP) + " " + squash(METRICS_OPTIONS_HELP),
    )

    result = run_cli_to_exit("--help")

    assert result.returncode == 0, result.stdout
    assert squash(result.stdout) == squash(expected)


def test_reference_help_copy_is_current():
    """tests/data keeps a copy so the suite runs without shared/; it must match the reference."""
    references = [path for path in REFERENCE_HELP if path.exists()]
    if not references:
        pytest.skip("the shared reference is not on this machine")
    assert FROM_REFERENCE.read_text() == references[0].read_text()


# Every option maps onto run()'s keyword of the same meaning; defaults equal Config's ------------


def option_params() -> list[click.Option]:
    return [
        param
        for param in cli.main.params
        if isinstance(param, click.Option) and param.expose_value
    ]


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(cli, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    return calls


def invoke(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)


def test_cli_defaults_are_configs_defaults(captured_run):
    result = invoke(["tests.apps:hello"])
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = captured_run
    assert args == ("tests.apps:hello",)
    config_defaults = {
        name: param.default for name, param in inspect.signature(Config.__init__).parameters.items() if name != "self"
    }
    # The CLI's own representation of "nothing given" for these three.
    assert kwargs.pop("reload_dirs") is kwargs.pop("reload_includes") is kwargs.pop("reload_excludes") is None
    assert kwargs.pop("headers") == []
    assert kwargs.pop("app_dir") == ""
    assert kwargs["log_config"] is LOGGING_CONFIG
    for name, value in kwargs.items():
        assert value == config_defaults[name], name


def sample(param: click.Option, tmp_path: Path) -> tuple[str, Any]:
    """An env var value for ``param`` other than its default, and what run() should receive."""
    kind = param.type
    if param.name == "headers":
        return "x-one:1 x-two:a:b", [["x-one", "1"], ["x-two", "a:b"]]
    if param.name in ("reload_dirs",):
        return str(tmp_path), (str(tmp_path),)
    if param.name == "bind":  # whitespace and commas both separate (no address form contains either)
        listeners = ["127.0.0.1:9001", "unix:/tmp/app.sock", "[::1]:9002"]
        return "127.0.0.1:9001 unix:/tmp/app.sock,[::1]:9002", listeners
    if param.multiple:
        return "*.txt *.md", ("*.txt", "*.md")
    if param.is_flag:
        value = not param.default if param.default is not None else True
        return ("true" if value else "false"), value
    if isinstance(kind, click.Path):
        path = tmp_path / "settings.ini"
        path.write_text("")
        return str(path), str(path)
    if isinstance(kind, click.Choice) or hasattr(kind, "choices"):
        choice = next(choice for choice in kind.choices if choice != param.default)
        return choice, choice
    if kind is click.INT:
        return "7", 7
    if kind is click.FLOAT:
        return "1.5", 1.5
    if kind is click.BOOL:
        return "false", False
    return "some-text", "some-text"


def test_every_option_is_settable_by_env_var(captured_run, tmp_path):
    params = option_params()
    flags = {opt for param in params for opt in param.opts}
    in_reference = set(re.findall(r"^  (--[a-z0-9-]+)", FROM_REFERENCE.read_text(), re.MULTILINE))
    assert flags == (in_reference - {"--version", "--help"}) | {"--reuse-port", "--bind"} | NEW_OPTIONS
    for param in params:
        env_name = "CYASGI_" + param.name.upper()
        raw, expected = sample(param, tmp_path)
        captured_run.clear()
        result = invoke(["tests.apps:hello"], env={env_name: raw})
        assert result.exit_code == 0, (env_name, result.output)
        [(_args, kwargs)] = captured_run
        key = "log_config" if param.name == "log_config" else param.name
        value = kwargs[key]
        if isinstance(value, tuple) and isinstance(expected, tuple):
            value = tuple(value)
        assert value == expected, (env_name, raw, value)


def test_app_and_flag_override_env(captured_run):
    invoke([], env={"CYASGI_APP": "tests.apps:echo", "CYASGI_PORT": "9000"})
    invoke(["tests.apps:hello", "--port", "9001"], env={"CYASGI_APP": "tests.apps:echo", "CYASGI_PORT": "9000"})
    (args1, kwargs1), (args2, kwargs2) = captured_run
    assert (args1, kwargs1["port"]) == (("tests.apps:echo",), 9000)
    assert (args2, kwargs2["port"]) == (("tests.apps:hello",), 9001)


def test_web_concurrency_and_forwarded_allow_ips_env(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1,10.1.0.0/16")
    config = Config("tests.apps:hello", log_config=None)
    assert config.workers == 3
    assert config.forwarded_allow_ips == "10.0.0.1,10.1.0.0/16"
    explicit = Config("tests.apps:hello", log_config=None, workers=1, forwarded_allow_ips="*")
    assert explicit.workers == 1
    assert explicit.forwarded_allow_ips == "*"


# Env vars in a real process: one process exercises each kind ---------------------------------


def test_env_vars_in_a_real_process(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("CYASGI_TEST_VALUE=from-the-env-file\n")
    env = {
        "CYASGI_APP": "tests.apps:echo",  # the APP argument
        "CYASGI_PORT": "0",
        "CYASGI_LIMIT_MAX_REQUESTS": "2",  # int
        "CYASGI_ACCESS_LOG": "false",  # bool flag pair
        "CYASGI_SERVER_HEADER": "0",
        "CYASGI_LIFESPAN": "off",  # choice
        "CYASGI_HEADERS": "x-one:1 x-two:2",  # multiple
        "CYASGI_ENV_FILE": str(env_file),  # path
        "CYASGI_ROOT_PATH": "/mount",  # text
        "FORWARDED_ALLOW_IPS": "10.0.0.0/8",  # 127.0.0.1 is no longer a trusted proxy
    }
    with run_cli(env=env) as proc:
        url = proc.wait_until_serving()
        with httpx.Client(base_url=url, timeout=WAIT) as client:
            first = client.get("/a", headers={"x-forwarded-for": "203.0.113.7"})
            second = client.get("/b")
        code = proc.wait()
    output = proc.output

    assert first.status_code == second.status_code == 200
    assert "server" not in first.headers
    assert first.headers["x-one"] == "1" and first.headers["x-two"] == "2"
    scope = first.json()
    assert scope["root_path"] == "/mount" and scope["path"] == "/mount/a"
    assert scope["env"] == "from-the-env-file"
    assert scope["client"][0] == "127.0.0.1"  # the forwarded-for header was not trusted
    assert scope["state"] == {}  # lifespan off: the app's startup never ran
    assert "Waiting for application startup" not in output
    assert '"GET /a HTTP/1.1"' not in output  # no access log
    assert "Maximum request limit of 2 exceeded. Terminating process." in output
    assert code == 0


# --version ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("no_extensions", ["", "1"])
def test_version_names_cyasgi_python_and_twin(no_extensions):
    result = run_cli_to_exit("--version", env={"CYASGI_NO_EXTENSIONS": no_extensions})
    assert result.returncode == 0
    line = result.stdout.strip()
    assert "\n" not in line
    assert line.startswith(f"Running cyasgi {cyasgi.__version__} with ")
    assert f"{platform.python_implementation()} {platform.python_version()}" in line
    # The child's own environment decides, not this process's (make test-pure sets the flag here).
    compiled_available = (
        platform.python_implementation() == "CPython" and importlib.util.find_spec("cyasgi._speedups.http") is not None
    )
    if no_extensions or not compiled_available:
        assert "pure twin, cyasgi.protocols.http.protocol" in line
    else:
        assert "compiled twin, cyasgi._speedups.http" in line


# Exit code 3: the server cannot start, said in one line ------------------------------------------


def assert_startup_failure(result: Any, reason: str) -> None:
    assert result.returncode == 3, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert any(reason in line for line in errors), result.stdout


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("tests.no_such_module:app", 'Could not import module "tests.no_such_module".'),
        ("tests.apps:no_such_app", 'Attribute "no_such_app" not found in module "tests.apps".'),
        ("tests.apps:nested.inner.missing", 'Attribute "nested.inner.missing" not found in module "tests.apps".'),
        ("tests.apps", 'Import string "tests.apps" must be in format "<module>:<attribute>".'),
        (":hello", 'Import string ":hello" must be in format "<module>:<attribute>".'),
        ("tests.apps:", 'Import string "tests.apps:" must be in format "<module>:<attribute>".'),
    ],
)
def test_bad_app_exits_3(app, reason):
    result = run_cli_to_exit(app, "--port", "0")
    assert_startup_failure(result, "Error loading ASGI app. " + reason)


def test_port_in_use_exits_3():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli_to_exit("tests.apps:hello", "--port", str(port))
    assert_startup_failure(result, "address already in use")
    assert "Application shutdown complete." in result.stdout  # lifespan was started, so it is shut down


@pytest.mark.parametrize("lifespan", ["on", "auto"])
def test_lifespan_startup_failed_exits_3(lifespan):
    result = run_cli_to_exit("tests.apps:startup_fails", "--port", "0", "--lifespan", lifespan)
    assert_startup_failure(result, "test app: the database is down")
    assert "Application startup failed. Exiting." in result.stdout
    assert " running on " not in result.stdout


def test_lifespan_on_with_raising_startup_exits_3():
    result = run_cli_to_exit("tests.apps:startup_raises", "--port", "0", "--lifespan", "on")
    assert result.returncode == 3
    assert "Application startup failed. Exiting." in result.stdout
    assert "RuntimeError: test app: boom in startup" in result.stdout  # the app's own bug is shown


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--ssl-certfile", "/nonexistent/cert.pem"], "/nonexistent/cert.pem"),
        (["--ssl-keyfile", "/nonexistent/key.pem"], "--ssl-keyfile needs --ssl-certfile"),
        (["--http", "tests.no_such_module:Protocol"], 'Could not import module "tests.no_such_module"'),
        (["--ws", "tests.no_such_module:Protocol"], 'Could not import module "tests.no_such_module"'),
        (["--loop", "tests.no_such_module:factory"], 'Could not import module "tests.no_such_module"'),
        (["--header", "bad name:value"], "Invalid default header name 'bad name'"),
        (["--limit-request-headers", "0"], "--limit-request-headers must be at least 1, not 0."),
        (["--shutdown-delay", "-1"], "--shutdown-delay cannot be negative (-1.0)."),
    ],
)
def test_unusable_settings_exit_3(args, reason):
    result = run_cli_to_exit("tests.apps:hello", "--port", "0", *args)
    assert_startup_failure(result, reason)
    assert "Warning" not in result.stdout  # e.g. no "coroutine was never awaited"


@pytest.mark.skipif(platform.python_implementation() != "PyPy", reason="uvloop runs here: the refusal is PyPy's")
def test_uvloop_is_refused_on_pypy_with_exit_3():
    result = run_cli_to_exit("tests.apps:hello", "--port", "0", "--loop", "uvloop")
    assert_startup_failure(result, "uvloop does not run on PyPy; use --loop asyncio (or auto).")
    assert " running on " not in result.stdout


def test_uvloop_refusal_is_decided_by_the_interpreter(monkeypatch, caplog):
    """The same checks on any interpreter, with PyPy pretended: uvloop is refused with a clear error and
    exit code 3, and ``--loop auto`` picks asyncio."""
    from cyasgi import config as config_module
    from cyasgi.loops import auto

    monkeypatch.setattr(config_module, "IS_PYPY", True)
    monkeypatch.setattr(auto, "IS_PYPY", True)
    with pytest.raises(SystemExit) as exited:
        Config("tests.apps:hello", loop="uvloop", log_config=None).get_loop_factory()
    assert exited.value.code == 3
    assert "uvloop does not run on PyPy; use --loop asyncio (or auto)." in caplog.text
    factory = Config("tests.apps:hello", loop="auto", log_config=None).get_loop_factory()
    assert factory is not None and "asyncio" in factory.__module__


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".ini"])
def test_broken_log_config_exits_3(tmp_path, suffix):
    path = tmp_path / f"logging{suffix}"
    path.write_text("{[ not a config\n")
    result = run_cli_to_exit("tests.apps:hello", "--port", "0", "--log-config", str(path))
    assert result.returncode == 3, result.stdout
    assert "Traceback" not in result.stdout
    assert f"Could not load the logging configuration {str(path)!r}" in result.stdout


# Exit code 2: click's usage message for a bad option value -----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "eighty"], "Invalid value for '--port': 'eighty' is not a valid integer."),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--reload-delay", "soon"], "Invalid value for '--reload-delay': 'soon' is not a valid float."),
        (["--lifespan", "maybe"], "Invalid value for '--lifespan': 'maybe' is not one of 'auto', 'on', 'off'."),
        (["--log-level", "verbose"], "Invalid value for '--log-level'"),
        (["--interface", "cgi"], "Invalid value for '--interface'"),
        (["--http", "h3"], "Invalid value for '--http': 'h3' is not one of 'auto', 'cyasgi', 'h11', 'httptools'"),
        (["--loop", "trio"], "Invalid value for '--loop': 'trio' is not one of 'auto', 'asyncio', 'uvloop'"),
        (["--ws", "socketio"], "Invalid value for '--ws'"),
        (["--ws-per-message-deflate", "maybe"], "'maybe' is not a valid boolean"),
        (["--env-file", "/nonexistent.env"], "Invalid value for '--env-file': Path '/nonexistent.env' does not exist."),
        (["--log-config", "/nonexistent.ini"], "Invalid value for '--log-config'"),
        (["--header", "no-colon"], "Invalid value for '--header': 'no-colon' is not a Name:Value pair."),
        (["--no-such-option"], "No such option"),  # click words the rest differently across versions
    ],
)
def test_bad_option_value_exits_2_with_usage(args, message):
    result = run_cli_to_exit("tests.apps:hello", *args)
    assert result.returncode == 2, result.stdout
    usage = "Usage: python -m cyasgi [OPTIONS] APP\nTry 'python -m cyasgi --help' for help.\n"
    assert result.stdout.startswith(usage)
    assert message in result.stdout
    assert "Traceback" not in result.stdout


def test_missing_app_exits_2():
    result = run_cli_to_exit()
    assert result.returncode == 2
    assert "Error: Missing argument 'APP'." in result.stdout


# --http2, its tunables and --http zttp ----------------------------------------------------------


def test_http2_options_reach_run(captured_run):
    args = [
        "tests.apps:hello",
        "--http", "zttp",
        "--http2",
        "--http2-max-concurrent-streams", "7",
        "--http2-initial-stream-window-size", "1000",
        "--http2-initial-connection-window-size", "70000",
        "--http2-max-frame-size", "32768",
        "--http2-max-header-list-size", "4096",
        "--http2-keep-alive-interval", "2.5",
        "--http2-keep-alive-timeout", "4",
        "--http2-stall-timeout", "9.5",
        "--http2-max-rapid-resets", "11",
        "--http2-max-empty-data-frames", "12",
        "--http2-max-control-frames", "13",
        "--http2-max-stream-errors", "14",
    ]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    [(_args, kwargs)] = captured_run
    assert {name: value for name, value in kwargs.items() if name.startswith("http")} == {
        "http": "zttp",
        "http2": True,
        "http2_max_concurrent_streams": 7,
        "http2_initial_stream_window_size": 1000,
        "http2_initial_connection_window_size": 70000,
        "http2_max_frame_size": 32768,
        "http2_max_header_list_size": 4096,
        "http2_keep_alive_interval": 2.5,
        "http2_keep_alive_timeout": 4.0,
        "http2_stall_timeout": 9.5,
        "http2_max_rapid_resets": 11,
        "http2_max_empty_data_frames": 12,
        "http2_max_control_frames": 13,
        "http2_max_stream_errors": 14,
    }


@pytest.mark.parametrize("raw", ["1", "true", "yes"])
def test_http2_env_var(captured_run, raw):
    invoke(["tests.apps:hello"], env={"CYASGI_HTTP2": raw, "CYASGI_HTTP2_MAX_FRAME_SIZE": "65536"})
    [(_args, kwargs)] = captured_run
    assert kwargs["http2"] is True
    assert kwargs["http2_max_frame_size"] == 65536


def test_http_zttp_is_accepted_but_not_listed(captured_run):
    result = invoke(["tests.apps:hello", "--http", "zttp"])
    assert result.exit_code == 0, result.output
    assert captured_run[0][1]["http"] == "zttp"
    assert "zttp" not in invoke(["--help"]).output


@pytest.mark.parametrize(("option", "hidden"), [("--ws", "none"), ("--loop", "none")])
def test_none_is_accepted_but_not_listed(captured_run, option, hidden):
    result = invoke(["tests.apps:hello", option, hidden])
    assert result.exit_code == 0, result.output
    assert captured_run[0][1][option[2:]] == hidden
    [line] = [line for line in invoke(["--help"]).output.splitlines() if line.startswith(f"  {option} [")]
    assert hidden not in line.split("[", 1)[1].split("]", 1)[0].split("|")


ZUVLOOP_MISSING = "--loop zuvloop needs the zuvloop package (Python 3.14+); install it or use --loop"


@pytest.mark.skipif(importlib.util.find_spec("zuvloop") is not None, reason="zuvloop is installed here")
@pytest.mark.parametrize("mode", [[], ["--workers", "2"]])
def test_zuvloop_without_the_package_exits_3(mode):
    """uvicorn 0.54's --loop zuvloop is listed and accepted; without the package (it needs Python 3.14+)
    it is one error line and exit 3, also with --workers (said once by the parent, no worker started)."""
    result = run_cli_to_exit("tests.apps:hello", "--port", "0", "--loop", "zuvloop", *mode)
    assert_startup_failure(result, ZUVLOOP_MISSING)
    assert result.stdout.count(ZUVLOOP_MISSING) == 1
    assert " running on " not in result.stdout


def test_zuvloop_factory_is_the_packages(monkeypatch):
    """Where zuvloop imports, --loop zuvloop hands its new_event_loop to the server."""
    import types

    fake = types.ModuleType("zuvloop")
    fake.new_event_loop = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zuvloop", fake)
    sys.modules.pop("cyasgi.loops.zuvloop", None)
    try:
        factory = Config("tests.apps:hello", loop="zuvloop", log_config=None).get_loop_factory()
    finally:
        sys.modules.pop("cyasgi.loops.zuvloop", None)  # it holds the fake
    assert factory is fake.new_event_loop


@pytest.mark.parametrize("args", [["--http2"], ["--http", "zttp"], ["--http", "zttp", "--http2"]])
def test_uvicorn_http2_command_lines_start_and_serve_http11(args):
    """uvicorn 0.54's `--http zttp --http2` starts, and HTTP/1.1 clients are still served on the port."""
    with run_cli("tests.apps:hello", "--port", "0", "--lifespan", "off", *args) as proc:
        url = proc.wait_until_serving()
        response = httpx.get(url, timeout=WAIT)
    assert response.status_code == 200
    assert response.text == "hello"
    assert "ERROR" not in proc.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--http2-max-concurrent-streams", "0"], "--http2-max-concurrent-streams must be at least 1, not 0."),
        (
            ["--http2-max-frame-size", "1024"],
            "--http2-max-frame-size must be between 16384 and 16777215, not 1024.",
        ),
        (
            ["--http2-initial-connection-window-size", "100"],
            "--http2-initial-connection-window-size must be between 65535 and 2147483647, not 100.",
        ),
        (["--http2-stall-timeout", "0"], "--http2-stall-timeout must be a positive number of seconds, not 0.0."),
    ],
)
def test_out_of_range_http2_settings_exit_3(args, reason):
    """Out of range, like --limit-request-headers 0: one ERROR line naming the flag, exit 3."""
    result = run_cli_to_exit("tests.apps:hello", "--port", "0", "--http2", *args)
    assert_startup_failure(result, reason)
    assert " running on " not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--http2-max-frame-size", "big"],
            "Invalid value for '--http2-max-frame-size': 'big' is not a valid integer.",
        ),
        (
            ["--http2-keep-alive-interval", "often"],
            "Invalid value for '--http2-keep-alive-interval': 'often' is not a valid float.",
        ),
    ],
)
def test_http2_settings_of_the_wrong_type_exit_2(args, message):
    result = run_cli_to_exit("tests.apps:hello", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stdout


# A normal start and stop -----------------------------------------------------------------------


def test_serves_and_logs_like_uvicorn():
    with run_cli("tests.apps:echo", "--port", "0", "--header", "x-custom:a: b") as proc:
        url = proc.wait_until_serving()
        response = httpx.get(url + "/p?q=1", timeout=WAIT)
        proc.wait_for_line('"GET /p?q=1 HTTP/1.1" 200')
    lines = proc.output.splitlines()
    assert response.status_code == 200
    assert response.headers["x-custom"] == "a: b"  # split on the first colon only, value kept as is
    assert json.loads(response.text)["state"] == {"started": "yes"}
    assert re.fullmatch(r"INFO:     Started server process \[\d+\]", lines[0])
    assert "INFO:     Waiting for application startup." in lines
    assert "INFO:     Application startup complete." in lines
    assert re.search(r"INFO:     cyasgi running on http://127\.0\.0\.1:\d+ \(Press CTRL\+C to quit\)", proc.output)
    assert re.search(r'INFO:     127\.0\.0\.1:\d+ - "GET /p\?q=1 HTTP/1\.1" 200 OK', proc.output)
    tail = [line for line in lines if "Shutting down" in line or "shutdown" in line or "Finished" in line]
    assert tail == [
        "INFO:     Shutting down",
        "INFO:     Waiting for application shutdown.",
        "INFO:     test app: lifespan shutdown ran",
        "INFO:     Application shutdown complete.",
        tail[-1],
    ]
    assert re.fullmatch(r"INFO:     Finished server process \[\d+\]", lines[-1])


def test_app_dir(tmp_path):
    app_dir = tmp_path / "project"
    app_dir.mkdir()
    (app_dir / "cli_dir_app.py").write_text("from tests.apps import hello as app\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(ROOT)}  # for tests.apps; the app module itself is only in --app-dir
    with run_cli("cli_dir_app:app", "--port", "0", "--app-dir", str(app_dir), env=env, cwd=elsewhere) as proc:
        url = proc.wait_until_serving()
        assert httpx.get(url, timeout=WAIT).text == "hello"
    result = run_cli_to_exit("cli_dir_app:app", "--port", "0", env=env, cwd=elsewhere)
    assert_startup_failure(result, 'Could not import module "cli_dir_app".')


@pytest.mark.parametrize(("flag", "coloured"), [("--use-colors", True), ("--no-use-colors", False), (None, False)])
def test_colours_flag(flag, coloured):
    args = ["tests.apps:hello", "--port", "0", "--lifespan", "off"] + ([flag] if flag else [])
    with run_cli(*args) as proc:  # output is a pipe, not a TTY: colours only when asked for
        url = proc.wait_until_serving()
        httpx.get(url, timeout=WAIT)
        proc.wait_for_line("GET / HTTP/1.1")
    assert ("\x1b[32mINFO\x1b[0m:" in proc.output) is coloured
    assert ("\x1b[" in proc.output) is coloured


def test_bad_web_concurrency_exits_3():
    result = run_cli_to_exit("tests.apps:hello", env={"WEB_CONCURRENCY": "many"})
    assert_startup_failure(result, "WEB_CONCURRENCY must be a number of workers, not 'many'.")
