"""What must hold after any crash and restart: nothing half-visible, no orphan files, a whole audit log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session, select

from catalog.models import Dataset, DatasetVersion
from gateway.db import make_engine
from sandbox.models import Export


@dataclass
class Snapshot:
    versions: dict[str, list[int]]  # dataset code -> committed version numbers
    current: dict[str, int | None]
    exports: set[str]  # committed package paths, relative to the data dir
    audit_seqs: list[int]


def snapshot(db_url: str) -> Snapshot:
    engine = make_engine(db_url, pool_size=1)
    try:
        with Session(engine) as s:
            versions: dict[str, list[int]] = {}
            current: dict[str, int | None] = {}
            for ds in s.exec(select(Dataset)).all():
                current[ds.code] = ds.current_version
                versions[ds.code] = sorted(
                    v.number for v in s.exec(select(DatasetVersion).where(DatasetVersion.dataset_id == ds.id)).all()
                )
            exports = {e.path for e in s.exec(select(Export)).all() if e.path}
            seqs = [r[0] for r in s.connection().execute(text("SELECT seq FROM audit_record ORDER BY seq"))]
        return Snapshot(versions, current, exports, seqs)
    finally:
        engine.dispose()


def entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def check_files(data_dir: Path, snap: Snapshot) -> None:
    """Every file on disk belongs to a committed row; every committed row has its files."""
    for scratch in ("staging", "uploads", "tmp"):
        assert entries(data_dir / scratch) == [], f"{scratch}/ keeps files of an interrupted request"
    root = data_dir / "datasets"
    for code in entries(root):
        on_disk = entries(root / code)
        assert on_disk == sorted(f"v{n}" for n in snap.versions.get(code, [])), f"{code}: {on_disk}"
    for code, numbers in snap.versions.items():
        for n in numbers:
            vdir = root / code / f"v{n}"
            assert any((vdir / f).is_file() for f in ("data.parquet", "data.parquet.sm4")), f"{vdir} is empty"
        assert snap.current[code] == (max(numbers) if numbers else None), f"{code}: current is not the newest"
    packages = {f"exports/{name}" for name in entries(data_dir / "exports")}
    assert packages == snap.exports, "export packages on disk differ from the committed exports"


def check_audit(snap: Snapshot) -> None:
    """The log runs 1..N without a gap."""
    assert snap.audit_seqs == list(range(1, len(snap.audit_seqs) + 1))


def export_and_verify(env: dict[str, str], out: Path) -> str:
    """`pdg audit export` then `pdg audit verify` against the gateway's public key, as an auditor would."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.settings import get_settings

    runner = CliRunner()
    get_settings.cache_clear()
    try:
        key = out.with_suffix(".pem")
        r = runner.invoke(app, ["audit", "public-key", "--out", str(key)], env=env)
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["audit", "export", "--out", str(out)], env=env)
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["audit", "verify", str(out), "--public-key", str(key)], env=env)
        assert r.exit_code == 0, r.output
        return r.output
    finally:
        get_settings.cache_clear()
