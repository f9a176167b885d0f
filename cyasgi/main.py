"""The ``cyasgi`` command line: uvicorn's options, defaults and exit codes; ``CYASGI_<OPTION>`` env vars."""

from __future__ import annotations

import logging
import os
import platform
import ssl
import stat
import sys
import warnings
from collections.abc import Awaitable
from configparser import RawConfigParser
from typing import IO, Any, Callable

import click
from click.core import ParameterSource

import cyasgi
from cyasgi import config_file
from cyasgi.config import (
    ACCESS_LOG_FORMATS,
    DEFAULT_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE,
    DEFAULT_HTTP2_INITIAL_STREAM_WINDOW_SIZE,
    DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL,
    DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
    DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
    DEFAULT_HTTP2_MAX_CONTROL_FRAMES,
    DEFAULT_HTTP2_MAX_EMPTY_DATA_FRAMES,
    DEFAULT_HTTP2_MAX_FRAME_SIZE,
    DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE,
    DEFAULT_HTTP2_MAX_RAPID_RESETS,
    DEFAULT_HTTP2_MAX_STREAM_ERRORS,
    DEFAULT_HTTP2_STALL_TIMEOUT,
    DEFAULT_LIMIT_REQUEST_HEAD_SIZE,
    DEFAULT_LIMIT_REQUEST_HEADERS,
    DEFAULT_TIMEOUT_HEADER_READ,
    HTTP_PROTOCOLS,
    INTERFACES,
    LIFESPAN,
    LOG_LEVELS,
    LOGGING_CONFIG,
    LOOP_FACTORIES,
    SSL_PROTOCOL_VERSION,
    STARTUP_FAILURE,
    WS_PROTOCOLS,
    AccessLogFormatType,
    Config,
    ConfigError,
    HTTPProtocolType,
    InterfaceType,
    LifespanType,
    LoopFactoryType,
    WSProtocolType,
    parse_bind,
)
from cyasgi.server import Server

LEVEL_CHOICES = click.Choice(list(LOG_LEVELS.keys()))
LIFESPAN_CHOICES = click.Choice(list(LIFESPAN.keys()))
INTERFACE_CHOICES = click.Choice(INTERFACES)

logger = logging.getLogger("uvicorn.error")


class ChoiceOrImportString(click.ParamType):
    """A choice shown in --help (some values hidden) that also accepts ``module:attr`` import strings."""

    name = "choice"

    def __init__(self, choices: list[str], hidden: tuple[str, ...] = ()) -> None:
        self.choices = list(choices)
        self.shown = [choice for choice in choices if choice not in hidden]

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.shown) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or value in self.choices or ":" in value:
            return value
        self.fail(
            f"{value!r} is not one of {', '.join(repr(choice) for choice in self.shown)}, "
            "nor a 'module:attribute' import string.",
            param,
            ctx,
        )


# zttp (uvicorn's Zig protocol) is accepted, not listed: it runs cyasgi's own HTTP/1.1, as auto does.
HTTP_CHOICES = ChoiceOrImportString(list(HTTP_PROTOCOLS.keys()), hidden=("zttp",))
WS_CHOICES = ChoiceOrImportString(list(WS_PROTOCOLS.keys()), hidden=("none",))
LOOP_CHOICES = ChoiceOrImportString(list(LOOP_FACTORIES.keys()), hidden=("none",))


def version_text() -> str:
    from cyasgi.protocols.http import IMPLEMENTATION, IMPLEMENTATION_MODULE

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"Running cyasgi {cyasgi.__version__} with {python} on {platform.system()}"
        f" (HTTP/1.1: {IMPLEMENTATION} twin, {IMPLEMENTATION_MODULE})"
    )


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_text())
    ctx.exit()


