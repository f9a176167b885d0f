# cython: language_level=3
# Declarations that compile cyasgi/protocols/http/protocol.py (linked here as http.py) into the
# compiled build: cdef classes with typed fields, and C-level methods for what only the module
# itself calls. The behaviour is all in protocol.py; nothing here but types.

cimport cython

from cyasgi._speedups.kernel cimport (
    close_file,
    completed,
    failed,
    has_proxy_headers,
    header_name,
    frame_response,
    ipv4_addresses,
    is_ascii,
    monotonic,
    open_file,
    parse_content_length,
    send_file,
    send_more,
    sendfile_supported,
    split_target,
    start_task,
    task_kwargs,
    valid_field_value,
)

cdef int TRAILERS_NONE, TRAILERS_WRITTEN, TRAILERS_DROPPED
cdef int TRUST_UNKNOWN, PEER_UNTRUSTED, PEER_TRUSTED
cdef double HEAD_CLOCK_OFF, HEAD_CLOCK_STARTED
cdef bytes CRLF, CONTINUE, LAST_CHUNK, CHUNKED_LINE, CLOSE_LINE, KEEP_ALIVE_LINE, CHUNK_END_LAST
cdef int CONNECTION_AS_GIVEN, CONNECTION_CLOSE, CONNECTION_KEEP_ALIVE
cdef int FILE_WAY_UNKNOWN, FILE_WAY_GENERAL, FILE_WAY_DIRECT
cdef tuple HEAD_ENDS
cdef bytes H2_PREFACE
cdef Py_ssize_t H2_PREFACE_SIZE
cdef Py_ssize_t COALESCE_LIMIT, HIGH_WATER_LIMIT, WRITE_BATCH_LIMIT, PIPELINE_LIMIT, PIPELINE_HEAD_LIMIT
cdef Py_ssize_t FOREIGN_FEED_STEP, HELD_ROUNDS_LIMIT
cdef dict HTTP_EXTENSIONS, STATUS_LINES
from cyasgi._speedups.parser cimport RequestParser, RequestSink, new_request_parser
from cyasgi._speedups.recorder cimport Recorder


@cython.final
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


@cython.final
@cython.freelist(16)
cdef class RequestCycle:
    cdef:
        readonly dict scope
        readonly HttpProtocol protocol
        readonly object app
        readonly object transport
        readonly FlowControl flow
        public bint keep_alive
        public bint waiting_for_100_continue
        public list body              # request body not yet handed to the app
        public Py_ssize_t body_size
        public bint more_body
        bint _end_delivered
        bint _disconnect_delivered
        object _waiter                # the future receive() waits on; None when nobody waits
        public bint disconnected
        public bint response_started
        public bint response_complete
        bint _bodyless                # HEAD, 1xx, 204, 304
        list _head                    # status line and header lines until the first body chunk; None after
        bint _app_connection_header
        int _status
        bint _chunked
        Py_ssize_t _content_length    # -1: the app gave none
        Py_ssize_t _bytes_sent        # body bytes written (framing excluded)
        double _started
        int _trailers                 # 1 written (chunked body), 2 dropped; 0 none
        bint _awaiting_trailers
        bytes _trailer_lines
        Py_ssize_t _framed_length     # the content-length _framing decided; -1: none
        str _method                   # the request's method, kept for the metrics (None without them)

    cdef bint _waits_after_request(self)
    cpdef wake(self)
    cdef object _send(self, dict message)
    cdef object _send_extension(self, object message_type, dict message)

    @cython.locals(code=int, trailers_mode=int, lines=list, content_length=Py_ssize_t, length=Py_ssize_t,
                   keep_alive=bint, connection_header=bint, name=bytes, value=bytes, pair=tuple)
    cdef _start_response(self, object status, object headers, object trailers=*)
    cdef _log_access(self, bint aborted)
    cdef int _trailers_mode(self, int status) except -1

    @cython.locals(http10=bint, length=Py_ssize_t, chunked=bint, connection=int)
    cdef bytes _framing(self, Py_ssize_t body_size, bint more_body)
    cdef bytes _head_bytes(self, Py_ssize_t body_size, bint more_body)
    cdef _init(self, HttpProtocol protocol, dict scope, object app, bint keep_alive, bint expect_100_continue)
    cdef _flush_head(self)

    @cython.locals(size=Py_ssize_t, lines=list, length=Py_ssize_t, head_end=bytes, chunk_size=Py_ssize_t, tail=bytes)
    cdef _send_body(self, object body, bint more_body)
    cdef _end_body(self)
    cdef _complete(self)
    cdef _send_trailers(self, object headers, object more_trailers)

    @cython.locals(sock_fd=int, fd=int, size=Py_ssize_t, sent=Py_ssize_t, offset=Py_ssize_t, pending=bytes,
                   batch=list, protocol=HttpProtocol, head_size=Py_ssize_t)
    cdef object _send_path_now(self, object path)
    cdef _send_early_hint(self, object links)
    cdef bint _can_replace_response(self)
    cdef _send_500(self)
    cdef _abort(self)


