"""gmcrypto layer."""
