"""Config: every setting of the server, app loading, and the choice of protocol, loop and lifespan."""

from __future__ import annotations

import builtins
import contextlib
import copy
import errno
import inspect
import ipaddress
import json
import logging
import logging.config
import math
import os
import socket
import ssl
import stat
import sys
from collections.abc import Awaitable
from configparser import RawConfigParser
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Literal

from cyasgi._compat import IS_PYPY
from cyasgi.importer import ImportFromStringError, import_from_string
from cyasgi.logging import TRACE_LOG_LEVEL
from cyasgi.metrics.exposition import MISSING_EXTRA, prometheus_available
from cyasgi.protocols.http.foreign import missing_parser_package
from cyasgi.protocols.http.server_apps import encode_health_path

HTTPProtocolType = Literal["auto", "cyasgi", "h11", "httptools", "zttp"]
WSProtocolType = Literal["auto", "none", "websockets", "websockets-sansio", "wsproto"]
LifespanType = Literal["auto", "on", "off"]
LoopFactoryType = Literal["none", "auto", "asyncio", "uvloop", "zuvloop"]
InterfaceType = Literal["auto", "asgi3", "asgi2", "wsgi"]
AccessLogFormatType = Literal["text", "json"]

#: Request limits (docs/reliability.md): the request line and header fields together (bytes, else
#: 431), the number of header fields (else 431), and the seconds from connect or from the end of
#: the previous response to the end of the next request head (else 408).
DEFAULT_LIMIT_REQUEST_HEAD_SIZE = 65536
DEFAULT_LIMIT_REQUEST_HEADERS = 100
DEFAULT_TIMEOUT_HEADER_READ = 30.0
MIN_LIMIT_REQUEST_HEAD_SIZE = 64

#: HTTP/2 (``--http2``; docs/settings.md): the SETTINGS the server announces, its keep-alive PINGs,
#: and the per-connection abuse budgets past which it answers GOAWAY(ENHANCE_YOUR_CALM).
DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS = 100
DEFAULT_HTTP2_INITIAL_STREAM_WINDOW_SIZE = 262144  # 256 KiB
DEFAULT_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE = 1048576  # 1 MiB
DEFAULT_HTTP2_MAX_FRAME_SIZE = 16384  # RFC 9113's initial value
DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE = 65536
DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL: float | None = None  # no PINGs
DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT = 20.0
DEFAULT_HTTP2_STALL_TIMEOUT = 60.0
DEFAULT_HTTP2_MAX_RAPID_RESETS = 100
DEFAULT_HTTP2_MAX_EMPTY_DATA_FRAMES = 100
DEFAULT_HTTP2_MAX_CONTROL_FRAMES = 1000
DEFAULT_HTTP2_MAX_STREAM_ERRORS = 1000
#: RFC 9113 bounds: a flow-control window is at most 2**31-1 (§6.9.1), the connection window starts
#: at 65535 and can only grow (§6.9.2), SETTINGS_MAX_FRAME_SIZE lies in [2**14, 2**24-1] (§6.5.2).
HTTP2_MAX_WINDOW_SIZE = 2**31 - 1
HTTP2_MIN_CONNECTION_WINDOW_SIZE = 65535
HTTP2_MIN_FRAME_SIZE = 16384
HTTP2_MAX_FRAME_SIZE = 16777215
#: Integer HTTP/2 settings: (lowest, highest or None) allowed.
HTTP2_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "http2_max_concurrent_streams": (1, None),
    "http2_initial_stream_window_size": (1, HTTP2_MAX_WINDOW_SIZE),
    "http2_initial_connection_window_size": (HTTP2_MIN_CONNECTION_WINDOW_SIZE, HTTP2_MAX_WINDOW_SIZE),
    "http2_max_frame_size": (HTTP2_MIN_FRAME_SIZE, HTTP2_MAX_FRAME_SIZE),
    "http2_max_header_list_size": (1, None),
    "http2_max_rapid_resets": (1, None),
    "http2_max_empty_data_frames": (1, None),
    "http2_max_control_frames": (1, None),
    "http2_max_stream_errors": (1, None),
}
#: ALPN offered over TLS with ``--http2`` (h2 preferred); without it the context offers none, as before.
HTTP2_ALPN_PROTOCOLS = ["h2", "http/1.1"]

#: Exit status when the server could not start (bad app, port in use, failed lifespan startup).
STARTUP_FAILURE = 3

#: --bind (docs/settings.md): the forms of one listener, and the prefixes of the non-TCP ones.
BIND_FORMS = "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
BIND_UNIX_PREFIX = "unix:"
BIND_FD_PREFIX = "fd://"
MAX_TCP_PORT = 65535
#: Mode of a UNIX socket file the server creates: any local user may connect (as with --uds).
UDS_PERMS = 0o666

LOG_LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE_LOG_LEVEL,
}

