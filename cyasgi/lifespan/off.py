"""``--lifespan off``: the app never sees lifespan events; ``state`` is still shared with requests."""

from __future__ import annotations

from typing import Any


class LifespanOff:
    def __init__(self, config: Any) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
