"""HPACK (RFC 7541): the header-block decoder and the response encoder of cyasgi's HTTP/2 layer.

One source, two builds: this module is what PyPy and ``CYASGI_NO_EXTENSIONS=1`` run, and the same text
is compiled by Cython as ``cyasgi._speedups.hpack`` with the augmenting ``cyasgi/_speedups/hpack.pxd``
(C fields, typed locals, inline helpers). Use it through ``cyasgi.protocols.http2.codec``.

Decoding is table driven: the Huffman code of Appendix B becomes, once at import, a byte-at-a-time
state machine (257 states x 256 input octets -> next state and the 0-2 octets emitted), so a Huffman
string costs one table step per input octet. Static-table entries and dynamic-table entries are stored
as the ``(name, value)`` tuples handed out, so an indexed field allocates nothing.

The limits (docs/http2.md): integers take at most 4 continuation octets (< 2**28 + 255); a table size
update is accepted only before the first field of a block and up to ``max_allowed_table_size`` (our
SETTINGS_HEADER_TABLE_SIZE), and is required after that limit went below the table's size; the
decoded header list may hold ``max_header_list_size`` octets (name + value + 32 per field). Any
malformed input raises ``HPACKError``; nothing else escapes.
"""

from __future__ import annotations

from collections import deque

from cyasgi.protocols.http2.errors import HPACK_BOMB_FACTOR, HeaderListTooLarge, HPACKBomb, HPACKError

__all__ = ["Decoder", "Encoder", "HPACKError", "HeaderListTooLarge", "huffman_encode", "huffman_decode"]

DEFAULT_TABLE_SIZE = 4096
DEFAULT_MAX_HEADER_LIST_SIZE = 65536

# RFC 7541 Appendix A: the static table (index 0 is unused).
_STATIC_TEXT = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)
STATIC_TABLE_LENGTH = len(_STATIC_TEXT)  # 61

#: index -> the (name, value) tuple handed out for it; names are shared objects.
STATIC_TABLE: list[tuple[bytes, bytes]] = [None]  # type: ignore[list-item]  # index 0 is never read
_names: dict[str, bytes] = {}
for _name, _value in _STATIC_TEXT:
    _bname = _names.setdefault(_name, _name.encode("ascii"))
    STATIC_TABLE.append((_bname, _value.encode("ascii")))

