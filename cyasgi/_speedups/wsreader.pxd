# cython: language_level=3
# Declarations that compile cyasgi/protocols/websockets/reader.py (linked here as wsreader.py) into the
# compiled build: FrameReader as a C class whose typed fields the protocol (a Python subclass) sets up,
# the frame loop over a C pointer to the read, the C kernel's unmasking, UTF-8 decoding and frame
# encoding; receive() and send() compile as coroutines of the class. No behaviour here.

cimport cython

from cyasgi._speedups.kernel cimport data_frame, decode_utf8, text_frame, unmask

ctypedef const unsigned char *octets  # the bytes read (bytes or bytearray), never written here

cdef int OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE
cdef int FIN, FIN_TEXT, FIN_BINARY, RSV_BITS, OPCODE_BITS, MASK_BIT, LENGTH_BITS, LENGTH_16
cdef int CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG
cdef Py_ssize_t BASE_HEADER_SIZE, LENGTH_16_HEADER_SIZE, LENGTH_64_HEADER_SIZE, MASK_SIZE, LENGTH_64_CAP, COPY_LIMIT
cdef int OPEN, CLOSING, HANDSHAKE, CONNECTING
cdef int RSV1
cdef str _RECEIVE, _SEND
cdef object _utf8_decoder


cdef class FrameReader:
    cdef:
        # Set by the protocol.
        public Py_ssize_t max_size       # --ws-max-size
        public Py_ssize_t max_queue      # --ws-max-queue (at least 1)
        public Py_ssize_t _resume_level  # receive() resumes reading once the queue is down to this
        public int _phase                # phases.py
        public bint _paused_for_queue    # reading stopped: the queue is full
        public bint _write_paused        # the transport asked us to stop writing
        public bint _paused_for_writes   # reading stopped: the write buffer is past its hard limit
        public bint _plain_send          # no extension negotiated: data frames are encoded here
        public bint _lost                # connection_lost() has run
        public object _metrics           # a Recorder, or None
        public object _queue             # the deque of messages for the app
        public object _waiter            # the future receive() waits on, or None
        public object _disconnect        # the disconnect message once queued (repeated), or None
        public object loop               # the event loop
        public object transport          # the asyncio transport (None before connection_made)
        # The reader's own (_reset_reader).
        public bytearray _buffer
        public Py_ssize_t _need
        public Py_ssize_t _engine_rest
        public bint _fragmented
        public bytearray _assembly
        public object _assembly_utf8
        public object _inflater          # deflate.MessageInflater, or None

    cpdef _reset_reader(self)

    @cython.locals(queue=object, waiter=object)
    cpdef _message(self, dict message)

    @cython.locals(phase=int)
    cpdef data_received(self, data)

    cpdef _held_frames_resumed(self)

    @cython.locals(buffer=bytearray, view=octets, rest=Py_ssize_t, size=Py_ssize_t,
                   pos=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, length=Py_ssize_t, first=int, second=int,
                   opcode=int, masked=int, code=int, engine_from=Py_ssize_t, max_size=Py_ssize_t,
                   assembly=bytearray, payload=bytes)
    cpdef _frames_received(self, data)

    cpdef bint _text_received(self, payload) except -1

    @cython.locals(message=bytes)
    cdef int _compressed_received(self, int opcode, bytes payload) except -2

    @cython.locals(assembly=bytearray)
    cdef bint _fragment_received(self, int opcode, int fin, bytes payload) except -1

    cpdef _drop_assembly(self)

    cdef _write_data(self, int first_byte, object payload)

    cdef _write_text(self, object text)
