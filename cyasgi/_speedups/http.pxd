# cython: language_level=3
# The compiled HTTP/1.1 protocol: the same classes, signatures and behaviour as
# cyasgi/protocols/http/protocol.py (read that file first: it is the reference).

cdef class FlowControl:
    cdef:
        object _transport       # the asyncio / uvloop transport
        readonly bint read_paused
        readonly bint write_paused
        list _drain_waiters     # futures of senders waiting in drain(); None when nobody waits

    cpdef pause_reading(self)
    cpdef resume_reading(self)
    cpdef pause_writing(self)
    cpdef resume_writing(self)


cdef class RequestCycle:
    cdef:
        readonly dict scope
        readonly HttpProtocol protocol
        readonly object app
        readonly object transport
        readonly FlowControl flow
        public bint keep_alive
        public bint waiting_for_100_continue
        # request body not yet handed to the app
        public list body
        public Py_ssize_t body_size
        public bint more_body
        bint _end_delivered
        bint _disconnect_delivered  # receive() said http.disconnect: the client closed its end
        object _waiter          # future receive() waits on; None when nobody waits
        # response
        public bint disconnected
        public bint response_started
        public bint response_complete
        bint _head_request      # HEAD: never a body
        bint _bodyless          # HEAD, 1xx, 204, 304
        list _head_parts        # [status line, default headers, name, value...] until the first body chunk; None after
        Py_ssize_t _head_size   # bytes the head takes with its ": " and CRLFs
        bint _app_connection_header
        int _status
        bint _chunked
        Py_ssize_t _content_length   # -1: the app gave none
        Py_ssize_t _bytes_sent       # body bytes written (framing excluded)
        double _started              # monotonic() when the head was parsed, with the access log on; else 0
        int _trailers           # the app announced trailers: 1 written (chunked body), 2 dropped; 0 none
        bint _awaiting_trailers # the body is complete, http.response.trailers comes next
        bytes _trailer_lines    # trailer fields received so far (when written)

    cdef _init(self, HttpProtocol protocol, dict scope, object app, bint keep_alive, bint expect_100_continue)
    cdef bint _waits_after_request(self)
    cpdef wake(self)
    cdef _send(self, object message)
    cdef _send_extension(self, object message_type, dict message)
    cdef _start_response(self, object status, object headers, object trailers)
    cdef int _trailers_mode(self, int status) except -1
    cdef _flush_head(self)
    cdef _send_body(self, object body, bint more_body)
    cdef _end_body(self)
    cdef _complete(self)
    cdef bytes _file_head(self, Py_ssize_t size, bint more_body)
    cdef object _send_path_now(self, object path)
    cdef _send_trailers(self, object headers, object more_trailers)
    cdef _send_early_hint(self, object links)
    cdef bint _can_replace_response(self)
    cdef _send_500(self)
    cdef _abort(self)
    cdef _log_access(self, bint aborted)


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
        HttpProtocol protocol
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


