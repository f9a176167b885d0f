"""Requests that must be refused (malformed, ambiguous, smuggling attempts) and valid edge cases that
must be served, each with the rule it comes from (RFC 9112, HTTP/1.1; RFC 9110, HTTP semantics).

Written for cyasgi from the RFC text. ``MALFORMED`` gives the status the native parsers answer;
where a foreign parser (httptools, h11) answers otherwise and the protocol cannot close the gap
(the parser hides what would be needed), the case names that answer and the reason in
``divergent``. docs/reliability.md lists the same divergences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A well-formed request sent before the case (it must be answered first) and one sent after it
#: (it must never be served: nothing after a refused request is read).
BEFORE = b"GET /before HTTP/1.1\r\nHost: example.org\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: example.org\r\n\r\n"

#: In ``divergent``: the parser accepts the request and the application is called.
SERVED = 0
#: In ``divergent``: the parser takes the body length as announced and waits for it.
WAITS = -1

_TWO_SPACES = "llhttp parses the request line on any run of spaces; its callbacks never show them"
_METHODS = "llhttp knows a fixed list of methods; RFC 9110 9.1 makes a method any token (case-sensitive)"
_OBS_FOLD = "h11 unfolds obs-fold into one space (RFC 9112 5.2 allows either that or a 400)"
_BARE_LF = "h11 accepts a bare LF as a line end (RFC 9112 2.2 allows a recipient to)"
_H11_TE = "h11 refuses every transfer coding but chunked itself, before the protocol sees the field"
_H11_MERGES_CL = "h11 merges Content-Length fields (or list members) of equal value before we see them"
_H11_CHUNK_LINE = "h11 reads a chunk-size line leniently and never shows it"
_H11_TRAILERS = "h11 unfolds obs-fold in trailers too (RFC 9112 5.2 allows either that or a 400)"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    status: int
    rule: str
    #: The head is valid and the body is not: the application may already have been called when
    #: the bytes arrive one by one (it then sees ``http.disconnect``).
    body_error: bool = False
    #: parser name -> (its answer, why), where it differs from the native parsers'.
    divergent: dict[str, tuple[int, str]] = field(default_factory=dict)

    def answer(self, parser: str) -> int:
        return self.divergent[parser][0] if parser in self.divergent else self.status


def request(*fields: bytes, start: bytes = b"GET / HTTP/1.1", body: bytes = b"") -> bytes:
    return start + b"\r\n" + b"".join(line + b"\r\n" for line in fields) + b"\r\n" + body


def post(*fields: bytes, body: bytes = b"") -> bytes:
    return request(b"Host: example.org", *fields, start=b"POST /upload HTTP/1.1", body=body)


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked", body=body)


def get(*fields: bytes) -> bytes:
    return request(b"Host: example.org", *fields)


MALFORMED = [
    # Message framing and request smuggling (RFC 9112 6.1, 6.3) --------------------------------
    Case("cl_and_te", post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400,
         "9112 6.1: a request with both may be a smuggling attempt; the server may reject it, and closes"),
    Case("te_and_cl", post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"), 400,
         "9112 6.1"),
    Case("cl_twice_same", post(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"), 400,
         "9112 6.3 (5): several Content-Length fields; rejecting even equal ones is the strict choice",
         divergent={"h11": (SERVED, _H11_MERGES_CL)}),
    Case("cl_twice_different", post(b"Content-Length: 3", b"Content-Length: 4", body=b"abcd"), 400, "9112 6.3 (5)"),
    Case("cl_list", post(b"Content-Length: 3, 3", body=b"abc"), 400, "9112 6.3 (5): a list is invalid",
         divergent={"h11": (SERVED, _H11_MERGES_CL)}),
    Case("cl_plus", post(b"Content-Length: +3", body=b"abc"), 400, "9110 8.6: Content-Length = 1*DIGIT"),
    Case("cl_negative", post(b"Content-Length: -1"), 400, "9110 8.6"),
    Case("cl_hex", post(b"Content-Length: 0x3", body=b"abc"), 400, "9110 8.6"),
    Case("cl_inner_space", post(b"Content-Length: 1 2", body=b"abc"), 400, "9110 8.6"),
    Case("cl_empty", post(b"Content-Length:"), 400, "9110 8.6"),
    Case("cl_overflow", post(b"Content-Length: 99999999999999999999999"), 400, "9112 6.3 (5): unparsable length"),
    Case("cl_obs_text", post(b"Content-Length: 3\xff", body=b"abc"), 400, "9110 8.6"),
    Case("te_final_not_chunked", post(b"Transfer-Encoding: gzip", body=b"abc"), 400,
         "9112 6.3 (4): final coding not chunked: length unknown, 400 and close"),
    Case("te_chunked_then_gzip", post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), 400, "9112 6.3 (4)"),
    Case("te_identity", post(b"Transfer-Encoding: identity", body=b"abc"), 400,
         "9112 6.3 (4); identity is gone (9112 7)"),
    Case("te_unknown_token", post(b"Transfer-Encoding: xchunked", body=b"abc"), 400, "9112 6.3 (4)"),
    Case("te_quoted", post(b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"), 400, "9112 6.3 (4)"),
    Case("te_empty", post(b"Transfer-Encoding:", body=b"0\r\n\r\n"), 400, "9112 6.1: transfer-coding is a token"),
    Case("te_chunked_twice", post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400,
         "9112 7.1: chunked must not be applied more than once"),
    Case("te_two_fields", post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
         400, "9112 7.1, 6.3 (4): a second field appends codings after chunked"),
    Case("te_gzip_then_chunked", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501,
         "9112 6.1: a transfer coding the server does not implement: 501", divergent={"h11": (400, _H11_TE)}),
    Case("te_in_http10", request(b"Transfer-Encoding: chunked", start=b"POST / HTTP/1.0", body=b"0\r\n\r\n"), 400,
         "9112 6.1: a server must treat Transfer-Encoding in HTTP/1.0 as faulty framing"),
    # Chunked bodies (RFC 9112 7.1) -------------------------------------------------------------
    Case("chunk_size_not_hex", chunked(b"zz\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1: chunk-size = 1*HEXDIG", True),
    Case("chunk_size_negative", chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1", True),
    Case("chunk_size_0x", chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1", True),
    Case("chunk_size_empty", chunked(b"\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1", True),
    Case("chunk_size_overflow", chunked(b"fffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400,
         "9112 7.1: a recipient must anticipate sizes it cannot represent and reject them", True,
         divergent={"h11": (WAITS, _H11_CHUNK_LINE)}),
    Case("chunk_size_trailing_space", chunked(b"3 \r\nabc\r\n0\r\n\r\n"), 400,
         "9112 7.1.1: BWS only before ';'", True,
         divergent={"h11": (SERVED, _H11_CHUNK_LINE)}),
    Case("chunk_ext_empty_name", chunked(b"3;\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1.1: chunk-ext-name = token", True,
         divergent={"h11": (SERVED, _H11_CHUNK_LINE)}),
    Case("chunk_ext_control", chunked(b"3;a=\x01\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1.1", True,
         divergent={"h11": (SERVED, _H11_CHUNK_LINE)}),
    Case("chunk_ext_unclosed_quote", chunked(b'3;a="b\r\nabc\r\n0\r\n\r\n'), 400, "9110 5.6.4: quoted-string", True,
         divergent={"h11": (SERVED, _H11_CHUNK_LINE)}),
    Case("chunk_ext_space_in_value", chunked(b"3;a=b c\r\nabc\r\n0\r\n\r\n"), 400, "9112 7.1.1", True,
         divergent={"h11": (SERVED, _H11_CHUNK_LINE)}),
    Case("chunk_data_longer_than_size", chunked(b"3\r\nabcd\r\n0\r\n\r\n"), 400,
         "9112 7.1: chunk-data is followed by CRLF", True),
    Case("chunk_size_bare_lf", chunked(b"3\nabc\r\n0\r\n\r\n"), 400, "9112 2.2, 7.1", True),
    Case("chunk_data_bare_lf", chunked(b"3\r\nabc\n0\r\n\r\n"), 400, "9112 2.2, 7.1", True),
    Case("chunk_size_bare_cr", chunked(b"3\rabc\r\n0\r\n\r\n"), 400, "9112 2.2", True),
    Case("last_chunk_bare_lf", chunked(b"3\r\nabc\r\n0\n\r\n"), 400, "9112 2.2, 7.1", True),
    Case("trailer_without_colon", chunked(b"3\r\nabc\r\n0\r\nTrailer-Field\r\n\r\n"), 400,
         "9112 7.1.2: trailer fields are field lines", True),
    Case("trailer_obs_fold", chunked(b"3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400, "9112 5.2, 7.1.2", True,
         divergent={"h11": (SERVED, _H11_TRAILERS)}),
    Case("trailer_space_before_colon", chunked(b"3\r\nabc\r\n0\r\nX-T : a\r\n\r\n"), 400, "9112 5.1", True),
    Case("trailer_content_length", chunked(b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"), 400,
         "9110 6.5.1: framing fields are not allowed in trailers", True),
    Case("trailer_transfer_encoding", chunked(b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400,
         "9110 6.5.1", True),
    Case("trailer_nul", chunked(b"3\r\nabc\r\n0\r\nX-T: a\x00b\r\n\r\n"), 400, "9110 5.5", True),
    # Lines and field syntax (RFC 9112 2.2, 5; RFC 9110 5) --------------------------------------
    Case("obs_fold", get(b"X-Folded: one", b" two"), 400, "9112 5.2: reject obs-fold with 400 (or unfold)",
         divergent={"h11": (SERVED, _OBS_FOLD)}),
    Case("obs_fold_tab", get(b"X-Folded: one", b"\ttwo"), 400, "9112 5.2", divergent={"h11": (SERVED, _OBS_FOLD)}),
    Case("space_before_first_field", b"GET / HTTP/1.1\r\n Host: example.org\r\n\r\n", 400,
         "9112 2.2: whitespace between the start-line and the first field must be rejected"),
    Case("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: example.org\n\n", 400, "9112 2.2",
         divergent={"h11": (SERVED, _BARE_LF)}),
    Case("bare_lf_after_request_line", b"GET / HTTP/1.1\nHost: example.org\r\n\r\n", 400, "9112 2.2",
         divergent={"h11": (SERVED, _BARE_LF)}),
    Case("bare_lf_after_field", b"GET / HTTP/1.1\r\nHost: example.org\nX: y\r\n\r\n", 400, "9112 2.2",
         divergent={"h11": (SERVED, _BARE_LF)}),
    Case("bare_lf_ends_head", b"GET / HTTP/1.1\r\nHost: example.org\r\n\n", 400, "9112 2.2",
         divergent={"h11": (SERVED, _BARE_LF)}),
    Case("bare_cr_after_request_line", b"GET / HTTP/1.1\rHost: example.org\r\n\r\n", 400,
         "9112 2.2: a bare CR must be rejected (or replaced by SP)"),
    Case("bare_cr_in_value", get(b"X-Value: a\rb"), 400, "9112 2.2; 9110 5.5"),
    Case("space_before_colon", request(b"Host : example.org"), 400, "9112 5.1: must be rejected with 400"),
    Case("tab_before_colon", get(b"X-Name\t: value"), 400, "9112 5.1"),
    Case("method_invalid_char", request(b"Host: example.org", start=b"G(T / HTTP/1.1"), 400,
         "9110 9.1: method = token"),
    Case("method_nul", request(b"Host: example.org", start=b"G\x00T / HTTP/1.1"), 400, "9110 9.1"),
    Case("method_leading_space", request(b"Host: example.org", start=b" GET / HTTP/1.1"), 400, "9112 3"),
    Case("name_invalid_char", get(b"X(Y): value"), 400, "9110 5.1: field-name = token"),
    Case("name_obs_text", get(b"X\xffY: value"), 400, "9110 5.1"),
    Case("name_empty", get(b": value"), 400, "9110 5.1"),
    Case("field_without_colon", get(b"NotAField"), 400, "9112 5: field-line = field-name ':' ..."),
    Case("value_nul", get(b"X-Value: a\x00b"), 400, "9110 5.5: NUL must be rejected (or replaced by SP)"),
    Case("value_control", get(b"X-Value: a\x01b"), 400, "9110 5.5: field-vchar excludes controls"),
    Case("value_del", get(b"X-Value: a\x7fb"), 400, "9110 5.5"),
    Case("value_ansi_escape", get(b"X-Value: \x1b[31mred"), 400, "9110 5.5"),
    Case("request_line_two_spaces", request(b"Host: example.org", start=b"GET  / HTTP/1.1"), 400,
         "9112 3: one SP between the parts; lenient parsing invites smuggling",
         divergent={"httptools": (SERVED, _TWO_SPACES)}),
    Case("request_line_trailing_space", request(b"Host: example.org", start=b"GET / HTTP/1.1 "), 400, "9112 3"),
    Case("target_control", request(b"Host: example.org", start=b"GET /\x01 HTTP/1.1"), 400,
         "9112 3.2: request-target has no controls"),
    Case("target_space", request(b"Host: example.org", start=b"GET /a b HTTP/1.1"), 400, "9112 3.2"),
    Case("target_tab", request(b"Host: example.org", start=b"GET /a\tb HTTP/1.1"), 400, "9112 3.2"),
    Case("target_obs_text", request(b"Host: example.org", start=b"GET /\xff HTTP/1.1"), 400, "9112 3.2; 3986 3.3"),
    Case("target_authority_form_for_get", request(b"Host: example.org", start=b"GET example.org:443 HTTP/1.1"), 400,
         "9112 3.2.3: authority-form is only for CONNECT"),
    Case("target_asterisk_for_get", request(b"Host: example.org", start=b"GET * HTTP/1.1"), 400,
         "9112 3.2.4: asterisk-form is only for OPTIONS"),
    Case("target_asterisk_prefix", request(b"Host: example.org", start=b"OPTIONS *x HTTP/1.1"), 400,
         "9112 3.2.4"),
    Case("target_relative", request(b"Host: example.org", start=b"GET a/b HTTP/1.1"), 400, "9112 3.2.1: origin-form"),
    Case("connect_origin_form", request(b"Host: example.org:443", start=b"CONNECT /x HTTP/1.1"), 400,
         "9112 3.2.3: CONNECT takes authority-form only"),
    Case("connect_without_port", request(b"Host: example.org", start=b"CONNECT example.org HTTP/1.1"), 400,
         "9112 3.2.3: authority-form = uri-host ':' port"),
    Case("garbage", b"GARBAGE\r\n\r\n", 400, "9112 3"),
    Case("nul_before_request", b"\x00" + get(), 400, "9112 2.2"),
    # Versions (RFC 9112 2.3; RFC 9110 2.5, 15.6.6) ---------------------------------------------
    Case("version_lowercase", request(b"Host: example.org", start=b"GET / http/1.1"), 400,
         "9112 2.3: HTTP-name is case-sensitive"),
    Case("version_two_digit_major", request(b"Host: example.org", start=b"GET / HTTP/01.1"), 400,
         "9112 2.3: HTTP-version = HTTP-name '/' DIGIT '.' DIGIT"),
    Case("version_missing", b"GET /\r\n\r\n", 400, "9112 2.3: an HTTP/0.9 request line, without a version"),
    Case("version_0_9", request(start=b"GET / HTTP/0.9"), 400, "9112 2.3: HTTP/0.9 has no version token"),
    Case("version_1_2", request(b"Host: example.org", start=b"GET / HTTP/1.2"), 505,
         "9110 15.6.6: a version this server does not serve"),
    Case("version_2_0", request(b"Host: example.org", start=b"GET / HTTP/2.0"), 505,
         "9110 15.6.6; HTTP/2 starts with its preface, never with an HTTP/1 request line"),
    Case("version_3_0", request(b"Host: example.org", start=b"GET / HTTP/3.0"), 505, "9110 15.6.6"),
    Case("version_9_9", request(b"Host: example.org", start=b"GET / HTTP/9.9"), 505, "9110 15.6.6"),
    # Host (RFC 9112 3.2; RFC 9110 7.2) ---------------------------------------------------------
    Case("host_missing", request(), 400, "9112 3.2: an HTTP/1.1 request without Host gets 400"),
    Case("host_twice", request(b"Host: a.example", b"Host: b.example"), 400, "9112 3.2: more than one Host: 400"),
    Case("host_twice_http10", request(b"Host: a.example", b"Host: b.example", start=b"GET / HTTP/1.0"), 400,
         "9112 3.2"),
    Case("host_space", request(b"Host: a b"), 400, "9112 3.2: an invalid Host value gets 400"),
    Case("host_userinfo", request(b"Host: user@example.org"), 400, "9110 7.2: Host = uri-host [':' port], no userinfo"),
    Case("host_path", request(b"Host: example.org/path"), 400, "9110 7.2"),
    Case("host_bad_port", request(b"Host: example.org:http"), 400, "3986 3.2.3: port = *DIGIT"),
    Case("host_unclosed_ipv6", request(b"Host: [::1"), 400, "3986 3.2.2: IP-literal"),
    Case("host_bad_percent", request(b"Host: ex%zzample"), 400, "3986 2.1: pct-encoded = '%' HEXDIG HEXDIG"),
    Case("host_obs_text", request(b"Host: \xe9xample.org"), 400, "3986 3.2.2: reg-name is ASCII"),
    # Limits (docs/reliability.md) --------------------------------------------------------------
    Case("head_too_large", get(b"X-Big: " + b"a" * 70_000), 431,
         "RFC 6585 5: 431 for a head over --limit-request-head-size"),
    Case("target_too_large", request(b"Host: example.org", start=b"GET /" + b"a" * 70_000 + b" HTTP/1.1"), 431,
         "RFC 6585 5: 431 (a 414 would single out the target; one limit covers the head)"),
    Case("too_many_headers", get(*[b"X-%d: v" % i for i in range(100)]), 431, "RFC 6585 5: 431, over 100 fields"),
]


#: Valid requests near the edges of the grammar: every parser serves them with the same scope
#: and body (``divergent``: a parser that refuses one, with why).
@dataclass(frozen=True)
class ValidCase:
    name: str
    data: bytes
    method: str
    path: str
    body: bytes
    rule: str
    divergent: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: parser name -> why the scope it gives differs (the request is still served).
    other_scope: dict[str, str] = field(default_factory=dict)


_TE_TAB = "llhttp refuses a tab after chunked although RFC 9112 5 makes trailing OWS not part of the value"
_CHUNK_BWS = "llhttp refuses BWS in chunk extensions, which RFC 9112 7.1.1 allows"

VALID = [
    ValidCase("leading_empty_lines", b"\r\n\r\n" + get(), "GET", "/", b"", "9112 2.2: ignore empty lines first",
              divergent={"h11": (400, "h11 refuses empty lines before a request (RFC 9112 2.2: SHOULD ignore)")}),
    ValidCase("te_case_insensitive", post(b"Transfer-Encoding: Chunked", body=b"3\r\nabc\r\n0\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 7: coding names are case-insensitive",
              other_scope={"h11": "h11 lower-cases the Transfer-Encoding value"}),
    ValidCase("te_trailing_space", post(b"Transfer-Encoding: chunked ", body=b"3\r\nabc\r\n0\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 5: OWS around a value is not part of it"),
    ValidCase("te_trailing_tab", post(b"Transfer-Encoding: chunked\t", body=b"3\r\nabc\r\n0\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 5", divergent={"httptools": (400, _TE_TAB)}),
    ValidCase("chunk_extensions", chunked(b'3;name=value;q="quoted \\" string";flag\r\nabc\r\n0;end\r\n\r\n'),
              "POST", "/upload", b"abc", "9112 7.1.1"),
    ValidCase("chunk_extension_bws", chunked(b"3 ; name = value\r\nabc\r\n0\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 7.1.1: BWS",
              divergent={"httptools": (400, _CHUNK_BWS), "h11": (400, "h11 refuses BWS in chunk extensions")}),
    ValidCase("chunk_size_leading_zeros", chunked(b"00000000000000000003\r\nabc\r\n0\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 7.1: 1*HEXDIG"),
    ValidCase("chunk_size_uppercase", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
              "POST", "/upload", b"0123456789", "9112 7.1"),
    ValidCase("trailers", chunked(b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"),
              "POST", "/upload", b"abc", "9112 7.1.2: trailers after the last chunk"),
    ValidCase("cl_leading_zeros", post(b"Content-Length: 003", body=b"abc"), "POST", "/upload", b"abc",
              "9110 8.6: 1*DIGIT"),
    ValidCase("cl_zero", post(b"Content-Length: 0"), "POST", "/upload", b"", "9110 8.6"),
    ValidCase("host_with_port", request(b"Host: example.org:8080"), "GET", "/", b"", "9110 7.2"),
    ValidCase("host_ipv6", request(b"Host: [2001:db8::1]:443"), "GET", "/", b"", "3986 3.2.2"),
    ValidCase("host_ipv4", request(b"Host: 192.0.2.1"), "GET", "/", b"", "3986 3.2.2"),
    ValidCase("host_empty", request(b"Host:"), "GET", "/", b"", "9112 3.2: empty when the target has no authority"),
    ValidCase("host_percent", request(b"Host: ex%41mple.org"), "GET", "/", b"", "3986 2.1"),
    ValidCase("http10_without_host", request(start=b"GET / HTTP/1.0"), "GET", "/", b"", "9112 3.2: Host is 1.1's"),
    ValidCase("value_obs_text", get(b"X-Name: caf\xe9"), "GET", "/", b"", "9110 5.5: obs-text is allowed"),
    ValidCase("value_inner_whitespace", get(b"X-Name: a \t b"), "GET", "/", b"", "9110 5.5"),
    ValidCase("value_empty", get(b"X-Empty:"), "GET", "/", b"", "9110 5.5"),
    ValidCase("name_all_token_chars", get(b"!#$%&'*+-.^_`|~09AZaz: v"), "GET", "/", b"", "9110 5.6.2"),
    ValidCase("options_asterisk", request(b"Host: example.org", start=b"OPTIONS * HTTP/1.1"), "OPTIONS", "*", b"",
              "9112 3.2.4: asterisk-form"),
    ValidCase("absolute_form", request(b"Host: example.org", start=b"GET http://example.org/p?q=1 HTTP/1.1"),
              "GET", "/p", b"", "9112 3.2.2: absolute-form"),
    ValidCase("absolute_form_digit_scheme", request(b"Host: example.org", start=b"GET h2c://example.org/p HTTP/1.1"),
              "GET", "/p", b"", "3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / '+' / '-' / '.' )",
              divergent={"httptools": (400, "llhttp takes letters only in a scheme")}),
    ValidCase("connect_authority_form", request(b"Host: example.org:443", start=b"CONNECT example.org:443 HTTP/1.1"),
              "CONNECT", "example.org:443", b"", "9112 3.2.3 (answered as plain HTTP: no tunnels here)"),
    ValidCase("connect_ignores_content_length",
              request(b"Host: example.org:443", b"Content-Length: 5", start=b"CONNECT example.org:443 HTTP/1.1")
              + b"tunnel",
              "CONNECT", "example.org:443", b"", "9110 9.3.6: a CONNECT request has no content"),
    ValidCase("webdav_method", request(b"Host: example.org", start=b"PROPFIND /dav HTTP/1.1"), "PROPFIND",
              "/dav", b"", "9110 9.1: any token"),
    ValidCase("extension_method", request(b"Host: example.org", start=b"BREW /pot HTTP/1.1"), "BREW", "/pot", b"",
              "9110 9.1: any token", divergent={"httptools": (400, _METHODS)}),
    ValidCase("lowercase_method", request(b"Host: example.org", start=b"get / HTTP/1.1"), "get", "/", b"",
              "9110 9.1: methods are case-sensitive tokens", divergent={"httptools": (400, _METHODS)}),
    ValidCase("exactly_100_headers", get(*[b"X-%d: v" % i for i in range(99)]), "GET", "/", b"",
              "the default --limit-request-headers"),
]
