"""Export packages: a payload sealed with SM4-GCM in chunks, a manifest signed with the gateway's SM2 key.

Layout (all integers big-endian; docs/crypto.md has the full description):

    header    8 bytes   b"PDGPKG" | format version u16 (= 1)
    payload   chunk_count chunks of ciphertext || tag
              (see gmcrypto._stream; AAD prefix = header || package id)
    manifest  canonical JSON (UTF-8, sorted keys, no spaces)
    signature DER SM2 signature over SIGN_CONTEXT || manifest
    trailer   16 bytes  manifest length u32 | signature length u32 | b"PDGPKEND"

The manifest comes last so a result of unknown length can be sealed in one pass in constant memory.
Every failure while verifying or opening raises InvalidPackage.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from common import clock
from gmcrypto import _stream
from gmcrypto.aead import new_data_key
from gmcrypto.errors import CryptoError, InvalidPackage
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.wrap import unwrap_key, wrap_key

if TYPE_CHECKING:
    from gmcrypto.keys import Keyring

FORMAT_VERSION = 1
MAGIC = b"PDGPKG"
HEADER = MAGIC + FORMAT_VERSION.to_bytes(2, "big")
TRAILER_MAGIC = b"PDGPKEND"
TRAILER_SIZE = 16
SIGN_CONTEXT = b"pdg.package.manifest.v1\x00"  # domain separation from other things the gateway signs
NONCE_SCHEME = "stream-v1: nonce=index(u64)||final(u32); aad=header||package_id||index(u64)||final(u8)"
MAX_MANIFEST = 1 << 20
MAX_SIGNATURE = 80  # DER of two 256-bit integers is at most 72 bytes
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Manifest:
    """What a package claims about itself; returned only once its signature has verified."""

    package_id: str
    created: str
    references: dict[str, Any]
    chunk_size: int
    chunk_count: int
    total_length: int
    payload_sm3: str
    recipient_key_id: str
    wrapped_key: str
    signer_key_id: str
    format_version: int = FORMAT_VERSION
    cipher: str = "SM4-GCM"
    key_wrap: str = "SM2-GMT0009-DER-C1C3C2"
    signature_alg: str = "SM2-SM3-DER-id1234567812345678"
    nonce_scheme: str = NONCE_SCHEME
    signature: bytes = field(default=b"", compare=False, repr=False)

    def to_json(self) -> bytes:
        """Canonical bytes (what the signature covers)."""
        body = asdict(self)
        body.pop("signature")
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse and check types and ranges; InvalidPackage if anything is off."""
        try:
            body = json.loads(raw.decode("utf-8"))
            m = cls(**body)
        except (UnicodeDecodeError, ValueError, TypeError):
            raise InvalidPackage("package manifest is malformed") from None
        if m.to_json() != raw:
            raise InvalidPackage("package manifest is not in canonical form")
        ints = (m.chunk_size, m.chunk_count, m.total_length, m.format_version)
        if not all(type(v) is int for v in ints) or not isinstance(m.references, dict):
            raise InvalidPackage("package manifest is malformed")
        if m.format_version != FORMAT_VERSION or (m.cipher, m.key_wrap, m.nonce_scheme) != (
            "SM4-GCM",
            "SM2-GMT0009-DER-C1C3C2",
            NONCE_SCHEME,
        ):
            raise InvalidPackage("unsupported package format version or algorithms")
        if not 16 <= m.chunk_size <= _stream.MAX_CHUNK or m.total_length < 0:
            raise InvalidPackage("package manifest has an invalid chunk size or length")
        if m.chunk_count != max(1, -(-m.total_length // m.chunk_size)):
            raise InvalidPackage("package manifest chunk count does not match its length")
        hexes = (m.package_id, m.recipient_key_id, m.signer_key_id)
        if not all(isinstance(h, str) and _HEX32.match(h) for h in hexes) or not _HEX64.match(
            str(m.payload_sm3)
        ):
            raise InvalidPackage("package manifest has malformed ids or digests")
        return m


def _check_references(references: Mapping[str, Any]) -> dict[str, Any]:
    refs = dict(references)
    for k, v in refs.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, str | int | bool)):
            raise ValueError("references map names to strings, integers, booleans or None")
    return refs


