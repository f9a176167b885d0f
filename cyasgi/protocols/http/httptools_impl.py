"""uvicorn's ``uvicorn.protocols.http.httptools_impl`` path: cyasgi's HTTP/1.1 protocol driving the httptools
parser, for code that names this class (``--http cyasgi.protocols.http.httptools_impl:HttpToolsProtocol``,
``Config(http=HttpToolsProtocol)``)."""

from __future__ import annotations

from cyasgi.protocols.http.auto import HttpProtocol

__all__ = ["HttpToolsProtocol"]


class HttpToolsProtocol(HttpProtocol):
    """The selected build of cyasgi's protocol; Config reads ``parser_name`` to pick the parser."""

    parser_name = "httptools"