# RFC 7541 Appendix B: the Huffman code of symbols 0-255 and EOS (256), as "code-as-hex bit-length"
# (code aligned to the least significant bit), eight symbols to a line.
_HUFFMAN_TEXT = """
1ff8 13  7fffd8 23  fffffe2 28  fffffe3 28  fffffe4 28  fffffe5 28  fffffe6 28  fffffe7 28
fffffe8 28  ffffea 24  3ffffffc 30  fffffe9 28  fffffea 28  3ffffffd 30  fffffeb 28  fffffec 28
fffffed 28  fffffee 28  fffffef 28  ffffff0 28  ffffff1 28  ffffff2 28  3ffffffe 30  ffffff3 28
ffffff4 28  ffffff5 28  ffffff6 28  ffffff7 28  ffffff8 28  ffffff9 28  ffffffa 28  ffffffb 28
14 6  3f8 10  3f9 10  ffa 12  1ff9 13  15 6  f8 8  7fa 11
3fa 10  3fb 10  f9 8  7fb 11  fa 8  16 6  17 6  18 6
0 5  1 5  2 5  19 6  1a 6  1b 6  1c 6  1d 6
1e 6  1f 6  5c 7  fb 8  7ffc 15  20 6  ffb 12  3fc 10
1ffa 13  21 6  5d 7  5e 7  5f 7  60 7  61 7  62 7
63 7  64 7  65 7  66 7  67 7  68 7  69 7  6a 7
6b 7  6c 7  6d 7  6e 7  6f 7  70 7  71 7  72 7
fc 8  73 7  fd 8  1ffb 13  7fff0 19  1ffc 13  3ffc 14  22 6
7ffd 15  3 5  23 6  4 5  24 6  5 5  25 6  26 6
27 6  6 5  74 7  75 7  28 6  29 6  2a 6  7 5
2b 6  76 7  2c 6  8 5  9 5  2d 6  77 7  78 7
79 7  7a 7  7b 7  7ffe 15  7fc 11  3ffd 14  1ffd 13  ffffffc 28
fffe6 20  3fffd2 22  fffe7 20  fffe8 20  3fffd3 22  3fffd4 22  3fffd5 22  7fffd9 23
3fffd6 22  7fffda 23  7fffdb 23  7fffdc 23  7fffdd 23  7fffde 23  ffffeb 24  7fffdf 23
ffffec 24  ffffed 24  3fffd7 22  7fffe0 23  ffffee 24  7fffe1 23  7fffe2 23  7fffe3 23
7fffe4 23  1fffdc 21  3fffd8 22  7fffe5 23  3fffd9 22  7fffe6 23  7fffe7 23  ffffef 24
3fffda 22  1fffdd 21  fffe9 20  3fffdb 22  3fffdc 22  7fffe8 23  7fffe9 23  1fffde 21
7fffea 23  3fffdd 22  3fffde 22  fffff0 24  1fffdf 21  3fffdf 22  7fffeb 23  7fffec 23
1fffe0 21  1fffe1 21  3fffe0 22  1fffe2 21  7fffed 23  3fffe1 22  7fffee 23  7fffef 23
fffea 20  3fffe2 22  3fffe3 22  3fffe4 22  7ffff0 23  3fffe5 22  3fffe6 22  7ffff1 23
3ffffe0 26  3ffffe1 26  fffeb 20  7fff1 19  3fffe7 22  7ffff2 23  3fffe8 22  1ffffec 25
3ffffe2 26  3ffffe3 26  3ffffe4 26  7ffffde 27  7ffffdf 27  3ffffe5 26  fffff1 24  1ffffed 25
7fff2 19  1fffe3 21  3ffffe6 26  7ffffe0 27  7ffffe1 27  3ffffe7 26  7ffffe2 27  fffff2 24
1fffe4 21  1fffe5 21  3ffffe8 26  3ffffe9 26  ffffffd 28  7ffffe3 27  7ffffe4 27  7ffffe5 27
fffec 20  fffff3 24  fffed 20  1fffe6 21  3fffe9 22  1fffe7 21  1fffe8 21  7ffff3 23
3fffea 22  3fffeb 22  1ffffee 25  1ffffef 25  fffff4 24  fffff5 24  3ffffea 26  7ffff4 23
3ffffeb 26  7ffffe6 27  3ffffec 26  3ffffed 26  7ffffe7 27  7ffffe8 27  7ffffe9 27  7ffffea 27
7ffffeb 27  ffffffe 28  7ffffec 27  7ffffed 27  7ffffee 27  7ffffef 27  7fffff0 27  3ffffee 26
3fffffff 30
"""
_words = _HUFFMAN_TEXT.split()
#: symbol -> code (LSB aligned) and code length in bits; 256 is EOS.
HUFFMAN_CODES = [int(word, 16) for word in _words[0::2]]
HUFFMAN_LENGTHS = [int(word) for word in _words[1::2]]
EOS = 256