def _trusted_map(trusted: Mapping[str, PublicKey] | Iterable[PublicKey]) -> dict[str, PublicKey]:
    if isinstance(trusted, Mapping):
        return {k.key_id: k for k in trusted.values()}
    return {k.key_id: k for k in trusted}


def seal_package(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    recipient: PublicKey,
    signer: Keyring | PrivateKey,
    references: Mapping[str, Any],
    chunk_size: int = _stream.DEFAULT_CHUNK,
) -> Manifest:
    """Encrypt src to a fresh data key wrapped to `recipient`, write the package to dst, sign it."""
    if not 16 <= chunk_size <= _stream.MAX_CHUNK:
        raise ValueError("chunk_size must be 16 bytes .. 16 MiB")
    refs = _check_references(references)
    data_key = new_data_key()
    package_id = os.urandom(16)
    digest = _stream.BackgroundSM3()
    try:
        dst.write(HEADER)
        count, total = _stream.encrypt_stream(data_key, HEADER + package_id, src, dst, chunk_size, digest)
        payload_sm3 = digest.digest().hex()
    finally:
        digest.close()
    signer_id = signer.key_id if isinstance(signer, PrivateKey) else signer.signing_key.key_id
    manifest = Manifest(
        package_id=package_id.hex(),
        created=clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        references=refs,
        chunk_size=chunk_size,
        chunk_count=count,
        total_length=total,
        payload_sm3=payload_sm3,
        recipient_key_id=recipient.key_id,
        wrapped_key=base64.b64encode(wrap_key(data_key, recipient)).decode(),
        signer_key_id=signer_id,
    )
    body = manifest.to_json()
    if isinstance(signer, PrivateKey):
        sig = signer.sign(SIGN_CONTEXT + body)
    else:
        signer_id2, sig = signer.sign(SIGN_CONTEXT + body)
        assert signer_id2 == signer_id
    dst.write(body)
    dst.write(sig)
    dst.write(len(body).to_bytes(4, "big") + len(sig).to_bytes(4, "big") + TRAILER_MAGIC)
    return Manifest(**{**asdict(manifest), "signature": sig})


