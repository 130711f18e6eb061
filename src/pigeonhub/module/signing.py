"""Signed modules: `pigeonhub keygen` and `pigeonhub build --sign KEY`, and the verify the PC hub
runs with `serve --module-key PUB.pem` (hub/ota.py).

A signed module ends with one WebAssembly custom section (docs/SIGNED_MODULES.md; the C side,
which finds it and words every refusal, is lib/pigeonhub_bridge/src/ph_module_sig.[ch]):

    00 57 0d "pigeonhub.sig" 01 <key id: 8 bytes> <r||s: 64 bytes>

ECDSA P-256 with SHA-256 over every byte before the section; the key id is the first 8 bytes of the
SHA-256 of the public point (uncompressed, 65 bytes). WASM3 skips custom sections, so a hub without
a key runs a signed module unchanged.

This file needs only `cryptography`, not the bridge extension: the firmware's build
(scripts/pio_support.py, run by ESP-IDF's Python) signs the module it embeds with it.
"""

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

# ph_module_sig.h (test/module/test_signing.py checks that the two agree)
SECTION_NAME = b"pigeonhub.sig"
FORMAT = 1
KEY_ID_BYTES = 8
SIG_BYTES = 64
PAYLOAD_BYTES = 1 + KEY_ID_BYTES + SIG_BYTES
SECTION_BYTES = 2 + 1 + len(SECTION_NAME) + PAYLOAD_BYTES   # 89: id, size, name length, name, payload


class KeyFileError(Exception):
    """A key file that cannot be used; the message says which and why."""


def generate(out: Path) -> tuple[Path, Path]:
    """Write a new P-256 key pair: out (private key, PEM, mode 0600) and out.pub (public key, PEM).
    Refuses to overwrite either."""
    out = Path(out)
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists():
            raise KeyFileError(f"{path} exists; keygen never overwrites a key (choose another name)")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(pub, "xb") as f:
        f.write(public_pem(key.public_key()))
    return out, pub


def public_pem(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def public_base64(public_key) -> str:
    """The public key as one line (base64 of its DER): what the board's console `modkey` and
    CONFIG_PIGEONHUB_MODULE_PUBKEY take."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def key_id(public_key) -> bytes:
    point = public_key.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha256(point).digest()[:KEY_ID_BYTES]


def load_private_key(path):
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc.strerror or exc}")
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key ({exc}); make one with "
                        "`pigeonhub keygen KEY`")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{path} is not an ECDSA P-256 key; make one with `pigeonhub keygen KEY`")
    return key


def load_public_key(path):
    """A P-256 public key from a PEM file (keygen's KEY.pub) or a file holding its one-line base64."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the module key {path}: {exc.strerror or exc}")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a public key (PEM or one-line base64 DER): {exc}; "
                        "`pigeonhub keygen KEY` writes one as KEY.pub")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{path} is not an ECDSA P-256 public key; `pigeonhub keygen KEY` writes one")
    return key


def section(kid: bytes, sig: bytes) -> bytes:
    assert len(kid) == KEY_ID_BYTES and len(sig) == SIG_BYTES
    return (bytes([0, SECTION_BYTES - 2, len(SECTION_NAME)]) + SECTION_NAME + bytes([FORMAT])
            + kid + sig)


def has_signature(wasm: bytes) -> bool:
    """Does the module end with a signature section? (What build --sign replaces; the hubs parse
    the module fully, ph_module_sig.c.)"""
    tail = wasm[-SECTION_BYTES:]
    return len(wasm) >= 8 + SECTION_BYTES and tail[:3 + len(SECTION_NAME)] == section(
        bytes(KEY_ID_BYTES), bytes(SIG_BYTES))[:3 + len(SECTION_NAME)]


def sign(wasm: bytes, private_key) -> bytes:
    """The module with its signature section appended (an old one replaced)."""
    if has_signature(wasm):
        wasm = wasm[:-SECTION_BYTES]
    der = private_key.sign(wasm, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return wasm + section(key_id(private_key.public_key()), r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def verifier(public_key):
    """verify(data, sig64) -> bool, for _bridge.check_signature."""
    def verify(data, sig):
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public_key.verify(der, bytes(data), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
    return verify


def sign_file(path, key_path) -> int:
    """Sign the module at path in place with the key at key_path; returns its new size."""
    wasm = sign(Path(path).read_bytes(), load_private_key(key_path))
    partial = Path(str(path) + ".partial")
    partial.write_bytes(wasm)
    os.replace(partial, path)
    return len(wasm)


# --- pigeonhub keygen ---------------------------------------------------------------------------

def add_arguments(parser):
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="private key file to write (PEM, mode 0600); the public key goes to OUT.pub")


def run(args) -> int:
    import sys
    try:
        priv, pub = generate(args.out)
    except (KeyFileError, OSError) as exc:
        print(f"E (keygen) {exc}", file=sys.stderr)
        return 1
    public = load_public_key(pub)
    print(f"private key  {priv} (keep it secret: it signs modules)\n"
          f"public key   {pub} (key id {key_id(public).hex()})\n\n"
          f"sign:         pigeonhub build --sign {priv}\n"
          f"PC hub:       pigeonhub serve --module-key {pub}\n"
          f"board:        console `modkey {public_base64(public)}`\n"
          f"              or CONFIG_PIGEONHUB_MODULE_PUBKEY=\"{public_base64(public)}\"")
    return 0
