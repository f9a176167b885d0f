"""Hypothesis strategies for HTTP/1.1 request streams: mostly well-formed, with the rare wrong byte
in the places where parsers disagree (framing fields, line ends, chunk lines, versions)."""

from __future__ import annotations

from hypothesis import strategies as st

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
