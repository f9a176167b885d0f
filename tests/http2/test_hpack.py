"""HPACK (RFC 7541): both twins of cyasgi.protocols.http2.hpack against the RFC's examples, the
``hpack`` package (a test-only oracle) and malformed input."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cyasgi.protocols.http2.codec as codec
from cyasgi._compat import NO_EXTENSIONS
from cyasgi.protocols.http2.errors import HeaderListTooLarge, HPACKBomb, HPACKError
from tests.conftest import SPEEDUPS

hpack_lib = pytest.importorskip("hpack")

TWINS = {"c": "cyasgi._speedups.hpack", "py": "cyasgi.protocols.http2.hpack"}
EXPECT_COMPILED = not NO_EXTENSIONS and (SPEEDUPS / "hpack.pxd").exists()


def load(name: str) -> Any:
    if name == "c" and not EXPECT_COMPILED:
        pytest.skip("the compiled twin is disabled here (CYASGI_NO_EXTENSIONS=1 or not CPython)")
    return importlib.import_module(TWINS[name])  # a build that should exist and does not fails here


@pytest.fixture(params=["c", "py"])
def twin(request: pytest.FixtureRequest) -> Any:
    """The HPACK module under test: compiled (``[c]``) or pure Python (``[py]``)."""
    return load(request.param)


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def fields(text: str) -> list[tuple[bytes, bytes]]:
    """``name: value`` lines as a header list (the name ends at the first ': ' after position 0)."""
    out = []
    for line in text.strip().splitlines():
        name, value = line.strip().split(": ", 1) if not line.strip().startswith(":") else _pseudo(line.strip())
        out.append((name.encode(), value.encode()))
    return out


def _pseudo(line: str) -> tuple[str, str]:
    name, value = line[1:].split(": ", 1)
    return ":" + name, value


# ---------------------------------------------------------------------------------------------------
# RFC 7541 Appendix C


@pytest.mark.parametrize(
    "block, expected, table",
    [
        ("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572", "custom-key: custom-header", 55),  # C.2.1
        ("040c 2f73 616d 706c 652f 7061 7468", ":path: /sample/path", 0),  # C.2.2
        ("1008 7061 7373 776f 7264 0673 6563 7265 74", "password: secret", 0),  # C.2.3
        ("82", ":method: GET", 0),  # C.2.4
    ],
    ids=["C.2.1", "C.2.2", "C.2.3", "C.2.4"],
)
def test_rfc_c2_field_representations(twin, block, expected, table):
    decoder = twin.Decoder()
    assert decoder.decode(unhex(block)) == fields(expected)
    assert decoder.table_size == table


REQUESTS = [
    fields(":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com"),
    fields(":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\ncache-control: no-cache"),
    fields(":method: GET\n:scheme: https\n:path: /index.html\n:authority: www.example.com\ncustom-key: custom-value"),
]
REQUEST_TABLES = [
    (57, fields(":authority: www.example.com")),
    (110, fields("cache-control: no-cache\n:authority: www.example.com")),
    (164, fields("custom-key: custom-value\ncache-control: no-cache\n:authority: www.example.com")),
]
C3 = [
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
]
C4 = [
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
]

RESPONSES = [
    fields(":status: 302\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\nlocation: https://www.example.com"),
    fields(":status: 307\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:21 GMT\nlocation: https://www.example.com"),
    fields(
        ":status: 200\ncache-control: private\ndate: Mon, 21 Oct 2013 20:13:22 GMT\nlocation: https://www.example.com\n"
        "content-encoding: gzip\nset-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
    ),
]
RESPONSE_TABLES = [
    (
        222,
        fields(
            "location: https://www.example.com\ndate: Mon, 21 Oct 2013 20:13:21 GMT\n"
            "cache-control: private\n:status: 302"
        ),
    ),
    (
        222,
        fields(
            ":status: 307\nlocation: https://www.example.com\ndate: Mon, 21 Oct 2013 20:13:21 GMT\n"
            "cache-control: private"
        ),
    ),
    (
        215,
        fields(
            "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1\ncontent-encoding: gzip\n"
            "date: Mon, 21 Oct 2013 20:13:22 GMT"
        ),
    ),
]
C5 = [
    """4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d""",
    "4803 3330 37c1 c0bf",
    """88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31""",
]
C6 = [
    """4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3""",
    "4883 640e ffc1 c0bf",
    """88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07""",
]


@pytest.mark.parametrize(
    "blocks, lists, tables, table_limit",
    [
        (C3, REQUESTS, REQUEST_TABLES, 4096),
        (C4, REQUESTS, REQUEST_TABLES, 4096),
        (C5, RESPONSES, RESPONSE_TABLES, 256),
        (C6, RESPONSES, RESPONSE_TABLES, 256),
    ],
    ids=["C.3", "C.4", "C.5", "C.6"],
)
def test_rfc_appendix_c_sequences(twin, blocks, lists, tables, table_limit):
    decoder = twin.Decoder(max_table_size=table_limit)
    for block, expected, (size, table) in zip(blocks, lists, tables):
        assert decoder.decode(unhex(block)) == expected
        assert decoder.table_size == size
        assert decoder.dynamic_table() == table
        assert decoder.fields_valid


@pytest.mark.parametrize(
    "text, coded",
    [
        (b"www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        (b"no-cache", "a8eb 1064 9cbf"),
        (b"custom-key", "25a8 49e9 5ba9 7d7f"),
        (b"custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        (b"302", "6402"),
        (b"private", "aec3 771a 4b"),
        (b"Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
        (b"https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"),
        (b"gzip", "9bd9 ab"),
        (
            b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 "
            "03ed 4ee5 b106 3d50 07",
        ),
    ],
)
def test_rfc_huffman_strings(twin, text, coded):
    assert twin.huffman_encode(text) == unhex(coded)
    assert twin.huffman_decode(unhex(coded)) == text


def test_transcribed_tables_match_the_hpack_package():
    # The static table and the Huffman code were typed in from RFC 7541 Appendix A and B.
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    from hpack.table import HeaderTable

    pure = load("py")
    assert pure.STATIC_TABLE[1:] == [(bytes(n), bytes(v)) for n, v in HeaderTable.STATIC_TABLE]
    assert pure.HUFFMAN_CODES == list(REQUEST_CODES)
    assert pure.HUFFMAN_LENGTHS == list(REQUEST_CODES_LENGTH)
    assert sum(2.0**-length for length in pure.HUFFMAN_LENGTHS) == 1.0  # a complete prefix code


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_huffman_round_trip(twin, data):
    coded = twin.huffman_encode(data)
    assert coded == hpack_lib.huffman.HuffmanEncoder(
        hpack_lib.huffman_constants.REQUEST_CODES, hpack_lib.huffman_constants.REQUEST_CODES_LENGTH
    ).encode(data)
    assert twin.huffman_decode(coded) == data


# ---------------------------------------------------------------------------------------------------
# Encoder


def test_encoder_uses_the_static_table_and_never_indexes_secrets(twin):
    encoder = twin.Encoder()
    block = encoder.encode(
        [(b":status", b"200"), (b"content-length", b"13"), (b"set-cookie", b"a=b"), (b"authorization", b"x")]
    )
    # :status 200 is one octet; content-length is static name 28 without indexing; the secrets are
    # never indexed (0001 prefix) with their static names 55 and 23.
    assert block == unhex("88 0f0d 02 3133 1f28 03 613d62 1f08 01 78")
    assert encoder.table_size == 0


def test_encoder_indexes_repeated_fields(twin):
    encoder = twin.Encoder()
    response = [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"server", b"cyasgi"),
        (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
    ]
    first = encoder.encode(response)
    second = encoder.encode(response)
    assert second == unhex("88 c0 bf be")
    assert len(first) > 40
    decoder = twin.Decoder()
    assert decoder.decode(first) == response
    assert decoder.decode(second) == response


def test_encoder_signals_table_size_changes(twin):
    encoder = twin.Encoder()
    decoder = twin.Decoder()
    response = [(b"server", b"cyasgi")]
    decoder.decode(encoder.encode(response))
    encoder.set_max_table_size(0)
    encoder.set_max_table_size(100)
    block = encoder.encode(response)
    assert block[:2] == unhex("20 3f45")[:2]  # size update to 0, then to 100
    assert block.startswith(unhex("20 3f45"))
    assert decoder.decode(block) == response
    assert decoder.max_table_size == 100


@pytest.mark.parametrize("huffman", [False, True])
def test_encoder_round_trip_through_hpack(twin, huffman):
    encoder = twin.Encoder(huffman=huffman)
    oracle = hpack_lib.Decoder()
    for _ in range(3):
        response = [
            (b":status", b"404"),
            (b"content-type", b"text/html; charset=utf-8"),
            (b"x-request-id", b"abc123"),
            (b"vary", b"accept-encoding"),
        ]
        assert oracle.decode(encoder.encode(response), raw=True) == response


# ---------------------------------------------------------------------------------------------------
# Differential: random header lists against the hpack package, both directions

NAMES = st.one_of(
    st.sampled_from(
        [
            b":status",
            b":path",
            b"content-type",
            b"server",
            b"date",
            b"set-cookie",
            b"cookie",
            b"accept-encoding",
            b"vary",
            b"x-a",
        ]
    ),
    st.binary(min_size=1, max_size=20),
)
VALUES = st.one_of(
    st.sampled_from([b"", b"200", b"/", b"gzip, deflate", b"text/plain", b"cyasgi"]), st.binary(max_size=60)
)
HEADER_LISTS = st.lists(st.lists(st.tuples(NAMES, VALUES), max_size=12), min_size=1, max_size=4)


@given(blocks=HEADER_LISTS, huffman=st.booleans(), table_size=st.sampled_from([0, 64, 256, 4096]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decoder_matches_hpack(twin, blocks, huffman, table_size):
    encoder = hpack_lib.Encoder()
    decoder = twin.Decoder()
    if table_size != 4096:
        encoder.header_table_size = table_size
    for headers in blocks:
        assert decoder.decode(encoder.encode(headers, huffman=huffman)) == headers
        assert decoder.table_size == sum(
            32 + len(n) + len(v) for n, v in encoder.header_table.dynamic_entries
        )


@given(blocks=HEADER_LISTS, huffman=st.booleans(), table_size=st.sampled_from([0, 64, 256, 4096]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_encoder_matches_hpack(twin, blocks, huffman, table_size):
    encoder = twin.Encoder(huffman=huffman)
    oracle = hpack_lib.Decoder()
    if table_size != 4096:
        encoder.set_max_table_size(table_size)
    for headers in blocks:
        assert oracle.decode(encoder.encode(headers), raw=True) == headers
        assert sum(32 + len(n) + len(v) for n, v in oracle.header_table.dynamic_entries) == encoder.table_size


# ---------------------------------------------------------------------------------------------------
# Malformed input: HPACKError, never anything else


MALFORMED = {
    "empty index": "80",
    "truncated integer": "ff",
    "truncated integer continuation": "ff 80",
    "integer overflow": "ff ff ff ff ff 0f",
    "index past the static table": "be",
    "index past the dynamic table": "ff 80 01",
    "literal name index past the table": "7f 80 01 00",
    "no name literal": "40",
    "truncated name": "40 05 6162",
    "no value literal": "40 01 61",
    "truncated value": "00 01 61 05 6162",
    "value length overflow": "00 01 61 7f ff ff ff ff 0f",
    "huffman EOS": "00 01 61 84 ffff ffff",
    "huffman padding of zeros": "00 01 61 81 00",
    "huffman padding too long": "00 01 61 82 1fff",
    "huffman padding 8 ones": "00 01 61 81 ff",
    "size update mid block": "82 20",
    "size update over the limit": "3f e2 1f",
}


@pytest.mark.parametrize("block", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_blocks_raise_hpack_error(twin, block):
    with pytest.raises(HPACKError) as info:
        twin.Decoder().decode(unhex(block))
    assert type(info.value) is HPACKError
    assert info.value.error_code == 0x9


def test_huffman_padding_rules(twin):
    assert twin.huffman_decode(unhex("1f")) == b"a"  # 'a' = 00011, padded with 111
    with pytest.raises(HPACKError):
        twin.huffman_decode(unhex("18"))  # 'a' padded with 000: not the EOS prefix
    assert twin.huffman_decode(b"") == b""


def test_size_update_rules(twin):
    decoder = twin.Decoder(max_table_size=4096)
    assert decoder.decode(unhex("3fe11f 20 82")) == [(b":method", b"GET")]  # two updates at the start: fine
    assert decoder.max_table_size == 0
    decoder.decode(unhex("3fe11f"))  # back to 4096
    decoder.decode(unhex("400161 0162"))  # one entry, size 34
    decoder.set_max_allowed_table_size(100)
    with pytest.raises(HPACKError, match="required"):
        decoder.decode(unhex("82"))
    decoder = twin.Decoder()
    decoder.decode(unhex("400161 0162"))
    decoder.set_max_allowed_table_size(100)
    assert decoder.decode(unhex("3f21 be")) == [(b"a", b"b")]  # resize to 64: the entry stays
    assert decoder.decode(unhex("20")) == []
    assert decoder.table_size == 0 and decoder.dynamic_table() == []


def test_header_list_too_large_keeps_the_table_in_step(twin):
    decoder = twin.Decoder(max_header_list_size=100)
    block = unhex("40 01 61 40" + "62" * 64 + "be be")  # a: b*64 (97 octets), then twice indexed
    with pytest.raises(HeaderListTooLarge) as info:
        decoder.decode(block)
    assert isinstance(info.value, HPACKError)
    assert info.value.error_code == 0xB
    assert decoder.dynamic_table() == [(b"a", b"b" * 64)]
    assert decoder.decode(unhex("82")) == [(b":method", b"GET")]


def test_hpack_bomb_costs_no_memory(twin):
    decoder = twin.Decoder()
    decoder.decode(unhex("40 01 61 7f a1 1e" + "62" * 4000))  # a: b*4000
    bomb = unhex("be") * 16000  # 16 KB of input that would expand to 64 MB
    with pytest.raises(HPACKBomb) as raised:
        decoder.decode(bomb)
    assert raised.value.error_code == 0xB  # ENHANCE_YOUR_CALM: the connection ends
    # Past the limit but below HPACK_BOMB_FACTOR times it: an oversized request (431), the table in step.
    decoder = twin.Decoder()
    decoder.decode(unhex("40 01 61 7f a1 1e" + "62" * 4000))
    with pytest.raises(HeaderListTooLarge):
        decoder.decode(unhex("be") * 100)  # 400 KB, limit 64 KiB
    assert decoder.decode(unhex("be")) == [(b"a", b"b" * 4000)]


@pytest.mark.parametrize(
    "block, valid",
    [
        ("82", True),
        ("00 04 782d6162 01 63", True),  # x-ab: c
        ("00 04 582d6162 01 63", False),  # uppercase name
        ("00 04 782d2062 01 63", False),  # space in the name
        ("00 03 3a6162 01 63", True),  # :ab (the layer rejects unknown pseudo-headers)
        ("00 03 613a62 01 63", False),  # colon inside the name
        ("00 01 3a 01 63", False),  # a lone colon
        ("00 00 01 63", False),  # empty name
        ("00 01 61 02 2063", False),  # leading space in the value
        ("00 01 61 02 6309", False),  # trailing tab in the value
        ("00 01 61 03 630d0a", False),  # CR LF in the value
        ("00 01 61 03 630063", False),  # NUL in the value
        ("00 01 61 03 632063", True),  # inner space
    ],
)
def test_fields_valid_flags_rfc9113_violations(twin, block, valid):
    decoder = twin.Decoder()
    decoder.decode(unhex(block))
    assert decoder.fields_valid is valid


def test_fields_valid_follows_invalid_entries_in_the_dynamic_table(twin):
    decoder = twin.Decoder()
    decoder.decode(unhex("40 01 41 01 62"))  # A: b, indexed
    assert not decoder.fields_valid
    decoder.decode(unhex("82"))
    assert decoder.fields_valid
    decoder.decode(unhex("be"))
    assert not decoder.fields_valid
    decoder.decode(unhex("0f 2f 01 63"))  # literal with the entry's (invalid) name
    assert not decoder.fields_valid
    decoder.decode(unhex("20"))  # evicted
    decoder.decode(unhex("3fe11f 400161 0162 be"))
    assert decoder.fields_valid


@given(st.binary(max_size=80))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes_raise_only_hpack_error(twin, data):
    try:
        headers = twin.Decoder(max_header_list_size=1 << 20).decode(data)
    except HPACKError:
        return
    assert all(type(name) is bytes and type(value) is bytes for name, value in headers)


# ---------------------------------------------------------------------------------------------------
# The twins


@pytest.mark.skipif(
    not EXPECT_COMPILED, reason="the compiled twin is not expected here (pure mode or not CPython)"
)
def test_compiled_codec_is_the_one_loaded():
    assert codec.IMPLEMENTATION == "compiled"
    assert codec.Decoder.__module__ == "cyasgi._speedups.hpack"


@pytest.mark.skipif(not EXPECT_COMPILED, reason="needs the compiled twin")
@given(blocks=HEADER_LISTS, data=st.binary(max_size=60), huffman=st.booleans())
@settings(max_examples=200, deadline=None)
def test_twins_decode_and_encode_alike(blocks, data, huffman):
    compiled, pure = load("c"), load("py")
    decoders = [compiled.Decoder(), pure.Decoder()]
    encoders = [compiled.Encoder(huffman=huffman), pure.Encoder(huffman=huffman)]
    oracle = hpack_lib.Encoder()
    for headers in blocks:
        encoded = [encoder.encode(headers) for encoder in encoders]
        assert encoded[0] == encoded[1]
        block = oracle.encode(headers, huffman=huffman)
        assert decoders[0].decode(block) == decoders[1].decode(block)
        assert decoders[0].fields_valid == decoders[1].fields_valid
    outcomes = []
    for module in (compiled, pure):
        try:
            outcomes.append(module.Decoder().decode(data))
        except HPACKError as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]


@pytest.mark.skipif(not EXPECT_COMPILED, reason="needs the compiled twin")
def test_twins_have_the_same_public_api():
    compiled, pure = load("c"), load("py")
    for name in ("Decoder", "Encoder"):
        public = {attr for attr in dir(getattr(pure, name)) if not attr.startswith("_")}
        assert public <= set(dir(getattr(compiled, name))), name
        assert {attr for attr in vars(getattr(pure, name)()) if not attr.startswith("_")} <= set(
            dir(getattr(compiled, name)())
        )
