"""The append-only, verifiable access log: SM3 hash chain and Merkle tree, SM2-signed checkpoints, proofs,
export and offline verification, search and risk alerts. Layer: below policies, above gmcrypto.

Services call `audit.record(session, ...)` in the same transaction as the effect they record.
"""

from .log import record
from .models import Alert, AuditEntry, AuditRecord, Checkpoint

__all__ = ["Alert", "AuditEntry", "AuditRecord", "Checkpoint", "record"]
