# cython: language_level=3
# The augmenting declarations that compile cyasgi/protocols/http2/connection.py (symlinked here as
# connection.py) into cyasgi._speedups.connection: the same source, with C classes and typed fields.
import cython

from cyasgi._speedups.frames cimport Frame, FrameReader, data_frames, headers_frames
from cyasgi._speedups.hpack cimport Decoder, Encoder

cdef int OPEN, HALF_CLOSED_REMOTE, HALF_CLOSED_LOCAL  # stream states: C comparisons
cdef Py_ssize_t COLON


# The events are C classes: made without a call through the type, their fields Python objects as in
# the pure build.
cdef class Event:
    pass


@cython.final
cdef class RequestReceived(Event):
    cdef public object stream_id
    cdef public object headers
    cdef public object end_stream


@cython.final
cdef class DataReceived(Event):
    cdef public object stream_id
    cdef public object data
    cdef public object flow_controlled_length
    cdef public object end_stream


@cython.final
cdef class TrailersReceived(Event):
    cdef public object stream_id
    cdef public object headers


@cython.final
cdef class HeadersTooLarge(Event):
    cdef public object stream_id
    cdef public object end_stream


@cython.final
cdef class StreamReset(Event):
    cdef public object stream_id
    cdef public object error_code
    cdef public object remote


@cython.final
cdef class WindowUpdated(Event):
    cdef public object stream_id
    cdef public object increment


@cython.final
cdef class RemoteSettingsChanged(Event):
    cdef public object settings


@cython.final
cdef class SettingsAcknowledged(Event):
    pass


@cython.final
cdef class PingReceived(Event):
    cdef public object data


@cython.final
cdef class PingAckReceived(Event):
    cdef public object data


@cython.final
cdef class ConnectionTerminated(Event):
    cdef public object error_code
    cdef public object last_stream_id
    cdef public object remote
    cdef public object message


@cython.locals(event=RequestReceived)
cdef RequestReceived _request_received(Py_ssize_t stream_id, list headers, bint end_stream)


@cython.locals(event=DataReceived)
cdef DataReceived _data_received(Py_ssize_t stream_id, data, Py_ssize_t flow_controlled_length, bint end_stream)


@cython.locals(name=bytes, value=bytes, seen=int, bit=int, regular=bint)
cpdef validate_request_headers(list headers, bint extended_connect=*)


@cython.locals(name=bytes)
cpdef validate_trailers(list headers)


@cython.locals(name=bytes, value=bytes, out=list, cookie_at=Py_ssize_t, has_host=bint)
cpdef list asgi_headers(list headers)


@cython.locals(field=tuple, name=bytes)
cdef long long _content_length(list headers) except? -2


@cython.final
@cython.freelist(16)
cdef class H2Stream:
    cdef public Py_ssize_t stream_id
    cdef public int state                    # OPEN, HALF_CLOSED_REMOTE, HALF_CLOSED_LOCAL
    cdef public long long send_window        # what we may still send (the client's window)
    cdef public long long recv_window        # what the client may still send
    cdef public long long recv_unacked       # consumed by the application, not yet given back
    cdef public long long content_length     # the request's content-length, -1: none
    cdef public long long received           # body octets received
    cdef public bint announced               # RequestReceived was returned
    cdef public bint refused                 # HeadersTooLarge: nothing goes to the application
    cdef public bint response_started        # we sent its response head


@cython.locals(stream=H2Stream)
cdef H2Stream _new_stream(Py_ssize_t stream_id, long long send_window, long long recv_window)


