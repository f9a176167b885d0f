"""The Starlette file workload: ``FileResponse``, the way a Starlette or FastAPI app serves a file.

Starlette sends it with ``http.response.pathsend`` where the server announces it (cyasgi, granian);
elsewhere (uvicorn) it reads the file in a worker thread, 64 KiB at a time. It stats the file in a
worker thread on every server. The files are bench_app's.
"""

from __future__ import annotations

from bench_app import FILES
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route


def file_route(route: str, path: str) -> Route:
    async def endpoint(request: object) -> FileResponse:
        return FileResponse(path, media_type="application/octet-stream")

    return Route(route, endpoint)


app = Starlette(routes=[file_route(route, path) for route, path in FILES.items()])
