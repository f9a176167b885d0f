# cython: language_level=3
# The augmenting declarations that compile cyasgi/protocols/http2/protocol.py (linked here as
# h2protocol.py) into cyasgi._speedups.h2protocol: the same source, with C classes, typed fields and
# C-level methods for what only the module itself calls. The behaviour is all in protocol.py.

cimport cython

from cyasgi._speedups.kernel cimport (
    completed,
    failed,
    has_proxy_headers,
    header_name,
    is_ascii,
    monotonic,
    parse_content_length,
    split_target,
    start_task,
    task_kwargs,
    valid_field_value,
)
from cyasgi._speedups.connection cimport H2Connection, asgi_headers
from cyasgi._speedups.recorder cimport Recorder

cdef frozenset CONNECTION_SPECIFIC
cdef list STATUS_VALUES
cdef Py_ssize_t CACHED_LENGTHS
cdef list LENGTH_VALUES
cdef dict METHODS
cdef Py_ssize_t SEND_QUANTUM
cdef bytes KEEP_ALIVE_PING
cdef Py_ssize_t UNREAD_ACKS_LIMIT
cdef Py_ssize_t PING_ACK_SIZE
cdef Py_ssize_t SETTINGS_ACK_SIZE

cdef class H2Protocol


@cython.final
@cython.freelist(16)
cdef class StreamCycle:
    cdef:
        public H2Protocol protocol
        public H2Connection conn
        public Py_ssize_t stream_id
        public dict scope
        public object app
        public list body                 # request chunks not yet handed to the app
        public Py_ssize_t body_size
        public Py_ssize_t body_credit    # their flow-controlled size, given back when the app takes them
        public bint more_body
        public Py_ssize_t body_limit     # --limit-request-body-size; -1: none
        public Py_ssize_t body_received
        public bint end_delivered
        public object waiter             # receive() waiting for data
        public bint disconnected
        public bint response_started
        public bint response_complete
        public bint bodyless
        public list head                 # the response head until the first body chunk sends it
        public int status
        public Py_ssize_t content_length
        public Py_ssize_t bytes_sent
        public bint stream_ended         # our END_STREAM is queued
        public bint trailers             # trailers will be sent (the client asked for them)
        public bint trailers_announced
        public bint awaiting_trailers
        public list trailer_list
        public double started
        public object pending            # data waiting for window (bytes), None: nothing
        public bint pending_end
        public object send_waiter        # the app's send() waiting for the pending data to go
        public double last_progress

    cdef _init(self, H2Protocol protocol, Py_ssize_t stream_id, dict scope, object app, bint end_stream)
    cdef wake(self)
    cdef wake_sender(self)
    cpdef on_reset(self)
    cdef object _send(self, dict message)

    @cython.locals(code=int, content_length=Py_ssize_t, length=Py_ssize_t, head=list)
    cdef start_response(self, object status, object headers, object trailers)

    @cython.locals(length=bytes)
    cdef send_head(self, Py_ssize_t body_size, bint more_body)

    @cython.locals(size=Py_ssize_t)
    cdef object send_body(self, object body, object more_body)

    @cython.locals(protocol=H2Protocol, taken=Py_ssize_t)
    cdef object send_data(self, object data, bint end_stream)

    @cython.locals(size=Py_ssize_t, taken=Py_ssize_t, last=bint)
    cdef Py_ssize_t send_pending(self, Py_ssize_t quantum) except -1
    cdef end_body(self)

    @cython.locals(protocol=H2Protocol)
    cdef complete(self)
    cdef send_trailers(self, object headers, object more_trailers)
    cdef send_early_hint(self, object links)
    cdef send_500(self)
    cdef abort(self)
    cdef log_access(self, bint aborted)


