# cython: language_level=3
# The augmenting declarations that compile cyasgi/protocols/http2/frames.py (symlinked here as frames.py)
# into cyasgi._speedups.frames: the same source, with C classes, typed fields and locals, C-level helpers.
import cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef object _pack_header  # for the pure build's _header only
cdef object _pack_u32
cdef object _pack_u32_u32
cdef object _pack_setting


@cython.final
@cython.freelist(8)
cdef class Frame:
    cdef readonly int type                # frame type (0x0 DATA ... 0x9 CONTINUATION)
    cdef readonly int flags               # flags as received (END_HEADERS added to an assembled block)
    cdef readonly Py_ssize_t stream_id    # 31 bits, the reserved bit dropped
    cdef readonly Py_ssize_t length       # payload length on the wire, padding included
    cdef readonly bytes payload           # data, header block, PING octets, GOAWAY debug data
    cdef readonly object error            # the H2StreamError this frame causes, or None
    cdef readonly list settings           # SETTINGS: [(identifier, value), ...]; else None
    cdef readonly long long error_code    # RST_STREAM, GOAWAY
    cdef readonly Py_ssize_t last_stream_id  # GOAWAY
    cdef readonly Py_ssize_t increment    # WINDOW_UPDATE
    cdef readonly Py_ssize_t depends_on   # PRIORITY, HEADERS with PRIORITY
    cdef readonly int weight              # 1-256
    cdef readonly bint exclusive


@cython.locals(frame=Frame)
cdef Frame _new_frame(int frame_type, int flags, Py_ssize_t stream_id, Py_ssize_t length, bytes payload)


@cython.locals(b0=cython.ulonglong, b1=cython.ulonglong, b2=cython.ulonglong, b3=cython.ulonglong)
cdef long long _u32(bytes buf, Py_ssize_t i) except -1


# buf[start:end] within a complete frame (0 <= start <= end <= len(buf), as the reader checked): no slice object.
cdef inline bytes _octets(bytes buf, Py_ssize_t start, Py_ssize_t end):
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(buf) + start, end - start)


@cython.final
cdef class FrameReader:
    cdef public Py_ssize_t max_frame_size            # our SETTINGS_MAX_FRAME_SIZE
    cdef public Py_ssize_t max_header_block_size     # bound on a HEADERS + CONTINUATION block
    cdef public Py_ssize_t max_continuation_frames   # bound on CONTINUATION frames per block
    cdef bytearray _pending                          # the start of an incomplete frame
    cdef Py_ssize_t _need                            # the octets that complete it
    cdef bint _preface                               # the connection preface is still to come
    cdef bint _settings_first                        # the next frame must be SETTINGS
    cdef Frame _block_frame                          # the HEADERS frame of the open header block
    cdef list _block_parts                           # the block's fragments so far
    cdef Py_ssize_t _block_stream                    # its stream, 0 when no block is open
    cdef Py_ssize_t _block_size                      # the fragments' total size
    cdef Py_ssize_t _continuations                   # CONTINUATION frames in the block so far
    cdef object _error                               # the H2ConnectionError raised, or None

    @cython.locals(pending=bytearray, buf=bytes, frames=list, end=Py_ssize_t, pos=Py_ssize_t,
                   avail=Py_ssize_t, need=Py_ssize_t, length=Py_ssize_t, frame_type=int, flags=int,
                   stream_id=Py_ssize_t, max_frame_size=Py_ssize_t, frame=Frame)
    cpdef list feed(self, data)

    @cython.locals(error=object)
    cdef _fail(self, int code, str message)

    cdef int _check_header(self, Py_ssize_t length, int frame_type, int flags, Py_ssize_t stream_id) except -1

    @cython.locals(end=Py_ssize_t, pad=Py_ssize_t, depends_on=cython.longlong, weight=int, exclusive=bint,
                   frame=Frame, increment=cython.longlong)
    cdef Frame _frame(self, bytes buf, Py_ssize_t start, Py_ssize_t length, int frame_type, int flags,
                      Py_ssize_t stream_id)

    @cython.locals(settings=list, identifier=int, value=cython.longlong)
    cdef list _settings(self, bytes buf, Py_ssize_t start, Py_ssize_t end)


