"""Packaging: a machine without a C compiler still installs cyasgi (pure); CI can forbid that."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cyasgi._compat import IS_PYPY
from tests.utils import ROOT

pytestmark = pytest.mark.skipif(IS_PYPY, reason="PyPy never builds the compiled twin: nothing to fall back from")

BUILD_TIMEOUT = 300


def copy_sources(destination: Path) -> Path:
    """The checkout without build products, venvs or caches (what a fresh clone would hold)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "*.so", "*.c", "*.html",
        "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache",
    )
    target = destination / "src"
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def build_wheel(source: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # No build isolation: the test venv already has Cython and setuptools, and no network is needed.
    # CYASGI_NO_EXTENSIONS (set by `make test-pure`) would skip the compile these tests are about.
    base = {name: value for name, value in os.environ.items() if name != "CYASGI_NO_EXTENSIONS"}
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        env={**base, "CC": "/bin/false", **env},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )


@pytest.mark.slow
def test_without_a_compiler_the_wheel_is_pure_and_the_build_says_so(tmp_path):
    source = copy_sources(tmp_path)
    result = build_wheel(source, tmp_path / "wheels", CYASGI_REQUIRE_EXTENSIONS="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the pure-Python twin will be used" in result.stdout + result.stderr
    [wheel] = (tmp_path / "wheels").glob("cyasgi-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cyasgi/protocols/http/protocol.py" in names
    assert "cyasgi/_speedups/http.pxd" in names and "cyasgi/_speedups/parser.pyx" in names
    assert not [name for name in names if name.endswith((".so", ".c", ".pyd"))], names


@pytest.mark.slow
def test_require_extensions_turns_a_failed_compile_into_a_failed_build(tmp_path):
    source = copy_sources(tmp_path)
    result = build_wheel(source, tmp_path / "wheels", CYASGI_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert not list((tmp_path / "wheels").glob("cyasgi-*.whl"))


def test_every_package_and_cython_include_is_shipped():
    """A package directory missing from pyproject's list installs without it (an editable install,
    which the rest of the suite uses, would never notice); so would a .pxd the compile needs."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "pyproject.toml").read_text()
    listed = set(re.findall(r'^\s+"(cyasgi[\w.]*)",$', text.split("packages = [", 1)[1].split("]", 1)[0], re.M))
    found = {
        ".".join(path.parent.relative_to(root).parts)
        for path in (root / "cyasgi").rglob("__init__.py")
    }
    assert found == listed
    speedups = root / "cyasgi" / "_speedups"
    patterns = re.search(r'^"cyasgi._speedups" = \[(.*)\]$', text, re.M)
    assert patterns is not None
    globs = [glob.strip(' "') for glob in patterns.group(1).split(",")]
    needed = {path.relative_to(speedups).as_posix() for path in speedups.rglob("*.pxd")}
    needed |= {path.relative_to(speedups).as_posix() for path in speedups.rglob("*.pyx")}
    shipped = {path.relative_to(speedups).as_posix() for glob in globs for path in speedups.glob(glob)}
    assert needed <= shipped, needed - shipped