@cython.final
cdef class H2Connection:
    cdef public Py_ssize_t max_concurrent_streams    # our SETTINGS_MAX_CONCURRENT_STREAMS
    cdef public long long initial_window_size        # our SETTINGS_INITIAL_WINDOW_SIZE
    cdef public Py_ssize_t max_frame_size            # our SETTINGS_MAX_FRAME_SIZE
    cdef public Py_ssize_t max_header_list_size      # our SETTINGS_MAX_HEADER_LIST_SIZE
    cdef public long long connection_window_size     # the connection's receive window
    cdef public Py_ssize_t max_rapid_resets          # budget: streams reset before their response
    cdef public Py_ssize_t max_empty_data_frames     # budget: empty DATA without END_STREAM
    cdef public Py_ssize_t max_control_frames        # budget: SETTINGS/PING/PRIORITY/WINDOW_UPDATE per batch
    cdef public Py_ssize_t max_stream_errors         # budget: streams we reset for a broken rule
    cdef public bint enable_connect_protocol         # we advertise extended CONNECT (RFC 8441)
    cdef FrameReader _reader
    cdef Decoder _decoder
    cdef Encoder _encoder
    cdef list _out                                   # bytes queued for the client
    cdef dict _streams                               # stream id -> H2Stream (open, half-closed)
    cdef dict _reset_ids                             # ids of streams we reset lately, oldest first
    cdef Py_ssize_t _highest_stream                  # the highest client stream id seen
    cdef Py_ssize_t _last_processed                  # the highest stream id whose request we took
    cdef bint _settings_acked                        # the client acknowledged our SETTINGS
    cdef Py_ssize_t _peer_max_frame_size             # the client's SETTINGS_MAX_FRAME_SIZE
    cdef long long _peer_initial_window              # the client's SETTINGS_INITIAL_WINDOW_SIZE
    cdef long long _send_window                      # the connection window for what we send
    cdef long long _recv_window                      # what the client may still send on the connection
    cdef long long _recv_unacked                     # consumed, not yet given back
    cdef Py_ssize_t _rapid_resets
    cdef Py_ssize_t _empty_data_frames
    cdef Py_ssize_t _control_frames
    cdef Py_ssize_t _stream_errors
    cdef bint _goaway_sent
    cdef Py_ssize_t _goaway_last                     # streams above it are ignored after our GOAWAY
    cdef bint _shutting_down                         # graceful shutdown: waiting for the PING ACK
    cdef bint _remote_goaway
    cdef bint _closed
    cdef list _events                                # the events of the receive() in progress
    cdef H2Stream _recent                            # the stream last opened or sent on, in the table

    # The application's side, called from C by the compiled HTTP/2 protocol (h2protocol.pxd).
    cpdef bytes data_to_send(self)

    @cython.locals(frame=Frame)
    cpdef list receive(self, data)

    @cython.locals(stream=H2Stream)
    cpdef acknowledge_received(self, Py_ssize_t stream_id, Py_ssize_t n)

    @cython.locals(stream=H2Stream)
    cpdef send_headers(self, Py_ssize_t stream_id, headers, bint end_stream=*)

    @cython.locals(stream=H2Stream, size=Py_ssize_t, n=Py_ssize_t, last=bint)
    cpdef Py_ssize_t send_data(self, Py_ssize_t stream_id, data, bint end_stream=*) except -1

    @cython.locals(stream=H2Stream)
    cpdef end_stream(self, Py_ssize_t stream_id)
    cpdef reset_stream(self, Py_ssize_t stream_id, int error_code=*)

    @cython.locals(stream=H2Stream)
    cpdef Py_ssize_t local_flow_window(self, Py_ssize_t stream_id) except -1

    # Internal steps of receive(), C calls only.
    cdef _connection_error(self, int code, str message)
    cdef _frame(self, Frame frame)
    cdef _control(self)

    @cython.locals(stream=H2Stream)
    cdef _settings(self, Frame frame)
    cdef _ping(self, Frame frame)

    @cython.locals(stream=H2Stream)
    cdef _window_update(self, Frame frame)

    @cython.locals(stream=H2Stream)
    cdef _rst_stream(self, Frame frame)

    @cython.locals(stream=H2Stream, headers=list, end_stream=bint, too_large=bint, fields_valid=bint,
                   stream_id=Py_ssize_t)
    cdef _headers(self, Frame frame)

    @cython.locals(stream=H2Stream, stream_id=Py_ssize_t, length=Py_ssize_t, end_stream=bint)
    cdef _data(self, Frame frame)
    cdef _remove(self, H2Stream stream)
    cdef _remote_end(self, H2Stream stream)

    @cython.locals(stream=H2Stream)
    cdef _stream_error(self, Py_ssize_t stream_id, int code, str message)

    @cython.locals(stream=H2Stream, reset_ids=dict)
    cdef _reset(self, Py_ssize_t stream_id, int code)

    @cython.locals(stream_id=Py_ssize_t)
    cdef _local_end(self, H2Stream stream)
    cdef _release(self, long long n)

    @cython.locals(stream=H2Stream)
    cdef H2Stream _sendable(self, Py_ssize_t stream_id)