cdef enum:
    _FRAME_HEADER_OCTETS = 9  # FRAME_HEADER_SIZE


# The frame header written in place, not packed through struct (the pure build's _header in frames.py).
cdef inline void _write_header(char *out, Py_ssize_t length, int frame_type, int flags,
                               Py_ssize_t stream_id) noexcept:
    out[0] = <char>((length >> 16) & 0xFF)
    out[1] = <char>((length >> 8) & 0xFF)
    out[2] = <char>(length & 0xFF)
    out[3] = <char>frame_type
    out[4] = <char>flags
    out[5] = <char>((stream_id >> 24) & 0xFF)
    out[6] = <char>((stream_id >> 16) & 0xFF)
    out[7] = <char>((stream_id >> 8) & 0xFF)
    out[8] = <char>(stream_id & 0xFF)


cdef inline bytes _header(Py_ssize_t length, int frame_type, int flags, Py_ssize_t stream_id):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _FRAME_HEADER_OCTETS)
    _write_header(PyBytes_AS_STRING(out), length, frame_type, flags, stream_id)
    return out


# A frame and its bytes payload in one allocation (a payload of another type is concatenated).
cdef inline bytes _frame_bytes(Py_ssize_t length, int frame_type, int flags, Py_ssize_t stream_id, payload):
    cdef Py_ssize_t size
    cdef bytes out
    if not PyBytes_CheckExact(payload):
        return _header(length, frame_type, flags, stream_id) + payload
    size = PyBytes_GET_SIZE(payload)
    out = PyBytes_FromStringAndSize(NULL, _FRAME_HEADER_OCTETS + size)
    _write_header(PyBytes_AS_STRING(out), length, frame_type, flags, stream_id)
    memcpy(PyBytes_AS_STRING(out) + _FRAME_HEADER_OCTETS, PyBytes_AS_STRING(payload), size)
    return out


# A frame whose payload is parts copied once, or None past max_frame_size (parts other than bytes: joined).
cdef inline bytes _frame_of_parts(int frame_type, int flags, Py_ssize_t stream_id, list parts,
                                  Py_ssize_t max_frame_size):
    cdef Py_ssize_t length = 0
    cdef Py_ssize_t size
    cdef bytes out
    cdef char *at
    for part in parts:
        if not PyBytes_CheckExact(part):
            out = b"".join(parts)
            length = PyBytes_GET_SIZE(out)
            return _frame_bytes(length, frame_type, flags, stream_id, out) if length <= max_frame_size else None
        length += PyBytes_GET_SIZE(part)
    if length > max_frame_size:
        return None
    out = PyBytes_FromStringAndSize(NULL, _FRAME_HEADER_OCTETS + length)
    at = PyBytes_AS_STRING(out)
    _write_header(at, length, frame_type, flags, stream_id)
    at += _FRAME_HEADER_OCTETS
    for part in parts:
        size = PyBytes_GET_SIZE(part)
        memcpy(at, PyBytes_AS_STRING(part), size)
        at += size
    return out


@cython.locals(size=Py_ssize_t, flags=int, pos=Py_ssize_t, chunk=Py_ssize_t, parts=list, frame=bytes)
cpdef bytes headers_frames(Py_ssize_t stream_id, block, bint end_stream=*, Py_ssize_t max_frame_size=*)


@cython.locals(size=Py_ssize_t, pos=Py_ssize_t, chunk=Py_ssize_t, parts=list, last=bint)
cpdef bytes data_frames(Py_ssize_t stream_id, data, bint end_stream=*, Py_ssize_t max_frame_size=*)