@cython.final
cdef class H2Settings:
    cdef:
        readonly object config
        readonly object server_state
        readonly object app
        readonly bint access_log
        readonly object trusted_hosts
        readonly str root_path
        readonly bytes root_path_raw
        readonly str asgi_version
        readonly bint reset_contextvars
        readonly Py_ssize_t limit
        readonly Py_ssize_t limit_body
        readonly Py_ssize_t limit_headers
        readonly double timeout_keep_alive
        readonly double stall_timeout
        readonly double ping_interval
        readonly double ping_timeout
        readonly bytes health_path
        readonly object health_app
        readonly object websocket_class
        readonly Recorder metrics
        readonly object metrics_page
        readonly bytes metrics_path


cdef H2Settings _settings


cdef H2Settings h2_settings(object config, object server_state)


@cython.final
cdef class H2Protocol:
    cdef:
        public object config
        public object app
        public object loop
        public object logger
        public object access_logger
        public bint access_log
        public object trusted_hosts
        public str root_path
        bytes root_path_raw
        public str asgi_version
        bint reset_contextvars
        Py_ssize_t limit                 # --limit-concurrency; -1: none
        Py_ssize_t limit_body            # --limit-request-body-size; -1: none
        Py_ssize_t limit_headers         # --limit-request-headers; 0: none
        public double timeout_keep_alive
        double stall_timeout
        double ping_interval
        double ping_timeout
        bytes health_path
        object health_app
        public dict app_state
        public object server_state
        public set connections
        public set tasks
        object websocket_class           # the --ws protocol made to run over a stream, or None
        public H2Connection conn
        public object transport
        public object server
        public object client
        public str scheme
        object tls                       # the ASGI tls extension of a TLS connection, or None
        object context
        bint proxy_trusted
        dict task_kwargs
        object scope_template
        public list default_headers
        public dict streams              # stream id -> StreamCycle, until its app returned
        public dict websockets           # stream id -> StreamTransport of a WebSocket, until it ended
        public object waiting            # deque of streams with data waiting for window
        public bint write_paused
        public bint reading_paused
        public bint flush_due
        public bint receiving
        public bint sending
        public bint write_due
        bint pumping
        public bint closed
        public bint draining
        public double deadline
        public double idle_since
        public double last_read
        public double ping_sent
        Py_ssize_t unread_acks           # octets of our ACKs written since the write buffer was seen empty
        readonly Recorder metrics        # None: metrics off
        object metrics_page              # the --metrics-path answer, or None
        bytes metrics_path

    @cython.locals(cycle=StreamCycle, raw_path=bytes, query_string=bytes, path=str, scope=dict, template=dict,
                   extensions=dict, limit=Py_ssize_t, name=bytes, value=bytes, target=bytes, fields=list)
    cdef on_request(self, Py_ssize_t stream_id, list headers, bint end_stream)
    cdef open_websocket(self, Py_ssize_t stream_id, list headers, bytes protocol_name, bint end_stream)
    cdef pump_websockets(self)

    @cython.locals(cycle=StreamCycle)
    cdef on_data(self, Py_ssize_t stream_id, bytes data, Py_ssize_t credit, bint end_stream)
    cdef body_too_large(self, StreamCycle cycle)
    cdef refuse(self, Py_ssize_t stream_id, int status, bytes body)
    cdef consumed(self, Py_ssize_t stream_id, Py_ssize_t credit)
    cdef Py_ssize_t window_for(self, Py_ssize_t stream_id) except -1
    cdef wait_for_window(self, StreamCycle cycle)

    @cython.locals(cycle=StreamCycle)
    cdef pump(self)
    cpdef flush_soon(self)
    cpdef flush(self)
    cdef write(self, bytes data)
    cdef write_after_send(self)

    @cython.locals(kind=object)
    cdef on_events(self, list events)
    cdef reset(self, Py_ssize_t stream_id, int code)
    cdef response_complete(self, StreamCycle cycle)
    cdef stream_done(self, StreamCycle cycle)
    cdef stream_done_any(self)
    cdef end_streams(self)

    @cython.locals(cycle=StreamCycle)
    cdef on_terminated(self, object event)

    @cython.locals(deadline=double, stall=double, ping=double)
    cdef refresh_deadline(self)
