"""The gateway's keys: SM2 signing key pair(s), key-encryption keys (KEKs), rotation and envelope encryption.

A keys directory holds (all files mode 0600, written atomically, directory 0700):

    keyring.json             {"signing": <active signing key id>, "kek": <active KEK id>}
    signing-<id>.key.pem     PKCS#8 private key of the active signing key (retired ones are deleted)
    signing-<id>.pub.pem     public key of every signing key ever used (old signatures keep verifying)
    kek-<id>.b64             base64 of each 16-byte KEK (old wrapped data keys keep unwrapping)

KEK id = first 16 bytes of SM3(b"pdg.kek.id\\x00" || KEK), hex. Signing key id = PublicKey.key_id.
A lock file (`.lock`) serialises first-run creation and rotation between processes sharing the directory;
loading takes no lock and writes nothing, so the directory may be a read-only mount (a Kubernetes Secret).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gmcrypto import aead, atrest, sm3
from gmcrypto._stream import DEFAULT_CHUNK
from gmcrypto.errors import DecryptionFailed, InvalidKey, InvalidSignature
from gmcrypto.sm2 import PrivateKey, PublicKey

_DATA_KEY_AAD = b"pdg.data-key.v1"
_INDEX = "keyring.json"


def kek_id(kek: bytes) -> str:
    """Stable id of a KEK that reveals nothing useful about it."""
    return sm3.digest(b"pdg.kek.id\x00" + kek)[:16].hex()


def _parse_kek(value: bytes | str) -> bytes:
    """Accept 16 raw bytes or their base64 (as Kubernetes Secrets and env vars carry them)."""
    if isinstance(value, bytes | bytearray) and len(value) == aead.KEY_SIZE:
        return bytes(value)
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError, AttributeError):
        raise InvalidKey("a KEK is 16 bytes or their base64") from None
    if len(raw) != aead.KEY_SIZE:
        raise InvalidKey("a KEK is 16 bytes or their base64")
    return raw


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a 0600 file so that readers see either nothing or all of it, even after a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    fd = os.open(keys_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class Keyring:
    """Signing keys, verification keys and KEKs of one gateway."""

    def __init__(
        self,
        signing_key: PrivateKey,
        keks: dict[str, bytes],
        active_kek: str,
        public_keys: Iterable[PublicKey] = (),
        keys_dir: Path | None = None,
    ) -> None:
        self._signing = signing_key
        self._public = {k.key_id: k for k in public_keys}
        self._public[signing_key.key_id] = signing_key.public_key()
        self._keks = dict(keks)
        if active_kek not in self._keks:
            raise InvalidKey("the active KEK is missing")
        self._active_kek = active_kek
        self._dir = keys_dir

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh in-memory keyring (tests, one-off tools)."""
        kek = aead.new_data_key()
        return cls(PrivateKey.generate(), {kek_id(kek): kek}, kek_id(kek))

    @classmethod
    def from_pem(
        cls,
        signing_pem: bytes,
        kek: bytes | str,
        *,
        retired_public_pems: Iterable[bytes] = (),
        retired_keks: Iterable[bytes | str] = (),
        password: bytes | None = None,
    ) -> Keyring:
        """Build from values held outside a directory (Kubernetes Secrets, environment variables)."""
        active = _parse_kek(kek)
        keks = {kek_id(k): k for k in map(_parse_kek, retired_keks)}
        keks[kek_id(active)] = active
        return cls(
            PrivateKey.from_pem(signing_pem, password),
            keks,
            kek_id(active),
            [PublicKey.from_pem(p) for p in retired_public_pems],
        )

    @classmethod
    def load(cls, keys_dir: Path) -> Keyring:
        """Load the keyring in keys_dir without writing anything (a read-only Secret mount is fine)."""
        keys_dir = Path(keys_dir)
        if not (keys_dir / _INDEX).is_file():
            raise InvalidKey(f"keys directory {keys_dir} holds no {_INDEX}; create the keyring first")
        return cls._load(keys_dir)

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> Keyring:
        """Load the keyring in keys_dir, creating the directory and first keys if there are none.

        An existing keyring is read without the lock (files are replaced atomically), so a read-only
        directory works; only a reader that races a rotation retries under the lock.
        """
        keys_dir = Path(keys_dir)
        if (keys_dir / _INDEX).exists():
            try:
                return cls._load(keys_dir)
            except InvalidKey as first:
                # A rotation may have removed the private key the index named when we read it: retry
                # once under the lock. Where no lock can be taken (read-only) no rotation runs either.
                try:
                    with _locked(keys_dir):
                        return cls._load(keys_dir)
                except OSError:
                    raise first from None
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(keys_dir):
            if not (keys_dir / _INDEX).exists():
                ring = cls.generate()
                ring._dir = keys_dir
                ring._save_signing(ring._signing)
                ring._save_kek(ring._keks[ring._active_kek])
                ring._save_index()
                return ring
            return cls._load(keys_dir)

    @classmethod
    def _load(cls, keys_dir: Path) -> Keyring:
        try:
            index = json.loads((keys_dir / _INDEX).read_text())
            signing = PrivateKey.from_pem((keys_dir / f"signing-{index['signing']}.key.pem").read_bytes())
            keks = {}
            for path in keys_dir.glob("kek-*.b64"):
                k = _parse_kek(path.read_bytes())
                keks[kek_id(k)] = k
            publics = [PublicKey.from_pem(p.read_bytes()) for p in keys_dir.glob("signing-*.pub.pem")]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InvalidKey(f"keys directory {keys_dir} is unreadable or incomplete ({type(e).__name__})") from None
        if signing.key_id != index["signing"]:
            raise InvalidKey("the signing key file does not match its name")
        return cls(signing, keks, index["kek"], publics, keys_dir)

    # --- persistence --------------------------------------------------------------------------

    def _save_signing(self, key: PrivateKey) -> None:
        assert self._dir is not None
        _write_atomic(self._dir / f"signing-{key.key_id}.key.pem", key.to_pem())
        _write_atomic(self._dir / f"signing-{key.key_id}.pub.pem", key.public_key().to_pem())

    def _save_kek(self, kek: bytes) -> None:
        assert self._dir is not None
        _write_atomic(self._dir / f"kek-{kek_id(kek)}.b64", base64.b64encode(kek) + b"\n")

    def _save_index(self) -> None:
        assert self._dir is not None
        body = {"signing": self._signing.key_id, "kek": self._active_kek}
        _write_atomic(self._dir / _INDEX, json.dumps(body, indent=2).encode() + b"\n")

    # --- signing ------------------------------------------------------------------------------

    @property
    def signing_key(self) -> PrivateKey:
        return self._signing

    @property
    def public_key(self) -> PublicKey:
        """The active signing public key (what enterprises and auditors are given)."""
        return self._signing.public_key()

    @property
    def public_keys(self) -> dict[str, PublicKey]:
        """Every signing public key this gateway has used, by key id."""
        return dict(self._public)

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """Sign with the active key: (key id, DER signature)."""
        return self._signing.key_id, self._signing.sign(data)

    def verify(self, key_id: str, signature: bytes, data: bytes) -> None:
        """Verify under the named (possibly retired) key; InvalidSignature if unknown or wrong."""
        key = self._public.get(key_id)
        if key is None:
            raise InvalidSignature(f"unknown signing key id {key_id}")
        key.verify(signature, data)

    def rotate_signing_key(self) -> str:
        """Start signing with a new key; the old public key stays for verification. Returns the new id."""
        new = PrivateKey.generate()
        old = self._signing
        if self._dir is None:
            self._signing = new
            self._public[new.key_id] = new.public_key()
            return new.key_id
        with _locked(self._dir):
            self._save_signing(new)
            self._signing = new
            self._public[new.key_id] = new.public_key()
            self._save_index()
            # Only after the index names the new key is the retired private key destroyed.
            (self._dir / f"signing-{old.key_id}.key.pem").unlink(missing_ok=True)
        return new.key_id

    # --- envelope encryption ------------------------------------------------------------------

    @property
    def kek_id(self) -> str:
        return self._active_kek

    def rotate_kek(self) -> str:
        """Wrap new data keys under a new KEK; old KEKs are kept to unwrap old ones. Returns the new id."""
        kek = aead.new_data_key()
        if self._dir is not None:
            with _locked(self._dir):
                self._save_kek(kek)
                self._keks[kek_id(kek)] = kek
                self._active_kek = kek_id(kek)
                self._save_index()
        else:
            self._keks[kek_id(kek)] = kek
            self._active_kek = kek_id(kek)
        return self._active_kek

    def wrap_data_key(self, data_key: bytes) -> bytes:
        """Seal a 16-byte data key under the active KEK (the blob records the KEK id)."""
        if len(data_key) != aead.KEY_SIZE:
            raise InvalidKey("data keys are 16 bytes")
        kid = self._active_kek
        return aead.seal(self._keks[kid], data_key, aad=_DATA_KEY_AAD, key_id=kid)

    def unwrap_data_key(self, blob: bytes) -> bytes:
        """Open a wrapped data key with whichever KEK it names; DecryptionFailed if unknown or altered."""
        kid = aead.key_id_of(blob)
        kek = self._keks.get(kid)
        if kek is None:
            raise DecryptionFailed(f"data key is wrapped by unknown KEK {kid}")
        key = aead.open_sealed(kek, blob, aad=_DATA_KEY_AAD, key_id=kid)
        if len(key) != aead.KEY_SIZE:
            raise DecryptionFailed("wrapped blob does not hold a data key")
        return key

    # --- files at rest ------------------------------------------------------------------------

    def encrypt_file(
        self,
        src: Path | BinaryIO,
        dst: Path | BinaryIO,
        *,
        aad: bytes = b"",
        chunk_size: int = DEFAULT_CHUNK,
    ) -> int:
        """Encrypt a file at rest under a fresh data key wrapped by the active KEK; returns its length."""
        return atrest.encrypt_file(src, dst, wrap=self.wrap_data_key, aad=aad, chunk_size=chunk_size)

    def decrypt_file(self, src: BinaryIO, dst: BinaryIO, *, aad: bytes = b"") -> int:
        """Stream-decrypt a file at rest; every chunk is authenticated before it is written."""
        return atrest.decrypt_stream(src, dst, unwrap=self.unwrap_data_key, aad=aad)

    def decrypt_file_to_bytes(self, src: Path | BinaryIO, *, aad: bytes = b"") -> bytes:
        """Decrypt a file at rest into memory only."""
        return atrest.decrypt_file_to_bytes(src, unwrap=self.unwrap_data_key, aad=aad)

    def open_file(self, path: Path, *, aad: bytes = b"") -> atrest.RangeReader:
        """Random access to a file at rest: only the chunks a read touches are decrypted (and authenticated)."""
        return atrest.RangeReader(path, unwrap=self.unwrap_data_key, aad=aad)

    def __repr__(self) -> str:  # never show key material
        return f"Keyring(signing={self._signing.key_id!r}, kek={self._active_kek!r}, dir={self._dir!s})"
