# cython: language_level=3
# Declarations that compile cyasgi/metrics/recorder.py (linked here as recorder.py): the slots are a
# typed memoryview, so every count is a C increment; the layout's offsets are C constants.

cimport cython

from cyasgi._speedups.kernel cimport monotonic

cdef Py_ssize_t METHOD_OTHER, STATUS_CLASSES, FIRST_BOUND_US, BOUNDS, BUCKETS
cdef Py_ssize_t REQUESTS, DURATION, BYTES_RECEIVED, BYTES_SENT, SERVER_RESPONSES, CONNECTIONS_ACCEPTED
cdef Py_ssize_t WEBSOCKET_MESSAGES_IN, WEBSOCKET_MESSAGES_OUT, LOOP_LAG, COUNTER_SLOTS
cdef Py_ssize_t OPEN_CONNECTIONS, IN_FLIGHT, LOOP_LAG_WORST_US, BLOCK_SLOTS, BLOCK_SIZE
cdef Py_ssize_t CAUSE_BAD_REQUEST, CAUSE_REQUEST_TIMEOUT, CAUSE_BODY_TOO_LARGE, CAUSE_HEADERS_TOO_LARGE
cdef Py_ssize_t CAUSE_CONCURRENCY_LIMIT, CAUSE_APP_ERROR
cdef dict METHOD_INDEX


@cython.locals(bound=cython.longlong, index=Py_ssize_t)
cpdef Py_ssize_t bucket_index(long long microseconds)
cpdef Py_ssize_t status_cause(int status)


@cython.final
cdef class Recorder:
    cdef unsigned long long[::1] slots

    @cython.locals(status_class=Py_ssize_t, method_index=Py_ssize_t)
    cpdef request_done(self, str method, int status, double started)

    @cython.locals(microseconds=cython.longlong)
    cpdef observe(self, Py_ssize_t histogram, double seconds)
    cpdef received(self, Py_ssize_t size)
    cpdef sent(self, Py_ssize_t size)
    cpdef accepted(self)

    @cython.locals(cause=Py_ssize_t)
    cpdef server_response(self, int status)
    cpdef websocket_message_in(self)
    cpdef websocket_message_out(self)
    cpdef set_gauge(self, Py_ssize_t slot, unsigned long long value)