def _build_huffman_machine() -> tuple:
    """The decoding state machine: states are the internal nodes of the code tree (0 = root) plus
    a dead state entered on EOS; entry ``state << 8 | octet`` gives the next state and the octets
    emitted. A string may end only in a state that is on the all-ones path less than 8 bits deep."""
    zero: list[int | None] = [None]  # node -> child for bit 0: a node number, or ~symbol for a leaf
    one: list[int | None] = [None]
    for symbol in range(257):
        code = HUFFMAN_CODES[symbol]
        node = 0
        for shift in range(HUFFMAN_LENGTHS[symbol] - 1, 0, -1):
            kids = one if (code >> shift) & 1 else zero
            child = kids[node]
            if child is None:
                zero.append(None)
                one.append(None)
                child = kids[node] = len(zero) - 1
            node = child
        (one if code & 1 else zero)[node] = ~symbol
    dead = len(zero)
    accepting = bytearray(dead + 1)
    node = 0
    for _ in range(8):
        accepting[node] = 1
        child = one[node]
        assert child is not None  # the code is complete: every internal node has both children
        node = child
    # Nibble steps first (state x 16), then octets as two nibble steps.
    nibble_next = []
    nibble_emit = []
    emitted: list[int] | bytes  # the octets a step emits: a list while built
    for state in range(dead):
        for nibble in range(16):
            node = state
            emitted = []
            for shift in (3, 2, 1, 0):
                child = (one if (nibble >> shift) & 1 else zero)[node]
                assert child is not None
                if child >= 0:
                    node = child
                elif child == ~EOS:
                    node = dead
                    break
                else:
                    emitted.append(~child)
                    node = 0
            nibble_next.append(node)
            nibble_emit.append(bytes(emitted))
    shared: dict[bytes, bytes] = {}
    next_states = []
    emits = []
    for state in range(dead):
        for octet in range(256):
            step = (state << 4) | (octet >> 4)
            middle = nibble_next[step]
            if middle == dead:
                next_states.append(dead)
                emits.append(b"")
                continue
            step2 = (middle << 4) | (octet & 15)
            emitted = nibble_emit[step] + nibble_emit[step2]
            next_states.append(nibble_next[step2])
            emits.append(shared.setdefault(emitted, emitted))
    next_states.extend([dead] * 256)
    emits.extend([b""] * 256)
    return next_states, emits, bytes(accepting)


_HUF_NEXT, _HUF_EMIT, _HUF_ACCEPT = _build_huffman_machine()

#: Octets a field name may hold (RFC 9113 §8.2.1: visible ASCII but uppercase; ':' handled apart).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not (0x41 <= c <= 0x5A or c == 0x3A))


def huffman_decode(data: bytes) -> bytes:
    """Decode one Huffman-coded string literal (RFC 7541 §5.2); HPACKError on EOS or bad padding."""
    return _huffman_decode(bytes(data), 0, len(data))


def _huffman_decode(data, start, end):
    next_states = _HUF_NEXT
    emits = _HUF_EMIT
    pieces = []  # list.append and one join: cheaper than growing a bytearray, compiled or not
    state = 0
    for octet in data[start:end]:
        entry = (state << 8) | octet
        state = next_states[entry]
        pieces.append(emits[entry])
    if not _HUF_ACCEPT[state]:
        raise HPACKError("invalid Huffman code: EOS symbol, or padding that is not 0-7 one bits")
    return b"".join(pieces)


def huffman_encode(data: bytes) -> bytes:
    """The Huffman code of ``data`` (RFC 7541 §5.2), padded with the most significant bits of EOS."""
    codes = HUFFMAN_CODES
    lengths = HUFFMAN_LENGTHS
    out = bytearray()
    acc = 0
    bits = 0
    for octet in data:
        length = lengths[octet]
        code = codes[octet]
        acc = (acc << length) | code
        bits += length
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
        acc &= (1 << bits) - 1
    if bits:
        out.append(((acc << (8 - bits)) | (0xFF >> bits)) & 0xFF)
    return bytes(out)


def _decode_int(data, pos, end, value):
    """The continuation octets of an integer whose prefix was all ones (``value`` = 2**N - 1)."""
    shift = 0
    while True:
        if pos >= end:
            raise HPACKError("truncated integer")
        octet = data[pos]
        pos += 1
        value += (octet & 0x7F) << shift
        if not octet & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise HPACKError("integer too large (more than 4 continuation octets)")


