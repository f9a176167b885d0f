"""The shared HTTP rule functions of cyasgi/protocols/http/rules.py and errors.py: one definition each of the
content-length syntax, the token and field-value characters, and the 400 answer."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyasgi.protocols.http.errors import RequestRejected, bad_request
from cyasgi.protocols.http.rules import (
    FIELD_VALUE_CHARS,
    TCHAR,
    check_request_head,
    is_valid_header_name,
    is_valid_header_value,
    parse_content_length,
)
from tests.fuzz_strategies import fuzz_settings


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"0", 0), (b"5", 5), (b"05", 5), (b"000", 0), (b"1234567890", 1234567890), (b"9" * 18, 10**18 - 1)],
)
def test_parse_content_length_takes_digits(value: bytes, length: int) -> None:
    assert parse_content_length(value) == length


@pytest.mark.parametrize(
    "value",
    [
        b"", b"+5", b"-1", b"-0", b"1_0", b" 5", b"5 ", b"\t5", b"5\t", b"0x5", b"5, 5", b"5,5", b"5.0", b"5e2",
        b"1" * 19, b"9" * 30, b"\xd9\xa5", b"\xef\xbc\x95", b"\xb2", b"5\x00", b"five",
    ],
)
def test_parse_content_length_refuses_anything_else(value: bytes) -> None:
    """RFC 9110 8.6: ``Content-Length = 1*DIGIT``; what ``int()`` also takes (a sign, ``_``,
    whitespace) is not a length, nor more than 18 digits."""
    assert parse_content_length(value) == -1


@fuzz_settings(default_examples=200)
@given(value=st.one_of(st.binary(max_size=22), st.text("0123456789+-_ \t", max_size=22).map(str.encode)))
def test_parse_content_length_is_one_to_eighteen_digits(value: bytes) -> None:
    expected = int(value) if re.fullmatch(rb"[0-9]{1,18}", value) else -1
    assert parse_content_length(value) == expected


def test_check_request_head_uses_the_same_content_length_rule() -> None:
    headers = [(b"host", b"example.org")]
    check_request_head("POST", b"/", "1.1", [*headers, (b"content-length", b"05")], -1)
    for value in (b"+5", b"1_0", b"-0", b"1" * 19):
        with pytest.raises(RequestRejected) as info:
            check_request_head("POST", b"/", "1.1", [*headers, (b"content-length", value)], -1)
        assert info.value.status == 400


def test_token_characters_are_rfc_9110_tchar() -> None:
    """tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
    / DIGIT / ALPHA (RFC 9110 5.6.2)."""
    expected = set(b"!#$%&'*+-.^_`|~") | set(range(0x30, 0x3A)) | set(range(0x41, 0x5B)) | set(range(0x61, 0x7B))
    assert set(TCHAR) == expected and len(TCHAR) == len(expected)
    for byte in range(256):
        assert is_valid_header_name(b"x" + bytes([byte]) + b"y") == (byte in expected), byte
    assert not is_valid_header_name(b"")


def test_field_value_characters_are_htab_sp_vchar_obs_text() -> None:
    expected = {0x09} | set(range(0x20, 0x7F)) | set(range(0x80, 0x100))
    assert set(FIELD_VALUE_CHARS) == expected and len(FIELD_VALUE_CHARS) == len(expected)
    for byte in range(256):
        assert is_valid_header_value(b"a" + bytes([byte]) + b"b") == (byte in expected), byte
    assert is_valid_header_value(b"")


def test_bad_request_logs_its_detail_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        plain = bad_request()
        detailed = bad_request("invalid Content-Length")
    assert (plain.status, plain.body, plain.log_message) == (detailed.status, detailed.body, detailed.log_message)
    assert detailed.status == 400 and b"Content-Length" not in detailed.body
    messages = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert messages == [(logging.DEBUG, "Invalid HTTP request: invalid Content-Length")]
