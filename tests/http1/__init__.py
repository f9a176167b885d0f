"""HTTP/1.1: the protocol (both builds), its parsers, the rules, the response extensions, limits."""
