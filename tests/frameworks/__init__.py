"""Real frameworks on cyasgi (Starlette, FastAPI, Django...) and their users' habits: streaming, SSE, long-poll."""