def _string_bounds(data, pos, end):
    """Where the string literal at ``pos`` lies: ``(start, stop, huffman)``; ``stop`` is the next position."""
    if pos >= end:
        raise HPACKError("truncated header block: a string literal is missing")
    octet = data[pos]
    pos += 1
    length = octet & 0x7F
    if length == 0x7F:
        length, pos = _decode_int(data, pos, end, length)
    stop = pos + length
    if stop > end:
        raise HPACKError("truncated string literal")
    return pos, stop, octet >= 0x80


def _name_invalid(name):
    """True when ``name`` breaks RFC 9113 §8.2.1 (empty, uppercase, controls, SP, DEL, non-ASCII, or a
    colon anywhere but at the start of a pseudo-header name)."""
    if not name:
        return True
    rest = name.translate(None, _NAME_BYTES)
    return bool(rest) and not (rest == b":" and name[0] == 0x3A and len(name) > 1)


def _value_invalid(value):
    """True when ``value`` holds NUL, CR or LF, or starts or ends with SP or HTAB (RFC 9113 §8.2.1)."""
    if not value:
        return False
    first = value[0]
    last = value[len(value) - 1]
    if first == 0x20 or first == 0x09 or last == 0x20 or last == 0x09:
        return True
    return b"\x00" in value or b"\r" in value or b"\n" in value


