"""Loading a keyring from a read-only directory laid out as Kubernetes mounts a Secret: nothing is written.

Root ignores directory permissions, so the check does not rely on chmod alone: the loader runs in a
child interpreter whose audit hook (PEP 578) refuses every write-like event under the keys directory —
an open for writing or creating, mkdir, rename, unlink, chmod. A loader that wrote anything would fail.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gmcrypto import aead
from gmcrypto.errors import InvalidKey
from gmcrypto.keys import Keyring

_CHILD = r"""
import json, os, sys
from pathlib import Path

root = os.path.realpath(sys.argv[1])
mode = sys.argv[2]
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path))
    except TypeError:
        return False
    return p == root or p.startswith(root + os.sep)


def hook(event, args):
    if event == "open" and args[0] is not None and not isinstance(args[0], int) and _inside(args[0]):
        flags, m = args[2], args[1] or ""
        if flags & _WRITE or any(c in m for c in "wax+"):
            raise PermissionError(f"write attempted: {event} {args[0]}")
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.symlink", "os.link"):
        if any(_inside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
            raise PermissionError(f"write attempted: {event} {args[0]}")


sys.addaudithook(hook)
from gmcrypto.keys import Keyring

try:
    if mode == "load":
        ring = Keyring.load(Path(sys.argv[1]))
    elif mode == "load_or_create":
        ring = Keyring.load_or_create(Path(sys.argv[1]))
    else:  # rotate: the control that shows the hook catches a write
        ring = Keyring.load(Path(sys.argv[1]))
        ring.rotate_kek()
except PermissionError as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
sig_id, sig = ring.sign(b"checkpoint")
print(json.dumps({"signing": ring.signing_key.key_id, "kek": ring.kek_id,
                  "publics": sorted(ring.public_keys), "sig": [sig_id, sig.hex()]}))
"""


def _secret_mount(src: Path, dest: Path) -> Path:
    """Lay `src`'s files out as kubelet mounts a Secret: ..<ts>/files, ..data -> ..<ts>, name -> ..data/name."""
    ts = dest / "..2026_01_01_00_00_00.000000001"
    ts.mkdir(parents=True)
    for f in src.iterdir():
        if not f.name.startswith("."):
            shutil.copyfile(f, ts / f.name)
            (ts / f.name).chmod(0o400)
            (dest / f.name).symlink_to(Path("..data") / f.name)
    (dest / "..data").symlink_to(ts.name)
    ts.chmod(0o500)
    dest.chmod(0o500)
    return dest


def _child(keys: Path, mode: str) -> dict:
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(keys), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def rotated(tmp_path):
    """A keyring that rotated both keys once: retired public key and KEK must survive the mount."""
    src = tmp_path / "src"
    ring = Keyring.load_or_create(src)
    old_sig = ring.sign(b"old checkpoint")
    old_blob = ring.wrap_data_key(bytes(range(16)))
    ring.rotate_signing_key()
    ring.rotate_kek()
    return src, ring, old_sig, old_blob


def test_load_from_a_read_only_secret_mount_writes_nothing_and_keeps_retired_keys(tmp_path, rotated):
    src, ring, (old_id, old_sig), old_blob = rotated
    mount = _secret_mount(src, tmp_path / "mount")
    before = sorted(p.name for p in mount.iterdir())
    for mode in ("load", "load_or_create"):
        got = _child(mount, mode)
        assert "error" not in got, got
        assert got["signing"] == ring.signing_key.key_id and got["kek"] == ring.kek_id
        assert set(got["publics"]) == set(ring.public_keys) and old_id in got["publics"]
        sig_id, sig = got["sig"]
        ring.verify(sig_id, bytes.fromhex(sig), b"checkpoint")  # the mounted key is the real one
    assert sorted(p.name for p in mount.iterdir()) == before  # no .lock, no temp file
    loaded = Keyring.load(mount)
    loaded.verify(old_id, old_sig, b"old checkpoint")
    assert loaded.unwrap_data_key(old_blob) == bytes(range(16))  # retired KEK still unwraps


def test_the_guard_catches_a_write_so_the_check_above_can_fail(tmp_path, rotated):
    mount = _secret_mount(rotated[0], tmp_path / "mount")
    assert "write attempted" in _child(mount, "rotate")["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "write attempted" in _child(empty, "load_or_create")["error"]  # creating must write


def test_load_never_creates_and_says_what_is_missing(tmp_path):
    with pytest.raises(InvalidKey, match=r"holds no keyring\.json"):
        Keyring.load(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    d = tmp_path / "partial"
    d.mkdir()
    (d / "keyring.json").write_text(json.dumps({"signing": "ab" * 16, "kek": "cd" * 16}))
    with pytest.raises(InvalidKey, match="unreadable or incomplete"):
        Keyring.load(d)
    assert sorted(p.name for p in d.iterdir()) == ["keyring.json"]


def test_a_kek_copied_without_its_index_entry_is_still_kept(tmp_path):
    # Operators add a retired KEK to the Secret as one more kek-<id>.b64 file; it must be picked up.
    ring = Keyring.load_or_create(tmp_path / "k")
    extra = aead.new_data_key()
    blob = Keyring.from_pem(ring.signing_key.to_pem(), extra).wrap_data_key(bytes(16))
    from gmcrypto.keys import kek_id

    (tmp_path / "k" / f"kek-{kek_id(extra)}.b64").write_bytes(base64.b64encode(extra) + b"\n")
    assert Keyring.load(tmp_path / "k").unwrap_data_key(blob) == bytes(16)