# Every name maps to one HTTP/1.1 protocol (the compiled or pure twin, chosen at import); the
# name picks the request parser it drives (see HTTP_PARSERS).
HTTP_PROTOCOLS: dict[str, str] = {
    "auto": "cyasgi.protocols.http:HttpProtocol",
    "cyasgi": "cyasgi.protocols.http:HttpProtocol",
    "h11": "cyasgi.protocols.http:HttpProtocol",
    "httptools": "cyasgi.protocols.http:HttpProtocol",
    # uvicorn 0.54's Zig protocol: accepted so its command lines work; here cyasgi's own HTTP/1.1
    # (as "auto"), and HTTP/2 is --http2's, whatever --http says.
    "zttp": "cyasgi.protocols.http:HttpProtocol",
}
# None: the twin picks (its own strict parser, or for the pure twin on CPython httptools, which is
# faster there); "cyasgi" forces the twin's own parser.
HTTP_PARSERS: dict[str, str | None] = {
    "auto": None,
    "cyasgi": "cyasgi.protocols.http.foreign:OWN_PARSER",
    "h11": "cyasgi.protocols.http.foreign:H11Parser",
    "httptools": "cyasgi.protocols.http.foreign:httptools_parser_factory",
    "zttp": None,
}
WS_PROTOCOLS: dict[str, str | None] = {
    "auto": "cyasgi.protocols.websockets.auto:AutoWebSocketsProtocol",
    "none": None,
    "websockets": "cyasgi.protocols.websockets.websockets_impl:WebSocketProtocol",
    "websockets-sansio": "cyasgi.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
    "wsproto": "cyasgi.protocols.websockets.wsproto_impl:WSProtocol",
}
LIFESPAN: dict[str, str] = {
    "auto": "cyasgi.lifespan.on:LifespanOn",
    "on": "cyasgi.lifespan.on:LifespanOn",
    "off": "cyasgi.lifespan.off:LifespanOff",
}
LOOP_FACTORIES: dict[str, str | None] = {
    "none": None,
    "auto": "cyasgi.loops.auto:auto_loop_factory",
    "asyncio": "cyasgi.loops.asyncio:asyncio_loop_factory",
    "uvloop": "cyasgi.loops.uvloop:uvloop_loop_factory",
    # uvicorn 0.54's Zig loop: used where the package imports (CPython 3.14+), else exit 3.
    "zuvloop": "cyasgi.loops.zuvloop:zuvloop_loop_factory",
}
INTERFACES: list[InterfaceType] = ["auto", "asgi3", "asgi2", "wsgi"]
#: --access-log-format: uvicorn's text line (the formatter the log config names), or one JSON object per line.
ACCESS_LOG_FORMATS: list[AccessLogFormatType] = ["text", "json"]

SSL_PROTOCOL_VERSION: int = ssl.PROTOCOL_TLS_SERVER

# Logger names are uvicorn's on purpose: existing logging configs for uvicorn keep working.
LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "cyasgi.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "cyasgi.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

logger = logging.getLogger("uvicorn.error")


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and why.

    Where uvicorn raises another built-in type for the same mistake (a ``TypeError`` from a
    ``ssl_context_factory`` that returns no context, a ``KeyError`` for an unknown log level, the
    ``OSError`` of a missing file...), the error raised is a subclass of both (``config_error``),
    so ``except`` clauses written for uvicorn keep catching it.
    """

    #: The other exception type this error is an instance of (see ``config_error``).
    kind: type[BaseException] = ValueError

    def __str__(self) -> str:
        # The message alone, also for the kinds whose own str() would quote it (KeyError).
        return BaseException.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # The classes config_error() builds are not module attributes: pickle by how to rebuild them.
        return config_error, (str(self), self.kind)


#: ConfigError subclasses that are also another exception type, built once per type.
_CONFIG_ERROR_KINDS: dict[type[BaseException], type[ConfigError]] = {ValueError: ConfigError}


def config_error(message: str, kind: type[BaseException] = ValueError) -> ConfigError:
    """A ConfigError with ``message`` that is also an instance of ``kind`` (``ConfigRuntimeError``...)."""
    error_class = _CONFIG_ERROR_KINDS.get(kind)
    if error_class is None and issubclass(ConfigError, kind):  # Exception, ValueError: nothing to add
        error_class = ConfigError
    if error_class is None:
        error_class = type(f"Config{kind.__name__}", (ConfigError, kind), {"__module__": __name__, "kind": kind})
        _CONFIG_ERROR_KINDS[kind] = error_class
    return error_class(message)


def kind_of(exc: BaseException) -> type[BaseException]:
    """The type a ConfigError wrapping ``exc`` should share with it: its nearest built-in exception
    type that a message alone can build (``ssl.SSLError`` -> ``OSError``; ``UnicodeEncodeError``,
    which needs five arguments, -> ``UnicodeError``), or ``ImportFromStringError``."""
    for cls in type(exc).__mro__:
        if cls is ImportFromStringError:
            return cls
        is_builtin = getattr(builtins, cls.__name__, None) is cls  # not __module__: robust on PyPy too
        if is_builtin and not (issubclass(cls, UnicodeError) and cls is not UnicodeError):
            return cls
    return ValueError


def create_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    password: str | None,
    ssl_version: int,
    cert_reqs: int,
    ca_certs: str | os.PathLike[str] | None,
    ciphers: str | None,
    alpn_protocols: list[str] | None = None,
) -> ssl.SSLContext:
    """The context the ``ssl_*`` settings describe; uvicorn's signature, for factories that call it."""
    ctx = ssl.SSLContext(ssl_version)
    get_password = (lambda: password) if password else None
    ctx.load_cert_chain(certfile, keyfile, get_password)
    ctx.verify_mode = ssl.VerifyMode(cert_reqs)
    if ca_certs:
        ctx.load_verify_locations(ca_certs)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn_protocols:
        ctx.set_alpn_protocols(alpn_protocols)
    return ctx


#: Protocol constants that pin one TLS version below 1.2 (deprecated; absent from some builds).
_PINNED_OLD_TLS = {
    getattr(ssl, name) for name in ("PROTOCOL_TLSv1", "PROTOCOL_TLSv1_1") if hasattr(ssl, name)
}


def prepare_http2_tls(ctx: ssl.SSLContext) -> None:
    """Make a server context fit for HTTP/2 (RFC 9113 §9.2): ALPN ``h2, http/1.1``, TLS 1.2 or newer,
    no TLS-level compression and no renegotiation. Applied to ``ssl_context_factory``'s context too;
    a minimum version already above 1.2 is kept."""
    if ctx.protocol in _PINNED_OLD_TLS:
        raise ConfigError(
            f"--http2 needs TLS 1.2 or newer, but --ssl-version {int(ctx.protocol)} allows only an older "
            "version; leave --ssl-version at its default."
        )
    try:
        if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    except ValueError:  # a context pinned to one version (PROTOCOL_TLSv1_2): nothing to raise
        pass
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.set_alpn_protocols(HTTP2_ALPN_PROTOCOLS)


