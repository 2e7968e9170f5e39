"""Tokens (K10 format, CA hash), the bootstrap data's encryption, certificates."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import Fatal

# Tokens.
TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z][a-z0-9-]*):(.+)$")


def parse_token(token: str) -> tuple[str | None, str | None, str]:
    """(CA hash, username, password) of a secure token; (None, None, pw) of a short one."""
    token = token.strip()
    if token.startswith("K10"):
        m = TOKEN_RE.match(token)
        if not m:
            raise Fatal("invalid token format: a secure token is K10<sha256 of the CA>::<user>:<password>")
        return m.group(1), m.group(2), m.group(3)
    if not token:
        raise Fatal("token is empty")
    if ":" in token or token.startswith("K1"):
        # K3s reads "user:password" short tokens as such; keep the password part.
        user, _, pw = token.partition(":")
        return None, user or None, pw
    return None, None, token


def ca_hash(ca_pem: bytes) -> str:
    return hashlib.sha256(ca_pem).hexdigest()


def format_token(ca_pem: bytes, user: str, password: str) -> str:
    return f"K10{ca_hash(ca_pem)}::{user}:{password}"


def configured_token(cfg: dict[str, Any], key: str = "token") -> str | None:
    if cfg.get(key):
        return str(cfg[key]).strip()
    fkey = f"{key}-file"
    if cfg.get(fkey):
        path = Path(cfg[fkey])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise Fatal(f"failed to read token file {path}: {exc.strerror}") from exc
    return None


@functools.lru_cache(maxsize=32)
def password_check(password: str, salt: str) -> str:
    """The stored check of a token password (PBKDF2, deliberately slow): computed once per password and
    salt, not on every request that presents it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 20000).hex()


# Bootstrap encryption: K3s encrypts its bootstrap data (the CAs) with the
# token, which is why a snapshot cannot be restored without the token.
def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(key + nonce + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:length])


def encrypt_bootstrap(password: str, data: dict[str, Any]) -> dict[str, str]:
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 20000)
    plain = json.dumps(data).encode()
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key, nonce, len(plain)), strict=True))
    mac = hmac.new(key, nonce + cipher, "sha256").hexdigest()
    return {"salt": salt.hex(), "nonce": nonce.hex(),
            "data": base64.b64encode(cipher).decode(), "mac": mac}


def decrypt_bootstrap(password: str, blob: dict[str, str]) -> dict[str, Any]:
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(blob["salt"]), 20000)
    nonce = bytes.fromhex(blob["nonce"])
    cipher = base64.b64decode(blob["data"])
    mac = hmac.new(key, nonce + cipher, "sha256").hexdigest()
    if not hmac.compare_digest(mac, blob["mac"]):
        raise Fatal("failed to decrypt bootstrap data: cipher: message authentication failed "
                    "(was this snapshot taken with a different token?)")
    plain = bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher)), strict=True))
    data: dict[str, Any] = json.loads(plain)
    return data


# Certificates, made with the openssl command line (stdlib has no X.509).
def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise Fatal(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def make_ca(cn: str) -> tuple[bytes, bytes]:
    key = _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout")
    with tempfile.TemporaryDirectory() as tmp:
        kf = Path(tmp, "k.pem")
        kf.write_bytes(key)
        cert = _openssl("req", "-x509", "-new", "-key", str(kf), "-days", "3650",
                        "-subj", f"/CN={cn}@{int(time.time())}",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    return cert, key


def sign_cert(ca_cert: bytes, ca_key: bytes, subject: str, sans: list[str] | None,
              client: bool, usage: str = "") -> tuple[bytes, bytes]:
    """A certificate for ``subject`` signed by the CA: for clients or servers (``usage``, an
    extendedKeyUsage value, says otherwise)."""
    key = _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "k.pem").write_bytes(key)
        (t / "ca.pem").write_bytes(ca_cert)
        (t / "cak.pem").write_bytes(ca_key)
        csr = _openssl("req", "-new", "-key", str(t / "k.pem"), "-subj", subject)
        ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               f"extendedKeyUsage={usage or ('clientAuth' if client else 'serverAuth')}"]
        if sans:
            alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
            ext.append(f"subjectAltName={alt}")
        (t / "ext.cnf").write_text("\n".join(ext) + "\n")
        cert = _openssl("x509", "-req", "-CA", str(t / "ca.pem"), "-CAkey", str(t / "cak.pem"),
                        "-CAcreateserial", "-days", "3650", "-extfile", str(t / "ext.cnf"),
                        stdin=csr)
    return cert, key


def _is_ip(value: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
        return True
    except OSError:
        return False


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
    except OSError as exc:  # name the file, as Go's errors do (a full disk fails the write or the close)
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.chmod(tmp, mode)
    os.replace(tmp, path)
