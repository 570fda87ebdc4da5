"""Export and offline verification: changed bytes, deletion, reordering, insertion are caught and named."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from audit.ddl import drop_guards
from audit.export import export
from audit.verify import verify_export
from common.errors import Conflict

from .conftest import BOB, append, checkpoint


@pytest.fixture(autouse=True, params=["one chunk", "chunks of about one line"])
def chunking(request, monkeypatch) -> None:
    """Every test here runs with the whole records.jsonl as one bulk-checked chunk, and cut into chunks
    of 400 bytes (lines are ~500), so stitching, every chunk boundary and the sequential fallback from
    each are covered."""
    if request.param != "one chunk":
        monkeypatch.setattr("audit.verify.CHUNK_BYTES", 400)


@pytest.fixture
def exported(audit_engine, keyring, tmp_path: Path) -> Path:
    append(audit_engine, 12)
    checkpoint(audit_engine, keyring)
    append(audit_engine, 9, actor=BOB, outcome={"rows": 1, "grade": "G3"})
    checkpoint(audit_engine, keyring)
    out = tmp_path / "export"
    with Session(audit_engine) as s:
        summary = export(s, out)
    assert (summary.first_seq, summary.last_seq, summary.checkpoints) == (1, 21, 2)
    return out


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def test_a_clean_export_verifies_as_directory_and_zip(audit_engine, keyring, exported: Path, tmp_path) -> None:
    result = verify_export(exported, keyring.public_keys)
    assert result.ok and result.records == 21 and result.checkpoints == 2
    with Session(audit_engine) as s:
        for first, last in ((5, 12), (13, 21), (2, 20)):
            out = tmp_path / f"part-{first}-{last}.zip"
            export(s, out, first_seq=first, last_seq=last)
            r = verify_export(out, [keyring.public_key])
            assert r.ok and r.records == last - first + 1, r


def test_another_key_does_not_verify(exported: Path) -> None:
    from gmcrypto.keys import Keyring

    result = verify_export(exported, Keyring.generate().public_keys)
    assert not result.ok and result.checkpoint_id == 1 and "not among the given public keys" in result.problem


def test_every_changed_record_byte_is_caught_and_named(exported: Path, keyring, tmp_path) -> None:
    path = exported / "records.jsonl"
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    # Every byte of the first and the last line, plus a random sample across the file.
    starts = [0, sum(map(len, lines[:20]))]
    positions = {p for s, n in zip(starts, (0, 20)) for p in range(s, s + len(lines[n]))}
    positions |= set(random.Random(7).sample(range(len(data)), 80))
    for pos in sorted(positions):
        tampered = bytearray(data)
        tampered[pos] ^= 0x01 if data[pos] != ord("\n") else 0x2E
        path.write_bytes(bytes(tampered))
        result = verify_export(exported, keyring.public_keys)
        assert not result.ok, pos
        assert result.first_bad_seq == _line_of(data, pos), (pos, result)
    path.write_bytes(data)
    assert verify_export(exported, keyring.public_keys).ok


@pytest.mark.parametrize("member", ["checkpoints.json", "manifest.json"])
def test_every_changed_checkpoint_or_manifest_byte_is_caught(exported: Path, keyring, member) -> None:
    path = exported / member
    data = path.read_bytes()
    step = 3 if member == "checkpoints.json" else 1
    for pos in range(0, len(data), step):
        tampered = bytearray(data)
        tampered[pos] ^= 0x01
        path.write_bytes(bytes(tampered))
        assert not verify_export(exported, keyring.public_keys).ok, (member, pos, data[pos - 20 : pos + 20])
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda ls: ls[:6] + ls[7:], 7),  # delete record 7
        (lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]], 5),  # swap 5 and 6
        (lambda ls: [*ls[:8], ls[3], *ls[8:]], 9),  # insert a copy of 4 before 9
        (lambda ls: ls[:-1], 21),  # drop the last record
        (lambda ls: [*ls, ls[0]], 22),  # append a stray record
    ],
)
def test_deletion_reordering_and_insertion_are_named(exported: Path, keyring, edit, named) -> None:
    path = exported / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))
    result = verify_export(exported, keyring.public_keys)
    assert not result.ok and result.first_bad_seq == named, result


def test_a_consistent_rewrite_is_caught_by_the_signed_root(exported: Path, keyring) -> None:
    """Rewrite record 15 and recompute every leaf and chain hash after it: only the signature can tell."""
    from audit import canonical
    from gmcrypto import sm3

    path = exported / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    prev = bytes.fromhex(lines[13][10:74].decode())
    out = lines[:14]
    for line in lines[14:]:
        rec = line[canonical.RECORD_AT : -2].replace(b"ent:bob", b"ent:eve")
        leaf = sm3.digest(b"\x00" + rec)
        prev = sm3.digest(prev + leaf)
        out.append(canonical.export_line(rec, leaf.hex(), prev.hex()))
    path.write_bytes(b"".join(out))
    result = verify_export(exported, keyring.public_keys)
    assert not result.ok and result.checkpoint_id == 2 and result.first_bad_seq == 13, result


@pytest.mark.parametrize(
    ("stmt", "seq"),
    [
        ("UPDATE audit_record SET principal = 'ent:alicf' WHERE seq = 4", 4),
        ('UPDATE audit_record SET outcome = \'{"rows":1,"grade":"G2"}\' WHERE seq = 17', 17),
        ("UPDATE audit_record SET allowed = false WHERE seq = 2", 2),
        (
            # always a change: a hash that already starts with 'f' gets '0' (replacing 'f' by 'f' changed nothing)
            "UPDATE audit_record SET leaf_hash = CASE WHEN substr(leaf_hash, 1, 1) = 'f' THEN '0' ELSE 'f' END "
            "|| substr(leaf_hash, 2) WHERE seq = 9",
            9,
        ),
        (
            "UPDATE audit_record SET chain_hash = CASE WHEN substr(chain_hash, 1, 1) = 'f' THEN '0' ELSE 'f' END "
            "|| substr(chain_hash, 2) WHERE seq = 11",
            11,
        ),
        ("DELETE FROM audit_record WHERE seq = 15", 15),
    ],
)
def test_changes_made_in_the_database_are_named(audit_engine, keyring, tmp_path, stmt, seq) -> None:
    append(audit_engine, 20)
    checkpoint(audit_engine, keyring)
    with audit_engine.begin() as conn:
        drop_guards(conn)
        conn.exec_driver_sql(stmt)
    with Session(audit_engine) as s:
        export(s, tmp_path / "x")
    result = verify_export(tmp_path / "x", keyring.public_keys)
    assert not result.ok and result.first_bad_seq == seq, result


def test_changed_checkpoint_in_the_database_is_caught(audit_engine, keyring, tmp_path) -> None:
    append(audit_engine, 20)
    checkpoint(audit_engine, keyring)
    with audit_engine.begin() as conn:
        drop_guards(conn)
        conn.execute(text("UPDATE audit_checkpoint SET root_hash = 'ab' || substr(root_hash, 3)"))
    with Session(audit_engine) as s:
        export(s, tmp_path / "x")
    result = verify_export(tmp_path / "x", keyring.public_keys)
    assert not result.ok and result.checkpoint_id == 1 and "signature" in result.problem


def test_export_needs_a_checkpoint_over_the_range(audit_engine, keyring, tmp_path) -> None:
    append(audit_engine, 3)
    with Session(audit_engine) as s, pytest.raises(Conflict):
        export(s, tmp_path / "x")
    checkpoint(audit_engine, keyring)
    append(audit_engine, 3)
    with Session(audit_engine) as s, pytest.raises(Conflict):
        export(s, tmp_path / "y", last_seq=6)


def test_missing_members_and_junk_are_reported(exported: Path, keyring, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "checkpoints.json").unlink()
    assert "checkpoints.json" in verify_export(broken, keyring.public_keys).problem
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert not verify_export(junk, keyring.public_keys).ok


def test_the_bulk_check_accepts_a_clean_export(exported: Path) -> None:
    """The fast path must really be taken for honest exports (not silently fall back to the slow one)."""
    from audit import scan

    data = (exported / "records.jsonl").read_bytes()
    chunk = scan.scan(data, 0, (12, 21))
    assert chunk.ok and chunk.count == 21 and chunk.first_seq == 1 and set(chunk.marks) == {12, 21}


def test_a_spelling_only_the_sequential_check_accepts_still_verifies(exported: Path, keyring) -> None:
    """Uppercase hex is not lowercase canonical, but verification never rejected it: the bulk check
    declines it, the sequential checker accepts it, and so does the verdict."""
    path = exported / "records.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[7] = lines[7][:10] + lines[7][10:74].upper() + lines[7][74:]
    path.write_bytes(b"".join(lines))
    assert verify_export(exported, keyring.public_keys).ok


def test_parallel_workers_give_the_same_verdicts(exported: Path, keyring, tmp_path) -> None:
    clean = verify_export(exported, keyring.public_keys, workers=2, chunk_bytes=700)
    assert clean.ok and clean.records == 21
    path = exported / "records.jsonl"
    data = path.read_bytes()
    at = data.index(b"ent:bob")  # the first record by bob: record 13
    path.write_bytes(data[:at] + b"ent:eve" + data[at + 7 :])
    bad = verify_export(exported, keyring.public_keys, workers=2, chunk_bytes=700)
    assert not bad.ok and bad.first_bad_seq == 13 and "leaf hash" in bad.problem, bad
