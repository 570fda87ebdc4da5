"""SM2 (GB/T 32918) keys, signatures and encryption, backed by tongsuopy (Tongsuo, C).

Signatures are DER `SEQUENCE { r INTEGER, s INTEGER }` over SM3(Z || M) where Z uses the default
user ID `1234567812345678` (Tongsuo's default, the same as `openssl ... -pkeyopt distid:1234567812345678`).
Ciphertexts are GM/T 0009 DER `SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ciphertext OCTET STRING }`
(C1C3C2). Everything tongsuopy-specific stays in this module so the backend can be swapped.
"""

from __future__ import annotations

from typing import Any

from tongsuopy.backends.tongsuo.backend import backend as _backend
from tongsuopy.crypto import hashes as _hashes
from tongsuopy.crypto import serialization as _ser
from tongsuopy.crypto.asymciphers import ec as _ec

from gmcrypto import sm3
from gmcrypto.errors import DecryptionFailed, InvalidKey, InvalidSignature

DEFAULT_ID = b"1234567812345678"
_SIG_ALG = _ec.ECDSA(_hashes.SM3())  # with an SM2 key Tongsuo computes SM2-with-SM3 (Z of DEFAULT_ID)
_lib = _backend._lib
_ffi = _backend._ffi
# Largest plaintext we agree to encrypt: SM2 is for keys and small secrets, not bulk data.
MAX_ENCRYPT = 4096


def _ensure_sm2(key: Any) -> None:
    """Reject anything that is not an SM2 key and make sure Tongsuo treats it as SM2 (not ECDSA)."""
    if not isinstance(key.curve, _ec.SM2):
        raise InvalidKey("not an SM2 key")
    if _lib.EVP_PKEY_id(key._evp_pkey) != _lib.EVP_PKEY_SM2:
        # An EC key on the SM2 curve would otherwise sign with ECDSA; force the SM2 method.
        key._evp_pkey = _backend._ec_cdata_to_evp_pkey(key._ec_key)
        if _lib.EVP_PKEY_id(key._evp_pkey) != _lib.EVP_PKEY_SM2:
            raise InvalidKey("key cannot be used as SM2")


def _check_point(ec_key: Any) -> None:
    """The public point must be a finite point on the SM2 curve (cofactor 1: that is the subgroup)."""
    group = _lib.EC_KEY_get0_group(ec_key)
    point = _lib.EC_KEY_get0_public_key(ec_key)
    if point == _ffi.NULL or _lib.EC_POINT_is_at_infinity(group, point):
        raise InvalidKey("public key is the point at infinity")
    if _lib.EC_POINT_is_on_curve(group, point, _ffi.NULL) != 1:
        _backend._consume_errors()
        raise InvalidKey("public key is not on the SM2 curve")


def _pkey_op(init: Any, op: Any, evp_pkey: Any, data: bytes) -> bytes | None:
    """Run EVP_PKEY_encrypt/decrypt; None when the library refuses (errors are consumed, not leaked)."""
    ctx = _ffi.gc(_lib.EVP_PKEY_CTX_new(evp_pkey, _ffi.NULL), _lib.EVP_PKEY_CTX_free)
    if ctx == _ffi.NULL or init(ctx) != 1:
        _backend._consume_errors()
        return None
    outlen = _ffi.new("size_t *")
    if op(ctx, _ffi.NULL, outlen, data, len(data)) != 1:
        _backend._consume_errors()
        return None
    buf = _ffi.new("unsigned char[]", max(outlen[0], 1))
    if op(ctx, buf, outlen, data, len(data)) != 1:
        _backend._consume_errors()
        return None
    return bytes(_ffi.buffer(buf)[: outlen[0]])


