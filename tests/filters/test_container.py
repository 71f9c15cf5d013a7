"""Every refusal of the filter loader, each with its one-line message, and fuzzing of the loader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters import container
from filters.builder import FilterBuilder
from filters.container import SIGNATURE_CONTEXT, load_filter, write_filter
from filters.errors import FilterRefused
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key

from .conftest import Provider


def refusal(path: Path, trust: TrustStore | None, **kwargs: Any) -> str:
    with pytest.raises(FilterRefused) as caught:
        load_filter(path, trust, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


def envelope_of(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = cbor2.loads(path.read_bytes())
    return loaded


def rewrite(path: Path, envelope: dict[str, Any]) -> None:
    path.write_bytes(cbor2.dumps(envelope, canonical=True))


def resign(path: Path, provider: Provider, payload: dict[str, Any]) -> None:
    envelope = envelope_of(path)
    envelope["payload"] = cbor2.dumps(payload, canonical=True)
    envelope["signature"] = provider.key.sign(SIGNATURE_CONTEXT + envelope["payload"])
    rewrite(path, envelope)


def test_round_trip(small_filter: tuple[Path, list[DigestEntry]], provider: Provider) -> None:
    path, entries = small_filter
    loaded = load_filter(path, provider.trust)
    assert loaded.metadata.name == "test filter"
    assert [(s.kind, s.count) for s in loaded.sets] == [("md5", 200), ("sha256", 50)]
    for entry in entries:
        assert [s.category for s in loaded.lookup_digest(entry.kind, entry.digest)] == [entry.category]


def test_truncated_at_many_offsets(small_filter: tuple[Path, list[DigestEntry]], provider: Provider) -> None:
    path, _ = small_filter
    data = path.read_bytes()
    for cut in [1, 10, 60, 200, len(data) // 2, len(data) - 1]:
        path.write_bytes(data[:cut])
        assert "malformed envelope" in refusal(path, provider.trust)


def test_empty_and_missing(tmp_path: Path, provider: Provider) -> None:
    (tmp_path / "empty.ftf").write_bytes(b"")
    assert "empty file" in refusal(tmp_path / "empty.ftf", provider.trust)
    assert "cannot read: No such file" in refusal(tmp_path / "none.ftf", provider.trust)
    assert "not a regular file (folder)" in refusal(tmp_path, provider.trust)


def test_oversized(
    small_filter: tuple[Path, list[DigestEntry]], provider: Provider, monkeypatch: Any
) -> None:
    path, _ = small_filter
    monkeypatch.setattr(container, "MAX_FILE_BYTES", 100)
    assert "oversized" in refusal(path, provider.trust)


def test_not_a_filter(tmp_path: Path, provider: Provider) -> None:
    path = tmp_path / "x.ftf"
    path.write_bytes(cbor2.dumps({"format": "something-else"}))
    assert "not a fieldtriage filter file" in refusal(path, provider.trust)
    path.write_bytes(b"%PDF-1.4 not cbor at all")
    assert "malformed envelope" in refusal(path, provider.trust)


def test_unsigned(small_filter: tuple[Path, list[DigestEntry]], provider: Provider) -> None:
    path, _ = small_filter
    envelope = envelope_of(path)
    envelope["signature"] = None
    rewrite(path, envelope)
    assert refusal(path, provider.trust).endswith(": unsigned")
    del envelope["signature"]
    rewrite(path, envelope)
    assert refusal(path, provider.trust).endswith(": unsigned")


def test_wrong_signature(small_filter: tuple[Path, list[DigestEntry]], provider: Provider) -> None:
    path, _ = small_filter
    envelope = envelope_of(path)
    payload = bytearray(envelope["payload"])
    payload[-3] ^= 1
    envelope["payload"] = bytes(payload)
    rewrite(path, envelope)
    assert "signature does not verify" in refusal(path, provider.trust)


def test_untrusted_signer(small_filter: tuple[Path, list[DigestEntry]], tmp_path: Path) -> None:
    path, _ = small_filter
    _, other_public = generate_key_pair(tmp_path / "other")
    assert "is not in the trust store" in refusal(path, TrustStore.from_paths([other_public]))


def test_signer_key_swapped(small_filter: tuple[Path, list[DigestEntry]], tmp_path: Path) -> None:
    """A forger who names a trusted key id but signs with another key is refused."""
    path, _ = small_filter
    other_private, _ = generate_key_pair(tmp_path / "forger")
    envelope = envelope_of(path)
    envelope["signature"] = load_private_key(other_private).sign(SIGNATURE_CONTEXT + envelope["payload"])
    rewrite(path, envelope)
    trusted = TrustStore.from_paths([tmp_path / "provider.pub"])
    assert "signature does not verify" in refusal(path, trusted)


def build_with_dates(tmp_path: Path, provider: Provider, **dates: int | None) -> Path:
    builder = FilterBuilder(name="dated", **dates)  # type: ignore[arg-type]
    builder.add(DigestEntry("md5", bytes(16), "known", "priority"))
    path = tmp_path / "dated.ftf"
    write_filter(path, builder.build_unsigned(), provider.key)
    return path


def test_expired_and_not_yet_valid(tmp_path: Path, provider: Provider) -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    stamp = int(now.timestamp())
    path = build_with_dates(tmp_path, provider, expires=stamp - 1)
    assert "expired at 2026-05-31T23:59:59Z" in refusal(path, provider.trust, now=now)
    path = build_with_dates(tmp_path, provider, not_before=stamp + 86400)
    assert "not valid before 2026-06-02" in refusal(path, provider.trust, now=now)
    path = build_with_dates(tmp_path, provider, not_before=stamp - 10, expires=stamp + 10)
    assert load_filter(path, provider.trust, now=now).metadata.name == "dated"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.update(format_version=4), "unsupported filter format version 4"),
        (lambda p: p.update(format_version=1), "format version 1 (an older sample digest): rebuild"),
        (lambda p: p.update(extra=1), "unknown field 'extra'"),
        (lambda p: p.pop("salt"), "missing field 'salt'"),
        (lambda p: p.update(salt=b"short"), "field 'salt' is not 32 bytes"),
        (lambda p: p.update(name=7), "field 'name' is not text"),
        (lambda p: p.update(sets=[]), "must list 1 to"),
        (lambda p: p["sets"][0].update(kind="crc32"), "set 0: field 'kind' has unknown value 'crc32'"),
        (lambda p: p["sets"][0].update(priority="urgent"), "field 'priority' has unknown value"),
        (lambda p: p["sets"][0].update(count=p["sets"][0]["count"] * 50), "geometry does not match"),
        (lambda p: p["sets"][0].update(array_length=1 << 31), "geometry does not match"),
        (lambda p: p["sets"][0].update(fingerprints=b"\x00" * 8), "field 'fingerprints' is not"),
        (lambda p: p["sets"][1].update(seed=-1), "field 'seed' is not an integer"),
        (lambda p: p["sets"][1].update(count=True), "field 'count' is not an integer"),
        (lambda p: p.update(created=None), "field 'created' is null"),
    ],
)
def test_payload_refusals(
    small_filter: tuple[Path, list[DigestEntry]], provider: Provider, mutate: Any, reason: str
) -> None:
    """Even a trusted signer's malformed payload is refused field by field."""
    path, _ = small_filter
    payload = cbor2.loads(envelope_of(path)["payload"])
    mutate(payload)
    resign(path, provider, payload)
    assert reason in refusal(path, provider.trust)


