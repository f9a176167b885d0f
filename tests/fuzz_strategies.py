"""Hypothesis strategies and settings for the fuzz tests.

* Request side (tests/http1/test_fuzz.py): HTTP/1.1 request streams, mostly well-formed, with the rare
  wrong byte in the places where parsers disagree (framing fields, line ends, chunk lines, versions).
* Send side (tests/http1/test_send_parity.py): what an ASGI app sends, as ``SendScenario`` values: a
  request (method, version), then a sequence of response messages, mostly in a plausible order with
  the rare invalid status, header, content-length, extension message or misplaced message.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(default_examples: int) -> settings:
    """Bounded by default (``make test``); ``CYASGI_FUZZ_EXAMPLES`` (``make fuzz``) runs longer, and
    ``CYASGI_FUZZ_RANDOM=1`` or a run over 1000 examples explores new draws instead of replaying the
    same ones (a red CI names a real regression, never a new random draw)."""
    examples = int(os.environ.get("CYASGI_FUZZ_EXAMPLES", str(default_examples)))
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
        derandomize=not os.environ.get("CYASGI_FUZZ_RANDOM") and examples <= 1000,
    )

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = st.binary(min_size=1, max_size=8).map(lambda b: bytes(TOKEN_CHARS[x % len(TOKEN_CHARS)] for x in b))


@st.composite
def _mostly(draw: st.DrawFn, common: st.SearchStrategy[bytes], rare: st.SearchStrategy[bytes], odds: int) -> bytes:
    return draw(common) if draw(st.integers(0, odds - 1)) else draw(rare)


def mostly(common: st.SearchStrategy[bytes], rare: list[bytes], odds: int = 12) -> st.SearchStrategy[bytes]:
    """``common`` about (odds-1)/odds of the time, else one of ``rare``."""
    return _mostly(common, st.sampled_from(rare), odds)


def text(alphabet: bytes, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size).map(lambda b: bytes(alphabet[x % len(alphabet)] for x in b))


VISIBLE = bytes(range(0x21, 0x7F))
VALUE_TEXT = mostly(text(VISIBLE + b" \t"), [b"\x00", b"a\x01b", b"\x7f", b"caf\xe9", b"a\rb", b"\x1b[0m", b" x "])
METHOD = mostly(
    st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"]),
    [b"CONNECT", b"PROPFIND", b"BREW", b"get", b"G(T", b"", b"M\x00", b"TRACE", b"QUERY"],
)
TARGET = mostly(
    st.builds(
        lambda path, query: b"/" + path + (b"?" + query if query else b""),
        text(b"abcXYZ019-._~%/!$&'()*+,;=:@"),
        text(b"abc=&%+/?"),
    ),
    [b"*", b"http://example.org/x?y", b"/a b", b"/\x01", b"/\xff", b"", b"//", b"/#frag", b"example.org:443"],
)
SP = mostly(st.just(b" "), [b"  ", b"\t", b"", b" \t"], odds=30)
VERSION = mostly(
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]),
    [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"http/1.1", b"HTTP/1.10", b"", b"HTTP/3.0", b"HTTP/1"],
)
EOL = mostly(st.just(b"\r\n"), [b"\n", b"\r", b"\r\r\n", b"\n\r"], odds=40)
HOST = mostly(
    st.sampled_from([b"example.org", b"example.org:8080", b"[::1]:80", b"127.0.0.1", b""]),
    [b"a b", b"a@b", b"a/b", b"a:b", b"[::1", b"%zz", b"\xe9"],
)
FIELD_VALUES = {
    b"Content-Length": st.sampled_from([b"0", b"3", b"10", b"003", b"-1", b"3, 3", b"x", b"1" * 19, b" 4 "]),
    b"Transfer-Encoding": st.sampled_from(
        [b"chunked", b"chunked", b"Chunked", b"gzip, chunked", b"gzip", b"chunked, gzip", b"chunked ", b"chunked\t"]
    ),
    b"Connection": st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"close, upgrade", b"foo, Keep-Alive"]),
    b"Upgrade": st.sampled_from([b"websocket", b"h2c"]),
    b"Expect": st.sampled_from([b"100-continue", b"x"]),
    b"Host": HOST,
}
FIELD_NAME = mostly(
    st.one_of(st.sampled_from(list(FIELD_VALUES)), st.sampled_from([b"X-A", b"Accept", b"Cookie"]), TOKEN),
    [b"", b"X Y", b"X(", b"X\xff", b"Host ", b" X"],
)
SEPARATOR = mostly(st.just(b": "), [b":", b" : ", b":\t", b": \t", b"::"], odds=20)


@st.composite
def field_line(draw: st.DrawFn) -> bytes:
    name = draw(FIELD_NAME)
    value = draw(FIELD_VALUES.get(name, VALUE_TEXT))
    line = name + draw(SEPARATOR) + value
    if draw(st.integers(0, 40)) == 0:
        line += b"\r\n continued"  # obs-fold
    return line + draw(EOL)


CHUNK_EXTENSION = mostly(st.just(b""), [b";a=b", b';q="x y"', b" ; bws", b";", b"; ", b";a=b;c", b";\x01", b"x"])


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(min_size=1, max_size=20))
        size = b"%x" % len(data)
        if draw(st.booleans()):
            size = size.upper()
        if draw(st.integers(0, 10)) == 0:
            size = b"000" + size
        end = draw(mostly(st.just(b"\r\n"), [b"\n", b"X\r\n", b""], odds=30))
        out += size + draw(CHUNK_EXTENSION) + draw(EOL) + data + end
    out += b"0" + draw(CHUNK_EXTENSION) + draw(EOL)
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0):
        out += draw(field_line())
    return out + draw(EOL)


@st.composite
def http_request(draw: st.DrawFn) -> bytes:
    head = draw(METHOD) + draw(SP) + draw(TARGET) + draw(SP) + draw(VERSION) + draw(EOL)
    fields = [draw(field_line()) for _ in range(draw(st.integers(0, 5)))]
    if draw(st.integers(0, 5)):
        fields.insert(draw(st.integers(0, len(fields))), b"Host: example.org\r\n")
    framing = draw(st.sampled_from(["none", "none", "length", "chunked"]))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=30))
        fields.append(b"Content-Length: %d\r\n" % (len(body) + draw(mostly(st.just(0), [1, -1]))))  # type: ignore[list-item]
    elif framing == "chunked":
        fields.append(b"Transfer-Encoding: chunked\r\n")
        body = draw(chunked_body())
    return head + b"".join(fields) + draw(EOL) + body


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 58, 59, 0x7F, 0xFF, ord("0"), ord("a")]))
        if kind == "replace":
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


@st.composite
def stream(draw: st.DrawFn) -> bytes:
    """One to three pipelined requests, sometimes mutated, sometimes with a tail of junk."""
    count = draw(st.integers(1, 3))
    requests = [draw(st.one_of(http_request(), http_request(), mutated(http_request()))) for _ in range(count)]
    tail = draw(mostly(st.just(b""), [b"\r\n", b"GET / HTT", b"\x00\xff", b"\r\n\r\n"], odds=6))
    return b"".join(requests) + tail


@st.composite
def cut(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` in pieces at random points (sometimes whole, sometimes byte by byte)."""
    mode = draw(st.integers(0, 9))
    if mode == 0 or len(data) < 2:
        return [data]
    if mode == 1:
        return [data[i : i + 1] for i in range(len(data))]
    points = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=6))))
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@st.composite
def cut_stream(draw: st.DrawFn) -> list[bytes]:
    return draw(cut(draw(stream())))