@dataclass(frozen=True)
class Listener:
    """One address the server listens on: ``kind`` is ``"tcp"`` (host, port), ``"unix"`` (path) or
    ``"fd"`` (an inherited socket's descriptor)."""

    kind: Literal["tcp", "unix", "fd"]
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return BIND_UNIX_PREFIX + self.path
        if self.kind == "fd":
            return f"{BIND_FD_PREFIX}{self.fd}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(value: str) -> Listener:
    """The listener one ``--bind`` value names; a ConfigError that quotes the value otherwise."""

    def fail(reason: str = f"expected {BIND_FORMS}") -> ConfigError:
        return ConfigError(f"--bind {value!r}: {reason}")

    if not isinstance(value, str):
        raise ConfigError(f"--bind values must be strings, not {value!r}")
    if value.startswith(BIND_UNIX_PREFIX):
        path = value[len(BIND_UNIX_PREFIX) :]
        if not path:
            raise fail(f"{BIND_UNIX_PREFIX} needs a socket path ({BIND_UNIX_PREFIX}PATH)")
        return Listener("unix", path=path)
    if value.startswith(BIND_FD_PREFIX):
        number = value[len(BIND_FD_PREFIX) :]
        if not (number.isascii() and number.isdigit()):
            raise fail(f"{BIND_FD_PREFIX} needs a file descriptor number ({BIND_FD_PREFIX}N)")
        return Listener("fd", fd=int(number))
    if value.startswith("["):
        host, bracket, port_text = value[1:].partition("]:")
        if not bracket or not host:
            raise fail()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise fail(f"{host!r} is not an IPv6 address; write other hosts without brackets") from None
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon or not host:
            raise fail()
        if ":" in host:  # a bare IPv6 address: its last group would read as the port
            raise fail(f"write an IPv6 address in brackets, [{host}]:{port_text}")
    if not port_text:
        raise fail()
    if not (port_text.isascii() and port_text.isdigit()):
        raise fail(f"{port_text!r} is not a port number")
    port = int(port_text)
    if port > MAX_TCP_PORT:
        raise fail(f"port {port} is out of range (0 to {MAX_TCP_PORT})")
    return Listener("tcp", host=host, port=port)


def bind_error(exc: OSError, address: Any) -> OSError:
    """``exc`` naming the address it is about (a bare "Address already in use" does not say which)."""
    reason = (exc.strerror or str(exc)).lower()
    return OSError(exc.errno, f"error while attempting to bind on address {address!r}: {reason}")


