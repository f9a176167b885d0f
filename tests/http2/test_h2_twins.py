"""The HTTP/2 protocol's two builds: the selector and the HTTP/1.1 hand-over pick the compiled one where
it is built, and a build that silently fell back to Python fails here."""

from __future__ import annotations

import importlib

import pytest

from cyasgi.protocols.http2 import serving
from tests.http2.test_connection import EXPECT_COMPILED

TWINS = {"c": "cyasgi._speedups.h2protocol", "py": "cyasgi.protocols.http2.protocol"}


def test_selector_picks_the_compiled_protocol_when_built():
    if EXPECT_COMPILED:
        assert serving.COMPILED and serving.IMPLEMENTATION_MODULE == TWINS["c"]
    else:
        assert not serving.COMPILED and serving.IMPLEMENTATION_MODULE == TWINS["py"]


@pytest.mark.parametrize("name", ["c", "py"])
def test_each_build_is_what_it_says(name):
    if name == "c" and not EXPECT_COMPILED:
        pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    module = importlib.import_module(TWINS[name])
    assert module.COMPILED == (name == "c"), f"{module.__file__}: the build fell back to Python"
    assert module.PREFACE == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