@st.composite
def cut_bytes(draw: st.DrawFn) -> list[bytes]:
    """Anything at all: raw bytes, or a request stream, cut anywhere."""
    data = draw(st.one_of(st.binary(max_size=200), stream(), mutated(stream())))
    return draw(cut(data))


# Send side: ASGI response message sequences -------------------------------------------------------

#: Files the send-side tests create for pathsend and zerocopysend, by name: their contents. "missing"
#: and "directory" are paths that exist as nothing and as a directory.
SEND_FILES = {"empty": b"", "small": b"hello", "forty": bytes(range(48, 88))}
SEND_PATHS = [*SEND_FILES, "missing", "directory"]


class SendScenario(NamedTuple):
    """One exchange: a request, then what the app does. ``steps`` are tuples:

    * ``("msg", message)``: ``await send(message)``, a plain dict;
    * ``("pathsend", name)``: ``http.response.pathsend`` of the file ``name`` (SEND_PATHS);
    * ``("zerocopy", name, offset, count, more_body)``: ``http.response.zerocopysend`` of that file,
      opened by the app (None for offset and count: the key is left out);
    * ``("yield",)``: ``await asyncio.sleep(0)`` (a held head is flushed at the end of the iteration);
    * ``("disconnect",)``: the client goes away (``connection_lost``).

    ``on_error``: "propagate" lets the first exception of ``send()`` out of the app, "swallow" goes on
    with the next step. ``end``: "return", or "raise" an exception after the last step.
    """

    method: str
    version: str
    te_trailers: bool
    connection: str | None
    steps: tuple[tuple[Any, ...], ...]
    on_error: str
    end: str


