"""``--config FILE`` and ``[tool.cyasgi]`` in ./pyproject.toml (docs/settings.md#config-file).

Real ``python -m cyasgi`` processes for serving, the order of precedence and every error path; the
key-to-option mapping of every option is checked in-process with click's runner (exact and fast).
"""

from __future__ import annotations

import importlib
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from tests.utils import ROOT, WAIT, run_cli, run_cli_to_exit

cli = importlib.import_module("cyasgi.main")

#: For a process run outside the repository (a pyproject.toml of its own): tests.apps still imports.
ROOT_ON_PATH = {"PYTHONPATH": str(ROOT)}


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip())
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_value_only_run_refuses_names_the_file(tmp_path):
    write(tmp_path / "config.toml", 'metrics-bind = "unix:/tmp/m.sock"\n')
    result = run_cli_to_exit("tests.apps:hello", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 3, result.stdout
    assert "--metrics-bind 'unix:/tmp/m.sock': expected HOST:PORT or [IPV6]:PORT (settings read from config.toml)" in (
        result.stdout
    )
    assert "Traceback" not in result.stdout


# A real server configured by a file ------------------------------------------------------------


def test_config_file_sets_app_host_port_and_more(tmp_path):
    port = free_port()
    config = write(
        tmp_path / "cyasgi.toml",
        f"""
app = "tests.apps:echo"
host = "127.0.0.1"
port = {port}
lifespan = "off"
header = ["x-from-file:1", "x-also:2"]
server-header = false
access_log = false
root-path = "/mounted"
""",
    )
    with run_cli("--config", str(config)) as proc:
        url = proc.wait_until_serving()
        response = httpx.get(url + "/p", timeout=WAIT)
    assert url == f"http://127.0.0.1:{port}"
    assert response.status_code == 200
    assert response.headers["x-from-file"] == "1" and response.headers["x-also"] == "2"
    assert "server" not in response.headers
    assert response.json()["root_path"] == "/mounted"
    assert "Waiting for application startup" not in proc.output  # lifespan off
    assert '"GET ' not in proc.output  # no access log
    assert f"Settings read from {config}" in proc.output


def test_pyproject_tool_cyasgi_of_the_working_directory_is_read(tmp_path):
    write(
        tmp_path / "pyproject.toml",
        """
[project]
name = "someone-elses-app"

[tool.cyasgi]
app = "tests.apps:hello"
port = 0
lifespan = "off"
header = "x-from:pyproject"
""",
    )
    with run_cli(env=ROOT_ON_PATH, cwd=tmp_path) as proc:
        url = proc.wait_until_serving()
        response = httpx.get(url, timeout=WAIT)
    assert response.text == "hello"
    assert response.headers["x-from"] == "pyproject"
    assert "Settings read from pyproject.toml [tool.cyasgi]" in proc.output


def test_command_line_beats_env_beats_file_beats_defaults(tmp_path):
    with socket.socket() as taken:  # the file's port is busy: the server starts only if the CLI's wins
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        config = write(
            tmp_path / "cyasgi.toml",
            f"""
app = "tests.apps:echo"
port = {busy}
root-path = "/file"
header = ["x-source:file"]
server-header = false
lifespan = "off"
""",
        )
        env = {"CYASGI_ROOT_PATH": "/env", "CYASGI_HEADERS": "x-source:env"}
        with run_cli("--config", str(config), "--port", "0", "--root-path", "/cli", env=env) as proc:
            url = proc.wait_until_serving()
            response = httpx.get(url + "/p", timeout=WAIT)
    assert not url.endswith(f":{busy}")
    assert response.json()["root_path"] == "/cli"  # command line > env > file
    assert response.headers["x-source"] == "env"  # env > file
    assert "server" not in response.headers  # file > default


def test_config_file_named_by_the_env_var_and_preferred_over_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.cyasgi]\napp = "tests.apps:no_such_app"\n')
    write(tmp_path / "serve.toml", 'app = "tests.apps:hello"\nport = 0\nlifespan = "off"\n')
    env = {**ROOT_ON_PATH, "CYASGI_CONFIG": "serve.toml"}
    with run_cli(env=env, cwd=tmp_path) as proc:
        url = proc.wait_until_serving()
        assert httpx.get(url, timeout=WAIT).text == "hello"