def is_ipv6_wildcard(host: str | None) -> bool:
    """``::`` (in any spelling): the host that can also serve IPv4 on one dual-stack socket."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return address.version == 6 and address.is_unspecified


def tcp_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound, not yet listening TCP socket; an IPv6 one is dual-stack where the OS allows it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # asyncio and uvloop set IPV6_V6ONLY on the sockets they create; "::" should also take IPv4.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_error(exc, (host, port)) from None
    return sock


def unix_socket(path: str) -> socket.socket:
    """A bound, not yet listening UNIX socket at ``path`` (mode UDS_PERMS); a stale socket file
    that nobody listens on any more is replaced, anything else at the path is an error."""
    if _is_stale_socket(path):
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, UDS_PERMS)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, path) from None
    return sock


def _is_stale_socket(path: str) -> bool:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def fd_socket(fd: int) -> socket.socket:
    """A socket on a copy of the inherited descriptor ``fd`` (e.g. from systemd socket activation)."""
    copy = -1
    try:
        copy = os.dup(fd)
        return socket.socket(fileno=copy)
    except OSError as exc:
        if copy >= 0:
            os.close(copy)
        reason = (exc.strerror or str(exc)).lower()
        raise OSError(exc.errno or errno.EBADF, f"cannot serve file descriptor {fd}: {reason}") from None


def is_dir(path: Path) -> bool:
    try:
        return path.resolve().is_dir()
    except OSError:  # an unreadable or looping path is not a directory we can watch
        return False


def resolve_reload_patterns(patterns_list: list[str], directories_list: list[str]) -> tuple[list[str], list[Path]]:
    """Split reload patterns into glob patterns and directories to watch.

    A pattern that names a directory (or globs to directories under the working directory) is
    also watched as a directory. Directories nested inside another listed directory are dropped:
    watching the outer one covers them. (The parameter names are uvicorn's.)
    """
    found: set[Path] = {Path(directory).resolve() for directory in directories_list}
    for pattern in patterns_list:
        if pattern == ".*":  # would match every dot-directory under the tree: keep it a pattern only
            continue
        candidate = Path(pattern)
        if is_dir(candidate):
            found.add(candidate.resolve())
            continue
        try:
            found.update(match.resolve() for match in Path.cwd().glob(pattern) if is_dir(match))
        except (NotImplementedError, ValueError):  # absolute or empty patterns cannot be globbed
            pass
    existing = {directory for directory in found if is_dir(directory)}
    top_level = sorted(d for d in existing if not any(parent in existing for parent in d.parents))
    return list(dict.fromkeys(patterns_list)), top_level


def _as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(dict.fromkeys(value))


def _detect_interface(app: Any) -> InterfaceType:
    """asgi3 for a coroutine callable, wsgi for a sync callable of (environ, start_response), else asgi2."""
    if inspect.isclass(app):
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)
    if call is None:
        return "asgi3"
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi3"
    # A partial or a decorated coroutine function shows only through the signature's owner.
    unwrapped = inspect.unwrap(call)
    if inspect.iscoroutinefunction(unwrapped):
        return "asgi3"
    try:
        params = [
            p
            for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return "asgi3"
    if len(params) == 2:
        return "wsgi"
    if len(params) == 1:
        return "asgi2"
    return "asgi3"


class Config:
    def __init__(
        self,
        app: Any,
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
    ):
        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = fd
        self.loop = loop
        self.http = http
        self.http2 = http2
        self.ws = ws
        self.ws_max_size = ws_max_size
        self.ws_max_queue = ws_max_queue
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ws_per_message_deflate = ws_per_message_deflate
        self.lifespan = lifespan
        self.log_config = log_config
        self.log_level = log_level
        self.access_log = access_log
        self.use_colors = use_colors
        self.interface = interface
        self.reload = reload
        self.reload_delay = reload_delay
        self.workers = workers or 1
        self.proxy_headers = proxy_headers
        self.server_header = server_header
        self.date_header = date_header
        self.root_path = root_path
        self.limit_concurrency = limit_concurrency
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.backlog = backlog
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_notify = timeout_notify
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        self.callback_notify = callback_notify
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.ssl_context_factory = ssl_context_factory
        self.headers: list[tuple[str, str]] = headers or []
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.factory = factory
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars
        self.reuse_port = reuse_port
        self.limit_request_head_size = limit_request_head_size
        self.limit_request_headers = limit_request_headers
        self.limit_request_body_size = limit_request_body_size
        self.limit_keep_alive_requests = limit_keep_alive_requests
        self.timeout_header_read = timeout_header_read
        self.access_log_format = access_log_format
        self.health_path = health_path
        self.shutdown_delay = shutdown_delay
        # HTTP/2 (read by cyasgi.protocols.http2; checked by _check_http2).
        self.http2_max_concurrent_streams = http2_max_concurrent_streams
        self.http2_initial_stream_window_size = http2_initial_stream_window_size
        self.http2_initial_connection_window_size = http2_initial_connection_window_size
        self.http2_max_frame_size = http2_max_frame_size
        self.http2_max_header_list_size = http2_max_header_list_size
        self.http2_keep_alive_interval = http2_keep_alive_interval
        self.http2_keep_alive_timeout = http2_keep_alive_timeout
        self.http2_stall_timeout = http2_stall_timeout
        self.http2_max_rapid_resets = http2_max_rapid_resets
        self.http2_max_empty_data_frames = http2_max_empty_data_frames
        self.http2_max_control_frames = http2_max_control_frames
        self.http2_max_stream_errors = http2_max_stream_errors
        #: --bind values; with any, ``listeners`` replaces host/port (docs/settings.md).
        self.bind = _as_list(bind)
        #: Every address to serve with --bind: its values, then --uds, then --fd. Empty without --bind.
        self.listeners: list[Listener] = []
        #: UNIX socket files this process created for ``listeners``: removed on exit.
        self.bound_unix_paths: list[str] = []
        #: Prometheus metrics (docs/metrics.md): the listener's address and the main port's path.
        self.metrics_bind = metrics_bind
        self.metrics_path = metrics_path

        self.loaded = False
        self.configure_logging()
        # After the logging configuration: run() reports a ConfigError as an "ERROR:" line through it.
        self._check_limits()
        self._check_operations()
        self._check_http2()
        self._resolve_listeners()

        self.reload_dirs: list[Path] = []
        self.reload_dirs_excludes: list[Path] = []
        self.reload_includes: list[str] = []
        self.reload_excludes: list[str] = []

        if (reload_dirs or reload_includes or reload_excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, please refer to documentation."
            )

        if self.should_reload:
            self._resolve_reload_settings(_as_list(reload_dirs), _as_list(reload_includes), _as_list(reload_excludes))

        if env_file is not None:
            from dotenv import load_dotenv

            if not os.path.isfile(env_file):
                raise ConfigError(f"Environment file '{os.fspath(env_file)}' does not exist or is not a file.")
            logger.info("Loading environment from '%s'", env_file)
            load_dotenv(dotenv_path=env_file)

        if reload and workers is not None and workers > 1:
            raise ConfigError(
                "--reload and --workers cannot be used together: --reload runs one process that restarts "
                "on file changes (development), --workers runs several (production). Pick one."
            )
        if workers is None and "WEB_CONCURRENCY" in os.environ:
            try:
                self.workers = int(os.environ["WEB_CONCURRENCY"]) or 1
            except ValueError:
                raise ConfigError(
                    f"WEB_CONCURRENCY must be a number of workers, not {os.environ['WEB_CONCURRENCY']!r}."
                ) from None

        if reuse_port:
            if self.listeners:
                if not any(listener.kind == "tcp" for listener in self.listeners):
                    raise ConfigError("--reuse-port needs a TCP listener; --bind names only unix: and fd://.")
            elif uds is not None or fd is not None:
                raise ConfigError("--reuse-port needs a TCP --host/--port; it cannot be used with --uds or --fd.")
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigError("--reuse-port is not available on this platform (no SO_REUSEPORT).")

        self.forwarded_allow_ips: list[str] | str
        if forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        else:
            self.forwarded_allow_ips = forwarded_allow_ips

        if self.reload and self.workers > 1:
            logger.warning("$WEB_CONCURRENCY is ignored when reloading is enabled: running one process.")
            self.workers = 1

    def _check_limits(self) -> None:
        """Refuse limits that cannot work; ``0`` / None switch the optional ones off."""
        if self.limit_request_head_size < MIN_LIMIT_REQUEST_HEAD_SIZE:
            raise ConfigError(
                f"--limit-request-head-size must be at least {MIN_LIMIT_REQUEST_HEAD_SIZE} bytes, "
                f"not {self.limit_request_head_size}."
            )
        if self.limit_request_headers < 1:
            raise ConfigError(f"--limit-request-headers must be at least 1, not {self.limit_request_headers}.")
        if self.limit_request_body_size is not None and self.limit_request_body_size < 0:
            raise ConfigError(f"--limit-request-body-size cannot be negative ({self.limit_request_body_size}).")
        if self.limit_keep_alive_requests is not None and self.limit_keep_alive_requests < 0:
            raise ConfigError(f"--limit-keep-alive-requests cannot be negative ({self.limit_keep_alive_requests}).")
        if self.timeout_header_read is not None and self.timeout_header_read < 0:
            raise ConfigError(f"--timeout-header-read cannot be negative ({self.timeout_header_read}).")

    def _check_operations(self) -> None:
        """--access-log-format, --health-path, --shutdown-delay (docs/deployment.md)."""
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            raise ConfigError(
                f"--access-log-format must be one of {', '.join(ACCESS_LOG_FORMATS)}, not {self.access_log_format!r}."
            )
        try:
            #: The raw request path the server answers itself; None: no health endpoint.
            self.health_path_raw = encode_health_path(self.health_path)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.shutdown_delay is None or self.shutdown_delay < 0:
            raise ConfigError(f"--shutdown-delay cannot be negative ({self.shutdown_delay}).")
        self._check_metrics()

    def _check_metrics(self) -> None:
        """--metrics-bind and --metrics-path: well formed, and prometheus_client there to serve them."""
        #: (host, port) of the --metrics-bind listener; None: none.
        self.metrics_address: tuple[str, int] | None = None
        self.metrics_path_raw: bytes | None = None
        if self.metrics_bind:
            try:
                listener = parse_bind(self.metrics_bind)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("--bind", "--metrics-bind", 1)) from None
            if listener.kind != "tcp":
                raise ConfigError(f"--metrics-bind {self.metrics_bind!r}: expected HOST:PORT or [IPV6]:PORT")
            self.metrics_address = (listener.host, listener.port)
        try:
            self.metrics_path_raw = encode_health_path(self.metrics_path, "--metrics-path")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.metrics_path_raw is not None and self.metrics_path_raw == self.health_path_raw:
            raise ConfigError("--metrics-path and --health-path must differ.")
        if (self.metrics_address or self.metrics_path_raw) and not prometheus_available():
            raise ConfigError(f"--metrics-bind and --metrics-path: {MISSING_EXTRA}.")

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_address is not None or self.metrics_path_raw is not None

    def _check_http2(self) -> None:
        """The HTTP/2 tunables (checked whether or not --http2 is on, so a typo never waits for it)."""
        for name, (lowest, highest) in HTTP2_INT_RANGES.items():
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{flag} must be a whole number, not {value!r}.")
            if highest is None and value < lowest:
                raise ConfigError(f"{flag} must be at least {lowest}, not {value}.")
            if highest is not None and not lowest <= value <= highest:
                raise ConfigError(f"{flag} must be between {lowest} and {highest}, not {value}.")
        if self.http2_keep_alive_interval == 0:  # 0 is off, like None
            self.http2_keep_alive_interval = None
        seconds = {
            "http2_keep_alive_interval": self.http2_keep_alive_interval,
            "http2_keep_alive_timeout": self.http2_keep_alive_timeout,
            "http2_stall_timeout": self.http2_stall_timeout,
        }
        for name, value in seconds.items():
            if value is None and name == "http2_keep_alive_interval":
                continue
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{flag} must be a number of seconds, not {value!r}.")
            if not (math.isfinite(value) and value > 0):
                off = " (0 turns it off)" if name == "http2_keep_alive_interval" else ""
                raise ConfigError(f"{flag} must be a positive number of seconds{off}, not {value}.")

    def _resolve_listeners(self) -> None:
        """With --bind, the listeners: its values in order, then --uds and --fd if given."""
        if not self.bind:
            return
        listeners = [parse_bind(value) for value in self.bind]
        if self.uds is not None:
            listeners.append(Listener("unix", path=self.uds))
        if self.fd is not None:
            listeners.append(Listener("fd", fd=self.fd))
        self.listeners = list(dict.fromkeys(listeners))

    def _resolve_reload_settings(self, dirs: list[str], includes: list[str], excludes: list[str]) -> None:
        self.reload_includes, self.reload_dirs = resolve_reload_patterns(includes, dirs)
        self.reload_excludes, self.reload_dirs_excludes = resolve_reload_patterns(excludes, [])
        # An excluded directory removes every watched directory at or below it.
        self.reload_dirs = [
            watched
            for watched in self.reload_dirs
            if not any(excluded == watched or excluded in watched.parents for excluded in self.reload_dirs_excludes)
        ]
        # A pattern both included and excluded is excluded.
        self.reload_includes = [pattern for pattern in self.reload_includes if pattern not in self.reload_excludes]
        if not self.reload_dirs:
            if dirs:
                logger.warning(
                    "Provided reload directories %s did not contain valid directories, "
                    "watching current working directory.",
                    dirs,
                )
            self.reload_dirs = [Path.cwd()]
        logger.info("Will watch for changes in these directories: %s", sorted(map(str, self.reload_dirs)))

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        mapping: dict[str, Literal["2.0", "3.0"]] = {"asgi2": "2.0", "asgi3": "3.0", "wsgi": "3.0"}
        return mapping[self.interface] if self.interface in mapping else "3.0"

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        return bool(self.reload or self.workers > 1)

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and self.reload

    def configure_logging(self) -> None:
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")

        try:
            self._apply_log_config()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 (a broken file or dict, whatever the error: say which)
            log_config = self.log_config
            source = log_config if isinstance(log_config, (str, os.PathLike)) else type(log_config).__name__
            message = f"Could not load the logging configuration {os.fspath(source)!r}: {exc}"
            raise config_error(message, kind_of(exc)) from None

        if self.log_level is not None:
            if isinstance(self.log_level, str):
                if self.log_level.lower() not in LOG_LEVELS:
                    # A KeyError too: uvicorn's lookup in its table of levels raises one.
                    message = f"Unknown log level {self.log_level!r}; use one of {', '.join(LOG_LEVELS)}."
                    raise config_error(message, KeyError)
                log_level = LOG_LEVELS[self.log_level.lower()]
            else:
                log_level = self.log_level
            logging.getLogger("uvicorn.error").setLevel(log_level)
            logging.getLogger("uvicorn.access").setLevel(log_level)
            logging.getLogger("uvicorn.asgi").setLevel(log_level)
        if self.access_log is False:
            logging.getLogger("uvicorn.access").handlers = []
            logging.getLogger("uvicorn.access").propagate = False
        elif self.access_log_format == "json":
            # Whatever the log config attached to uvicorn.access now writes JSON lines.
            from cyasgi.logging import JsonAccessFormatter

            for handler in logging.getLogger("uvicorn.access").handlers:
                handler.setFormatter(JsonAccessFormatter())

    def _apply_log_config(self) -> None:
        if self.log_config is not None:
            if isinstance(self.log_config, dict):
                log_config = copy.deepcopy(self.log_config)
                if self.use_colors in (True, False):
                    for name in ("default", "access"):
                        formatter = log_config.get("formatters", {}).get(name)
                        if isinstance(formatter, dict):
                            formatter["use_colors"] = self.use_colors
                logging.config.dictConfig(log_config)
            elif isinstance(self.log_config, (str, os.PathLike)):
                path = os.fspath(self.log_config)
                if path.endswith(".json"):
                    with open(path) as file:
                        loaded_config = json.load(file)
                    logging.config.dictConfig(loaded_config)
                elif path.endswith((".yaml", ".yml")):
                    import yaml

                    with open(path) as file:
                        loaded_config = yaml.safe_load(file)
                    logging.config.dictConfig(loaded_config)
                else:
                    # Anything else is read as an .ini file, like the logging module's fileConfig.
                    logging.config.fileConfig(path, disable_existing_loggers=False)
            else:
                logging.config.fileConfig(self.log_config, disable_existing_loggers=False)

    def load(self) -> None:
        """Resolve everything the server needs: TLS, headers, protocol classes, lifespan and the app."""
        assert not self.loaded

        if self.is_ssl:
            if not self.ssl_certfile and self.ssl_context_factory is None:
                raise ConfigError("--ssl-keyfile needs --ssl-certfile (the certificate to serve).")

            def default_ssl_context_factory() -> ssl.SSLContext:
                if not self.ssl_certfile:
                    # A RuntimeError, as in uvicorn: the factory's own code called this too early.
                    raise config_error(
                        "The default SSL context factory requires `ssl_certfile` (and usually `ssl_keyfile`): "
                        "pass them to Config, or build the SSLContext in ssl_context_factory without calling "
                        "the default factory.",
                        RuntimeError,
                    )
                try:
                    return create_ssl_context(
                        keyfile=self.ssl_keyfile,
                        certfile=self.ssl_certfile,
                        password=self.ssl_keyfile_password,
                        ssl_version=self.ssl_version,
                        cert_reqs=self.ssl_cert_reqs,
                        ca_certs=self.ssl_ca_certs,
                        ciphers=self.ssl_ciphers,
                    )
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    paths = (self.ssl_certfile, self.ssl_keyfile, self.ssl_ca_certs)
                    files = ", ".join(str(path) for path in paths if path)
                    raise config_error(f"Could not set up TLS from {files}: {exc}", kind_of(exc)) from None

            if self.ssl_context_factory is not None:
                context = self.ssl_context_factory(self, default_ssl_context_factory)
                if not isinstance(context, ssl.SSLContext):
                    raise config_error(
                        f"`ssl_context_factory` must return an `ssl.SSLContext`, got {type(context).__name__}.",
                        TypeError,
                    )
                self.ssl: ssl.SSLContext | None = context
            else:
                self.ssl = default_ssl_context_factory()
            if self.http2:
                prepare_http2_tls(self.ssl)
        else:
            self.ssl = None

        self.encoded_headers = encode_default_headers(self.headers, self.server_header)
        #: PEM of the server's certificate for the TLS scope extension (its ``server_cert``).
        self.ssl_server_cert: str | None = None
        if self.ssl is not None and self.ssl_certfile:
            from cyasgi.protocols.tls import first_certificate_pem

            self.ssl_server_cert = first_certificate_pem(self.ssl_certfile)

        # http_parser_factory: None for the twin's own strict parser, else callable(protocol) -> parser.
        self.http_parser_factory: Callable[[Any], Any] | None = None
        if isinstance(self.http, str):
            self.http_protocol_class = _import_setting("HTTP protocol", HTTP_PROTOCOLS.get(self.http, self.http))
        else:
            self.http_protocol_class = self.http
        # The parser: named by --http, or by the class (uvicorn's module paths, e.g.
        # cyasgi.protocols.http.h11_impl:H11Protocol, are cyasgi's protocol with a parser_name).
        parser_name = self.http if isinstance(self.http, str) else None
        parser_name = getattr(self.http_protocol_class, "parser_name", None) or parser_name
        if parser_name is not None:
            parser_path = HTTP_PARSERS.get(parser_name)
            missing = missing_parser_package(parser_name)
            if missing is not None:  # uvicorn's import of the protocol fails with this type
                message = f"--http {parser_name} needs the {missing!r} package, which is not installed."
                raise config_error(message, ModuleNotFoundError)
            if parser_path is not None:
                factory = _import_setting("HTTP parser", parser_path)
                if parser_name == "h11":
                    factory = factory.factory(self)
                self.http_parser_factory = factory

        if isinstance(self.ws, str):
            ws_protocol_class = WS_PROTOCOLS.get(self.ws, self.ws)
            if ws_protocol_class is None:
                self.ws_protocol_class: type[Any] | None = None
            else:
                try:
                    self.ws_protocol_class = import_from_string(ws_protocol_class)
                except (ImportError, ImportFromStringError) as exc:
                    if self.ws != "auto":
                        message = f"Error loading WebSocket protocol {self.ws!r}. {exc}"
                        raise config_error(message, kind_of(exc)) from None
                    self.ws_protocol_class = None
        else:
            self.ws_protocol_class = self.ws

        self.lifespan_class = import_from_string(LIFESPAN[self.lifespan])

        self.loaded_app = self.load_app()

        try:
            produced = self.loaded_app()
        except TypeError as exc:
            if self.factory:
                logger.error("Error loading ASGI app factory: %s", exc)
                sys.exit(STARTUP_FAILURE)
        else:
            if inspect.iscoroutine(produced):
                # An ASGI app whose signature takes anything (``*args``), not a factory.
                produced.close()
                if self.factory:
                    logger.error("Error loading ASGI app factory: it returned a coroutine; factories must be sync.")
                    sys.exit(STARTUP_FAILURE)
            else:
                self.loaded_app = produced
            if not self.factory and self.loaded_app is produced:
                logger.warning(
                    "ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly."
                )

        if self.interface == "auto":
            self.interface = _detect_interface(self.loaded_app)

        if self.interface == "wsgi":
            from cyasgi.middleware.wsgi import WSGIMiddleware

            self.loaded_app = WSGIMiddleware(self.loaded_app)
            self.ws_protocol_class = None
        elif self.interface == "asgi2":
            from cyasgi.middleware.asgi2 import ASGI2Middleware

            self.loaded_app = ASGI2Middleware(self.loaded_app)

        if logger.getEffectiveLevel() <= TRACE_LOG_LEVEL:
            from cyasgi.middleware.message_logger import MessageLoggerMiddleware

            self.loaded_app = MessageLoggerMiddleware(self.loaded_app)
        # The HTTP protocols apply proxy headers themselves (trust decided once per connection)
        # and call http_app; WebSocket protocols and lifespan call loaded_app, which has the middleware.
        self.http_app = self.loaded_app
        self.proxy_trusted_hosts: Any = None
        if self.proxy_headers:
            from cyasgi.middleware.proxy_headers import ProxyHeadersMiddleware

            self.loaded_app = ProxyHeadersMiddleware(self.loaded_app, trusted_hosts=self.forwarded_allow_ips)
            self.proxy_trusted_hosts = self.loaded_app.trusted_hosts

        self.loaded = True

    def load_app(self) -> Any:
        """Import the app and return it (before the server starts, so a bad import string fails fast)."""
        try:
            return import_from_string(self.app)
        except ImportFromStringError as exc:
            logger.error("Error loading ASGI app. %s", exc)
            sys.exit(STARTUP_FAILURE)

    def setup_event_loop(self) -> None:
        raise AttributeError(
            "The `setup_event_loop` method was replaced by `get_loop_factory` in uvicorn 0.36.0; "
            "cyasgi follows the newer API."
        )

    def get_loop_factory(self) -> Callable[[], Any] | None:
        if self.loop in LOOP_FACTORIES:
            factory_path = LOOP_FACTORIES[self.loop]
            if factory_path is None:
                return None
            if self.loop == "uvloop" and IS_PYPY:
                logger.error("uvloop does not run on PyPy; use --loop asyncio (or auto).")
                sys.exit(STARTUP_FAILURE)
            try:
                loop_factory = import_from_string(factory_path)
            except ModuleNotFoundError as exc:
                # The loop's own package (uvloop, zuvloop) is missing: cyasgi.loops.* import it first.
                if exc.name != self.loop:
                    raise
                instead = "asyncio" if IS_PYPY or self.loop == "uvloop" else "uvloop"
                logger.error(
                    "--loop %s needs the %s package%s; install it or use --loop %s",
                    self.loop,
                    self.loop,
                    " (Python 3.14+)" if self.loop == "zuvloop" else "",
                    instead,
                )
                sys.exit(STARTUP_FAILURE)
            return loop_factory(use_subprocess=self.use_subprocess)
        try:
            return import_from_string(self.loop)
        except ImportFromStringError as exc:
            logger.error("Error loading custom loop setup function. %s", exc)
            sys.exit(STARTUP_FAILURE)

    def bind_socket(self, *, announce: bool = True, listen: bool = True) -> socket.socket:
        """Bind the listening socket in the parent process (for --workers and --reload).

        With ``reuse_port`` the socket gets SO_REUSEPORT, so other sockets (other workers) can bind
        the same address. ``announce=False`` skips the "running on" line (a worker binding its own).
        ``listen`` listens at once: a connection made while the server process starts (or restarts,
        with --reload) waits in the backlog instead of being refused. A socket that only holds the
        address for the workers' own (--workers with --reuse-port) must not listen: the kernel would
        hand it connections nobody accepts.
        """
        logger_args: list[str | int]
        if self.uds is not None:
            path = self.uds
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                uds_perms = 0o666
                os.chmod(self.uds, uds_perms)
            except OSError as exc:
                logger.error(exc)
                sys.exit(STARTUP_FAILURE)

            message = "cyasgi running on unix socket %s (Press CTRL+C to quit)"
            sock_name_format = "%s"
            color_message = "cyasgi running on " + _bold(sock_name_format) + " (Press CTRL+C to quit)"
            logger_args = [self.uds]
        elif self.fd is not None:
            sock = socket.socket(fileno=os.dup(self.fd))
            message = "cyasgi running on socket %s (Press CTRL+C to quit)"
            fd_name_format = "%s"
            color_message = "cyasgi running on " + _bold(fd_name_format) + " (Press CTRL+C to quit)"
            logger_args = [sock.getsockname()]
        else:
            family = socket.AF_INET
            addr_format = "%s://%s:%d"

            if self.host and ":" in self.host:
                family = socket.AF_INET6
                addr_format = "%s://[%s]:%d"

            sock = socket.socket(family=family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # "::" takes IPv4 too, also where the OS default is IPv6-only
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                logger.error(exc)
                sys.exit(STARTUP_FAILURE)

            message = f"cyasgi running on {addr_format} (Press CTRL+C to quit)"
            color_message = "cyasgi running on " + _bold(addr_format) + " (Press CTRL+C to quit)"
            protocol_name = "https" if self.is_ssl else "http"
            port = sock.getsockname()[1] if self.port == 0 else self.port
            logger_args = [protocol_name, self.host, port]
        if listen:
            sock.listen(self.backlog)
        if announce:
            logger.info(message, *logger_args, extra={"color_message": color_message})
        sock.set_inheritable(True)
        return sock


    def open_listeners(
        self, listeners: list[Listener] | None = None, *, listen_tcp: bool = True
    ) -> list[socket.socket]:
        """Bind ``listeners`` (default: all of ``self.listeners``), in order; an OSError naming the
        address if one cannot be bound (those bound before it are closed).

        A TCP port 0 is replaced in ``self.listeners`` by the port the system picked, so that workers
        started afterwards (--reuse-port) bind the same one. ``listen_tcp=False``: the TCP sockets only
        hold their address for the workers' own (see ``bind_socket``).
        """
        sockets: list[socket.socket] = []
        try:
            for listener in self.listeners if listeners is None else listeners:
                if listener.kind == "unix":
                    sock = unix_socket(listener.path)
                    self.bound_unix_paths.append(listener.path)
                elif listener.kind == "fd":
                    sock = fd_socket(listener.fd)
                else:
                    sock = tcp_socket(listener.host, listener.port, self.reuse_port)
                    if listener.port == 0 and listener in self.listeners:
                        self.listeners[self.listeners.index(listener)] = replace(
                            listener, port=sock.getsockname()[1]
                        )
                sockets.append(sock)
                if listen_tcp or listener.kind != "tcp":
                    sock.listen(self.backlog)
                sock.set_inheritable(True)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    def bind_sockets(
        self, listeners: list[Listener] | None = None, *, announce: bool = True, listen_tcp: bool = True
    ) -> list[socket.socket]:
        """``open_listeners`` for a supervisor (--workers, --reload) or a worker: a failure is logged
        and exits with STARTUP_FAILURE; ``announce`` logs every listener's "running on" line."""
        try:
            sockets = self.open_listeners(listeners, listen_tcp=listen_tcp)
        except OSError as exc:
            logger.error(exc)
            sys.exit(STARTUP_FAILURE)
        if announce:
            for listener, sock in zip(self.listeners if listeners is None else listeners, sockets):
                self.announce_listener(listener, sock)
        return sockets

    def announce_listener(self, listener: Listener, sock: socket.SocketType) -> None:
        """The "cyasgi running on ..." line of one listener, in the shape --host/--uds/--fd print it."""
        suffix = " (Press CTRL+C to quit)"
        args: list[Any]
        if listener.kind == "unix":
            addr_format, args = "unix socket %s", [listener.path]
            color_format = _bold("%s")
        elif listener.kind == "fd":
            addr_format, args = "socket %s", [sock.getsockname()]
            color_format = _bold("%s")
        else:
            addr_format = "%s://[%s]:%d" if ":" in listener.host else "%s://%s:%d"
            args = ["https" if self.is_ssl else "http", listener.host, sock.getsockname()[1]]
            color_format = _bold(addr_format)
        logger.info(
            "cyasgi running on " + addr_format + suffix,
            *args,
            extra={"color_message": "cyasgi running on " + color_format + suffix},
        )

    def remove_unix_sockets(self) -> None:
        """Remove the UNIX socket files ``open_listeners`` created (a file put there since is left alone)."""
        for path in self.bound_unix_paths:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
        self.bound_unix_paths.clear()


def _import_setting(what: str, import_str: str) -> Any:
    """Import a protocol named by a setting; a bad name is a one-line ConfigError."""
    try:
        return import_from_string(import_str)
    except (ImportError, ImportFromStringError) as exc:
        raise config_error(f"Error loading {what} {import_str!r}. {exc}", kind_of(exc)) from None


def _bold(text: str) -> str:
    import click

    return click.style(text, bold=True)


def encode_default_headers(headers: list[tuple[str, str]], server_header: bool) -> list[tuple[bytes, bytes]]:
    """Encode ``--header`` pairs, refusing what would split a response, and add ``server: cyasgi``."""
    from cyasgi.protocols.http.rules import is_valid_header_name, is_valid_header_value

    encoded: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        try:
            raw_name = name.lower().encode("latin-1")
            raw_value = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ConfigError(f"Default header {name!r} is not latin-1 text.") from None
        if not is_valid_header_name(raw_name):
            raise ConfigError(f"Invalid default header name {name!r}.")
        if not is_valid_header_value(raw_value):
            raise ConfigError(f"Invalid value for default header {name!r}: control characters are not allowed.")
        encoded.append((raw_name, raw_value))
    if server_header and b"server" not in dict(encoded):
        encoded.insert(0, (b"server", b"cyasgi"))
    return encoded