def _any(common: st.SearchStrategy[Any], rare: list[Any], odds: int = 12) -> st.SearchStrategy[Any]:
    """Like ``mostly`` for values of any type."""
    return st.one_of(common, st.sampled_from(rare)) if odds <= 2 else _mostly(common, st.sampled_from(rare), odds)


STATUS = _any(
    st.sampled_from([200, 200, 200, 201, 204, 304, 404, 500, 100, 101, 103, 199, 599]),
    [99, 600, 0, -1, 1000, "200", 200.0, True, None],
    odds=10,
)

#: Content-length values: valid, invalid (a sign, underscores, OWS, hex, a list, too many digits)
#: and, through their lengths, mismatched with the body.
CONTENT_LENGTH = st.sampled_from(
    [b"0", b"0", b"3", b"5", b"5", b"10", b"40", b"05", b"+5", b"1_0", b" 5", b"5 ", b"\t5", b"-1", b"-0",
     b"1" * 18, b"1" * 19, b"9" * 30, b"", b"0x5", b"5, 5", b"5.0", b"\xd9\xa5"]
)

HEADER_NAME = _any(
    st.sampled_from(
        [b"content-type", b"Content-Type", b"x-a", b"X-Trace", b"content-length", b"Content-Length",
         b"CONTENT-LENGTH", b"transfer-encoding", b"connection", b"Connection", b"server", b"date",
         b"set-cookie", b"trailer", b"keep-alive", b"link"]
    ),
    [b"", b"x y", b"x:y", b"x\xff", b"x\r\ny", b"x\x00", b"(x)", b" x", b"x\t", "x-str", bytearray(b"x-ba"),
     memoryview(b"x-mv"), 5, None],
    odds=10,
)

HEADER_VALUE = _any(
    text(VISIBLE + b" \t", max_size=8),
    [b"a\rb", b"a\nb", b"a\r\nx-injected: 1", b"a\x00b", b"caf\xe9", b"\x7f", b"\x01", b" x ", b"\tx\t", b"",
     "str", bytearray(b"ba"), memoryview(b"mv"), 5, None],
    odds=8,
)

FIELD_VALUES_BY_NAME: dict[Any, st.SearchStrategy[Any]] = {
    b"content-length": CONTENT_LENGTH,
    b"Content-Length": CONTENT_LENGTH,
    b"CONTENT-LENGTH": CONTENT_LENGTH,
    b"transfer-encoding": st.sampled_from([b"chunked", b"gzip, chunked", b"identity", b"chunked, gzip"]),
    b"connection": st.sampled_from([b"close", b"keep-alive", b"Close", b"upgrade", b"keep-alive, close", b"closed"]),
    b"Connection": st.sampled_from([b"close", b"keep-alive", b"CLOSE"]),
}


#: In a drawn content-length: the length of the body the scenario goes on to send.
BODY_LENGTH = b"<body length>"

CLEAN_HEADER = st.tuples(
    st.sampled_from([b"content-type", b"Content-Type", b"x-a", b"X-Trace", b"set-cookie", b"link"]),
    text(VISIBLE + b" ", max_size=8).map(lambda value: value.strip(b" ") or b"v"),
)


@st.composite
def header(draw: st.DrawFn) -> Any:
    name = draw(HEADER_NAME)
    value = draw(FIELD_VALUES_BY_NAME.get(name, HEADER_VALUE) if isinstance(name, bytes) else HEADER_VALUE)
    shape = draw(st.integers(0, 40))
    if shape == 0:
        return [name, value]  # a list, as JSON-minded apps build them
    if shape == 1:
        return (name,)  # not a pair
    if shape == 2:
        return (name, value, b"extra")
    return (name, value)


@st.composite
def headers(draw: st.DrawFn, clean: bool) -> Any:
    """Response headers; ``clean``: valid ones only, and a content-length (if any) that matches."""
    if clean:
        fields = draw(st.lists(CLEAN_HEADER, max_size=3))
        extra = draw(st.integers(0, 5))
        if extra == 0:
            fields.append((b"content-length", BODY_LENGTH))
        elif extra == 1:
            fields.append((b"connection", draw(st.sampled_from([b"close", b"keep-alive"]))))
        elif extra == 2:
            fields.append((b"transfer-encoding", b"chunked"))
        return fields
    fields = draw(_any(st.lists(header(), max_size=5), [None, (), b"x: y", [(b"x-a", b"1")] * 3], odds=20))
    if isinstance(fields, list) and draw(st.integers(0, 3)) == 0:
        fields.append((draw(st.sampled_from([b"content-length", b"Content-Length"])), BODY_LENGTH))
    return fields