# Every error path: exit code 3, one line naming the file and the key -----------------------------
# A few in real processes (the exit status and the output a shell sees), the variants in-process.


def assert_config_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 3, result.stdout
    assert result.stdout == f"Error: {message}\n"


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in this process (click's runner) from ``cwd``; run() itself is not called."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(cli, "run", lambda *args, **kwargs: None)
    result = CliRunner().invoke(cli.main, list(args), env=env)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.output)


IN_PROCESS_CASES = [
    (
        "http2_max_frame_sise = 32768\n",
        "unknown key 'http2_max_frame_sise' (did you mean 'http2-max-frame-size'?)",
    ),
    (
        "bananas = 1\n",
        "unknown key 'bananas' (the keys are 'app' and the long options of --help, without '--')",
    ),
    ("workers = 2\nWorkers = 3\n", "unknown key 'Workers' (did you mean 'workers'?)"),
    ("no-access-log = true\n", "'no-access-log' is not a key; write 'access-log = false'"),
    ("config = 'other.toml'\n", "'config' cannot be set in a config file"),
    ("reload-dir = ['.']\nreload_dir = ['.']\n", "'reload_dir' and 'reload-dir' are the same option"),
    ("port = true\n", "'port' must be an integer, got true"),
    ("reload-delay = 'soon'\n", "'reload-delay' must be a number, got 'soon'"),
    ("reload = 'yes'\n", "'reload' must be true or false, got 'yes'"),
    ("host = 127\n", "'host' must be a string, got 127"),
    ("header = [1]\n", "'header' must be an array of strings, got 1 in it"),
    ("reload-dir = {a = 1}\n", "'reload-dir' must be an array of strings, got a table"),
    ("port = 70000\n", "'port': 70000 is not a TCP port (0 to 65535)."),
    ("header = ['no-colon']\n", "'header': 'no-colon' is not a Name:Value pair."),
    ("env_file = '/nonexistent.env'\n", "'env_file': Path '/nonexistent.env' does not exist."),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wokers = 2\n", "unknown key 'wokers' (did you mean 'workers'?)"),
        ("port = 'abc'\n", "'port' must be an integer, got 'abc'"),
        ("lifespan = 'maybe'\n", "'lifespan': 'maybe' is not one of 'auto', 'on', 'off'."),
    ],
)
def test_bad_config_file_exits_3_naming_file_and_key(tmp_path, text, message):
    write(tmp_path / "config.toml", text)
    result = run_cli_to_exit("tests.apps:hello", "--config", "config.toml", cwd=tmp_path)
    assert_config_error(result, f"config.toml: {message}")
    assert "Usage:" not in result.stdout  # not a command-line mistake


@pytest.mark.parametrize(("text", "message"), IN_PROCESS_CASES)
def test_every_bad_key_and_value(monkeypatch, tmp_path, text, message):
    write(tmp_path / "config.toml", text)
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello", "--config", "config.toml")
    assert_config_error(result, f"config.toml: {message}")


def test_unparsable_config_file_exits_3_with_line_and_column(tmp_path):
    write(tmp_path / "config.toml", "port = 8000\nhost = \n")
    result = run_cli_to_exit("tests.apps:hello", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 3, result.stdout
    [line] = result.stdout.splitlines()
    # The parser's own words (they vary across tomllib/tomli versions), then where.
    assert line.startswith("Error: config.toml: not valid TOML: ") and line.endswith("(at line 2, column 8)")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("workers = 2\nworkers = 3\n", "(at line 2, column 12)"),  # a key given twice
        ("[tool.cyasgi\n", "(at line 1, column 13)"),
    ],
)
def test_unparsable_variants(monkeypatch, tmp_path, text, where):
    write(tmp_path / "config.toml", text)
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello", "--config", "config.toml")
    assert result.returncode == 3, result.stdout
    [line] = result.stdout.splitlines()
    assert line.startswith("Error: config.toml: not valid TOML: ") and line.endswith(where), line


def test_config_file_that_is_not_utf8_exits_3(monkeypatch, tmp_path):
    (tmp_path / "config.toml").write_bytes(b'host = "\xff"\n')
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello", "--config", "config.toml")
    assert_config_error(result, "config.toml: not valid TOML: not UTF-8 (byte 8)")


