"""HTTP/2 flow control end to end (both twins): the app's send() waits for the client's window, an app
that does not read stops the upload, and streams with data waiting are served in turn."""

from __future__ import annotations

import socket

import h2.events
import h2.settings
import pytest

from tests.http2.h2util import H2Client, status, until, write_file

#: How long a negative check waits for something that must not happen.
SETTLE = 0.5


def received(client: H2Client, stream_id: int) -> int:
    return len(client.responses.get(stream_id, {}).get("body", b""))


def test_send_waits_for_the_window_then_completes(server, state):
    # A client granting 1000 octets per stream and acknowledging nothing.
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.auto_ack = False
    size = 1 << 20
    stream_id = client.request(f"/big?{size}")
    state.wait("big-sending")
    client.wait_for(lambda: received(client, stream_id) == 1000)
    # The window is closed: the app's send() of the 1 MiB body has not returned (nothing is buffered
    # for it in the server), and no more DATA comes.
    assert not state.event("big-returned").wait(SETTLE)
    with pytest.raises(socket.timeout):
        client.read_once(SETTLE)
    assert received(client, stream_id) == 1000
    # Open the windows: the rest flows and the app's send() returns.
    client.auto_ack = True
    client.conn.increment_flow_control_window(size, stream_id)
    client.conn.increment_flow_control_window(size)
    client.flush()
    response = client.response(stream_id)
    assert response["body"] == b"b" * size
    assert state.event("big-returned").wait(5)
    client.close()


def test_an_app_that_does_not_read_stops_the_upload(server, state):
    client = H2Client(server)
    client.wait_for(lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in client.events))
    client.wait_for(lambda: client.conn.remote_settings.initial_window_size == 262144)
    stream_id = client.request("/noread", method="POST", end=False)
    state.wait("noread-started")
    window = client.conn.local_flow_control_window(stream_id)
    assert window == 262144
    # Send everything the windows allow; the app reads nothing.
    sent = 0
    while client.conn.local_flow_control_window(stream_id) > 0:
        size = min(16384, client.conn.local_flow_control_window(stream_id))
        client.conn.send_data(stream_id, b"u" * size)
        sent += size
    client.flush()
    assert sent == window
    # Nothing is granted back while the app has not read.
    with pytest.raises(socket.timeout):
        while True:
            client.read_once(SETTLE)
    updates = [
        e for e in client.events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == stream_id
    ]
    assert updates == []
    assert client.conn.local_flow_control_window(stream_id) == 0
    # The app reads: the windows open again.
    state.set("noread-go")
    assert state.wait("noread-read") == sent
    client.wait_for(lambda: client.conn.local_flow_control_window(stream_id) > 0)
    client.conn.end_stream(stream_id)
    client.flush()
    state.set("noread-finish")
    assert status(client.response(stream_id)) == 200
    client.close()


def test_streams_with_data_waiting_take_turns(server, state):
    # Large stream windows, the default 65535 connection window: the connection window is what the
    # two streams share, and the client acknowledges as it reads.
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    size = 1 << 20
    first = client.request(f"/big?{size}")
    state.wait("big-sending")
    second = client.request(f"/big?{size}")
    client.response(first)
    client.response(second)
    order = [e.stream_id for e in client.events if isinstance(e, h2.events.DataReceived) and e.data]
    assert received(client, first) == size and received(client, second) == size
    # Round-robin: the second stream got data long before the first one had all of its body.
    first_done = max(index for index, stream_id in enumerate(order) if stream_id == first)
    second_start = order.index(second)
    assert second_start < first_done / 2, order
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches >= 10, order
    client.close()


def test_a_stream_stalled_on_a_zero_window_does_not_hold_the_others(server, state):
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    client.auto_ack = False
    stalled = client.request("/big?100000")
    state.wait("big-sending")
    # A new stream gets window of its own from a WINDOW_UPDATE on it.
    other = client.request("/hello")
    client.conn.increment_flow_control_window(100, other)
    client.flush()
    response = client.response(other)
    assert response["body"] == b"Hello, world!"
    assert received(client, stalled) == 0
    client.close()


@pytest.mark.parametrize("route", ["/pathsend", "/zerocopy"])
def test_a_file_is_sent_as_the_window_allows(server, state, tmp_path, route):
    state.file_path = str(tmp_path / "file.bin")
    content = write_file(state.file_path, 2 << 20)
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.auto_ack = False
    stream_id = client.request(route)
    client.wait_for(lambda: received(client, stream_id) == 1000)
    # The window is closed: the app's send of the file has not returned.
    assert not state.event(route[1:] + "-returned").wait(SETTLE)
    client.auto_ack = True
    client.conn.increment_flow_control_window(len(content), stream_id)
    client.conn.increment_flow_control_window(len(content))
    client.flush()
    assert client.response(stream_id)["body"] == content
    state.wait(route[1:] + "-returned")
    client.close()


def test_a_settings_change_opens_the_windows_of_waiting_streams(server, state):
    # RFC 9113 §6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE changes the window of every open stream.
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    stream_id = client.request("/big?100000")
    state.wait("big-sending")
    with pytest.raises(socket.timeout):
        while True:
            client.read_once(SETTLE)
    assert received(client, stream_id) == 0
    client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.conn.increment_flow_control_window(1 << 20)
    client.flush()
    assert client.response(stream_id)["body"] == b"b" * 100000
    client.close()


def test_a_reset_while_send_waits_for_window_ends_the_app(server, state):
    client = H2Client(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.auto_ack = False
    stream_id = client.request("/big?1000000")
    client.wait_for(lambda: received(client, stream_id) == 1000)
    client.conn.reset_stream(stream_id, 0x8)
    client.flush()
    # The app's send() gives up (ClientDisconnected): its task ends, nothing is left behind.
    until(lambda: not server.server_state.tasks)
    assert not state.event("big-returned").is_set()
    client.auto_ack = True
    assert status(client.get("/hello")) == 200
    client.close()


def test_concurrent_uploads_share_the_connection_window(server):
    # Eight 512 KiB uploads at once: 4 MiB through a 1 MiB connection window, released as the app reads.
    client = H2Client(server)
    bodies = {}
    for index in range(8):
        stream_id = client.request("/echo", method="POST", end=False)
        bodies[stream_id] = bytes([index]) * (512 * 1024)
    offsets = dict.fromkeys(bodies, 0)
    while any(offsets[s] < len(bodies[s]) for s in bodies):
        progress = False
        for stream_id, body in bodies.items():
            offset = offsets[stream_id]
            if offset >= len(body):
                continue
            size = min(16384, len(body) - offset, client.conn.local_flow_control_window(stream_id))
            if size > 0:
                end = offset + size == len(body)
                client.conn.send_data(stream_id, body[offset : offset + size], end_stream=end)
                offsets[stream_id] += size
                progress = True
        client.flush()
        if not progress:
            client.read_once()
    for stream_id, body in bodies.items():
        response = client.response(stream_id)
        assert status(response) == 200 and response["body"] == body
    client.close()


def test_a_response_before_the_upload_ended(server):
    # The app answers without reading: the response is complete, then the rest of the request is not
    # wanted (RST_STREAM NO_ERROR, RFC 9113 §8.1); the connection goes on.
    client = H2Client(server)
    stream_id = client.request("/hello", method="POST", body=b"x" * 20000, end=False)
    response = client.response(stream_id)
    assert status(response) == 200 and response["body"] == b"Hello, world!"
    assert response["reset"] in (None, 0)
    assert status(client.get("/hello")) == 200
    client.close()
