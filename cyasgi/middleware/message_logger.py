"""At ``--log-level trace``: log every ASGI message between the server and the app."""

from __future__ import annotations

import logging
from typing import Any, Callable

from cyasgi.logging import TRACE_LOG_LEVEL

PLACEHOLDER_FORMAT = {
    "body": "<{length} bytes>",
    "bytes": "<{length} bytes>",
    "text": "<{length} chars>",
    "headers": "<...>",
}


def message_with_placeholders(message: Any) -> Any:
    """Replace bodies and headers by a short placeholder so a trace log stays readable."""
    new_message = message.copy()
    for attr in PLACEHOLDER_FORMAT:
        if message.get(attr) is not None:
            content = message[attr]
            placeholder = PLACEHOLDER_FORMAT[attr].format(length=len(content))
            new_message[attr] = placeholder
    return new_message


class MessageLoggerMiddleware:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.task_counter = 0
        self.app = app
        self.logger = logging.getLogger("uvicorn.asgi")

        def trace(message: Any, *args: Any, **kwargs: Any) -> None:
            self.logger.log(TRACE_LOG_LEVEL, message, *args, **kwargs)

        self.logger.trace = trace  # type: ignore[attr-defined]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.task_counter += 1
        task_counter = self.task_counter
        client = scope.get("client")
        prefix = f"{client[0]}:{client[1]:d} - ASGI" if client else "ASGI"

        async def inner_receive() -> Any:
            message = await receive()
            logged_message = message_with_placeholders(message)
            log_text = "%s [%d] Receive %s"
            self.logger.trace(log_text, prefix, task_counter, logged_message)  # type: ignore[attr-defined]
            return message

        async def inner_send(message: Any) -> None:
            logged_message = message_with_placeholders(message)
            log_text = "%s [%d] Send %s"
            self.logger.trace(log_text, prefix, task_counter, logged_message)  # type: ignore[attr-defined]
            await send(message)

        logged_scope = message_with_placeholders(scope)
        log_text = "%s [%d] Started scope=%s"
        self.logger.trace(log_text, prefix, task_counter, logged_scope)  # type: ignore[attr-defined]
        try:
            await self.app(scope, inner_receive, inner_send)
        except BaseException as exc:
            log_text = "%s [%d] Raised exception"
            self.logger.trace(log_text, prefix, task_counter)  # type: ignore[attr-defined]
            raise exc from None
        else:
            log_text = "%s [%d] Completed"
            self.logger.trace(log_text, prefix, task_counter)  # type: ignore[attr-defined]
