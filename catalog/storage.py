"""Where versions live on disk, and how they get there atomically.

    <data>/datasets/<code>/v<n>/data.parquet        plaintext (grades below G3)
    <data>/datasets/<code>/v<n>/data.parquet.sm4    SM4-GCM at rest (G3 and above), data key wrapped by the KEK
    <data>/datasets/<code>/v<n>/open.parquet        the masked open edition, when the open type allows one
    <data>/staging/<uuid>/                          work in progress; never read by anyone

A version is prepared in a staging directory, every file fsynced, then the directory is renamed into
place (atomic on one filesystem) and the parent fsynced; only then is the version row committed. A crash
before the commit leaves at most an orphan directory, which `sweep()` removes at start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.errors import Invalid

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{2,62}[A-Za-z0-9]$")
RAW_PLAIN = "data.parquet"
RAW_SEALED = "data.parquet.sm4"
OPEN = "open.parquet"


def check_code(code: str) -> str:
    """A dataset code safe to use as a directory name (letters, digits, '-'), e.g. 510100-RK-0001."""
    if not CODE_RE.fullmatch(code):
        raise Invalid(
            "dataset code: 4-64 letters, digits and '-', starting and ending with a letter or digit "
            "(e.g. 510100-RK-0001)"
        )
    return code


def datasets_root(data_dir: Path) -> Path:
    return data_dir / "datasets"


def version_dir(data_dir: Path, code: str, number: int) -> Path:
    return datasets_root(data_dir) / check_code(code) / f"v{int(number)}"


def raw_path(data_dir: Path, code: str, number: int, *, encrypted: bool) -> Path:
    return version_dir(data_dir, code, number) / (RAW_SEALED if encrypted else RAW_PLAIN)


def open_path(data_dir: Path, code: str, number: int) -> Path:
    return version_dir(data_dir, code, number) / OPEN


@contextlib.contextmanager
def staging(data_dir: Path) -> Iterator[Path]:
    """A private work directory, removed on exit unless it was committed (renamed away)."""
    root = data_dir / "staging"
    root.mkdir(parents=True, exist_ok=True)
    path = root / uuid.uuid4().hex
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def commit_dir(staged: Path, final: Path) -> None:
    """Make `staged` durable and move it to `final` in one rename. `final` must not exist."""
    for child in staged.iterdir():
        fsync_file(child)
    fsync_dir(staged)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(final)
    os.rename(staged, final)
    fsync_dir(final.parent)


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path.parent)


def sweep(data_dir: Path, committed: Iterable[tuple[str, int]]) -> list[Path]:
    """Remove staging leftovers and version directories with no committed row; returns what went."""
    removed: list[Path] = []
    keep = {(c, int(n)) for c, n in committed}
    staging_root = data_dir / "staging"
    if staging_root.exists():
        for child in staging_root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    root = datasets_root(data_dir)
    if root.exists():
        for ds in root.iterdir():
            for vdir in ds.iterdir() if ds.is_dir() else ():
                m = re.fullmatch(r"v(\d+)", vdir.name)
                if m and (ds.name, int(m.group(1))) not in keep:
                    shutil.rmtree(vdir, ignore_errors=True)
                    removed.append(vdir)
    return removed
