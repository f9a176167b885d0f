-- hello on a new connection per request: the server closes after each answer and wrk reconnects.
wrk.headers["Connection"] = "close"
