# cython: language_level=3
# The compiled HTTP/1.1 protocol: the same classes, signatures and behaviour as
# cyasgi/protocols/http_pure.py (read that file first: it is the reference).

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
        Py_ssize_t _bytes_sent

    cdef _init(self, HttpProtocol protocol, dict scope, object app, bint keep_alive, bint expect_100_continue)
    cpdef wake(self)
    cdef _start_response(self, object status, object headers)
    cdef _send_body(self, object body, bint more_body)
    cdef bint _can_replace_response(self)
    cdef _send_500(self)
    cdef _abort(self)
    cdef _log_access(self, int status)


cdef class HttpProtocol:
    cdef:
        readonly object config
        readonly object app
        readonly object loop
        readonly object logger
        readonly object access_logger
        public bint access_log
        public object parser
        readonly object ws_protocol_class
        readonly str root_path
        bytes _root_path_raw
        readonly object limit_concurrency
        Py_ssize_t _limit                   # limit_concurrency as a C int; -1: no limit
        readonly double timeout_keep_alive
        readonly bint reset_contextvars
        readonly str asgi_version
        readonly dict app_state

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
        readonly bint draining              # after shutdown(): no response keeps the connection open
        object _context                     # contextvars.Context requests are copied from
        object _transport_write             # transport.write, bound once
        object _transport_is_closing        # transport.is_closing, bound once
        bint _reading_stopped
        bint _eof
        bytes _pending_error
        bytes _upgrade

        # requests: being parsed, answering, waiting
        public bytes url
        public list headers
        public bint expect_100_continue
        bint _parsing
        public RequestCycle cycle
        public RequestCycle active
        readonly object pipeline
        bint _dispatching

    cdef _dispatch(self)
    cdef _run(self, RequestCycle cycle)
    cdef _on_response_complete(self, RequestCycle cycle)
    cdef _on_response_aborted(self, RequestCycle cycle)
    cdef _stop_reading(self)
    cdef _reject(self, int status, bytes body, str log_message)
    cdef _on_upgrade(self, bytes trailing)
    cdef _hand_over_upgrade(self)
    cdef str _log_prefix(self)
