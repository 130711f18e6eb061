"""`pigeonhub serve --tls-cert CERT --tls-key KEY`: the hub's certificate and key, checked before the
hub listens so that a wrong file is named with its fix instead of failing every handshake later.

The same checks, in the same words, as the board's console `tls save` (main/tls_identity.c): a PEM
certificate, an unencrypted PEM private key, and the key belonging to the certificate.
"""

import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the file and the fix."""


MAKE_ONE = ("make a pair with e.g. `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
            "-nodes -keyout key.pem -out cert.pem -subj /CN=pigeonhub -days 825`")


def _read(option, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsError(f"cannot read {option} {path}: {exc.strerror or exc}; give the path of a "
                       f"PEM file ({MAKE_ONE})") from None


def load_identity(cert_path, key_path):
    """(ssl.SSLContext for the server, "CN=..., expires YYYY-MM-DD"); TlsError otherwise."""
    if (cert_path is None) != (key_path is None):
        missing = "--tls-key" if key_path is None else "--tls-cert"
        raise TlsError(f"--tls-cert and --tls-key go together: {missing} is missing (the "
                       "certificate's private key, PEM)")
    cert_pem, key_pem = _read("--tls-cert", cert_path), _read("--tls-key", key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TlsError(f"--tls-cert {cert_path} is not a PEM X.509 certificate ({exc}); a certificate "
                       f"file starts with -----BEGIN CERTIFICATE----- ({MAKE_ONE})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"--tls-key {key_path} is not an unencrypted PEM private key ({exc}); "
                       "give the certificate's key file (-----BEGIN PRIVATE KEY-----; decrypt an "
                       "encrypted one with `openssl pkey -in KEY -out key.pem`)") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (cert.public_key().public_bytes(serialization.Encoding.DER, public)
            != key.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise TlsError(f"--tls-key {key_path} does not belong to --tls-cert {cert_path} (a "
                       "different pair?): give the key the certificate was made for")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:   # checked above; what is left is OpenSSL's own refusal
        raise TlsError(f"--tls-cert/--tls-key refused by OpenSSL: {exc.reason or exc}") from None
    return context, describe(cert)


def describe(cert):
    """"CN=hub.local, expires 2027-12-08", as the board's log line."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = names[0].value if names else "(no CN)"
    expires = cert.not_valid_after_utc
    note = " (EXPIRED: browsers and clients refuse it)" if expires < datetime.datetime.now(
        datetime.timezone.utc) else ""
    return f"CN={cn}, expires {expires:%Y-%m-%d}{note}"
