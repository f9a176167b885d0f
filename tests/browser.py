"""Headless Chromium for the browser tests: found (or installed from Debian) and started on a page."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.utils import WAIT

#: Starting a browser on a loaded 2-core machine is slow: a wider bound than other waits.
BROWSER_WAIT = WAIT * 6


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium"],
                env=env,
                capture_output=True,
                timeout=900,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        path = shutil.which("chromium")
        if path:
            return path
    pytest.skip("chromium is not installed and `apt-get install -y chromium` could not install it")


def start_browser(chromium: str, url: str, profile: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            chromium,
            *extra,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its helper processes stop with it (stop_browser)
    )


@contextlib.contextmanager
def browsing(chromium: str, url: str, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """Chromium showing ``url`` with a fresh profile (and ``extra`` flags), stopped (and reaped) afterwards."""
    profile = tempfile.mkdtemp(prefix="cyasgi-chromium-")
    try:
        browser = start_browser(chromium, url, profile, *extra)
        try:
            yield browser
        finally:
            stop_browser(browser)
    finally:
        # A helper process of the browser may still write its profile for a moment after the browser
        # itself exited: what is left is removed without failing the test.
        shutil.rmtree(profile, ignore_errors=True)


def stop_browser(browser: subprocess.Popen[bytes]) -> None:
    """Stop the browser and every helper process it started (its own session), bounded."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(browser.pid, signal.SIGTERM)
    try:
        browser.wait(WAIT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(WAIT)