def test_inspect_without_trust_still_validates(small_filter: tuple[Path, list[DigestEntry]]) -> None:
    path, _ = small_filter
    assert load_filter(path, None).signer_key_id is not None


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_mutated_files_are_refused_cleanly(
    small_filter: tuple[Path, list[DigestEntry]], provider: Provider, data: st.DataObject
) -> None:
    path, _ = small_filter
    original = path.read_bytes()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    target = path.with_name("mutated.ftf")
    target.write_bytes(bytes(mutated))
    for trust in (provider.trust, None):
        try:
            load_filter(target, trust)
        except FilterRefused as err:
            assert str(err).startswith(f"{target}: ")
        else:
            assert bytes(mutated) == original or trust is None


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(payload=st.binary(max_size=400))
def test_random_payload_signed_by_trusted_key_is_refused_cleanly(
    small_filter: tuple[Path, list[DigestEntry]], provider: Provider, payload: bytes
) -> None:
    path, _ = small_filter
    envelope = envelope_of(path)
    envelope["payload"] = payload
    envelope["signature"] = provider.key.sign(SIGNATURE_CONTEXT + payload)
    target = path.with_name("random.ftf")
    target.write_bytes(cbor2.dumps(envelope, canonical=True))
    with pytest.raises(FilterRefused):
        load_filter(target, provider.trust)