class Decoder:
    """Decodes the header blocks of one connection (RFC 7541), keeping its dynamic table.

    ``max_table_size`` is our SETTINGS_HEADER_TABLE_SIZE, ``max_header_list_size`` our
    SETTINGS_MAX_HEADER_LIST_SIZE. ``decode()`` returns ``[(name, value), ...]`` (bytes, in order) and
    sets ``fields_valid``: False when a field of that block breaks the character rules of RFC 9113
    §8.2.1 (a malformed request for the HTTP/2 layer: a stream error, not a decoding error).
    """

    def __init__(
        self, max_table_size: int = DEFAULT_TABLE_SIZE, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE
    ) -> None:
        #: Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may ask for.
        self.max_allowed_table_size = max_table_size
        #: The table's current maximum size, as the peer's encoder last set it.
        self.max_table_size = max_table_size
        #: The current size of the table (RFC 7541 §4.1).
        self.table_size = 0
        self.max_header_list_size = max_header_list_size
        self.fields_valid = True
        self._entries: list[tuple[bytes, bytes]] = []  # the dynamic table, oldest first
        # {entry: count}: entries in the table that break RFC 9113 §8.2.1
        self._invalid: dict[tuple[bytes, bytes], int] = {}
        self._update_required = False

    def set_max_allowed_table_size(self, size: int) -> None:
        """Our SETTINGS_HEADER_TABLE_SIZE changed (call once the peer acknowledged it). A limit below
        the table's current maximum makes a size update mandatory at the start of the next block."""
        if size < 0:
            raise ValueError("table size must not be negative")
        self.max_allowed_table_size = size
        if size < self.max_table_size:
            self._update_required = True

    def dynamic_table(self) -> list:
        """The dynamic table's entries, newest (index 62) first."""
        return list(reversed(self._entries))

    def decode(self, data) -> list:
        """Decode one complete header block (HEADERS plus its CONTINUATION payloads)."""
        buf = data if type(data) is bytes else bytes(data)
        end = len(buf)
        pos = 0
        # Dynamic table size updates: only at the start of the block (RFC 7541 §4.2).
        while pos < end and buf[pos] & 0xE0 == 0x20:
            size = buf[pos] & 0x1F
            pos += 1
            if size == 0x1F:
                size, pos = _decode_int(buf, pos, end, size)
            if size > self.max_allowed_table_size:
                raise HPACKError(
                    f"dynamic table size update to {size} exceeds the limit {self.max_allowed_table_size}"
                )
            self.max_table_size = size
            self._update_required = False
            self._evict(size)
        if self._update_required:
            raise HPACKError("a dynamic table size update was required at the start of this block")
        headers = []
        entries = self._entries
        static = STATIC_TABLE
        invalid = self._invalid  # mutated in place only
        limit = self.max_header_list_size
        total = 0
        valid = True
        while pos < end:
            octet = buf[pos]
            pos += 1
            if octet & 0x80:  # indexed field (§6.1)
                index = octet & 0x7F
                if index == 0x7F:
                    index, pos = _decode_int(buf, pos, end, index)
                if index <= 61:  # STATIC_TABLE_LENGTH
                    if index == 0:
                        raise HPACKError("index 0 in an indexed header field")
                    field = static[index]
                else:
                    count = len(entries)
                    index -= STATIC_TABLE_LENGTH
                    if index > count:
                        raise HPACKError(f"index {index + STATIC_TABLE_LENGTH} is past the end of the tables")
                    field = entries[count - index]
                    if invalid and field in invalid:
                        valid = False
                name, value = field  # typed in the compiled build: their lengths are C reads
                total += len(name) + len(value) + 32
                if total <= limit:
                    headers.append(field)
                elif total > limit * HPACK_BOMB_FACTOR:
                    raise HPACKBomb(f"header block decoding past {limit * HPACK_BOMB_FACTOR} octets (HPACK bomb)")
                continue
            if octet & 0x40:  # literal with incremental indexing (§6.2.1)
                index = octet & 0x3F
                if index == 0x3F:
                    index, pos = _decode_int(buf, pos, end, index)
                indexing = True
            elif octet & 0x20:
                raise HPACKError("dynamic table size update after the first field of the block")
            else:  # literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3)
                index = octet & 0x0F
                if index == 0x0F:
                    index, pos = _decode_int(buf, pos, end, index)
                indexing = False
            field_ok = True
            if index:
                if index <= 61:
                    name = static[index][0]
                else:
                    count = len(entries)
                    index -= STATIC_TABLE_LENGTH
                    if index > count:
                        raise HPACKError(
                            f"name index {index + STATIC_TABLE_LENGTH} is past the end of the tables"
                        )
                    name = entries[count - index][0]
                    if invalid and _name_invalid(name):
                        field_ok = False
            else:
                start, pos, huffman = _string_bounds(buf, pos, end)
                name = _huffman_decode(buf, start, pos) if huffman else buf[start:pos]
                if _name_invalid(name):
                    field_ok = False
            start, pos, huffman = _string_bounds(buf, pos, end)
            value = _huffman_decode(buf, start, pos) if huffman else buf[start:pos]
            if field_ok and _value_invalid(value):
                field_ok = False
            field = (name, value)
            size = len(name) + len(value) + 32
            total += size
            if total <= limit:
                headers.append(field)
            elif total > limit * HPACK_BOMB_FACTOR:
                raise HPACKBomb(f"header block decoding past {limit * HPACK_BOMB_FACTOR} octets (HPACK bomb)")
            if not field_ok:
                valid = False
            if indexing:
                self._add(field, size, field_ok)
        self.fields_valid = valid
        if total > limit:
            raise HeaderListTooLarge(f"header list of {total} octets exceeds the limit of {limit}")
        return headers

    def _add(self, field, size, field_ok):
        """Insert a new entry, evicting the oldest ones to make room (RFC 7541 §4.4)."""
        max_size = self.max_table_size
        if size > max_size:
            self._evict(0)
            return
        self._evict(max_size - size)
        self._entries.append(field)
        self.table_size += size
        if not field_ok:
            self._invalid[field] = self._invalid.get(field, 0) + 1

    def _evict(self, target):
        """Evict the oldest entries until the table size is at most ``target``."""
        table_size = self.table_size
        if table_size <= target:
            return
        entries = self._entries
        drop = 0
        while table_size > target:
            old = entries[drop]
            table_size -= len(old[0]) + len(old[1]) + 32
            drop += 1
            if self._invalid and old in self._invalid:
                left = self._invalid[old] - 1
                if left:
                    self._invalid[old] = left
                else:
                    del self._invalid[old]
        del entries[:drop]
        self.table_size = table_size


