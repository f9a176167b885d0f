"""``--ws websockets-sansio`` (the default): frames by the ``websockets`` library's sans-I/O
``ServerProtocol``; everything else is ``WebSocketProtocolBase``."""

from __future__ import annotations

import logging
from typing import Any

from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from cyasgi.protocols.http.wire import simple_response
from cyasgi.protocols.websockets.base import WebSocketProtocolBase
from cyasgi.protocols.websockets.deflate import deflate_pair
from cyasgi.protocols.websockets.frames import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
    CLOSE_TOO_BIG,
    FIN_BINARY,
    FIN_TEXT,
)

__all__ = ["WebSocketsSansIOProtocol"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
#: The largest control-frame payload (RFC 6455, 5.5).
MAX_CONTROL_PAYLOAD = 125

# The library logs "connection open/closed" at INFO on the logger it is given; cyasgi writes its own
# lines (on uvicorn.error), so the library gets a quiet logger that still lets its errors through.
_engine_logger = logging.getLogger("cyasgi.websockets")
if _engine_logger.level == logging.NOTSET:
    _engine_logger.setLevel(logging.WARNING)


class WebSocketsSansIOProtocol(WebSocketProtocolBase):
    engine_name = "websockets-sansio"

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        extensions = None
        if self.per_message_deflate:
            # 4 KiB windows and a small memLevel: ~tens of KiB per connection instead of ~300.
            extensions = [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            ]
        # The library counts a control frame between fragments against the message's remaining
        # size: given room for the largest one, it leaves the exact --ws-max-size to the checks below.
        self._conn = ServerProtocol(
            extensions=extensions, max_size=self.max_size + MAX_CONTROL_PAYLOAD, logger=_engine_logger
        )
        self._accept_header = b""
        self._extensions_header = b""
        # The compressed fragmented message being received (the base assembles uncompressed ones),
        # joined as its fragments arrive.
        self._parts: bytearray | None = None
        self._parts_text = False
        # Our messages compressed by our own code (deflate.py) once permessage-deflate is negotiated.
        self._deflater: Any = None

    def _engine_handshake(self, head: bytes) -> bytes | None:
        conn = self._conn
        conn.receive_data(head)
        events = conn.events_received()
        if not events or not isinstance(events[0], Request):
            # The library answered an unparsable head itself (431, 414) or only wants to close.
            refusal = b"".join(conn.data_to_send())
            return refusal or simple_response(400, b"Invalid WebSocket handshake.", b"")
        response = conn.accept(events[0])
        if response.status_code != 101:
            conn.send_response(response)
            return b"".join(conn.data_to_send())
        self._accept_header = response.headers["Sec-WebSocket-Accept"].encode("ascii")
        extensions = response.headers.get("Sec-WebSocket-Extensions")
        if extensions:
            self._extensions_header = extensions.encode("ascii")
        self._response = response
        return None

    def _engine_accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> bytes:
        conn = self._conn
        conn.send_response(self._response)  # the engine is now OPEN; its bytes are replaced by ours
        conn.data_to_send()
        self._plain_send = not conn.extensions
        self._take_deflate(conn.extensions)
        del self._response
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in headers:
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(
            b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: %s\r\n" % self._accept_header
        )
        if self._extensions_header:
            lines.append(b"sec-websocket-extensions: %s\r\n" % self._extensions_header)
        if subprotocol:
            lines.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode("latin-1"))
        lines.append(b"\r\n")
        return b"".join(lines)

    def _take_deflate(self, extensions: list[Any]) -> None:
        """With permessage-deflate alone negotiated, its common paths leave the engine: the reader
        inflates whole compressed messages, ``_engine_text``/``_engine_binary`` compress (deflate.py)."""
        if len(extensions) != 1 or not isinstance(extensions[0], PerMessageDeflate):
            return
        pair = deflate_pair(extensions[0])
        if pair is not None:
            self._inflater, self._deflater = pair

    def _engine_feed(self, data: bytes) -> None:
        conn = self._conn
        conn.receive_data(data)
        writes = conn.data_to_send()
        if writes:
            # Pongs, a close echo, or the close frame of a failure (b"" is the library's EOF mark).
            out = b"".join(writes)
            if out:
                self.transport.write(out)
        for frame in conn.events_received():
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if len(frame.data) > self.max_size:
                    self._engine_fail(CLOSE_TOO_BIG, "message too big")
                    return
                if frame.fin:
                    if opcode is _TEXT:
                        if not self._text_received(frame.data):
                            return
                    else:
                        payload = frame.data
                        self._message(
                            {
                                "type": "websocket.receive",
                                "bytes": payload if type(payload) is bytes else bytes(payload),
                            }
                        )
                else:
                    self._parts = bytearray(frame.data)
                    self._parts_text = opcode is _TEXT
            elif opcode is _CONT:
                parts = self._parts
                if parts is None:  # pragma: no cover - the library refuses a continuation without a start
                    continue
                parts += frame.data
                if len(parts) > self.max_size:
                    self._engine_fail(CLOSE_TOO_BIG, "message too big")
                    return
                if frame.fin:
                    self._parts = None
                    if self._parts_text:
                        if not self._text_received(parts):
                            return
                    else:
                        self._message({"type": "websocket.receive", "bytes": bytes(parts)})
            elif opcode is _PONG:
                self._pong(bytes(frame.data))
            elif opcode is _CLOSE:
                close = conn.close_rcvd
                if close is None:  # pragma: no cover - the library sets it before returning the frame
                    self._peer_close(CLOSE_NO_STATUS, "")
                else:
                    self._peer_close(close.code, close.reason)
                return
            # PING: the library has queued the pong, written above.
        if conn.parser_exc is not None:
            close = conn.close_sent
            if close is not None:
                self._fail_received(close.code, close.reason)
            else:
                self._fail_received(CLOSE_ABNORMAL, str(conn.parser_exc))

    def _engine_drop_message(self) -> None:
        # The library answers a close frame inside a fragmented message with 1002 ("incomplete
        # fragmented message"); RFC 6455 lets control frames come between fragments. Its count of
        # the message's size says a message is in progress: clear it (``cur_size`` before websockets 16).
        conn = self._conn
        for name in ("current_size", "cur_size"):
            if getattr(conn, name, None) is not None:
                setattr(conn, name, None)
        self._parts = None

    def _engine_fail(self, code: int, reason: str) -> None:
        self._parts = None
        conn = self._conn
        conn.fail(code, reason)
        out = b"".join(conn.data_to_send())
        if out:
            self.transport.write(out)
        self._fail_received(code, reason)

    def _engine_text(self, text: str) -> bytes:
        if self._deflater is not None:
            return self._deflater.frame(FIN_TEXT, text.encode("utf-8"))
        conn = self._conn
        conn.send_text(text.encode("utf-8"))
        writes = conn.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def _engine_binary(self, data: bytes) -> bytes:
        if self._deflater is not None:
            return self._deflater.frame(FIN_BINARY, data)
        conn = self._conn
        conn.send_binary(data)
        writes = conn.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def _engine_close(self, code: int, reason: str) -> bytes:
        conn = self._conn
        try:
            conn.send_close(code, reason)
        except InvalidState:
            return b""
        return b"".join(conn.data_to_send())

    def _engine_ping(self, payload: bytes) -> bytes:
        conn = self._conn
        conn.send_ping(payload)
        return b"".join(conn.data_to_send())
