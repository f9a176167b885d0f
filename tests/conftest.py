"""Shared fixtures: the twin parametrisation every protocol test runs under."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import pytest

from cyasgi._compat import NO_EXTENSIONS

SPEEDUPS = Path(__file__).resolve().parent.parent / "cyasgi" / "_speedups"

TWIN_MODULES = {"c": "cyasgi._speedups.http", "py": "cyasgi.protocols.http.protocol"}


def load_twin(name: str) -> Any:
    """The protocol module of a twin. ``c`` is skipped only where it cannot exist; a build that
    should have produced it and did not fails loudly (ImportError), it is never skipped."""
    if name == "c":
        if NO_EXTENSIONS:
            pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
        if not (SPEEDUPS / "http.pxd").exists():
            pytest.skip("this tree has no compiled twin yet")
    module = importlib.import_module(TWIN_MODULES[name])
    if name == "c":
        # cyasgi/_speedups/http.py is the pure source linked for the compiler: without the built
        # extension it imports as plain Python, which must never pass for the compiled twin.
        assert module.COMPILED, f"{module.__file__} is not the compiled extension: the build fell back"
    return module


@pytest.fixture(params=["c", "py"])
def twin(request: pytest.FixtureRequest) -> Any:
    """The HTTP/1.1 protocol module under test: compiled (``[c]``) or pure Python (``[py]``)."""
    return load_twin(request.param)


#: Every twin with every request parser it can drive.
TWIN_PARSERS = [(twin, parser) for twin in ("c", "py") for parser in ("cyasgi", "httptools", "h11")]


@pytest.fixture(params=TWIN_PARSERS, ids=[f"{twin}-{parser}" for twin, parser in TWIN_PARSERS])
def twin_parser(request: pytest.FixtureRequest) -> tuple[Any, str]:
    """``(protocol module, parser name)``: each twin driving its own parser, httptools and h11."""
    twin_name, parser = request.param
    if parser == "httptools":
        pytest.importorskip("httptools")
    return load_twin(twin_name), parser


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@pytest.fixture(autouse=True)
def restore_logging() -> Any:
    """Config() configures logging process-wide; put uvicorn's loggers back after every test."""
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled))
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


@pytest.fixture(params=["websockets-sansio", "wsproto", "websockets"])
def ws(request: pytest.FixtureRequest) -> str:
    """The ``--ws`` implementation under test."""
    return str(request.param)
