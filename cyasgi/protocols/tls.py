"""The ASGI ``tls`` extension (scope["extensions"]["tls"]), computed once per connection."""

from __future__ import annotations

import ssl
from typing import Any

# The ASGI TLS extension (scope["extensions"]["tls"]), computed once per connection ----------------

#: ssl.SSLObject.version() -> the protocol version number of the TLS specifications.
_TLS_VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

#: OpenSSL cipher names -> IANA cipher suite numbers (-1: unknown), learnt from SSLContext.get_ciphers().
_CIPHER_SUITES: dict[str, int] = {}

#: RFC 4514 short names of the attribute types Python's getpeercert() spells out.
_RDN_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "domainComponent": "DC",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "userId": "UID",
}


def cipher_suite_number(ssl_object: Any) -> int | None:
    """The negotiated cipher as its 16-bit IANA number (0x1301 for TLS_AES_128_GCM_SHA256)."""
    cipher = ssl_object.cipher()
    if not cipher:
        return None
    name = cipher[0]
    number = _CIPHER_SUITES.get(name)
    if number is None:
        context = getattr(ssl_object, "context", None)
        if context is not None:
            for entry in context.get_ciphers():
                _CIPHER_SUITES[entry["name"]] = entry["id"] & 0xFFFF
        number = _CIPHER_SUITES.setdefault(name, -1)
    return None if number < 0 else number


def _rfc4514_value(value: str) -> str:
    escaped = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in '"+,;<>\\' or (char == "#" and index == 0) or (char == " " and index in (0, last)):
            escaped.append("\\" + char)
        elif char == "\x00":
            escaped.append("\\00")
        else:
            escaped.append(char)
    return "".join(escaped)


def rfc4514_name(subject: Any) -> str:
    """A subject as ``getpeercert()`` gives it (RDNs, most significant first) as an RFC 4514
    string, which lists the RDNs the other way round: ``CN=alice,O=Example,C=FR``."""
    return ",".join(
        "+".join(f"{_RDN_SHORT_NAMES.get(key, key)}={_rfc4514_value(value)}" for key, value in rdn)
        for rdn in reversed(subject)
    )


def _as_pem(cert: Any) -> str:
    """A certificate of ``get_verified_chain()``: DER bytes (ssl.SSLObject), or an _ssl.Certificate."""
    if isinstance(cert, (bytes, bytearray)):
        return ssl.DER_cert_to_PEM_cert(bytes(cert))
    pem = cert.public_bytes()  # PEM, its default format (the ssl module has no ENCODING_PEM)
    return pem.decode("ascii") if isinstance(pem, bytes) else pem


def alpn_protocol(transport: Any) -> str | None:
    """The protocol ALPN selected on a TLS connection (``"h2"``, ``"http/1.1"``), or None."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return ssl_object.selected_alpn_protocol()


def tls_extension(transport: Any, server_cert: str | None) -> dict[str, Any] | None:
    """The ``tls`` scope extension of a connection, or None when it is not over TLS.

    Read once per connection, after the handshake (asyncio and uvloop call ``connection_made``
    then). ``client_cert_chain`` is the client's certificate first, then its verified chain up to
    the trusted CA on Python 3.13+ (``get_verified_chain``), the certificate alone before.
    ``client_cert_error`` is always None: a certificate that fails verification fails the handshake.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    chain: list[str] = []
    name = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        get_verified_chain = getattr(ssl_object, "get_verified_chain", None)
        if get_verified_chain is not None:
            try:
                chain = [_as_pem(cert) for cert in get_verified_chain()]
            except (ssl.SSLError, ValueError):
                chain = []
        if not chain:
            chain = [ssl.DER_cert_to_PEM_cert(der)]
        peer = ssl_object.getpeercert()
        if peer and peer.get("subject"):
            name = rfc4514_name(peer["subject"])
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": cipher_suite_number(ssl_object),
    }


def first_certificate_pem(certfile: Any) -> str | None:
    """The server's own certificate for ``server_cert``: the first one in ``--ssl-certfile``,
    re-encoded as canonical PEM. None when it cannot be read (the TLS set-up reports that)."""
    try:
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        return None
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(text[begin : end + len(end_marker)]))
    except ValueError:
        return None