def test_missing_config_file_exits_3(tmp_path):
    result = run_cli_to_exit("tests.apps:hello", "--config", "absent.toml", cwd=tmp_path)
    assert_config_error(result, "absent.toml: no such file")


def test_empty_config_file_name_exits_3(monkeypatch, tmp_path):
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello", "--config", "")
    assert_config_error(result, "--config needs a file name")


def test_bad_pyproject_exits_3(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.cyasgi]\nport = 'abc'\n")
    result = run_cli_to_exit("tests.apps:hello", env=ROOT_ON_PATH, cwd=tmp_path)
    assert_config_error(result, "pyproject.toml [tool.cyasgi]: 'port' must be an integer, got 'abc'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[tool.cyasgi]\nwokers = 2\n",
            "pyproject.toml [tool.cyasgi]: unknown key 'wokers' (did you mean 'workers'?)",
        ),
        (
            "[tool.cyasgi]\nlifespan = 'no'\n",
            "pyproject.toml [tool.cyasgi]: 'lifespan': 'no' is not one of 'auto', 'on', 'off'.",
        ),
        ("[tool]\ncyasgi = 1\n", "pyproject.toml: 'tool.cyasgi' must be a table, got 1"),
    ],
)
def test_bad_pyproject_variants(monkeypatch, tmp_path, text, message):
    write(tmp_path / "pyproject.toml", text)
    assert_config_error(run_in_process(monkeypatch, tmp_path, "tests.apps:hello"), message)


def test_unparsable_pyproject_exits_3(monkeypatch, tmp_path):
    """Even without [tool.cyasgi]: whether the file has one cannot be known."""
    write(tmp_path / "pyproject.toml", "[project\nname = 'x'\n")
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello")
    assert result.returncode == 3, result.stdout
    [line] = result.stdout.splitlines()
    assert line.startswith("Error: pyproject.toml: not valid TOML: ")
    assert line.endswith("(at line 1, column 9)")


def test_a_bad_value_on_the_command_line_or_in_env_is_still_exit_2(monkeypatch, tmp_path):
    """The file changes nothing for the command line's own mistakes: click's usage error, exit 2."""
    config = write(tmp_path / "config.toml", "port = 8000\n")
    result = run_cli_to_exit("tests.apps:hello", "--config", str(config), "--port", "abc")
    assert result.returncode == 2, result.stdout
    assert "Invalid value for '--port': 'abc' is not a valid integer." in result.stdout
    result = run_in_process(
        monkeypatch, tmp_path, "tests.apps:hello", "--config", "config.toml", env={"CYASGI_PORT": "abc"}
    )
    assert result.returncode == 2, result.stdout
    assert "Invalid value for '--port': 'abc' is not a valid integer." in result.stdout


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_need_no_readable_config(monkeypatch, tmp_path, option):
    write(tmp_path / "pyproject.toml", "[tool.cyasgi]\nwokers = 2\n")
    result = run_in_process(monkeypatch, tmp_path, option)
    assert result.returncode == 0, result.stdout