def check_port(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if not 0 <= value <= 65535:
        raise click.BadParameter(f"{value} is not a TCP port (0 to 65535).", ctx=ctx, param=param)
    return value


class BindError(click.ClickException):
    """A --bind value that names no listener: ``Error: --bind 'VALUE': ...``, exit code 3."""

    exit_code = STARTUP_FAILURE


def check_bind(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    values = list(value)
    if param.name is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
        # click splits CYASGI_BIND on whitespace; commas separate too (no address form contains one).
        values = [part for item in values for part in item.split(",") if part]
    for item in values:
        try:
            parse_bind(item)
        except ConfigError as exc:
            message = str(exc)
            if param.name is not None and ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT_MAP:
                label, given_as = ctx.meta.get("cyasgi.config_file", ("config file", {}))
                message = f"{label}: '{given_as.get(param.name, param.name)}': {message}"
            raise BindError(message) from None
    return tuple(values)


def explicit_host_port(ctx: click.Context, host: str, port: int) -> list[str]:
    """With --bind: --host/--port as one more listener when either was given (command line,
    CYASGI_HOST/CYASGI_PORT or a config file); their built-in defaults add none."""
    given = (ctx.get_parameter_source(name) for name in ("host", "port"))
    if all(source in (None, ParameterSource.DEFAULT) for source in given):
        return []
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]


def check_headers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for header in value:
        if ":" not in header:
            raise click.BadParameter(f"{header!r} is not a Name:Value pair.", ctx=ctx, param=param)
    return value


@click.command(cls=config_file.ConfigFileCommand, context_settings={"auto_envvar_prefix": "CYASGI"})
@click.argument("app", envvar="CYASGI_APP")
@click.option(
    "--config",
    type=str,  # not click.Path: a missing file is exit 3 with the file's name, like a bad one
    default=None,
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=config_file.load_callback,
    help="Read defaults for these options from a TOML file (keys are the option names, e.g. "
    "port = 8080). Without it, [tool.cyasgi] of ./pyproject.toml is read if present.",
)
@click.option("--host", type=str, default="127.0.0.1", help="Bind socket to this host.", show_default=True)
@click.option(
    "--port",
    type=int,
    default=8000,
    help="Bind socket to this port. If 0, an available port will be picked.",
    show_default=True,
    callback=check_port,
)
@click.option("--uds", type=str, default=None, help="Bind to a UNIX domain socket.")
@click.option("--fd", type=int, default=None, help="Bind to socket from this file descriptor.")
@click.option(
    "--bind",
    "bind",
    multiple=True,
    metavar="ADDRESS",
    callback=check_bind,
    help="Listen on this address: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N. Repeat it for several "
    "listeners. Replaces the default 127.0.0.1:8000; --host/--port, --uds and --fd, when given, add "
    "theirs.",
)
@click.option("--reload", is_flag=True, default=False, help="Enable auto-reload.")
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    help="Set reload directories explicitly, instead of using the current working directory.",
    type=click.Path(exists=True),
)
@click.option(
    "--reload-include",
    "reload_includes",
    multiple=True,
    help="Set glob patterns to include while watching for files. Includes '*.py' "
    "by default; these defaults can be overridden with `--reload-exclude`. "
    "This option has no effect unless watchfiles is installed.",
)
@click.option(
    "--reload-exclude",
    "reload_excludes",
    multiple=True,
    help="Set glob patterns to exclude while watching for files. Includes "
    "'.*, .py[cod], .sw.*, ~*' by default; these defaults can be overridden "
    "with `--reload-include`. This option has no effect unless watchfiles is "
    "installed.",
)
@click.option(
    "--reload-delay",
    type=float,
    default=0.25,
    show_default=True,
    help="Delay between previous and next check if application needs to be. Defaults to 0.25s.",
)
@click.option(
    "--workers",
    default=None,
    type=int,
    help="Number of worker processes. Defaults to the $WEB_CONCURRENCY environment"
    " variable if available, or 1. Not valid with --reload.",
)
@click.option(
    "--reuse-port",
    is_flag=True,
    default=False,
    help="Give each worker its own listening socket with SO_REUSEPORT (Linux: the kernel spreads "
    "new connections evenly over the workers) instead of one socket shared by all. TCP only.",
)
@click.option(
    "--loop",
    type=LOOP_CHOICES,
    default="auto",
    help="Event loop factory implementation.",
    show_default=True,
)
@click.option(
    "--http",
    type=HTTP_CHOICES,
    default="auto",
    help="HTTP protocol implementation.",
    show_default=True,
)
@click.option(
    "--http2",
    is_flag=True,
    default=False,
    help="Enable HTTP/2: h2c with prior knowledge on the HTTP/1.1 port, and ALPN h2 with --ssl-*.",
)
@click.option(
    "--http2-max-concurrent-streams",
    type=int,
    default=DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
    help="HTTP/2: streams a client may have open at once; one more is refused (REFUSED_STREAM).",
    show_default=True,
)
@click.option(
    "--http2-initial-stream-window-size",
    type=int,
    default=DEFAULT_HTTP2_INITIAL_STREAM_WINDOW_SIZE,
    help="HTTP/2: bytes of request body a stream may send before the application reads it.",
    show_default=True,
)
@click.option(
    "--http2-initial-connection-window-size",
    type=int,
    default=DEFAULT_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE,
    help="HTTP/2: the same for all the streams of a connection together (65535 at least).",
    show_default=True,
)
@click.option(
    "--http2-max-frame-size",
    type=int,
    default=DEFAULT_HTTP2_MAX_FRAME_SIZE,
    help="HTTP/2: largest frame payload accepted, 16384 to 16777215 bytes.",
    show_default=True,
)
@click.option(
    "--http2-max-header-list-size",
    type=int,
    default=DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE,
    help="HTTP/2: largest decoded header list of a request, in bytes.",
    show_default=True,
)
@click.option(
    "--http2-keep-alive-interval",
    type=float,
    default=DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL,
    help="HTTP/2: seconds between PINGs on an idle connection. Off by default.",
)
@click.option(
    "--http2-keep-alive-timeout",
    type=float,
    default=DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
    help="HTTP/2: seconds to wait for a PING's answer before closing the connection.",
    show_default=True,
)
@click.option(
    "--http2-stall-timeout",
    type=float,
    default=DEFAULT_HTTP2_STALL_TIMEOUT,
    help="HTTP/2: seconds a response may wait for flow-control window before its stream is reset.",
    show_default=True,
)
@click.option(
    "--http2-max-rapid-resets",
    type=int,
    default=DEFAULT_HTTP2_MAX_RAPID_RESETS,
    help="HTTP/2: streams a client may reset on one connection before it is closed (ENHANCE_YOUR_CALM).",
    show_default=True,
)
@click.option(
    "--http2-max-empty-data-frames",
    type=int,
    default=DEFAULT_HTTP2_MAX_EMPTY_DATA_FRAMES,
    help="HTTP/2: empty DATA frames a client may send on one connection before it is closed.",
    show_default=True,
)
@click.option(
    "--http2-max-control-frames",
    type=int,
    default=DEFAULT_HTTP2_MAX_CONTROL_FRAMES,
    help="HTTP/2: SETTINGS, PING, PRIORITY and WINDOW_UPDATE frames a client may send in one read "
    "before the connection is closed.",
    show_default=True,
)
@click.option(
    "--http2-max-stream-errors",
    type=int,
    default=DEFAULT_HTTP2_MAX_STREAM_ERRORS,
    help="HTTP/2: streams the server may reset for a client's errors on one connection before it is closed.",
    show_default=True,
)
@click.option(
    "--ws",
    type=WS_CHOICES,
    default="auto",
    help="WebSocket protocol implementation.",
    show_default=True,
)
@click.option(
    "--ws-max-size",
    type=int,
    default=16777216,
    help="WebSocket max size message in bytes",
    show_default=True,
)
@click.option(
    "--ws-max-queue",
    type=int,
    default=32,
    help="The maximum length of the WebSocket message queue.",
    show_default=True,
)
@click.option(
    "--ws-ping-interval",
    type=float,
    default=20.0,
    help="WebSocket ping interval in seconds.",
    show_default=True,
)
@click.option(
    "--ws-ping-timeout",
    type=float,
    default=20.0,
    help="WebSocket ping timeout in seconds.",
    show_default=True,
)
@click.option(
    "--ws-per-message-deflate",
    type=bool,
    default=True,
    help="WebSocket per-message-deflate compression",
    show_default=True,
)
@click.option(
    "--lifespan",
    type=LIFESPAN_CHOICES,
    default="auto",
    help="Lifespan implementation.",
    show_default=True,
)
@click.option(
    "--interface",
    type=INTERFACE_CHOICES,
    default="auto",
    help="Select ASGI3, ASGI2, or WSGI as the application interface.",
    show_default=True,
)
@click.option(
    "--env-file",
    type=click.Path(exists=True),
    default=None,
    help="Environment configuration file.",
    show_default=True,
)
@click.option(
    "--log-config",
    type=click.Path(exists=True),
    default=None,
    help="Logging configuration file. Supported formats: .ini, .json, .yaml.",
    show_default=True,
)
@click.option(
    "--log-level",
    type=LEVEL_CHOICES,
    default=None,
    help="Log level. [default: info]",
    show_default=True,
)
@click.option(
    "--access-log/--no-access-log",
    is_flag=True,
    default=True,
    help="Enable/Disable access log.",
)
@click.option(
    "--access-log-format",
    type=click.Choice(ACCESS_LOG_FORMATS),
    default="text",
    help="Access log lines as text (the log config's formatter) or as one JSON object per line.",
    show_default=True,
)
@click.option(
    "--use-colors/--no-use-colors",
    is_flag=True,
    default=None,
    help="Enable/Disable colorized logging.",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    is_flag=True,
    default=True,
    help="Enable/Disable X-Forwarded-Proto, X-Forwarded-For to populate url scheme and remote address info.",
)
@click.option(
    "--server-header/--no-server-header",
    is_flag=True,
    default=True,
    help="Enable/Disable default Server header.",
)
@click.option(
    "--date-header/--no-date-header",
    is_flag=True,
    default=True,
    help="Enable/Disable default Date header.",
)
@click.option(
    "--forwarded-allow-ips",
    type=str,
    default=None,
    help="Comma separated list of IP Addresses, IP Networks, or literals "
    "(e.g. UNIX Socket path) to trust with proxy headers. Defaults to the "
    "$FORWARDED_ALLOW_IPS environment variable if available, or '127.0.0.1,::1'. "
    "The literal '*' means trust everything.",
)
@click.option(
    "--root-path",
    type=str,
    default="",
    help="Set the ASGI 'root_path' for applications submounted below a given URL path.",
)
@click.option(
    "--limit-concurrency",
    type=int,
    default=None,
    help="Maximum number of concurrent connections or tasks to allow, before issuing HTTP 503 responses.",
)
@click.option(
    "--backlog",
    type=int,
    default=2048,
    help="Maximum number of connections to hold in backlog",
)
@click.option(
    "--limit-max-requests",
    type=int,
    default=None,
    help="Maximum number of requests to service before terminating the process.",
)
@click.option(
    "--limit-max-requests-jitter",
    type=int,
    default=0,
    help="Maximum jitter to add to limit_max_requests. Staggers worker restarts to avoid all workers "
    "restarting simultaneously.",
    show_default=True,
)
@click.option(
    "--limit-request-head-size",
    type=int,
    default=DEFAULT_LIMIT_REQUEST_HEAD_SIZE,
    help="Maximum size in bytes of a request line and its header fields together; a larger request "
    "head gets 431.",
    show_default=True,
)
@click.option(
    "--limit-request-headers",
    type=int,
    default=DEFAULT_LIMIT_REQUEST_HEADERS,
    help="Maximum number of header fields in a request; more get 431.",
    show_default=True,
)
@click.option(
    "--limit-request-body-size",
    type=int,
    default=None,
    help="Maximum size in bytes of a request body; a larger one gets 413 before the application reads "
    "past the limit. Off by default.",
)
@click.option(
    "--limit-keep-alive-requests",
    type=int,
    default=None,
    help="Maximum number of requests served on one connection; the last response closes it. Off by "
    "default.",
)
@click.option(
    "--timeout-keep-alive",
    type=int,
    default=5,
    help="Close Keep-Alive connections if no new data is received within this timeout (in seconds).",
    show_default=True,
)
@click.option(
    "--timeout-graceful-shutdown",
    type=int,
    default=None,
    help="Maximum number of seconds to wait for graceful shutdown.",
)
@click.option(
    "--shutdown-delay",
    type=float,
    default=0,
    help="Seconds to keep serving after SIGTERM/SIGINT, with --health-path answering 503, before the "
    "graceful shutdown starts (so load balancers notice).",
    show_default=True,
)
@click.option(
    "--health-path",
    type=str,
    default=None,
    help="Answer GET/HEAD requests to this path in the server itself: 200, or 503 once shutdown has "
    "begun. Off by default.",
)
@click.option(
    "--metrics-bind",
    type=str,
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics on this separate address (with --workers, every worker's, added "
    "up). Needs cyasgi[metrics]. Off by default.",
)
@click.option(
    "--metrics-path",
    type=str,
    default=None,
    help="Also answer GET/HEAD requests to this path on the main port with the metrics. Off by default.",
)
@click.option(
    "--timeout-worker-healthcheck",
    type=int,
    default=5,
    help="Maximum number of seconds to wait for a worker to respond to a healthcheck.",
    show_default=True,
)
@click.option(
    "--timeout-header-read",
    type=float,
    default=DEFAULT_TIMEOUT_HEADER_READ,
    help="Seconds a client has, from connecting or from the end of the previous response, to send a "
    "complete request head; after that it gets 408 and the connection is closed. 0 turns it off.",
    show_default=True,
)
@click.option("--ssl-keyfile", type=str, default=None, help="SSL key file", show_default=True)
@click.option("--ssl-certfile", type=str, default=None, help="SSL certificate file", show_default=True)
@click.option("--ssl-keyfile-password", type=str, default=None, help="SSL keyfile password", show_default=True)
@click.option(
    "--ssl-version",
    type=int,
    default=int(SSL_PROTOCOL_VERSION),
    help="SSL version to use (see stdlib ssl module's)",
    show_default=True,
)
@click.option(
    "--ssl-cert-reqs",
    type=int,
    default=int(ssl.CERT_NONE),
    help="Whether client certificate is required (see stdlib ssl module's)",
    show_default=True,
)
@click.option("--ssl-ca-certs", type=str, default=None, help="CA certificates file", show_default=True)
@click.option(
    "--ssl-ciphers",
    type=str,
    default=None,
    help="Ciphers to use (see stdlib ssl module's). Defaults to OpenSSL's safe defaults.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Specify custom default HTTP response headers as a Name:Value pair",
    callback=check_headers,
)
@click.option(
    "--version",
    is_flag=True,
    callback=print_version,
    expose_value=False,
    is_eager=True,
    help="Display the cyasgi version and exit.",
)
@click.option(
    "--app-dir",
    default="",
    show_default=True,
    help="Look for APP in the specified directory, by adding this to the PYTHONPATH."
    " Defaults to the current working directory.",
)
@click.option(
    "--h11-max-incomplete-event-size",
    "h11_max_incomplete_event_size",
    type=int,
    default=None,
    help="For h11, the maximum number of bytes to buffer of an incomplete event.",
)
@click.option(
    "--reset-contextvars",
    is_flag=True,
    default=False,
    help="Run each ASGI request in a fresh contextvars.Context. Hides context set in the lifespan.",
)
@click.option(
    "--factory",
    is_flag=True,
    default=False,
    help="Treat APP as an application factory, i.e. a () -> <ASGI app> callable.",
    show_default=True,
)
def main(
    app: str,
    host: str,
    port: int,
    uds: str,
    fd: int,
    bind: tuple[str, ...],
    loop: LoopFactoryType | str,
    http: HTTPProtocolType | str,
    http2: bool,
    ws: WSProtocolType | str,
    ws_max_size: int,
    ws_max_queue: int,
    ws_ping_interval: float,
    ws_ping_timeout: float,
    ws_per_message_deflate: bool,
    lifespan: LifespanType,
    interface: InterfaceType,
    reload: bool,
    reload_dirs: list[str],
    reload_includes: list[str],
    reload_excludes: list[str],
    reload_delay: float,
    workers: int,
    reuse_port: bool,
    env_file: str,
    log_config: str,
    log_level: str,
    access_log: bool,
    proxy_headers: bool,
    server_header: bool,
    date_header: bool,
    forwarded_allow_ips: str,
    root_path: str,
    limit_concurrency: int,
    backlog: int,
    limit_max_requests: int,
    limit_max_requests_jitter: int,
    timeout_keep_alive: int,
    timeout_graceful_shutdown: int | None,
    timeout_worker_healthcheck: int,
    ssl_keyfile: str,
    ssl_certfile: str,
    ssl_keyfile_password: str,
    ssl_version: int,
    ssl_cert_reqs: int,
    ssl_ca_certs: str,
    ssl_ciphers: str,
    headers: list[str],
    use_colors: bool,
    app_dir: str,
    h11_max_incomplete_event_size: int | None,
    factory: bool,
    limit_request_head_size: int,
    limit_request_headers: int,
    limit_request_body_size: int | None,
    limit_keep_alive_requests: int | None,
    timeout_header_read: float,
    access_log_format: AccessLogFormatType,
    shutdown_delay: float,
    health_path: str | None,
    metrics_bind: str | None,
    metrics_path: str | None,
    http2_max_concurrent_streams: int,
    http2_initial_stream_window_size: int,
    http2_initial_connection_window_size: int,
    http2_max_frame_size: int,
    http2_max_header_list_size: int,
    http2_keep_alive_interval: float | None,
    http2_keep_alive_timeout: float,
    http2_stall_timeout: float,
    http2_max_rapid_resets: int,
    http2_max_empty_data_frames: int,
    http2_max_control_frames: int,
    http2_max_stream_errors: int,
    reset_contextvars: bool = False,
) -> None:
    if bind:
        bind = (*explicit_host_port(click.get_current_context(), host, port), *bind)
    run(
        app,
        host=host,
        port=port,
        uds=uds,
        fd=fd,
        loop=loop,
        http=http,
        http2=http2,
        ws=ws,
        ws_max_size=ws_max_size,
        ws_max_queue=ws_max_queue,
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        ws_per_message_deflate=ws_per_message_deflate,
        lifespan=lifespan,
        env_file=env_file,
        log_config=LOGGING_CONFIG if log_config is None else log_config,
        log_level=log_level,
        access_log=access_log,
        interface=interface,
        reload=reload,
        reload_dirs=reload_dirs or None,
        reload_includes=reload_includes or None,
        reload_excludes=reload_excludes or None,
        reload_delay=reload_delay,
        workers=workers,
        reuse_port=reuse_port,
        proxy_headers=proxy_headers,
        server_header=server_header,
        date_header=date_header,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        limit_concurrency=limit_concurrency,
        backlog=backlog,
        limit_max_requests=limit_max_requests,
        limit_max_requests_jitter=limit_max_requests_jitter,
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        timeout_worker_healthcheck=timeout_worker_healthcheck,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        ssl_keyfile_password=ssl_keyfile_password,
        ssl_version=ssl_version,
        ssl_cert_reqs=ssl_cert_reqs,
        ssl_ca_certs=ssl_ca_certs,
        ssl_ciphers=ssl_ciphers,
        headers=[header.split(":", 1) for header in headers],  # type: ignore[misc]
        use_colors=use_colors,
        factory=factory,
        app_dir=app_dir,
        h11_max_incomplete_event_size=h11_max_incomplete_event_size,
        reset_contextvars=reset_contextvars,
        limit_request_head_size=limit_request_head_size,
        limit_request_headers=limit_request_headers,
        limit_request_body_size=limit_request_body_size,
        limit_keep_alive_requests=limit_keep_alive_requests,
        timeout_header_read=timeout_header_read,
        access_log_format=access_log_format,
        health_path=health_path,
        shutdown_delay=shutdown_delay,
        http2_max_concurrent_streams=http2_max_concurrent_streams,
        http2_initial_stream_window_size=http2_initial_stream_window_size,
        http2_initial_connection_window_size=http2_initial_connection_window_size,
        http2_max_frame_size=http2_max_frame_size,
        http2_max_header_list_size=http2_max_header_list_size,
        http2_keep_alive_interval=http2_keep_alive_interval,
        http2_keep_alive_timeout=http2_keep_alive_timeout,
        http2_stall_timeout=http2_stall_timeout,
        http2_max_rapid_resets=http2_max_rapid_resets,
        http2_max_empty_data_frames=http2_max_empty_data_frames,
        http2_max_control_frames=http2_max_control_frames,
        http2_max_stream_errors=http2_max_stream_errors,
        bind=list(bind) or None,
        metrics_bind=metrics_bind,
        metrics_path=metrics_path,
    )


def run(
    app: Any,
    *,
    app_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    fd: int | None = None,
    loop: LoopFactoryType | str = "auto",
    http: type[Any] | HTTPProtocolType | str = "auto",
    http2: bool = False,
    ws: type[Any] | WSProtocolType | str = "auto",
    ws_max_size: int = 16 * 1024 * 1024,
    ws_max_queue: int = 32,
    ws_ping_interval: float | None = 20.0,
    ws_ping_timeout: float | None = 20.0,
    ws_per_message_deflate: bool = True,
    lifespan: LifespanType = "auto",
    env_file: str | os.PathLike[str] | None = None,
    log_config: dict[str, Any] | str | os.PathLike[str] | RawConfigParser | IO[Any] | None = LOGGING_CONFIG,
    log_level: str | int | None = None,
    access_log: bool = True,
    use_colors: bool | None = None,
    interface: InterfaceType = "auto",
    reload: bool = False,
    reload_dirs: list[str] | str | None = None,
    reload_delay: float = 0.25,
    reload_includes: list[str] | str | None = None,
    reload_excludes: list[str] | str | None = None,
    workers: int | None = None,
    proxy_headers: bool = True,
    server_header: bool = True,
    date_header: bool = True,
    forwarded_allow_ips: list[str] | str | None = None,
    root_path: str = "",
    limit_concurrency: int | None = None,
    limit_max_requests: int | None = None,
    limit_max_requests_jitter: int = 0,
    backlog: int = 2048,
    timeout_keep_alive: int = 5,
    timeout_notify: int = 30,
    timeout_graceful_shutdown: int | None = None,
    timeout_worker_healthcheck: int = 5,
    callback_notify: Callable[..., Awaitable[None]] | None = None,
    ssl_keyfile: str | os.PathLike[str] | None = None,
    ssl_certfile: str | os.PathLike[str] | None = None,
    ssl_keyfile_password: str | None = None,
    ssl_version: int = SSL_PROTOCOL_VERSION,
    ssl_cert_reqs: int = ssl.CERT_NONE,
    ssl_ca_certs: str | os.PathLike[str] | None = None,
    ssl_ciphers: str | None = None,
    ssl_context_factory: Callable[[Config, Callable[[], ssl.SSLContext]], ssl.SSLContext] | None = None,
    headers: list[tuple[str, str]] | None = None,
    factory: bool = False,
    h11_max_incomplete_event_size: int | None = None,
    reset_contextvars: bool = False,
    reuse_port: bool = False,
    limit_request_head_size: int = DEFAULT_LIMIT_REQUEST_HEAD_SIZE,
    limit_request_headers: int = DEFAULT_LIMIT_REQUEST_HEADERS,
    limit_request_body_size: int | None = None,
    limit_keep_alive_requests: int | None = None,
    timeout_header_read: float | None = DEFAULT_TIMEOUT_HEADER_READ,
    access_log_format: AccessLogFormatType = "text",
    health_path: str | None = None,
    shutdown_delay: float = 0,
    http2_max_concurrent_streams: int = DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
    http2_initial_stream_window_size: int = DEFAULT_HTTP2_INITIAL_STREAM_WINDOW_SIZE,
    http2_initial_connection_window_size: int = DEFAULT_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE,
    http2_max_frame_size: int = DEFAULT_HTTP2_MAX_FRAME_SIZE,
    http2_max_header_list_size: int = DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE,
    http2_keep_alive_interval: float | None = DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL,
    http2_keep_alive_timeout: float = DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
    http2_stall_timeout: float = DEFAULT_HTTP2_STALL_TIMEOUT,
    http2_max_rapid_resets: int = DEFAULT_HTTP2_MAX_RAPID_RESETS,
    http2_max_empty_data_frames: int = DEFAULT_HTTP2_MAX_EMPTY_DATA_FRAMES,
    http2_max_control_frames: int = DEFAULT_HTTP2_MAX_CONTROL_FRAMES,
    http2_max_stream_errors: int = DEFAULT_HTTP2_MAX_STREAM_ERRORS,
    bind: list[str] | str | None = None,
    metrics_bind: str | None = None,
    metrics_path: str | None = None,
) -> None:
    """Run ``app`` (an ASGI app or a ``"module:attr"`` string) with ``Config``'s settings, like ``uvicorn.run``.

    The keywords are exactly ``Config``'s, in its order, plus ``app_dir`` (put first on ``sys.path``).
    """
    if app_dir is not None:
        sys.path.insert(0, app_dir)

    try:
        config = Config(
            app,
            host=host,
            port=port,
            uds=uds,
            fd=fd,
            loop=loop,
            http=http,
            http2=http2,
            ws=ws,
            ws_max_size=ws_max_size,
            ws_max_queue=ws_max_queue,
            ws_ping_interval=ws_ping_interval,
            ws_ping_timeout=ws_ping_timeout,
            ws_per_message_deflate=ws_per_message_deflate,
            lifespan=lifespan,
            env_file=env_file,
            log_config=log_config,
            log_level=log_level,
            access_log=access_log,
            use_colors=use_colors,
            interface=interface,
            reload=reload,
            reload_dirs=reload_dirs,
            reload_delay=reload_delay,
            reload_includes=reload_includes,
            reload_excludes=reload_excludes,
            workers=workers,
            proxy_headers=proxy_headers,
            server_header=server_header,
            date_header=date_header,
            forwarded_allow_ips=forwarded_allow_ips,
            root_path=root_path,
            limit_concurrency=limit_concurrency,
            limit_max_requests=limit_max_requests,
            limit_max_requests_jitter=limit_max_requests_jitter,
            backlog=backlog,
            timeout_keep_alive=timeout_keep_alive,
            timeout_notify=timeout_notify,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
            timeout_worker_healthcheck=timeout_worker_healthcheck,
            callback_notify=callback_notify,
            ssl_keyfile=ssl_keyfile,
            ssl_certfile=ssl_certfile,
            ssl_keyfile_password=ssl_keyfile_password,
            ssl_version=ssl_version,
            ssl_cert_reqs=ssl_cert_reqs,
            ssl_ca_certs=ssl_ca_certs,
            ssl_ciphers=ssl_ciphers,
            ssl_context_factory=ssl_context_factory,
            headers=headers,
            factory=factory,
            h11_max_incomplete_event_size=h11_max_incomplete_event_size,
            reset_contextvars=reset_contextvars,
            reuse_port=reuse_port,
            limit_request_head_size=limit_request_head_size,
            limit_request_headers=limit_request_headers,
            limit_request_body_size=limit_request_body_size,
            limit_keep_alive_requests=limit_keep_alive_requests,
            timeout_header_read=timeout_header_read,
            access_log_format=access_log_format,
            health_path=health_path,
            shutdown_delay=shutdown_delay,
            http2_max_concurrent_streams=http2_max_concurrent_streams,
            http2_initial_stream_window_size=http2_initial_stream_window_size,
            http2_initial_connection_window_size=http2_initial_connection_window_size,
            http2_max_frame_size=http2_max_frame_size,
            http2_max_header_list_size=http2_max_header_list_size,
            http2_keep_alive_interval=http2_keep_alive_interval,
            http2_keep_alive_timeout=http2_keep_alive_timeout,
            http2_stall_timeout=http2_stall_timeout,
            http2_max_rapid_resets=http2_max_rapid_resets,
            http2_max_empty_data_frames=http2_max_empty_data_frames,
            http2_max_control_frames=http2_max_control_frames,
            http2_max_stream_errors=http2_max_stream_errors,
            bind=bind,
            metrics_bind=metrics_bind,
            metrics_path=metrics_path,
        )
    except (ConfigError, OSError) as exc:  # e.g. an unreadable --log-config
        source = config_file.read_from
        config_file.read_from = None
        if source is None:
            logging.getLogger("uvicorn.error").error("%s", exc)
        else:  # the value may be the file's: say which file the settings came from
            logging.getLogger("uvicorn.error").error("%s (settings read from %s)", exc, source)
        sys.exit(STARTUP_FAILURE)
    if config_file.read_from is not None:  # (set by the command line that called run() just now)
        logging.getLogger("uvicorn.error").info("Settings read from %s", config_file.read_from)
        config_file.read_from = None

    if config.reload or config.workers > 1:
        if not isinstance(app, str):
            logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
            sys.exit(STARTUP_FAILURE)
        if config.loop in ("uvloop", "zuvloop"):
            config.get_loop_factory()  # a missing loop package: one error here, not one per worker
    else:
        config.load_app()

    server = Server(config=config)

    try:
        if config.should_reload:
            from cyasgi.supervisors import ChangeReload

            sockets = config.bind_sockets() if config.listeners else [config.bind_socket()]
            ChangeReload(config, target=server.run, sockets=sockets).run()
        elif config.workers > 1:
            from cyasgi.supervisors import Multiprocess

            listen = not config.reuse_port
            if config.listeners:
                sockets = config.bind_sockets(listen_tcp=listen)
            else:
                sockets = [config.bind_socket(listen=listen)]
            Multiprocess(config, sockets=sockets).run()
        elif config.reuse_port and not config.listeners:
            server.run(sockets=[config.bind_socket()])
        else:
            server.run()  # with --bind, the server binds its listeners itself
    except KeyboardInterrupt:
        pass
    finally:
        # Only a socket is ours to remove: a regular file at that path (a typo) is left alone.
        uds = None if config.listeners else config.uds  # --bind's listeners are removed below
        if uds and os.path.exists(uds) and stat.S_ISSOCK(os.stat(uds).st_mode):
            os.remove(uds)
        config.remove_unix_sockets()

    if not server.started and not config.should_reload and config.workers == 1:
        sys.exit(STARTUP_FAILURE)


def __getattr__(name: str) -> Any:
    # uvicorn.main still hands out ServerState (deprecated there): old imports of it keep working.
    if name == "ServerState":
        warnings.warn(
            "cyasgi.main.ServerState is deprecated, use cyasgi.server.ServerState instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        from cyasgi.server import ServerState

        return ServerState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()  # pragma: no cover