@cython.final
cdef class ConnectionSettings:
    cdef:
        readonly object config
        readonly object server_state
        readonly object connections      # the server state's set of open connections
        readonly object tasks            # and of running tasks
        readonly object app
        readonly object trusted_hosts
        readonly Py_ssize_t limit_head
        readonly Py_ssize_t limit_headers
        readonly Py_ssize_t limit_body
        readonly Py_ssize_t limit_requests
        readonly double timeout_head
        readonly object parser_factory   # None: cyasgi's own parser
        readonly object ws_protocol_class
        readonly str root_path
        readonly bytes root_path_raw
        readonly object limit_concurrency
        readonly Py_ssize_t limit
        readonly double timeout_keep_alive
        readonly bint reset_contextvars
        readonly str asgi_version
        readonly bytes health_path
        readonly object health_app
        readonly bint http2
        readonly bint trace              # connections log made/lost at TRACE
        readonly bint access_log         # the access logger has handlers
        readonly list pending_heads
        readonly dict scope_template     # the keys and shared values of every request's scope
        readonly Recorder metrics        # None: metrics off
        readonly object metrics_page     # the --metrics-path answer, or None
        readonly bytes metrics_path


cdef ConnectionSettings _settings


cdef ConnectionSettings connection_settings(object config, object server_state)


@cython.final
cdef class ProtocolFactory:
    cdef:
        readonly object config
        readonly object server_state
        readonly dict app_state
        readonly object loop
        readonly bint plain
        public tuple local_address
        readonly dict task_kwargs


cdef class HttpProtocol(RequestSink):
    cdef:
        ConnectionSettings _settings
        readonly object config
        readonly object app
        readonly object trusted_hosts
        readonly object loop
        readonly object logger
        readonly object access_logger
        public bint access_log
        Py_ssize_t _limit_head
        Py_ssize_t _limit_headers
        Py_ssize_t _limit_body
        Py_ssize_t _limit_requests
        double _timeout_head
        RequestParser _native_parser  # the C parser when it is the one in use (C calls), else None
        public object parser
        readonly object ws_protocol_class
        readonly str root_path
        bytes _root_path_raw
        readonly object limit_concurrency
        readonly double timeout_keep_alive
        readonly bint reset_contextvars
        readonly str asgi_version
        readonly dict app_state
        bytes _health_path
        object _health_app
        readonly object server_state
        readonly set connections
        readonly set tasks
        list _pending_heads
        bint _head_check_due
        readonly object transport
        readonly FlowControl flow
        readonly object server
        readonly object client
        readonly str scheme
        public double deadline
        double _head_deadline
        Py_ssize_t _requests
        readonly bint draining
        object _context
        int _proxy_trust               # TRUST_UNKNOWN, PEER_UNTRUSTED, PEER_TRUSTED
        dict _tls
        bint _plain                    # made by a server without TLS: no sslcontext to look for
        tuple _local_address           # the listener's address when it has one: not read per connection
        bint _reading_stopped
        bint _eof
        bytes _pending_error
        bytes _upgrade
        bytes _held
        bint _h2_sniff
        bytes _h2_prefix
        public bytes url
        public list headers
        public bint expect_100_continue
        bint _parsing
        bint _in_head
        Py_ssize_t _head_size
        Py_ssize_t _trailer_size
        Py_ssize_t _body_received
        bint _progress
        Py_ssize_t _backlog
        public RequestCycle cycle
        public RequestCycle active
        readonly object pipeline
        bint _dispatching
        bint _held_resume_due
        list _write_batch
        Py_ssize_t _write_batch_size
        dict _task_kwargs
        object _transport_is_closing  # transport.is_closing, bound once
        object _transport_write       # transport.write, bound once
        dict _scope_template          # the scope's keys and shared values: the server's, then the connection's
        Py_ssize_t _limit             # --limit-concurrency; -1: none
        int _file_way                 # FILE_WAY_*
        int _file_socket              # the socket's descriptor with FILE_WAY_DIRECT
        readonly Recorder _metrics    # None: metrics off
        bytes _metrics_path

    cdef _init(self, object config, object server_state, dict app_state, object loop, dict shared_task_kwargs)
    cdef _parse(self, object data)
    cdef _abandon(self, RequestCycle cycle)
    cdef _feed_foreign(self, bytes data)
    cdef bint _read_for_eof(self)
    cdef _resume_held_soon(self)

    @cython.locals(cycle=RequestCycle, raw_path=bytes, query_string=bytes, path=str, scope=dict, template=dict,
                   shared=dict, extensions=dict, asgi=dict, limit=Py_ssize_t)
    cdef _on_request(self, str method, bytes target, str http_version, list headers, bint keep_alive,
                     bint upgrade, bint expect_100_continue)
    cdef bint _peer_trusted(self) except -1
    cdef _bound_backlog(self, Py_ssize_t size)
    cdef _dispatch(self)
    cdef _run(self, RequestCycle cycle)
    cdef _on_response_complete(self, RequestCycle cycle)
    cdef _check_head_soon(self)
    cdef _flush_head(self)
    cdef _write(self, bytes data)
    cdef _writelines(self, list parts)

    @cython.locals(batch=list)
    cdef _flush(self)
    cdef int _sendfile_socket(self)
    cdef _flush_writes(self)
    cdef _close(self)
    cdef _on_response_aborted(self, RequestCycle cycle)
    cdef _stop_reading(self)
    cdef _reject(self, int status, bytes body, str log_message)
    cdef _on_upgrade(self, bytes trailing)
    cdef _hand_over_upgrade(self)
    cdef bytes _sniff_h2(self, bytes data)
    cdef _hand_over_h2(self, bytes data)
    cdef str _log_prefix(self)


@cython.locals(protocol=HttpProtocol)
cdef HttpProtocol _new_connection(object config, object server_state, dict app_state, object loop, bint plain,
                                  tuple local_address, dict shared_task_kwargs)


@cython.locals(connection=HttpProtocol)
cpdef _flush_heads(list connections)
