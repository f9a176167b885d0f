"""HTTP/2: the HPACK codec (both builds)."""
