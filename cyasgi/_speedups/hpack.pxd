# cython: language_level=3
# The augmenting declarations that compile cyasgi/protocols/http2/hpack.py (symlinked here as hpack.py)
# into cyasgi._speedups.hpack: the same source, with C fields, typed locals and inline helpers.
import cython

cdef Py_ssize_t STATIC_TABLE_LENGTH
cdef list _HUF_NEXT
cdef list _HUF_EMIT
cdef bytes _HUF_ACCEPT
cdef bytes _NAME_BYTES
cdef dict _STATIC_NAMES


@cython.locals(next_states=list, emits=list, pieces=list, state=cython.uint, entry=cython.uint, octet=cython.uchar)
cdef bytes _huffman_decode(bytes data, Py_ssize_t start, Py_ssize_t end)


@cython.locals(codes=list, lengths=list, out=bytearray, acc=cython.ulonglong, code=cython.ulonglong,
               bits=cython.int, length=cython.int, octet=cython.uchar)
cpdef bytes huffman_encode(data)


@cython.locals(shift=cython.int, octet=cython.uchar)
cdef (Py_ssize_t, Py_ssize_t) _decode_int(bytes data, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t value)


@cython.locals(octet=cython.uchar, length=Py_ssize_t, stop=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t, bint) _string_bounds(bytes data, Py_ssize_t pos, Py_ssize_t end)


@cython.locals(rest=bytes)
cdef bint _name_invalid(bytes name) except -1


@cython.locals(first=cython.uchar, last=cython.uchar)
cdef bint _value_invalid(bytes value) except -1


cdef _encode_int(bytearray out, Py_ssize_t first, Py_ssize_t mask, Py_ssize_t value)


@cython.final
cdef class Decoder:
    cdef readonly Py_ssize_t max_allowed_table_size  # our SETTINGS_HEADER_TABLE_SIZE
    cdef readonly Py_ssize_t max_table_size          # the table's maximum, as the peer last set it
    cdef readonly Py_ssize_t table_size              # sum of the entries' sizes (RFC 7541 §4.1)
    cdef public Py_ssize_t max_header_list_size      # our SETTINGS_MAX_HEADER_LIST_SIZE
    cdef readonly bint fields_valid                  # the last block's fields all pass RFC 9113 §8.2.1
    cdef list _entries                               # the dynamic table, oldest first
    cdef dict _invalid                               # {entry: count} of table entries failing §8.2.1
    cdef bint _update_required                       # a size update must open the next block

    cpdef set_max_allowed_table_size(self, Py_ssize_t size)
    cpdef list dynamic_table(self)

    @cython.locals(buf=bytes, end=Py_ssize_t, pos=Py_ssize_t, size=Py_ssize_t, headers=list, entries=list,
                   limit=Py_ssize_t, total=Py_ssize_t, valid=bint, octet=cython.uchar,
                   index=Py_ssize_t, count=Py_ssize_t, static=list, invalid=dict, start=Py_ssize_t, huffman=bint,
                   field=tuple, name=bytes, value=bytes, indexing=bint, field_ok=bint)
    cpdef list decode(self, data)

    cdef _add(self, tuple field, Py_ssize_t size, bint field_ok)

    @cython.locals(table_size=Py_ssize_t, entries=list, drop=Py_ssize_t, old=tuple, left=Py_ssize_t)
    cdef _evict(self, Py_ssize_t target)


cdef Py_ssize_t ENCODED_CACHE_LIMIT


@cython.final
cdef class Encoder:
    cdef public Py_ssize_t table_size_limit  # the most this encoder uses, whatever the peer allows
    cdef readonly Py_ssize_t max_table_size  # min(limit, the peer's SETTINGS_HEADER_TABLE_SIZE)
    cdef readonly Py_ssize_t table_size      # sum of the entries' sizes
    cdef public bint huffman                 # Huffman-code strings when that is shorter
    cdef dict _index                         # (name, value) -> insertion number of its newest copy
    cdef object _entries                     # deque of (key, size, insertion number), oldest first
    cdef Py_ssize_t _inserted                # insertions so far
    cdef Py_ssize_t _smallest_update         # smallest size set since the last block
    cdef bint _pending_update                # the next block opens with a size update

    cpdef set_max_table_size(self, Py_ssize_t size)

    cdef dict _cache                         # name -> [last value, its octets, {value: octets}]
    cdef Py_ssize_t _cached                  # fields in _cache

    @cython.locals(parts=list, out=bytearray, cache=dict, entry=list, values=dict, encoded=bytes, name=bytes,
                   value=bytes, last=bytes, added=bint)
    cpdef list encode_parts(self, headers)
    cpdef bytes encode(self, headers)

    @cython.locals(static=tuple, key=tuple, size=Py_ssize_t)
    cdef bint _field(self, bytearray out, bytes name, bytes value) except -1

    @cython.locals(coded=bytes)
    cdef _string(self, bytearray out, data)

    cdef _add(self, tuple key, Py_ssize_t size)

    @cython.locals(entries=object, size=Py_ssize_t)
    cdef _evict(self, Py_ssize_t target)