BODY = _any(
    st.binary(max_size=12),
    [b"x" * 40, "text", None, bytearray(b"ba"), memoryview(b"mv"), 7, [b"a"]],
    odds=10,
)
MORE_BODY = _any(st.booleans(), [None, 1, 0, "yes", ""], odds=20)

TRAILER_FIELD = _any(
    st.tuples(st.sampled_from([b"x-checksum", b"X-Digest", b"server-timing"]), text(VISIBLE, max_size=6)),
    [(b"content-length", b"3"), (b"Content-Type", b"x/y"), (b"transfer-encoding", b"chunked"), (b"x y", b"1"),
     (b"x-a", b"a\r\nb"), (b"x-a", b"\x00"), ("x-a", b"1"), (b"x-a", "1"), (b"", b"1"), (b"set-cookie", b"a=b")],
    odds=6,
)
LINK = _any(
    st.sampled_from([b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]),
    [b"", b"</a>\r\nx: y", b"</a>\x00", "</a>", b"caf\xe9", None],
    odds=6,
)
LINKS = _any(st.lists(LINK, max_size=2), [b"</a>", "</a>", None, 5], odds=12)

#: Message types a response never carries (or not from HTTP apps), and a missing type.
ODD_TYPE = st.sampled_from(
    ["http.response.informational", "http.response.push", "http.response.debug", "websocket.send", "http.request",
     "http.disconnect", "lifespan.startup.complete", "", None, "HTTP.RESPONSE.BODY", "http.response.body "]
)


