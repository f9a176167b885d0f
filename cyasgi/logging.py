"""Log formatters: uvicorn's line shapes and record shapes, so existing logging configs keep working."""

from __future__ import annotations

import http
import json
import logging
import re
import sys
import time
from copy import copy
from typing import Literal

import click

TRACE_LOG_LEVEL = 5

# C0 controls, DEL and C1 controls: never written raw to a terminal or log file, since request
# paths and headers are attacker-controlled (no newline or ANSI escape injection).
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape_control(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def escape_log_text(text: str) -> str:
    """Replace control characters with ``\\xNN`` so a log line stays one inert line."""
    return _CONTROL_CHARS.sub(_escape_control, text)


class ColourizedFormatter(logging.Formatter):
    """Adds ``%(levelprefix)s``: the level name, coloured on a TTY, padded so messages line up."""

    level_name_colors = {
        TRACE_LOG_LEVEL: lambda level_name: click.style(str(level_name), fg="blue"),
        logging.DEBUG: lambda level_name: click.style(str(level_name), fg="cyan"),
        logging.INFO: lambda level_name: click.style(str(level_name), fg="green"),
        logging.WARNING: lambda level_name: click.style(str(level_name), fg="yellow"),
        logging.ERROR: lambda level_name: click.style(str(level_name), fg="red"),
        logging.CRITICAL: lambda level_name: click.style(str(level_name), fg="bright_red"),
    }

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ):
        if use_colors in (True, False):
            self.use_colors = use_colors
        else:
            self.use_colors = self.should_use_colors()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name: str, level_no: int) -> str:
        colorize = self.level_name_colors.get(level_no, str)
        return colorize(level_name)

    def should_use_colors(self) -> bool:
        """Colours by default only when the stream this formatter usually writes to is a TTY."""
        return sys.stdout.isatty()

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy(record)
        levelname = recordcopy.levelname
        separator = " " * (8 - len(recordcopy.levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, recordcopy.levelno)
            if "color_message" in recordcopy.__dict__:
                recordcopy.msg = recordcopy.__dict__["color_message"]
                recordcopy.__dict__["message"] = recordcopy.getMessage()
        recordcopy.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(recordcopy)


class DefaultFormatter(ColourizedFormatter):
    def should_use_colors(self) -> bool:
        return sys.stderr.isatty()


class AccessFormatter(ColourizedFormatter):
    """Formats ``uvicorn.access`` records whose args are ``(client_addr, method, path, http_version, status)``.

    Adds ``%(client_addr)s``, ``%(request_line)s`` and ``%(status_code)s`` (``200 OK``), with the
    attacker-controlled parts escaped.
    """

    status_code_colours = {
        1: lambda code: click.style(str(code), fg="bright_white"),
        2: lambda code: click.style(str(code), fg="green"),
        3: lambda code: click.style(str(code), fg="yellow"),
        4: lambda code: click.style(str(code), fg="red"),
        5: lambda code: click.style(str(code), fg="bright_red"),
    }

    def get_status_code(self, status_code: int) -> str:
        try:
            status_phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            status_phrase = ""
        status_and_phrase = f"{status_code} {status_phrase}"
        if self.use_colors:
            colorize = self.status_code_colours.get(status_code // 100, str)
            return colorize(status_and_phrase)
        return status_and_phrase

    def formatMessage(self, record: logging.LogRecord) -> str:
        recordcopy = copy(record)
        (client_addr, method, full_path, http_version, status_code) = recordcopy.args  # type: ignore[misc]
        status_code = self.get_status_code(int(status_code))  # type: ignore[arg-type]
        request_line = escape_log_text(f"{method} {full_path} HTTP/{http_version}")
        if self.use_colors:
            request_line = click.style(request_line, bold=True)
        recordcopy.__dict__.update(
            {
                "client_addr": escape_log_text(str(client_addr)),
                "request_line": request_line,
                "status_code": status_code,
            }
        )
        return super().formatMessage(recordcopy)


class JsonAccessFormatter(logging.Formatter):
    """``--access-log-format json``: one JSON object per ``uvicorn.access`` record, on one line.

    Keys: ``time`` (ISO 8601, UTC, milliseconds), ``client``, ``method``, ``path``,
    ``http_version``, ``status``, ``bytes`` (body bytes sent), ``duration`` (seconds),
    ``request_id`` (the request's ``x-request-id``, else null) and ``aborted``. ``json.dumps``
    escapes every string (control characters and non-ASCII included), so a request cannot forge
    or break a line. A record of another shape is written as ``time`` and ``message``.
    """

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        moment = time.gmtime(record.created)
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', moment)}.{int(record.msecs):03d}Z"
        if isinstance(args, tuple) and len(args) == 5:
            client_addr, method, path, http_version, status = args
            duration = getattr(record, "duration", None)
            entry = {
                "time": stamp,
                "client": client_addr or None,
                "method": method,
                "path": path,
                "http_version": http_version,
                "status": status,
                "bytes": getattr(record, "bytes_sent", None),
                "duration": None if duration is None else round(duration, 6),
                "request_id": getattr(record, "request_id", None),
                "aborted": getattr(record, "aborted", False),
            }
        else:
            entry = {"time": stamp, "message": record.getMessage()}
        return json.dumps(entry)
