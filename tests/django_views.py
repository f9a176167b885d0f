"""A Django project in one module, for the suite: settings (configured once per process, shared by
the Channels test), two views and the URLs that route to them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.utils import WAIT

#: What the views report to the test thread ("started", "cancelled").
MARKS: dict[str, threading.Event] = {}


def configure() -> None:
    """Django's settings for every Django test in the process (Django allows one configuration)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["channels"],
            SECRET_KEY="test",
            USE_TZ=True,
            ALLOWED_HOSTS=["127.0.0.1", "localhost", "x"],
            ROOT_URLCONF=__name__,
        )
        import django

        django.setup()


def mark(name: str) -> threading.Event:
    return MARKS.setdefault(name, threading.Event())


async def wait_view(request: Any) -> Any:
    """A long-poll as a Django user writes one: Django cancels it when the client disconnects."""
    from django.http import HttpResponse

    mark("started").set()
    try:
        await asyncio.sleep(WAIT * 3)
    except asyncio.CancelledError:
        mark("cancelled").set()
        raise
    return HttpResponse("too late")


async def hello_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("hello from django")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("wait/", wait_view), path("hello/", hello_view)]


def application() -> Any:
    """Django's ASGI application for this module's URLs."""
    configure()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from ROOT_URLCONF once it is configured.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)