class PublicKey:
    """An SM2 public key: verify signatures, encrypt small secrets, a stable key id."""

    __slots__ = ("_key", "_spki")

    def __init__(self, key: Any) -> None:
        _ensure_sm2(key)
        _check_point(key._ec_key)
        self._key = key
        self._spki = key.public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo)

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        """Load a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`)."""
        try:
            return cls(_ser.load_pem_public_key(bytes(data)))
        except InvalidKey:
            raise
        except Exception:
            _backend._consume_errors()
            raise InvalidKey("not a PEM SM2 public key") from None

    @classmethod
    def from_der(cls, data: bytes) -> PublicKey:
        """Load a DER SubjectPublicKeyInfo, or a raw uncompressed point (04 || x || y)."""
        try:
            raw = bytes(data)
            if len(raw) == 65 and raw[0] == 4:
                return cls(_ec.EllipticCurvePublicKey.from_encoded_point(_ec.SM2(), raw))
            return cls(_ser.load_der_public_key(raw))
        except InvalidKey:
            raise
        except Exception:
            _backend._consume_errors()
            raise InvalidKey("not a DER SM2 public key") from None

    def to_pem(self) -> bytes:
        """PEM SubjectPublicKeyInfo, readable by `openssl pkey -pubin`."""
        return self._key.public_bytes(_ser.Encoding.PEM, _ser.PublicFormat.SubjectPublicKeyInfo)

    def to_der(self) -> bytes:
        """DER SubjectPublicKeyInfo."""
        return self._spki

    @property
    def key_id(self) -> str:
        """First 16 bytes of SM3(SubjectPublicKeyInfo DER), as 32 lowercase hex digits."""
        return sm3.digest(self._spki)[:16].hex()

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check a DER SM2 signature over `data`; raise InvalidSignature if it does not verify."""
        try:
            self._key.verify(bytes(signature), bytes(data), _SIG_ALG)
        except Exception:
            _backend._consume_errors()
            raise InvalidSignature("signature does not verify") from None

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2-encrypt a small secret to this key (GM/T 0009 DER, C1C3C2)."""
        if not 0 < len(plaintext) <= MAX_ENCRYPT:
            raise ValueError(f"SM2 encrypts 1..{MAX_ENCRYPT} bytes; use a data key for bulk data")
        out = _pkey_op(
            _lib.EVP_PKEY_encrypt_init, _lib.EVP_PKEY_encrypt, self._key._evp_pkey, bytes(plaintext)
        )
        if out is None:  # pragma: no cover - only on library failure
            raise InvalidKey("SM2 encryption failed")
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._spki == self._spki

    def __hash__(self) -> int:
        return hash(self._spki)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


class PrivateKey:
    """An SM2 private key: sign, decrypt, export as PKCS#8."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: Any) -> None:
        _ensure_sm2(key)
        self._key = key
        self._public = PublicKey(key.public_key())
        _check_pair(key)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the library's CSPRNG."""
        return cls(_ec.generate_private_key(_ec.SM2()))

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> PrivateKey:
        """Load PEM PKCS#8 (optionally encrypted) or SEC1 `EC PRIVATE KEY` on the SM2 curve."""
        try:
            return cls(_ser.load_pem_private_key(bytes(data), password))
        except InvalidKey:
            raise
        except Exception:
            _backend._consume_errors()
            raise InvalidKey("not a PEM SM2 private key (or wrong password)") from None

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PEM PKCS#8 (`-----BEGIN PRIVATE KEY-----`); encrypted when a password is given."""
        enc: Any = _ser.BestAvailableEncryption(password) if password else _ser.NoEncryption()
        return self._key.private_bytes(_ser.Encoding.PEM, _ser.PrivateFormat.PKCS8, enc)

    def public_key(self) -> PublicKey:
        return self._public

    @property
    def key_id(self) -> str:
        """The key id of the public half."""
        return self._public.key_id

    def sign(self, data: bytes) -> bytes:
        """DER SM2 signature of `data` (SM3, Z of the default ID, a fresh random k each time)."""
        return bytes(self._key.sign(bytes(data), _SIG_ALG))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt a GM/T 0009 DER ciphertext; DecryptionFailed if it is not for this key or was altered."""
        out = _pkey_op(
            _lib.EVP_PKEY_decrypt_init, _lib.EVP_PKEY_decrypt, self._key._evp_pkey, bytes(ciphertext)
        )
        if out is None:
            raise DecryptionFailed("SM2 ciphertext does not decrypt under this key")
        return out

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.key_id!r})"


def _check_pair(key: Any) -> None:
    """The private scalar must be in [1, n-2] and the stored public point must equal d·G."""
    n = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
    numbers = key.private_numbers()
    if not 1 <= numbers.private_value <= n - 2:
        raise InvalidKey("SM2 private scalar out of range")
    derived = _ec.derive_private_key(numbers.private_value, _ec.SM2()).public_key().public_numbers()
    if derived != numbers.public_numbers:
        raise InvalidKey("SM2 private key does not match its public key")