def test_a_pyproject_without_the_table_changes_nothing(monkeypatch, tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    result = run_in_process(monkeypatch, tmp_path, "tests.apps:hello", "--port", "abc")
    assert result.returncode == 2, result.stdout


# Every option can be set from a file, under both spellings (in-process) ---------------------------


@pytest.fixture
def captured_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(cli, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    for name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return calls


def toml_sample(param: click.Option, tmp_path: Path) -> tuple[str, Any]:
    """A TOML value for ``param`` other than its default, and what run() should receive."""
    kind = param.type
    if param.name == "headers":
        return '["x-one:1", "x-two:a:b"]', [["x-one", "1"], ["x-two", "a:b"]]
    if param.name == "reload_dirs":
        return f'["{tmp_path}"]', (str(tmp_path),)
    if param.name == "bind":
        # The file sets host and port too (port = 7 below): they add their listener first.
        listeners = ["some-text:7", "127.0.0.1:9001", "unix:/tmp/app.sock"]
        return '["127.0.0.1:9001", "unix:/tmp/app.sock"]', listeners
    if param.multiple:
        return '["*.txt", "*.md"]', ("*.txt", "*.md")
    if param.is_flag:
        value = not param.default if param.default is not None else True
        return ("true" if value else "false"), value
    if isinstance(kind, click.Path):
        path = tmp_path / "settings.ini"
        path.write_text("")
        return f'"{path}"', str(path)
    if hasattr(kind, "choices"):
        choice = next(choice for choice in kind.choices if choice != param.default)
        return f'"{choice}"', choice
    if kind is click.INT:
        return "7", 7
    if kind is click.FLOAT:
        return "1.5", 1.5
    if kind is click.BOOL:
        return "false", False
    return '"some-text"', "some-text"


@pytest.mark.parametrize("spelling", ["kebab-case", "snake_case"])
def test_every_option_is_settable_from_a_file(captured_run, tmp_path, spelling):
    options = [param for param in cli.main.params if isinstance(param, click.Option) and param.expose_value]
    lines = []
    expected = {}
    for param in options:
        key = next(opt[2:] for opt in param.opts if opt.startswith("--"))
        if spelling == "snake_case":
            key = key.replace("-", "_")
        raw, value = toml_sample(param, tmp_path)
        lines.append(f"{key} = {raw}")
        expected[param.name] = value
    write(tmp_path / "all.toml", 'app = "tests.apps:hello"\n' + "\n".join(lines) + "\n")

    result = CliRunner().invoke(cli.main, ["--config", "all.toml"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    [(args, kwargs)] = captured_run
    assert args == ("tests.apps:hello",)
    for name, value in expected.items():
        got = kwargs[name]
        if isinstance(got, tuple) and isinstance(value, tuple):
            got = tuple(got)
        assert got == value, (name, got, value)


PYPROJECT_WITH_TABLE = '[project]\nname = "x"\n\n[tool.cyasgi]\napp = "tests.apps:echo"\nport = 9100\n'


def test_a_config_file_named_pyproject_toml_is_read_for_its_table(captured_run, tmp_path):
    other = tmp_path / "service"
    other.mkdir()
    write(other / "pyproject.toml", PYPROJECT_WITH_TABLE)
    result = CliRunner().invoke(cli.main, ["--config", "service/pyproject.toml"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = captured_run
    assert (args, kwargs["port"]) == (("tests.apps:echo",), 9100)

    write(other / "pyproject.toml", '[project]\nname = "x"\n')
    result = CliRunner().invoke(cli.main, ["tests.apps:hello", "--config", "service/pyproject.toml"])
    assert result.exit_code == 3
    assert result.output == "Error: service/pyproject.toml: has no [tool.cyasgi] table\n"


def test_the_file_only_fills_what_is_not_given(captured_run, tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.cyasgi]\napp = "tests.apps:echo"\nworkers = 4\nport = 9000\n')
    runner = CliRunner()
    runner.invoke(cli.main, [], catch_exceptions=False)
    runner.invoke(cli.main, ["tests.apps:hello", "--port", "9001"], env={"CYASGI_WORKERS": "2"})
    (args1, kwargs1), (args2, kwargs2) = captured_run
    assert (args1, kwargs1["port"], kwargs1["workers"]) == (("tests.apps:echo",), 9000, 4)
    assert (args2, kwargs2["port"], kwargs2["workers"]) == (("tests.apps:hello",), 9001, 2)


DOCS = [ROOT / "docs" / "settings.md", ROOT / "docs" / "deployment.md"]


@pytest.mark.parametrize("doc", DOCS, ids=[doc.name for doc in DOCS])
def test_the_documented_files_are_valid(captured_run, tmp_path, doc):
    blocks = re.findall(r"```toml\n(.*?)```", doc.read_text(), re.DOTALL)
    assert blocks
    for number, block in enumerate(blocks):
        name = "pyproject.toml" if block.lstrip().startswith("[tool.cyasgi]") else f"example{number}.toml"
        write(tmp_path / name, block)
        captured_run.clear()
        result = CliRunner().invoke(cli.main, ["--config", name], catch_exceptions=False)
        assert result.exit_code == 0, (doc.name, block, result.output)
        assert captured_run, block
