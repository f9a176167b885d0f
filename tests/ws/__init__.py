"""WebSockets: every --ws engine, real clients, a browser, the frame reader."""
