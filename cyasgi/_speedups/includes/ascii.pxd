# cython: language_level=3
# Byte classes of RFC 9110 and the byte codes the C code compares with, defined once for the C
# parser (parser.pyx) and the C kernel (kernel.pyx); each fills its own 256-entry tables from them.

cdef enum:
    HTAB = 9
    LF = 10
    CR = 13
    SP = 32
    DIGIT_0 = 48
    DIGIT_9 = 57
    UPPER_A = 65
    UPPER_Z = 90
    LOWER_A = 97
    LOWER_F = 102
    LOWER_Z = 122
    DEL = 127
    CASE_BIT = 32     # 'A' | CASE_BIT == 'a'


cdef inline bint is_tchar(unsigned char c) noexcept nogil:
    """A token character (header names, methods): ALPHA, DIGIT and !#$%&'*+-.^_`|~."""
    if DIGIT_0 <= c <= DIGIT_9 or UPPER_A <= c <= UPPER_Z or LOWER_A <= c <= LOWER_Z:
        return True
    return c in b"!#$%&'*+-.^_`|~"


cdef inline bint is_field_value_char(unsigned char c) noexcept nogil:
    """A field-value character: HTAB, SP, VCHAR and obs-text (never CR, LF, NUL or DEL)."""
    return c == HTAB or (SP <= c and c != DEL)


cdef inline Py_ssize_t digits_value(const unsigned char *data, Py_ssize_t size) noexcept nogil:
    """``1*DIGIT`` of at most 18 digits as a number; -1 for anything else (signs, spaces, _, empty)."""
    cdef Py_ssize_t i, result = 0
    if size == 0 or size > 18:
        return -1
    for i in range(size):
        if not DIGIT_0 <= data[i] <= DIGIT_9:
            return -1
        result = result * 10 + (data[i] - DIGIT_0)
    return result


cdef inline void fill_field_tables(bint *tchar, bint *value_char) noexcept:
    """256-entry tables of is_tchar and is_field_value_char, for loops over bytes."""
    cdef int byte
    for byte in range(256):
        tchar[byte] = is_tchar(byte)
        value_char[byte] = is_field_value_char(byte)
