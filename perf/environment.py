"""The benchmark's own venv: which Python, what is installed in it, and the facts of this machine.

cyasgi goes in as a regular (non-editable) install of this checkout, built from a clean copy of its
sources so the extension is compiled for the venv's Python and nothing stale from the checkout (an
in-place ``.so`` for another Python, an old ``build/``) can leak in. It is reinstalled whenever a
source file changes (a fingerprint of them is kept in the venv).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from perf.registry import PERF

ROOT = PERF.parent
REQUIREMENTS = PERF / "requirements.txt"
#: The peers that install on PyPy (no uvloop, granian or matplotlib there).
REQUIREMENTS_PYPY = PERF / "requirements-pypy.txt"
PREFERRED = (3, 12)
#: What a build of cyasgi needs from the checkout.
SOURCE_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE")
SOURCE_SUFFIXES = (".py", ".pyx", ".pxd", ".pxi", ".h", ".c.in", ".typed")
VERSIONS_OF = (
    "cyasgi", "uvicorn", "httptools", "uvloop", "h11", "granian", "hypercorn", "fastapi", "starlette",
    "pydantic", "matplotlib", "Cython", "zttp", "h2", "socketify",
)  # fmt: skip

Log = Callable[[str], None]


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.name.split("."))


def find_python(requested: str | None = None) -> str:
    """``requested`` if given; else the newest pyenv CPython 3.12.x; else ``python3`` on the PATH."""
    if requested:
        found = shutil.which(requested)
        if found is None:
            raise SystemExit(f"--python {requested}: no such interpreter")
        return found
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    pattern = re.compile(r"^{}\.{}\.\d+$".format(*PREFERRED))
    if root.is_dir():
        candidates = sorted((p for p in root.iterdir() if pattern.match(p.name)), key=_version_key)
        for candidate in reversed(candidates):
            python = candidate / "bin" / "python3"
            if python.exists():
                return str(python)
    return shutil.which("python3") or sys.executable


def find_pypy(requested: str | None = None) -> str:
    """``requested`` if given, else ``pypy3`` on the PATH (``make test-pypy`` installs Debian's)."""
    found = shutil.which(requested or "pypy3")
    if found is None:
        raise SystemExit(
            f"{requested or 'pypy3'}: no such interpreter (Debian: apt-get install pypy3 pypy3-venv pypy3-dev)"
        )
    return found


def describe_python(python: str) -> dict[str, str]:
    script = (
        "import json, platform, sys;"
        "print(json.dumps({'implementation': platform.python_implementation(),"
        "'version': platform.python_version(), 'tag': '%s%d.%d' % ("
        "'' if sys.implementation.name == 'cpython' else sys.implementation.name, *sys.version_info[:2])}))"
    )
    output = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def source_files(root: Path = ROOT) -> list[Path]:
    files = [root / name for name in SOURCE_FILES if (root / name).exists()]
    for path in sorted((root / "cyasgi").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name.endswith(SOURCE_SUFFIXES):
            files.append(path)
    return files


def fingerprint(files: list[Path], root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Venv:
    base_python: str
    path: Path
    log_path: Path
    requirements: Path = REQUIREMENTS
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin_dir / "python")

    def _pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [self.python, "-m", "pip", "--disable-pip-version-check", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        with open(self.log_path, "a") as log:
            log.write(f"$ pip {' '.join(args)}\n{completed.stdout}{completed.stderr}\n")
        return completed

    def _marker(self, name: str) -> Path:
        return self.path / f".perf-{name}"

    def ensure(self, log: Log, root: Path = ROOT) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not Path(self.python).exists():
            log(f"creating {self.path} with {self.base_python}")
            subprocess.run([self.base_python, "-m", "venv", str(self.path)], check=True)
            self._pip("install", "-q", "--upgrade", "pip")
        self._install_requirements(log)
        self._install_cyasgi(log, root)

    def _install_requirements(self, log: Log) -> None:
        wanted = fingerprint([self.requirements], PERF)
        marker = self._marker("requirements")
        if marker.exists() and marker.read_text() == wanted:
            return
        lines = [line.strip() for line in self.requirements.read_text().splitlines()]
        for requirement in (line for line in lines if line and not line.startswith("#")):
            log(f"installing {requirement}")
            completed = self._pip("install", "-q", requirement)
            if completed.returncode != 0:
                tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:]
                self.failures[requirement] = tail[0] if tail else f"pip exited with {completed.returncode}"
                log(f"  failed: {self.failures[requirement]} (see {self.log_path})")
        if not self.failures:  # a failed peer is tried again next run
            marker.write_text(wanted)

    def _install_cyasgi(self, log: Log, root: Path) -> None:
        files = source_files(root)
        wanted = fingerprint(files, root)
        marker = self._marker("cyasgi")
        if marker.exists() and marker.read_text() == wanted:
            return
        log(f"installing cyasgi from {root} (sources {wanted})")
        with tempfile.TemporaryDirectory(prefix="cyasgi-src-") as tmp:
            for path in files:
                target = Path(tmp) / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            options = ["--force-reinstall", "--no-deps"] if self._installed("cyasgi") else []
            completed = self._pip("install", "-q", *options, tmp)
        if completed.returncode != 0:
            self.failures["cyasgi"] = f"pip exited with {completed.returncode} (see {self.log_path})"
            log(f"  failed: {self.failures['cyasgi']}")
            return
        marker.write_text(wanted)

    def _installed(self, name: str) -> bool:
        script = f"import importlib.metadata as m; m.version({name!r})"
        return subprocess.run([self.python, "-c", script], capture_output=True, check=False).returncode == 0

    def versions(self) -> dict[str, str]:
        script = (
            "import importlib.metadata as m, json\n"
            "out = {}\n"
            f"for name in {list(VERSIONS_OF)!r}:\n"
            "    try:\n"
            "        out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError:\n"
            "        pass\n"
            "print(json.dumps(out))\n"
        )
        completed = subprocess.run([self.python, "-c", script], capture_output=True, text=True, check=False)
        return json.loads(completed.stdout) if completed.returncode == 0 else {}


def venv_for(python: str) -> tuple[Venv, dict[str, str]]:
    info = describe_python(python)
    path = PERF / f".venv-{info['tag']}"
    requirements = REQUIREMENTS_PYPY if info["implementation"] == "PyPy" else REQUIREMENTS
    return Venv(python, path, PERF / "results" / "raw" / f"install-{info['tag']}.log", requirements), info


# the machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision(root: Path = ROOT) -> str:
    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return completed.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + ("+dirty" if git("status", "--porcelain", "--", "cyasgi") else "")


def wrk_version(wrk: str = "wrk") -> str:
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout + completed.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def h2load_version(h2load: str = "h2load") -> str:
    try:
        completed = subprocess.run([h2load, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    first = (completed.stdout + completed.stderr).strip().splitlines()
    return first[0] if first else "unknown"


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []
