"""uvicorn's ``uvicorn.protocols.http.h11_impl`` path: cyasgi's HTTP/1.1 protocol driving the h11
parser, for code that names this class (``--http cyasgi.protocols.http.h11_impl:H11Protocol``,
``Config(http=H11Protocol)``)."""

from __future__ import annotations

from cyasgi.protocols.http.auto import HttpProtocol

__all__ = ["H11Protocol"]


class H11Protocol(HttpProtocol):
    """The selected build of cyasgi's protocol; Config reads ``parser_name`` to pick the parser."""

    parser_name = "h11"