cdef class HttpProtocol:
    cdef:
        readonly object config
        readonly object app
        readonly object trusted_hosts           # TrustedHosts for X-Forwarded-*; None: proxy headers off
        readonly object loop
        readonly object logger
        readonly object access_logger
        public bint access_log
        public object parser
        RequestParser _native_parser        # the parser when it is the twin's own (C calls), else None
        readonly object ws_protocol_class
        readonly str root_path
        bytes _root_path_raw
        readonly object limit_concurrency
        Py_ssize_t _limit                   # limit_concurrency as a C int; -1: no limit
        # request limits (docs/reliability.md); -1 / 0: off
        Py_ssize_t _limit_head              # --limit-request-head-size
        Py_ssize_t _limit_headers           # --limit-request-headers
        Py_ssize_t _limit_body              # --limit-request-body-size
        Py_ssize_t _limit_requests          # --limit-keep-alive-requests
        double _timeout_head                # --timeout-header-read
        readonly double timeout_keep_alive
        readonly bint reset_contextvars
        readonly str asgi_version
        readonly dict app_state
        bytes _health_path                  # --health-path as a raw path; None: off
        object _health_app                  # HealthCheck answering it; None: off

        # shared server state
        readonly object server_state
        readonly set connections
        readonly set tasks

        # connection state
        readonly object transport
        readonly FlowControl flow
        readonly object server
        readonly object client
        readonly str scheme
        public double deadline              # time.monotonic() when an idle connection is closed; 0: none
        double _head_deadline               # when the next request head must be complete; 0: not running; -1: started, not read yet
        Py_ssize_t _requests                # requests begun on this connection
        readonly bint draining              # after shutdown(): no response keeps the connection open
        object _context                     # contextvars.Context requests are copied from
        bint _proxy_trusted                 # the peer may set X-Forwarded-* (decided per connection)
        dict _tls                           # the ASGI tls extension of a TLS connection; None: plain
        dict _task_kwargs                   # asyncio.Task keyword arguments, reused for every request
        dict _scope_template                # the scope's keys, with the values shared by the connection's requests
        object _transport_write             # transport.write, bound once
        object _transport_is_closing        # transport.is_closing, bound once
        int _file_way                       # sendfile(2) straight to the socket: 0 not known yet, 1 yes, -1 no
        int _file_socket                    # the socket's descriptor when _file_way is 1
        list _write_batch                   # writes of the running dispatch loop, sent at its end; else None
        Py_ssize_t _write_batch_size
        bint _reading_stopped
        bint _eof
        bytes _pending_error
        bytes _upgrade
        bytes _held                         # read past a full pipeline, parsed once there is room; None: nothing
        Py_ssize_t _queued_head_bytes       # head bytes of the requests parsed since the pipeline was empty
        list _pending_heads                 # connections to check for a held head at the end of this loop iteration (the server's)
        bint _head_check_due                # this connection is in _pending_heads

        # requests: being parsed, answering, waiting
        public bytes url
        public list headers
        public bint expect_100_continue
        bint _parsing
        # what httptools and h11 leave to us
        bint _in_head                       # between on_message_begin and on_headers_complete
        Py_ssize_t _head_size               # header fields as written ("n: v\r\n")
        Py_ssize_t _trailer_size
        Py_ssize_t _body_received
        bint _progress                      # a callback ran during this data_received
        Py_ssize_t _backlog                 # bytes fed since the parser last handed anything over
        public RequestCycle cycle
        public RequestCycle active
        readonly object pipeline
        bint _dispatching
        bint _held_resume_due

    cdef _parse(self, object data)
    cdef _feed_foreign(self, bytes data)
    cdef _abandon(self, RequestCycle cycle)
    cdef bint _read_for_eof(self)
    cdef bint _pipeline_full(self)
    cdef _check_head_soon(self)
    cdef _flush_head(self)
    cdef _on_request(self, str method, bytes target, str http_version, list headers, bint keep_alive,
                     bint upgrade, bint expect_100_continue)
    cdef dict _new_scope_template(self)
    cdef _on_body(self, bytes body)
    cdef _on_message_complete(self)
    cdef _bound_backlog(self, Py_ssize_t size)
    cdef _dispatch(self)
    cdef _resume_held_soon(self)
    cdef _write(self, object data)
    cdef _writelines(self, tuple parts)
    cdef _flush(self)
    cdef int _sendfile_socket(self)
    cdef _flush_writes(self)
    cdef _close(self)
    cdef _run(self, RequestCycle cycle)
    cdef _on_response_complete(self, RequestCycle cycle)
    cdef _on_response_aborted(self, RequestCycle cycle)
    cdef _stop_reading(self)
    cdef _reject(self, int status, bytes body, str log_message)
    cdef _on_upgrade(self, bytes trailing)
    cdef _hand_over_upgrade(self)
    cdef str _log_prefix(self)