def _message(type_: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return ("msg", {"type": type_, **fields})


@st.composite
def start_message(draw: st.DrawFn, clean: bool = False) -> tuple[str, dict[str, Any]]:
    message: dict[str, Any] = {"type": "http.response.start"}
    if clean:
        message["status"] = draw(st.sampled_from([200, 200, 200, 201, 204, 304, 404, 103]))
    elif draw(st.integers(0, 30)):
        message["status"] = draw(STATUS)
    if clean or draw(st.integers(0, 20)):
        message["headers"] = draw(headers(clean))
    trailers = draw(st.integers(0, 3))
    if trailers == 0:
        message["trailers"] = True
    elif trailers == 1 and not clean:
        message["trailers"] = draw(st.sampled_from([False, None, 1, "yes"]))
    return ("msg", message)


@st.composite
def body_message(draw: st.DrawFn, more_body: bool | None = None, clean: bool = False) -> tuple[str, dict[str, Any]]:
    message: dict[str, Any] = {"type": "http.response.body"}
    if clean:
        message["body"] = draw(st.binary(max_size=12))
    elif draw(st.integers(0, 15)):
        message["body"] = draw(BODY)
    if more_body is None:
        if draw(st.integers(0, 10)):
            message["more_body"] = draw(MORE_BODY)
    elif more_body or draw(st.booleans()):
        message["more_body"] = more_body
    return ("msg", message)


@st.composite
def trailers_message(draw: st.DrawFn, clean: bool = False) -> tuple[str, dict[str, Any]]:
    clean_field = st.tuples(st.sampled_from([b"x-checksum", b"X-Digest"]), text(VISIBLE, max_size=6))
    field = clean_field if clean else TRAILER_FIELD
    message: dict[str, Any] = {"type": "http.response.trailers", "headers": draw(st.lists(field, max_size=3))}
    more = draw(st.integers(0, 6))
    if more == 0:
        message["more_trailers"] = True
    elif more == 1:
        message["more_trailers"] = False
    if clean:
        message["more_trailers"] = False
    return ("msg", message)


@st.composite
def file_step(draw: st.DrawFn, more_body: bool | None = None) -> tuple[Any, ...]:
    if draw(st.booleans()):
        return ("pathsend", draw(st.sampled_from(SEND_PATHS)))
    offset = draw(_any(st.none(), [0, 2, 5, 100, -1, "1", 1.5], odds=3))
    count = draw(_any(st.none(), [0, 1, 3, 40, 1000, -1, "2"], odds=3))
    if more_body is None:
        more_body = draw(st.booleans())
    return ("zerocopy", draw(st.sampled_from([*SEND_FILES, "closed"])), offset, count, more_body)


@st.composite
def any_step(draw: st.DrawFn) -> tuple[Any, ...]:
    """Any step at all, for the misplaced and the surplus ones."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(start_message())
    if kind in (1, 2):
        return draw(body_message())
    if kind == 3:
        return draw(trailers_message())
    if kind == 4:
        return _message("http.response.early_hint", links=draw(LINKS))
    if kind == 5:
        return draw(file_step())
    if kind == 6:
        return ("msg", {"type": draw(ODD_TYPE), "body": b"x"})
    if kind == 7:
        return ("msg", {"body": b"x"})  # no type at all
    if kind == 8:
        return ("yield",)
    return ("disconnect",) if draw(st.integers(0, 3)) == 0 else ("yield",)


def _body_size(step: tuple[Any, ...]) -> int:
    """What a body step adds to the body, as far as the scenario can tell in advance."""
    if step[0] == "msg":
        body = step[1].get("body", b"")
        return len(body) if isinstance(body, (bytes, bytearray, memoryview)) else 0
    if step[0] == "pathsend":
        return len(SEND_FILES.get(step[1], b""))
    if step[0] == "zerocopy":
        data = SEND_FILES.get(step[1], b"")
        offset = step[2] if type(step[2]) is int and step[2] >= 0 else 0
        count = step[3] if type(step[3]) is int and step[3] >= 0 else len(data)
        return max(min(count, len(data) - offset), 0)
    return 0


def _with_body_length(start: tuple[str, dict[str, Any]], size: int) -> tuple[str, dict[str, Any]]:
    fields = start[1].get("headers")
    if not isinstance(fields, list) or not any(isinstance(f, tuple) and BODY_LENGTH in f for f in fields):
        return start
    length = b"%d" % size
    fields = [(f[0], length) if isinstance(f, tuple) and f[1:] == (BODY_LENGTH,) else f for f in fields]
    return ("msg", {**start[1], "headers": fields})


@st.composite
def response_steps(draw: st.DrawFn) -> tuple[tuple[Any, ...], ...]:
    """Early hints, a start, body chunks (bytes or files), trailers: the order an app means to
    send in; half the time all valid, else with odd values, up to three steps inserted, dropped or
    repeated anywhere, and surplus steps after the end."""
    clean = draw(st.booleans())
    steps: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0):
        steps.append(_message("http.response.early_hint", links=draw(LINKS)))
    start = draw(start_message(clean))
    steps.append(start)
    if draw(st.integers(0, 3)) == 0:
        steps.append(("yield",))  # the head goes out alone before the body
    chunks = draw(st.integers(1 if clean else 0, 3))
    size = 0
    for index in range(chunks):
        last = index == chunks - 1
        if draw(st.integers(0, 5)) == 0:
            step = draw(file_step(more_body=not last))
        else:
            step = draw(body_message(more_body=not last, clean=clean))
        size += _body_size(step)
        steps.append(step)
        if draw(st.integers(0, 6)) == 0:
            steps.append(("yield",))
    steps[steps.index(start)] = _with_body_length(start, size + draw(_any(st.just(0), [1, -1], odds=8)))
    if start[1].get("trailers") is True and draw(st.integers(0, 5)):
        for _ in range(draw(st.integers(1, 2))):
            steps.append(draw(trailers_message(clean)))
    if clean:
        return tuple(steps)
    for _ in range(draw(st.integers(0, 3)) if draw(st.integers(0, 2)) == 0 else 0):
        edit = draw(st.sampled_from(["insert", "drop", "repeat"]))
        at = draw(st.integers(0, max(len(steps) - 1, 0)))
        if edit == "insert" or not steps:
            steps.insert(at, draw(any_step()))
        elif edit == "drop":
            del steps[at]
        else:
            steps.insert(at, steps[at])
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        steps.append(draw(any_step()))  # after the response is complete
    return tuple(steps)


@st.composite
def send_scenario(draw: st.DrawFn) -> SendScenario:
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    return SendScenario(
        method=draw(st.sampled_from(["GET", "GET", "GET", "HEAD"])),
        version=version,
        te_trailers=draw(st.booleans()),
        connection=draw(st.sampled_from([None, None, "close", "keep-alive"])),
        steps=draw(response_steps()),
        on_error=draw(st.sampled_from(["propagate", "propagate", "swallow"])),
        end=draw(st.sampled_from(["return", "return", "return", "raise"])),
    )
