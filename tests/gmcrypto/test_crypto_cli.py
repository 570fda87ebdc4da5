"""`pdg keys` and `pdg package` sub-apps: the enterprise's offline workflow and its failure exits."""

import io
import os
import stat
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from gateway.commands import keys as keys_cmd
from gateway.commands import package as package_cmd
from gmcrypto.keys import Keyring
from gmcrypto.package import seal_package
from gmcrypto.sm2 import PrivateKey

runner = CliRunner()


def _setup(tmp_path, data=b"result,rows\n1,2\n" * 100):
    res = runner.invoke(keys_cmd.app, ["generate", "--out", str(tmp_path / "ent"), "--name", "me"])
    assert res.exit_code == 0, res.output
    me = PrivateKey.from_pem((tmp_path / "ent" / "me.pem").read_bytes())
    gateway = Keyring.generate()
    (tmp_path / "gw.pub.pem").write_bytes(gateway.public_key.to_pem())
    with (tmp_path / "r.pdgpkg").open("wb") as f:
        seal_package(io.BytesIO(data), f, recipient=me.public_key(), signer=gateway,
                     references={"query": "q-1"}, chunk_size=256)  # fmt: skip
    return gateway, data


def test_keys_generate_writes_an_openssl_readable_pair_with_a_private_mode(tmp_path):
    res = runner.invoke(keys_cmd.app, ["generate", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    priv, pub = tmp_path / "sm2.pem", tmp_path / "sm2.pub.pem"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    key = PrivateKey.from_pem(priv.read_bytes())
    assert key.key_id in res.output
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(priv), "-pubout"], capture_output=True, check=True
    )
    assert derived.stdout == pub.read_bytes()
    again = runner.invoke(keys_cmd.app, ["generate", "--out", str(tmp_path)])
    assert again.exit_code == 1 and "exists" in again.output
    assert PrivateKey.from_pem(priv.read_bytes()).key_id == key.key_id  # not overwritten


def test_verify_and_decrypt(tmp_path):
    _, data = _setup(tmp_path)
    res = runner.invoke(
        package_cmd.app, ["verify", str(tmp_path / "r.pdgpkg"), "--gateway-key", str(tmp_path / "gw.pub.pem")]
    )
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and "q-1" in res.output
    out = tmp_path / "result.csv"
    res = runner.invoke(package_cmd.app, [
        "decrypt", str(tmp_path / "r.pdgpkg"), "--key", str(tmp_path / "ent" / "me.pem"),
        "--gateway-key", str(tmp_path / "gw.pub.pem"), "--out", str(out),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_tampered_package_exits_non_zero_and_leaves_no_output(tmp_path):
    _setup(tmp_path)
    pkg = tmp_path / "r.pdgpkg"
    blob = bytearray(pkg.read_bytes())
    blob[8 + 300] ^= 0x01  # inside the second chunk: the first chunk would already be authenticated
    pkg.write_bytes(bytes(blob))
    res = runner.invoke(package_cmd.app, ["verify", str(pkg), "--gateway-key", str(tmp_path / "gw.pub.pem")])
    assert res.exit_code == 1 and "error:" in res.output
    out = tmp_path / "result.csv"
    res = runner.invoke(package_cmd.app, [
        "decrypt", str(pkg), "--key", str(tmp_path / "ent" / "me.pem"),
        "--gateway-key", str(tmp_path / "gw.pub.pem"), "--out", str(out),
    ])  # fmt: skip
    assert res.exit_code == 1 and "nothing was written" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ent", "gw.pub.pem", "r.pdgpkg"]


def test_wrong_gateway_key_wrong_private_key_and_foreign_curve_fail_clearly(tmp_path):
    _setup(tmp_path)
    other = tmp_path / "other.pub.pem"
    other.write_bytes(Keyring.generate().public_key.to_pem())
    res = runner.invoke(package_cmd.app, ["verify", str(tmp_path / "r.pdgpkg"), "--gateway-key", str(other)])
    assert res.exit_code == 1 and "not trusted" in res.output
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(PrivateKey.generate().to_pem())
    res = runner.invoke(package_cmd.app, [
        "decrypt", str(tmp_path / "r.pdgpkg"), "--key", str(stranger),
        "--gateway-key", str(tmp_path / "gw.pub.pem"), "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    assert res.exit_code == 1 and "is for key" in res.output and not (tmp_path / "o").exists()
    p256 = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = serialization.PrivateFormat.PKCS8
    (tmp_path / "p256.pem").write_bytes(
        p256.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    )
    (tmp_path / "p256.pub.pem").write_bytes(p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    res = runner.invoke(
        package_cmd.app,
        ["verify", str(tmp_path / "r.pdgpkg"), "--gateway-key", str(tmp_path / "p256.pub.pem")],
    )
    assert res.exit_code == 1 and "not an SM2 public key" in res.output
    res = runner.invoke(package_cmd.app, [
        "decrypt", str(tmp_path / "r.pdgpkg"), "--key", str(tmp_path / "p256.pem"),
        "--gateway-key", str(tmp_path / "gw.pub.pem"), "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    assert res.exit_code == 1 and "not an SM2 private key" in res.output


def test_missing_files_and_missing_gateway_key(tmp_path):
    _setup(tmp_path)
    res = runner.invoke(
        package_cmd.app, ["verify", str(tmp_path / "nope"), "--gateway-key", str(tmp_path / "gw.pub.pem")]
    )
    assert res.exit_code == 1 and "cannot read package" in res.output
    res = runner.invoke(package_cmd.app, ["verify", str(tmp_path / "r.pdgpkg")])
    assert res.exit_code == 1 and "--gateway-key" in res.output
    res = runner.invoke(
        package_cmd.app, ["verify", str(tmp_path / "r.pdgpkg"), "--gateway-key", str(tmp_path / "nope.pem")]
    )
    assert res.exit_code == 1 and "cannot read gateway key" in res.output


def test_password_protected_private_key(tmp_path, monkeypatch):
    _setup(tmp_path)
    me = PrivateKey.from_pem((tmp_path / "ent" / "me.pem").read_bytes())
    (tmp_path / "ent" / "me.enc.pem").write_bytes(me.to_pem(b"pw"))
    monkeypatch.setenv("PDG_KEY_PASSWORD", "pw")
    args = ["decrypt", str(tmp_path / "r.pdgpkg"), "--key", str(tmp_path / "ent" / "me.enc.pem"),
            "--gateway-key", str(tmp_path / "gw.pub.pem"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert runner.invoke(package_cmd.app, [*args, "--password-env", "PDG_KEY_PASSWORD"]).exit_code == 0
    os.unlink(tmp_path / "o")
    res = runner.invoke(package_cmd.app, args)
    assert res.exit_code == 1 and "password" in res.output
