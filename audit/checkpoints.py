"""Signed checkpoints (tree heads) and the inclusion and consistency proofs that hang off them.

The signed text of a checkpoint (UTF-8, LF line ends, final LF) is:

    pdg-audit-checkpoint/v1
    id <checkpoint id>
    size <tree size>
    root <Merkle root, hex>
    chain <chain hash of record <size>, hex; 64 zeros for size 0>
    time <UTC, 2025-01-31T08:00:00.000123Z>
    key <signing key id>
    prev <previous checkpoint id, 0 for none> <SM3 of its signed text, hex; 64 zeros for none>

signed with SM2 (SM3, default user ID) by the gateway key; the signature is stored as DER hex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session, col, select

from common import clock
from common.errors import Conflict, Invalid, NotFound
from gmcrypto import sm3

from . import canonical, merkle
from .log import head, lock
from .models import AuditRecord, Checkpoint
from .tree import TreeView

HEADER = "pdg-audit-checkpoint/v1"
ZERO = "0" * 64


class SigningKeyring(Protocol):
    """What checkpoints need from gmcrypto.keys.Keyring."""

    def sign(self, data: bytes) -> tuple[str, bytes]: ...

    @property
    def signing_key(self) -> Any: ...


def checkpoint_text(cp: Any) -> str:
    """The exact text that is signed (works on a Checkpoint or an export's checkpoint object)."""
    when = cp.time if isinstance(cp.time, str) else canonical.format_time(cp.time)
    return (
        f"{HEADER}\nid {cp.id}\nsize {cp.tree_size}\nroot {cp.root_hash}\nchain {cp.chain_hash}\n"
        f"time {when}\nkey {cp.key_id}\nprev {cp.prev_id} {cp.prev_digest}\n"
    )


def text_digest(cp: Any) -> str:
    """SM3 of a checkpoint's signed text: what the next checkpoint's `prev` line names."""
    return sm3.hexdigest(checkpoint_text(cp).encode())


def latest(session: Session) -> Checkpoint | None:
    """The newest checkpoint, if any."""
    return session.exec(select(Checkpoint).order_by(col(Checkpoint.id).desc()).limit(1)).first()


def get(session: Session, checkpoint_id: int) -> Checkpoint:
    cp = session.get(Checkpoint, checkpoint_id)
    if cp is None:
        raise NotFound(f"no audit checkpoint {checkpoint_id}")
    return cp


def sign_checkpoint(session: Session, keyring: SigningKeyring) -> Checkpoint:
    """Sign a checkpoint over the whole log now (in the caller's transaction; the caller commits).

    Takes the audit append lock, so the checkpoint covers a committed prefix and checkpoints form one
    linked chain. Does not add an audit record itself: the caller records `audit:checkpoint` if a
    person asked for it (recording first puts that record under this checkpoint).
    """
    lock(session)
    prev = latest(session)
    size, chain = head(session)
    if prev is not None and size < prev.tree_size:
        raise Conflict("the audit log is shorter than its last checkpoint; it has been truncated")
    view = TreeView(session, size)
    root = view.root()
    view.save()
    key_id = keyring.signing_key.key_id
    cp = Checkpoint(
        id=(prev.id + 1) if prev else 1,
        tree_size=size,
        root_hash=root.hex(),
        chain_hash=chain.hex() if size else ZERO,
        time=clock.as_utc(clock.now()),
        key_id=key_id,
        prev_id=prev.id if prev else 0,
        prev_digest=text_digest(prev) if prev else ZERO,
        signature="",
    )
    signed_by, signature = keyring.sign(checkpoint_text(cp).encode())
    if signed_by != key_id:  # the keyring rotated between the two calls: never store a mislabeled signature
        raise Conflict("the signing key changed while signing a checkpoint; try again")
    cp.signature = signature.hex()
    session.add(cp)
    session.flush()
    return cp


def checkpoint_if_due(
    session: Session, keyring: SigningKeyring, *, interval: timedelta, now: datetime | None = None
) -> Checkpoint | None:
    """For a timer: sign when records were added since the last checkpoint and `interval` has passed."""
    now = clock.as_utc(now or clock.now())
    prev = latest(session)
    size, _ = head(session)
    if prev is not None and (size == prev.tree_size or now - clock.as_utc(prev.time) < interval):
        return None
    if prev is None and size == 0:
        return None
    return sign_checkpoint(session, keyring)


@dataclass
class InclusionProof:
    """Record `seq` (leaf seq-1) is in the tree of `tree_size` records whose root is `root_hash`."""

    seq: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    path: list[str]
    checkpoint_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class ConsistencyProof:
    """The tree of `old_size` records is a prefix of the tree of `new_size` records."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _size(session: Session, tree_size: int | None) -> tuple[int, int | None]:
    """(size, checkpoint id): by default the latest checkpoint's size (proofs are against signed roots)."""
    if tree_size is None:
        cp = latest(session)
        if cp is None:
            raise Conflict("no audit checkpoint is signed yet; sign one, then ask for proofs")
        return cp.tree_size, cp.id
    last, _ = head(session)
    if not 0 <= tree_size <= last:
        raise Invalid(f"tree size must be between 0 and {last}")
    cp_id = session.exec(
        select(Checkpoint.id).where(Checkpoint.tree_size == tree_size).order_by(col(Checkpoint.id)).limit(1)
    ).first()
    return tree_size, cp_id


def inclusion_proof(session: Session, seq: int, tree_size: int | None = None) -> InclusionProof:
    """Proof that record `seq` is in the tree of `tree_size` records (default: the latest checkpoint)."""
    size, cp_id = _size(session, tree_size)
    if not 1 <= seq <= size:
        raise NotFound(f"record {seq} is not covered by a tree of size {size}; sign a newer checkpoint")
    rec = session.get(AuditRecord, seq)
    if rec is None:
        raise NotFound(f"no audit record {seq}")
    view = TreeView(session, size)
    path = merkle.inclusion_path(seq - 1, size, view.mth)
    return InclusionProof(seq, size, rec.leaf_hash, view.root().hex(), [p.hex() for p in path], cp_id)


def consistency_proof(session: Session, old_size: int, new_size: int) -> ConsistencyProof:
    """Proof that the tree of `old_size` records is a prefix of the tree of `new_size` records."""
    last, _ = head(session)
    if not 0 <= old_size <= new_size <= last:
        raise Invalid(f"need 0 <= old_size <= new_size <= {last}")
    view = TreeView(session, new_size)
    path = merkle.consistency_path(old_size, new_size, view.mth)
    old_root = TreeView(session, old_size).root()
    return ConsistencyProof(old_size, new_size, old_root.hex(), view.root().hex(), [p.hex() for p in path])