class _Bounded:
    """A read-only view of the payload region, so the last chunk never reads into the manifest."""

    def __init__(self, src: BinaryIO, length: int) -> None:
        self._src, self._left = src, length

    def read(self, n: int) -> bytes:
        data = self._src.read(min(n, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        return data


def _read_exact(src: BinaryIO, n: int) -> bytes:
    data = _stream.read_full(src, n)
    if len(data) != n:
        raise InvalidPackage("package is truncated")
    return data


def _verify_structure(src: BinaryIO, trusted: Mapping[str, PublicKey] | Iterable[PublicKey]) -> Manifest:
    """Check header, trailer, manifest and its signature; leave src at the payload start."""
    keys = _trusted_map(trusted)
    if not keys:
        raise ValueError("at least one trusted gateway public key is needed")
    try:
        size = src.seek(0, os.SEEK_END)
    except (OSError, ValueError):
        raise ValueError("packages are verified from a seekable file") from None
    if size < len(HEADER) + TRAILER_SIZE:
        raise InvalidPackage("not an export package (too short)")
    src.seek(0)
    header = _read_exact(src, len(HEADER))
    if header[: len(MAGIC)] != MAGIC:
        raise InvalidPackage("not an export package")
    if header != HEADER:
        raise InvalidPackage("unsupported package format version")
    src.seek(size - TRAILER_SIZE)
    trailer = _read_exact(src, TRAILER_SIZE)
    mlen, slen = int.from_bytes(trailer[:4], "big"), int.from_bytes(trailer[4:8], "big")
    payload_len = size - len(HEADER) - TRAILER_SIZE - mlen - slen
    if trailer[8:] != TRAILER_MAGIC or not (0 < mlen <= MAX_MANIFEST and 0 < slen <= MAX_SIGNATURE):
        raise InvalidPackage("package is truncated or its trailer is damaged")
    if payload_len < _stream.TAG_SIZE:
        raise InvalidPackage("package is truncated or its trailer is damaged")
    src.seek(len(HEADER) + payload_len)
    body = _read_exact(src, mlen)
    sig = _read_exact(src, slen)
    manifest = Manifest.from_json(body)
    key = keys.get(manifest.signer_key_id)
    if key is None:
        raise InvalidPackage(f"package is signed by key {manifest.signer_key_id}, which is not trusted")
    try:
        key.verify(sig, SIGN_CONTEXT + body)
    except CryptoError:
        raise InvalidPackage("package manifest signature does not verify") from None
    if payload_len != manifest.total_length + _stream.TAG_SIZE * manifest.chunk_count:
        raise InvalidPackage("package payload length does not match its manifest (truncated or extended)")
    src.seek(len(HEADER))
    return Manifest(**{**asdict(manifest), "signature": sig})


def _payload_len(m: Manifest) -> int:
    return m.total_length + _stream.TAG_SIZE * m.chunk_count


def _open_src(path_or_stream: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, bool]:
    if isinstance(path_or_stream, str | os.PathLike):
        try:
            return Path(path_or_stream).open("rb"), True
        except OSError as e:
            raise InvalidPackage(f"cannot read package: {e.strerror}") from None
    return path_or_stream, False


def verify_package(
    path_or_stream: str | os.PathLike[str] | BinaryIO,
    trusted: Mapping[str, PublicKey] | Iterable[PublicKey],
) -> Manifest:
    """Check the signature and the SM3 digest of the whole payload; no private key needed."""
    src, owned = _open_src(path_or_stream)
    try:
        manifest = _verify_structure(src, trusted)
        digest = _stream.BackgroundSM3()
        try:
            reader = _Bounded(src, _payload_len(manifest))
            while block := reader.read(_stream.DEFAULT_CHUNK):
                digest.update(block)
            ok = digest.digest().hex() == manifest.payload_sm3
        finally:
            digest.close()
        if not ok:
            raise InvalidPackage("package payload does not match its signed digest")
        return manifest
    finally:
        if owned:
            src.close()


def open_package(
    src: str | os.PathLike[str] | BinaryIO,
    dst: BinaryIO,
    *,
    private: PrivateKey,
    trusted: Mapping[str, PublicKey] | Iterable[PublicKey],
) -> Manifest:
    """Verify, then decrypt the payload to dst chunk by chunk (each chunk authenticated before it is written).

    On InvalidPackage dst may hold a prefix of authenticated plaintext: discard it (the CLI does).
    """
    stream, owned = _open_src(src)
    try:
        manifest = _verify_structure(stream, trusted)
        if manifest.recipient_key_id != private.key_id:
            raise InvalidPackage(
                f"package is for key {manifest.recipient_key_id}, not for key {private.key_id}"
            )
        try:
            data_key = unwrap_key(base64.b64decode(manifest.wrapped_key, validate=True), private)
        except (CryptoError, binascii.Error):
            raise InvalidPackage("package data key does not unwrap with this private key") from None
        digest = _stream.BackgroundSM3()
        prefix = HEADER + bytes.fromhex(manifest.package_id)
        try:
            reader: Any = _Bounded(stream, _payload_len(manifest))
            _stream.decrypt_stream(
                data_key,
                prefix,
                reader,
                dst,
                manifest.chunk_size,
                chunk_count=manifest.chunk_count,
                digest=digest,
            )
            ok = digest.digest().hex() == manifest.payload_sm3
        except CryptoError:
            raise InvalidPackage("package payload is damaged or altered") from None
        finally:
            digest.close()
        if not ok:
            raise InvalidPackage("package payload does not match its signed digest")
        return manifest
    finally:
        if owned:
            stream.close()
