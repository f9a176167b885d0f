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
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, RsvBits
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from cyasgi.protocols.http.wire import simple_response
from cyasgi.protocols.websockets.base import WebSocketProtocolBase
from cyasgi.protocols.websockets.frames import CLOSE_TOO_BIG

__all__ = ["WSProtocol"]

#: Bytes of compressed input given to wsproto at a time (at most ~1,000x that once inflated).
INFLATE_STEP = 4096

_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED


class _PerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, except that control frames pass it by. wsproto's own ends the
    inflation of a compressed message at any complete final frame, a ping between the message's
    fragments included: the fragments after it then reach the app still compressed."""

    _control = False  # the frame being received is a control frame

    def frame_inbound_header(self, proto: Any, opcode: Any, rsv: Any, payload_length: int) -> Any:
        self._control = opcode.iscontrol()
        if not self._control:
            return super().frame_inbound_header(proto, opcode, rsv, payload_length)
        return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else RsvBits(False, False, False)

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> Any:
        return data if self._control else super().frame_inbound_payload_data(proto, data)

    def frame_inbound_complete(self, proto: Any, fin: bool) -> Any:
        return None if self._control else super().frame_inbound_complete(proto, fin)


class WSProtocol(WebSocketProtocolBase):
    engine_name = "wsproto"

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._conn = WSConnection(ConnectionType.SERVER)
        # The compressed message being received in pieces (the base assembles uncompressed fragmented
        # ones), joined as UTF-8 bytes as the pieces arrive: its memory is its size.
        self._parts: bytearray | None = None
        self._parts_text = False

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
        extensions: list[Extension] = [_PerMessageDeflate()] if self.per_message_deflate else []
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
        event: Any  # dispatched on its exact type (cheaper than isinstance), which mypy cannot follow
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
        text = type(data) is str
        parts = self._parts
        if parts is None and event.message_finished:  # the whole message in one piece
            size = len(data)
            if text and 4 * size > self.max_size:
                size = len(data.encode("utf-8"))  # exact only when the character count is not enough
            if size > self.max_size:
                self._engine_fail(CLOSE_TOO_BIG, "message too big")
                return False
            if text:
                self._message({"type": "websocket.receive", "text": data})
            else:
                self._message({"type": "websocket.receive", "bytes": bytes(data)})
            return True
        if parts is None:
            parts = self._parts = bytearray()
            self._parts_text = text
        parts += data.encode("utf-8") if text else data
        if len(parts) > self.max_size:
            self._engine_fail(CLOSE_TOO_BIG, "message too big")
            return False
        if event.message_finished:
            self._parts = None
            if self._parts_text:
                self._message({"type": "websocket.receive", "text": parts.decode("utf-8")})
            else:
                self._message({"type": "websocket.receive", "bytes": bytes(parts)})
        return True

    def _engine_drop_message(self) -> None:
        self._parts = None  # wsproto itself takes a close frame between fragments as it should

    def _engine_fail(self, code: int, reason: str) -> None:
        try:
            self.transport.write(self._conn.send(CloseConnection(code=code, reason=reason)))
        except LocalProtocolError:
            pass
        self._parts = None
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