def _encode_int(out, first, mask, value):
    """Append an integer with an N-bit prefix (``mask`` = 2**N - 1) whose high bits are ``first``."""
    if value < mask:
        out.append(first | value)
        return
    out.append(first | mask)
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _int_bytes(first, mask, value):
    out = bytearray()
    _encode_int(out, first, mask, value)
    return bytes(out)


#: Names the encoder never adds to the table and sends never-indexed (RFC 7541 §7.1.3).
SENSITIVE_NAMES = frozenset([b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"])

#: Names whose values repeat across the responses of a connection: sent with incremental indexing,
#: then as one octet while they stay in the encoder's dynamic table.
INDEXED_NAMES = frozenset(
    [
        b"server",
        b"content-type",
        b"date",
        b"cache-control",
        b"vary",
        b"content-encoding",
        b"access-control-allow-origin",
    ]
)

# name -> (literal-without-indexing prefix, with-indexing prefix, never-indexed prefix, {value: index}).
#: Fields whose encoding an Encoder keeps between blocks (a bound: one-off values come and go).
ENCODED_CACHE_LIMIT = 64

_STATIC_NAMES: dict[bytes, tuple[bytes, bytes, bytes, dict[bytes, int]]] = {}
for _index in range(STATIC_TABLE_LENGTH, 0, -1):  # backwards: the lowest index of a name wins
    _bname, _bvalue = STATIC_TABLE[_index]
    _known = _STATIC_NAMES.get(_bname)
    _values = _known[3] if _known is not None else {}
    if _bvalue:
        _values[_bvalue] = _index
    _STATIC_NAMES[_bname] = (
        _int_bytes(0x00, 0x0F, _index),
        _int_bytes(0x40, 0x3F, _index),
        _int_bytes(0x10, 0x0F, _index),
        _values,
    )
del _index, _bname, _bvalue, _known, _values, _name, _value, _names, _words


class Encoder:
    """Encodes the header blocks of one connection's responses (RFC 7541).

    Full static-table matches (``:status 200``, ...) become one octet; static names are indexed;
    ``INDEXED_NAMES`` use a dynamic table of at most ``max_table_size`` octets (capped by the peer's
    SETTINGS_HEADER_TABLE_SIZE, see ``set_max_table_size``); ``SENSITIVE_NAMES`` are never indexed.
    Strings are sent as they are unless ``huffman`` is true (then Huffman-coded when shorter).
    Names must be lowercase bytes, values bytes.
    """

    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE, huffman: bool = False) -> None:
        #: The most this encoder uses, whatever the peer allows.
        self.table_size_limit = max_table_size
        #: The table's current maximum size: min(limit, the peer's SETTINGS_HEADER_TABLE_SIZE).
        self.max_table_size = min(max_table_size, DEFAULT_TABLE_SIZE)
        self.table_size = 0
        self.huffman = huffman
        # (name, value) -> insertion number of its newest copy
        self._index: dict[tuple[bytes, bytes], int] = {}
        self._entries: deque[tuple[tuple[bytes, bytes], int, int]] = deque()  # (key, size, insertion number)
        self._inserted = 0  # insertions so far: entry n has index 62 + (inserted - 1 - n)
        self._smallest_update = -1  # the smallest size since the last block, when a change is pending
        self._pending_update = False
        # name -> [its last value, that field's octets, {value: the field's octets}] while the table
        # holds still. By name, then value: bytes keep their hash, a fresh (name, value) tuple would be
        # hashed again; the last value first: a response's fields mostly repeat the previous one's.
        self._cache: dict[bytes, list] = {}
        self._cached = 0  # fields in _cache

    def set_max_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE changed: the next block starts with a size update."""
        if size < 0:
            raise ValueError("table size must not be negative")
        size = min(size, self.table_size_limit)
        if self._pending_update:
            self._smallest_update = min(self._smallest_update, size)
        else:
            self._smallest_update = size
        self._pending_update = True
        self.max_table_size = size
        self._cache.clear()
        self._cached = 0
        self._evict(size)

    def encode(self, headers) -> bytes:
        """One header block for ``[(name, value), ...]``."""
        return b"".join(self.encode_parts(headers))

    def encode_parts(self, headers) -> list:
        """The header block for ``headers`` as the list of its parts, for a writer that copies them
        once (``headers_frames`` takes it)."""
        parts: list[bytes] = []  # list.append: cheaper than growing a bytearray
        if self._pending_update:
            out = bytearray()
            if self._smallest_update < self.max_table_size:
                _encode_int(out, 0x20, 0x1F, self._smallest_update)
            _encode_int(out, 0x20, 0x1F, self.max_table_size)
            self._pending_update = False
            parts.append(bytes(out))
        cache = self._cache
        for name, value in headers:
            entry = cache.get(name)
            if entry is not None:
                last = entry[0]
                if last == value:
                    parts.append(entry[1])
                    continue
                values = entry[2]
                encoded = values.get(value)
                if encoded is not None:
                    entry[0] = value
                    entry[1] = encoded
                    parts.append(encoded)
                    continue
            out = bytearray()
            added = self._field(out, name, value)
            encoded = bytes(out)
            parts.append(encoded)
            if not added:
                # The same octets encode this field until the table changes: kept (a response's
                # fields mostly repeat the previous response's).
                if self._cached >= ENCODED_CACHE_LIMIT:
                    cache.clear()
                    self._cached = 0
                    entry = None
                if entry is None:
                    cache[name] = [value, encoded, {value: encoded}]
                else:
                    entry[0] = value
                    entry[1] = encoded
                    entry[2][value] = encoded
                self._cached += 1
        return parts

    def _field(self, out, name, value) -> bool:
        """Append one field's representation; True when it was added to the dynamic table."""
        static = _STATIC_NAMES.get(name)
        if static is not None:
            full = static[3].get(value)
            if full is not None:
                out.append(0x80 | full)
                return False
        if name in SENSITIVE_NAMES:
            if static is not None:
                out += static[2]
            else:
                out.append(0x10)
                self._string(out, name)
            self._string(out, value)
            return False
        if name in INDEXED_NAMES:
            key = (name, value)
            number = self._index.get(key)
            if number is not None:
                _encode_int(out, 0x80, 0x7F, STATIC_TABLE_LENGTH + self._inserted - number)
                return False
            size = len(name) + len(value) + 32
            if 2 * size <= self.max_table_size:
                if static is not None:
                    out += static[1]
                else:
                    out.append(0x40)
                    self._string(out, name)
                self._string(out, value)
                self._add(key, size)
                return True
        if static is not None:
            out += static[0]
        else:
            out.append(0x00)
            self._string(out, name)
        self._string(out, value)
        return False

    def _string(self, out, data):
        if self.huffman and data:
            coded = huffman_encode(data)
            if len(coded) < len(data):
                _encode_int(out, 0x80, 0x7F, len(coded))
                out += coded
                return
        _encode_int(out, 0x00, 0x7F, len(data))
        out += data

    def _add(self, key, size):
        self._cache.clear()  # indexes shift: what was cached may now point elsewhere
        self._cached = 0
        self._evict(self.max_table_size - size)
        self._entries.append((key, size, self._inserted))
        self._index[key] = self._inserted
        self._inserted += 1
        self.table_size += size

    def _evict(self, target):
        entries = self._entries
        while self.table_size > target:
            key, size, number = entries.popleft()
            self.table_size -= size
            if self._index.get(key) == number:
                del self._index[key]
