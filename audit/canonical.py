"""Canonical bytes of a record and of an export line: what is hashed, so an offline verifier can recompute it.

Canonical JSON = `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)` encoded as UTF-8: sorted keys, no whitespace, non-ASCII kept as UTF-8. Times are
UTC ISO 8601 with microseconds and a `Z` (`2025-01-31T08:00:00.000123Z`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.clock import as_utc
from gmcrypto import sm3

FORMAT_VERSION = 1
GENESIS = bytes(32)  # the chain value "before" record 1

# Every field of a record that is hashed, in the order the docs list them (the bytes sort them).
RECORD_FIELDS = (
    "v",
    "seq",
    "time",
    "principal",
    "org",
    "role",
    "action",
    "resource_type",
    "resource_id",
    "dataset",
    "dataset_version",
    "allowed",
    "reasons",
    "policy_version",
    "scenario",
    "experiment",
    "purpose",
    "request_id",
    "client_addr",
    "outcome",
)


def dumps(obj: Any) -> str:
    """Canonical JSON text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_time(value: datetime) -> str:
    """UTC, microseconds, `Z`: the only time format inside hashed bytes."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of format_time."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def record_object(row: Any) -> dict[str, Any]:
    """The hashed view of a stored record (an AuditRecord or a row with the same attributes)."""
    return {
        "v": FORMAT_VERSION,
        "seq": row.seq,
        "time": format_time(row.time),
        "principal": row.principal,
        "org": row.org,
        "role": row.role,
        "action": row.action,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "dataset": row.dataset,
        "dataset_version": row.dataset_version,
        "allowed": bool(row.allowed),
        "reasons": json.loads(row.reasons),
        "policy_version": row.policy_version,
        "scenario": row.scenario,
        "experiment": row.experiment,
        "purpose": row.purpose,
        "request_id": row.request_id,
        "client_addr": row.client_addr,
        "outcome": json.loads(row.outcome),
    }


def record_bytes(row: Any) -> bytes:
    """Canonical bytes of a stored record: the Merkle leaf data."""
    return dumps(record_object(row)).encode()


_STR = json.encoder.encode_basestring  # what dumps(…, ensure_ascii=False) writes for a str (C)


def _str(value: str | None) -> str:
    return "null" if value is None else _STR(value)


def record_head(fields: Mapping[str, Any], reasons_json: str, outcome_json: str) -> str:
    """Canonical text of a record up to (without) its `,"seq":…` — the same text `dumps(record_object)`
    starts with, built directly: "seq", "time" and "v" sort last, so everything else is known before a
    record gets its place in the log. `reasons_json` / `outcome_json` must already be canonical JSON."""
    version = fields["dataset_version"]
    return "".join(
        (
            '{"action":',
            _str(fields["action"]),
            ',"allowed":',
            "true" if fields["allowed"] else "false",
            ',"client_addr":',
            _str(fields["client_addr"]),
            ',"dataset":',
            _str(fields["dataset"]),
            ',"dataset_version":',
            "null" if version is None else str(int(version)),
            ',"experiment":',
            _str(fields["experiment"]),
            ',"org":',
            _str(fields["org"]),
            ',"outcome":',
            outcome_json,
            ',"policy_version":',
            _str(fields["policy_version"]),
            ',"principal":',
            _str(fields["principal"]),
            ',"purpose":',
            _str(fields["purpose"]),
            ',"reasons":',
            reasons_json,
            ',"request_id":',
            _str(fields["request_id"]),
            ',"resource_id":',
            _str(fields["resource_id"]),
            ',"resource_type":',
            _str(fields["resource_type"]),
            ',"role":',
            _str(fields["role"]),
            ',"scenario":',
            _str(fields["scenario"]),
        )
    )


def record_tail(seq: int, time_text: str) -> str:
    """The rest of a record's canonical text after record_head: seq, time (format_time) and version."""
    return f',"seq":{seq},"time":"{time_text}","v":{FORMAT_VERSION}}}'


def chain_next(prev_chain: bytes, leaf: bytes) -> bytes:
    """chain_n = SM3(chain_{n-1} || leaf_n); chain_0 = 32 zero bytes."""
    return sm3.digest(prev_chain + leaf)


# An export line is canonical JSON too, with fixed-width hex first so a verifier can slice, not parse:
#   {"chain":"<64 hex>","leaf":"<64 hex>","record":<canonical record>}\n
LINE_HEAD = b'{"chain":"'
LINE_MID = b'","leaf":"'
LINE_REC = b'","record":'
CHAIN_AT = len(LINE_HEAD)  # 10
LEAF_AT = CHAIN_AT + 64 + len(LINE_MID)  # 84
RECORD_AT = LEAF_AT + 64 + len(LINE_REC)  # 159


def export_line(record: bytes, leaf_hex: str, chain_hex: str) -> bytes:
    """One JSONL line of an export (with its newline)."""
    return b"".join((LINE_HEAD, chain_hex.encode(), LINE_MID, leaf_hex.encode(), LINE_REC, record, b"}\n"))
