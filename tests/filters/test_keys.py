"""Key files: permissions, refusals, key ids, trust stores."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from filters.errors import KeyFileError
from filters.keys import TrustStore, generate_key_pair, key_id, load_private_key, load_public_key


def test_key_pair_files(tmp_path: Path) -> None:
    private_path, public_path = generate_key_pair(tmp_path / "lab")
    assert private_path.name == "lab.key" and public_path.name == "lab.pub"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert key_id(load_private_key(private_path).public_key()) == key_id(load_public_key(public_path))
    assert len(key_id(load_public_key(public_path))) == 32


def test_never_overwrites(tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "lab")
    before = (tmp_path / "lab.key").read_bytes()
    with pytest.raises(KeyFileError, match="lab.key: already exists"):
        generate_key_pair(tmp_path / "lab")
    assert (tmp_path / "lab.key").read_bytes() == before


def test_bad_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello")
    with pytest.raises(KeyFileError, match="garbage.pub: not a PEM public key"):
        load_public_key(garbage)
    with pytest.raises(KeyFileError, match="garbage.pub: not a PEM private key"):
        load_private_key(garbage)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="rsa.pub: not an Ed25519 public key"):
        load_public_key(rsa_pub)
    with pytest.raises(KeyFileError, match="missing.key: cannot read"):
        load_private_key(tmp_path / "missing.key")


def test_trust_store_from_folder_skips_broken_files(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    generate_key_pair(trust / "a")
    generate_key_pair(trust / "b")
    (trust / "broken.pub").write_text("not a key")
    store = TrustStore.from_paths([trust])
    assert len(store.key_ids()) == 2
    assert [str(p) for p in store.problems] == [f"{trust / 'broken.pub'}: not a PEM public key"]
    with pytest.raises(KeyFileError, match="no such trust key file or folder"):
        TrustStore.from_paths([tmp_path / "nowhere"])
    with pytest.raises(KeyFileError, match="broken.pub: not a PEM public key"):
        TrustStore.from_paths([trust / "broken.pub"])


def test_the_wrong_half_of_a_key_pair_is_named(tmp_path: Path) -> None:
    """A private key given where the public key belongs (``--trust lab.key``) says so, and names the
    .pub that was meant; the reverse too. Before: "not a PEM public key", which sends people to look
    for a damaged file."""
    private_path, public_path = generate_key_pair(tmp_path / "lab")
    with pytest.raises(KeyFileError) as raised:
        load_public_key(private_path)
    assert str(raised.value) == (
        f"{private_path}: a private key, not an Ed25519 public key: give its public key (lab.pub) "
        "instead, and keep this file offline"
    )
    with pytest.raises(KeyFileError) as raised:
        TrustStore.from_paths([private_path])
    assert "a private key, not an Ed25519 public key" in str(raised.value)
    with pytest.raises(KeyFileError) as raised:
        load_private_key(public_path)
    assert (
        str(raised.value)
        == f"{public_path}: a public key, not an Ed25519 private key: give its private key (lab.key)"
    )
    # a private key saved as *.pub in a trust folder: skipped with the same reason
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "mixed-up.pub").write_bytes(private_path.read_bytes())
    (problem,) = TrustStore.from_paths([trust]).problems
    assert str(problem) == (
        f"{trust / 'mixed-up.pub'}: a private key, not an Ed25519 public key: give its public key "
        "instead, and keep this file offline"
    )
