"""Fixtures of the HTTP/2 server tests: one server per twin and module (a server start and stop costs
~0.2 s; most tests only need a fresh connection), and the app state, reset for every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import load_twin
from tests.http2.h2util import AppState, close_sockets, h2_config, make_app
from tests.utils import ThreadedServer, run_server


@pytest.fixture(scope="module")
def shared_state() -> AppState:
    return AppState()


@pytest.fixture
def state(shared_state: AppState) -> AppState:
    """The app's state, empty for this test (what an earlier test left waiting is released first)."""
    shared_state.reset()
    return shared_state


@pytest.fixture(scope="module", params=["c", "py"])
def server(request: pytest.FixtureRequest, shared_state: AppState) -> Iterator[ThreadedServer]:
    """A server with --http2 and the app of h2util.py, shared by a module's tests, for each twin."""
    twin: Any = load_twin(request.param)
    with run_server(h2_config(make_app(shared_state), twin)) as running:
        yield running


@pytest.fixture(autouse=True)
def _close_client_sockets() -> Iterator[None]:
    yield
    close_sockets()
