"""The server as a process: signals, workers, reload, gunicorn, TLS, faults, deployment behind nginx."""
