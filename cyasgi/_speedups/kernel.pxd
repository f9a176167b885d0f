# cython: language_level=3
# The C kernel of the protocol: what has no Python equivalent as cheap. The pure twin of every name
# here is in cyasgi/protocols/http/kernel.py (same names, same behaviour).

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic() noexcept:
    """time.monotonic() without a Python call (the same clock)."""
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cpdef object completed()
cpdef object failed(object error)
cpdef dict task_kwargs(object loop)
cpdef object start_task(object loop, object coro, object context, dict kwargs)
cpdef bytes header_name(bytes raw)
cpdef bint valid_field_value(bytes value) noexcept
cpdef Py_ssize_t parse_content_length(bytes value) noexcept
cpdef bint is_ascii(bytes data) noexcept
cpdef bint has_proxy_headers(list headers)
cpdef tuple split_target(bytes target)
cpdef bytes frame_response(list lines, Py_ssize_t length, bytes head_end, Py_ssize_t chunk_size, bytes body, bytes tail)
cpdef tuple ipv4_addresses(object transport, tuple local=*)
cpdef bint sendfile_supported()
cpdef object open_file(object path)
cpdef Py_ssize_t send_more(int sock_fd, bytes data)
cpdef Py_ssize_t send_file(int sock_fd, int fd, Py_ssize_t offset, Py_ssize_t end)
cpdef close_file(int fd)
cpdef bytes unmask(object data, Py_ssize_t start, Py_ssize_t end)
cpdef str decode_utf8(object data)
cpdef bytes data_frame(int first_byte, object payload)
cpdef bytes text_frame(int first_byte, str text)
