"""Build script: cythonizes cyasgi/_speedups/*.pyx, and every cyasgi/_speedups/*.py that has a .pxd
(a symlink to a pure module compiled with its augmenting .pxd: one source, two builds), into optional
extensions.

CYASGI_NO_EXTENSIONS=1      build nothing (pure-Python install).
CYASGI_REQUIRE_EXTENSIONS=1 a failed compile fails the build (CI, releases).
CYASGI_DEBUG=1              compile with the CYASGI_DEBUG macro and Cython's bounds checks.
Without a compiler, or without Cython (PyPy), the package installs pure.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = env_flag("CYASGI_NO_EXTENSIONS") or platform.python_implementation() != "CPython"
REQUIRE_EXTENSIONS = env_flag("CYASGI_REQUIRE_EXTENSIONS")
DEBUG = env_flag("CYASGI_DEBUG")


def warn(message: str) -> None:
    print(f"cyasgi setup: {message}", file=sys.stderr)


def speedup_extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        if REQUIRE_EXTENSIONS:
            raise SystemExit("CYASGI_REQUIRE_EXTENSIONS=1 but extensions are disabled on this interpreter")
        return []
    sources = sorted(glob.glob(os.path.join("cyasgi", "_speedups", "*.pyx")))
    one_source = one_source_modules()
    if not sources and not one_source:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        warn("Cython is not installed: installing the pure-Python twin only")
        return []
    macros = [("CYASGI_DEBUG", "1" if DEBUG else "0")]

    def extension(source: str) -> Extension:
        return Extension(
            "cyasgi._speedups." + os.path.splitext(os.path.basename(source))[0],
            [source],
            define_macros=macros,
            extra_compile_args=["-O2"] if not DEBUG else ["-O0", "-g"],
        )

    # Hand-written C-level Cython: indexing is checked by the code itself.
    c_level = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": True,
        "embedsignature": True,
    }
    # Python source keeps Python's semantics (negative indexes, bounds, annotations as documentation).
    python_level = {"language_level": 3, "embedsignature": True, "annotation_typing": False}
    annotate = env_flag("CYASGI_ANNOTATE")
    built = cythonize([extension(source) for source in sources], compiler_directives=c_level, annotate=annotate)
    built += cythonize(
        [extension(source) for source in one_source], compiler_directives=python_level, annotate=annotate
    )
    # cythonize() returns fresh Extension objects and drops optional=; set it again so a
    # machine without a compiler still installs the pure twin.
    for ext in built:
        ext.optional = not REQUIRE_EXTENSIONS
    return built


def one_source_modules() -> list[str]:
    """``cyasgi/_speedups/NAME.py`` files with a ``NAME.pxd`` beside them."""
    return [
        source
        for source in sorted(glob.glob(os.path.join("cyasgi", "_speedups", "*.py")))
        if os.path.exists(os.path.splitext(source)[0] + ".pxd")
    ]


class OptionalBuildExt(build_ext):
    """Turns a failed compile into a warning unless CYASGI_REQUIRE_EXTENSIONS is set."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils raises before building anything
            if REQUIRE_EXTENSIONS:
                raise
            warn(f"could not build the compiled twin ({exc}); the pure-Python twin will be used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            warn(f"could not build {ext.name} ({exc}); the pure-Python twin will be used")


setup(ext_modules=speedup_extensions(), cmdclass={"build_ext": OptionalBuildExt})
