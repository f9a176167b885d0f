# cython: language_level=3
# The C request parser (parser.pyx) and the interface it calls on the protocol.

cdef class RequestSink:
    cdef Py_ssize_t _queued_head_bytes   # head bytes of the requests parsed since the pipeline was empty

    cdef _on_request(self, str method, bytes target, str http_version, list headers, bint keep_alive,
                     bint upgrade, bint expect_100_continue)
    cdef _on_body(self, bytes body)
    cdef _on_message_complete(self)
    cdef bint _pipeline_full(self)


cdef enum ParserState:
    STATE_HEAD           # before or inside a request head
    STATE_BODY           # a Content-Length body: remaining bytes to go
    STATE_CHUNK_SIZE     # a chunk-size line (with optional extensions)
    STATE_CHUNK_DATA     # chunk data: remaining bytes to go
    STATE_CHUNK_END      # the CRLF after a chunk's data
    STATE_TRAILERS       # trailer fields after the last chunk, up to the empty line
    STATE_UPGRADED       # the connection switched protocols: the parser is done
    STATE_FAILED         # a malformed request was seen: the parser is done


cdef class RequestParser:
    cdef:
        RequestSink protocol
        ParserState state
        bytes buffer                # bytes of an incomplete head, chunk line or trailer section
        Py_ssize_t scanned          # how far the buffered head was already checked for its end
        Py_ssize_t remaining        # body or chunk bytes still to come
        Py_ssize_t body_size        # chunk bytes of the current request announced so far
        Py_ssize_t trailer_size
        readonly Py_ssize_t max_head_size
        readonly Py_ssize_t max_headers
        readonly Py_ssize_t max_body_size   # -1: no limit
        # the last request head, for httptools-style accessors
        str method
        str http_version
        bint keep_alive
        bint upgrade

    cdef _setup(self, RequestSink protocol, Py_ssize_t max_head_size, Py_ssize_t max_headers,
                Py_ssize_t max_body_size)
    cpdef bint has_partial_message(self)
    cpdef bint in_head(self)
    cdef object _start(self, bytes chunk, bint hold)
    cdef object feed(self, bytes chunk)
    cdef object _feed(self, bytes data, Py_ssize_t prefix, bint hold)
    cdef Py_ssize_t _find_line_end(self, const unsigned char *base, Py_ssize_t size, Py_ssize_t pos,
                                   Py_ssize_t limit, str what) except -2
    cdef Py_ssize_t _find_head_end(self, const unsigned char *base, Py_ssize_t size, Py_ssize_t pos,
                                   Py_ssize_t prefix) except -2
    cdef Py_ssize_t _parse_head(self, bytes data, const unsigned char *base, Py_ssize_t pos,
                                Py_ssize_t end) except -1
    cdef _parse_chunk_size(self, const unsigned char *line, Py_ssize_t size)
    cdef _check_field_line(self, const unsigned char *line, Py_ssize_t size)
    cdef _message_complete(self)


cdef RequestParser new_request_parser(RequestSink protocol, Py_ssize_t max_head_size, Py_ssize_t max_headers,
                                      Py_ssize_t max_body_size)
