"""``--lifespan on|auto``: run the app's lifespan protocol in its own task.

``auto`` treats an app that fails before completing startup as not supporting lifespan and
serves anyway; ``on`` makes that a startup failure (exit status 3).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_EVENTS = (
    "lifespan.startup.complete",
    "lifespan.startup.failed",
    "lifespan.shutdown.complete",
    "lifespan.shutdown.failed",
)
_OUT_OF_ORDER = "Got invalid state transition on lifespan protocol."


class LifespanOn:
    def __init__(self, config: Any) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.logger = logging.getLogger("uvicorn.error")
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error_occured = False
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self.main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error_occured and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occured:
            return
        self.logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error_occured and self.config.lifespan == "on"):
            self.logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application shutdown complete.")

    async def main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.config.loaded_app(scope, self.receive, self.send)
        except BaseException as exc:
            self.error_occured = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                self.logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            # Whatever happened, nobody may wait forever for an event that will not come.
            self.startup_event.set()
            self.shutdown_event.set()

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if message_type not in _EVENTS:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' sent to the lifespan protocol.")
        if message_type.startswith("lifespan.startup."):
            if self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError(_OUT_OF_ORDER)
            if message_type == "lifespan.startup.failed":
                self.startup_failed = True
                if message.get("message"):
                    self.logger.error(message["message"])
            self.startup_event.set()
        else:
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError(_OUT_OF_ORDER)
            if message_type == "lifespan.shutdown.failed":
                self.shutdown_failed = True
                if message.get("message"):
                    self.logger.error(message["message"])
            self.shutdown_event.set()

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()
