"""``--ws wsproto``: frames by ``wsproto``; everything else is ``WebSocketProtocolBase``.

wsproto hands over data frames in pieces as they arrive and has no message size limit of its own,
so ``--ws-max-size`` is enforced here while a message is assembled.
"""

from __future__ import annotations

from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from cyasgi.protocols.http_common import simple_response
from cyasgi.protocols.websockets.base import WebSocketProtocolBase

__all__ = ["WSProtocol"]

#: Bytes of compressed input given to wsproto at a time (at most ~1,000x that once inflated).
INFLATE_STEP = 4096

_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED


class WSProtocol(WebSocketProtocolBase):
    engine_name = "wsproto"

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._conn = WSConnection(ConnectionType.SERVER)
        self._parts: list[Any] = []  # pieces of the message being received (str or bytes)
        self._size = 0  # its size so far, in bytes

    def _engine_handshake(self, head: bytes) -> bytes | None:
        conn = self._conn
        try:
            conn.receive_data(head)
            events = list(conn.events())
        except RemoteProtocolError as exc:
            if exc.event_hint is not None:
                return conn.send(exc.event_hint)
            return simple_response(400, b"Invalid WebSocket handshake.", b"")
        if not events or not isinstance(events[0], Request):
            return simple_response(400, b"Invalid WebSocket handshake.", b"")
        return None

    def _engine_accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        extensions = [PerMessageDeflate()] if self.per_message_deflate else []
        response = self._conn.send(
            AcceptConnection(subprotocol=subprotocol, extensions=extensions, extra_headers=headers)
        )
        # wsproto keeps what it negotiated private; its answer says whether an extension was accepted.
        self._plain_send = b"\r\nsec-websocket-extensions:" not in response.lower()
        return response

    def _engine_feed(self, data: bytes) -> None:
        if self._plain_send or len(data) <= INFLATE_STEP:
            self._feed(data)
            return
        # wsproto inflates whatever payload it is given, without a bound: fed in small steps, a
        # compressed message is measured (and refused) before it can expand in memory.
        for start in range(0, len(data), INFLATE_STEP):
            if not self._feed(data[start : start + INFLATE_STEP]):
                return

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False once the connection is over."""
        conn = self._conn
        conn.receive_data(data)
        for event in conn.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if not self._piece(event):
                    return False
            elif kind is Ping:
                self.transport.write(conn.send(event.response()))
            elif kind is Pong:
                self._pong(bytes(event.payload))
            elif kind is CloseConnection:
                state = conn.state
                if state is _REMOTE_CLOSING:
                    self.transport.write(conn.send(event.response()))
                    self._peer_close(int(event.code), event.reason or "")
                elif state is _CLOSED:  # the reply to our own close frame
                    self._peer_close(int(event.code), event.reason or "")
                else:  # wsproto reports a malformed frame as a close it wants us to send
                    self._engine_fail(int(event.code), event.reason or "")
                return False
        return True

    def _piece(self, event: Any) -> bool:
        data = event.data
        size = len(data)
        if type(data) is str and (self._size + 4 * size) > self.max_size:
            size = len(data.encode("utf-8"))  # exact only when the character count is not enough
        self._size += size
        if self._size > self.max_size:
            self._engine_fail(1009, "message too big")
            return False
        if event.message_finished:
            parts = self._parts
            if parts:
                parts.append(data)
                data = "".join(parts) if type(data) is str else b"".join(parts)
                self._parts = []
            self._size = 0
            if type(data) is str:
                self._message({"type": "websocket.receive", "text": data})
            else:
                self._message({"type": "websocket.receive", "bytes": bytes(data)})
        else:
            self._parts.append(data)
        return True

    def _engine_fail(self, code: int, reason: str) -> None:
        try:
            self.transport.write(self._conn.send(CloseConnection(code=code, reason=reason)))
        except LocalProtocolError:
            pass
        self._parts = []
        self._fail_received(code, reason)

    def _engine_text(self, text: str) -> bytes:
        return self._conn.send(TextMessage(data=text))

    def _engine_binary(self, data: bytes) -> bytes:
        return self._conn.send(BytesMessage(data=data))

    def _engine_close(self, code: int, reason: str) -> bytes:
        try:
            return self._conn.send(CloseConnection(code=code, reason=reason))
        except LocalProtocolError:
            return b""

    def _engine_ping(self, payload: bytes) -> bytes:
        return self._conn.send(Ping(payload=payload))
