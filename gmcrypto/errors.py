"""One exception per failure class; none reveals which byte or check failed (no oracle)."""


class CryptoError(Exception):
    """Base of every gmcrypto failure."""


class InvalidSignature(CryptoError):
    """A signature does not verify under the given public key."""


class DecryptionFailed(CryptoError):
    """Ciphertext, tag, key or associated data do not match: nothing is returned."""


class InvalidKey(CryptoError):
    """A key is malformed, on the wrong curve, or of the wrong kind."""


class InvalidPackage(CryptoError):
    """An export package is malformed, truncated, reordered, extended or not signed by a trusted key."""
