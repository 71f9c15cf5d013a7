from __future__ import annotations

import datetime as dt
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.journal import cli as journal_cli
from agent.journal.sync import (
    FILTER_FOLDER,
    JOURNAL_FOLDER,
    TRUST_FOLDER,
    SyncToken,
    export_segments,
    import_filters_from_stick,
    unsynced_segments,
    verify_sync_token,
)
from agent.journal.sync_token import TOKEN_NAME, write_sync_token
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from station.importer import import_sources
from station.stick import prepare_stick
from tests.agent.journal.helpers import make_station, open_journal, run_cli, write_records

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def test_tokens_valid_forged_other_stick_expired_missing(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    station_public = home.signing_public_key()
    stick = tmp_path / "stick"
    stick.mkdir()
    assert verify_sync_token(stick, "AAAA-0001", station_public, NOW) == "no sync token"
    prepare_stick(home, stick, fs_uuid="AAAA-0001", valid_for=dt.timedelta(days=7), now=NOW)
    token = verify_sync_token(stick, "aaaa-0001", station_public, NOW)
    assert isinstance(token, SyncToken) and token.fs_uuid == "aaaa-0001"
    assert verify_sync_token(stick, "BBBB-0002", station_public, NOW) == (
        "token is for filesystem aaaa-0001, this stick is bbbb-0002"
    )
    later = NOW + dt.timedelta(days=8)
    assert str(verify_sync_token(stick, "AAAA-0001", station_public, later)).startswith(
        "sync token expired at"
    )
    # A token made with another key, claiming nothing else: not this kiosk's station.
    write_sync_token(stick, "AAAA-0001", Ed25519PrivateKey.generate(), NOW, dt.timedelta(days=7))
    assert "not by this kiosk's station" in str(verify_sync_token(stick, "AAAA-0001", station_public, NOW))


def test_altered_token_is_refused(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    prepare_stick(home, tmp_path, fs_uuid="AAAA-0001", now=NOW)
    envelope = cbor2.loads((tmp_path / TOKEN_NAME).read_bytes())
    payload = cbor2.loads(envelope["payload"])
    payload["fs_uuid"] = "bbbb-0002"  # re-bind to another stick without the station key
    envelope["payload"] = cbor2.dumps(payload, canonical=True)
    (tmp_path / TOKEN_NAME).write_bytes(cbor2.dumps(envelope, canonical=True))
    reason = verify_sync_token(tmp_path, "bbbb-0002", home.signing_public_key(), NOW)
    assert reason == "sync token signature does not verify (forged or altered)"
    (tmp_path / TOKEN_NAME).write_bytes(b"\xff garbage")
    assert str(verify_sync_token(tmp_path, "bbbb-0002", home.signing_public_key(), NOW)).startswith(
        "malformed sync token"
    )


def test_export_copies_unsynced_segments_once_and_station_imports_them(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    stick = tmp_path / "stick"
    journal = open_journal(tmp_path, home, max_segment_records=3)
    write_records(journal, 5)  # segment 0 closed (3 records), segment 1 open (2 records)
    first = export_segments(tmp_path / "journal", stick)
    assert [p.name for p in first] == ["segment-00000000.ftj", "segment-00000001.ftj"]
    assert first[0].parent.parent == stick / JOURNAL_FOLDER
    assert [p.name for p in unsynced_segments(tmp_path / "journal")] == ["segment-00000001.ftj"]
    write_records(journal, 1, start=5)
    second = export_segments(tmp_path / "journal", stick)
    assert [p.name for p in second] == ["segment-00000001.ftj"]  # grew: copied again
    assert export_segments(tmp_path / "journal", stick) == []
    journal.close()
    summary = import_sources(home, [stick])
    assert summary.records_new == 6


def test_journal_export_and_status_commands(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    (tmp_path / "stick").mkdir()
    status, out, _ = run_cli(
        journal_cli.register,
        ["journal", "export", str(tmp_path / "stick"), "--journal", str(tmp_path / "journal")],
    )
    assert status == 0 and out.endswith("1 segments copied\n")
    status, out, _ = run_cli(
        journal_cli.register, ["journal", "status", "--journal", str(tmp_path / "journal")]
    )
    assert status == 0 and "1 segments not yet synced" in out  # the last segment may still grow
    status, _, err = run_cli(
        journal_cli.register,
        ["journal", "export", str(tmp_path / "nowhere"), "--journal", str(tmp_path / "journal")],
    )
    assert status == 2 and err.count("\n") == 1 and "no such folder" in err


def make_filter(folder: Path, provider_key: Path, name: str) -> Path:
    builder = FilterBuilder(name=name)
    builder.add(DigestEntry("sha1", bytes(20), "known", "priority"))
    path = folder / f"{name}.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(provider_key))
    return path


def test_filters_and_station_signed_trust_keys_from_a_stick(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    provider_key, provider_pub = generate_key_pair(tmp_path / "provider")
    rogue_key, rogue_pub = generate_key_pair(tmp_path / "rogue")
    good = make_filter(tmp_path, provider_key, "good")
    stick = tmp_path / "stick"
    stick.mkdir()
    prepare_stick(home, stick, fs_uuid="AAAA-0001", filters=[good], trust_keys=[provider_pub])
    # A rogue key slipped onto the stick without a station signature, and its filter.
    (stick / TRUST_FOLDER / "rogue.pub").write_bytes(rogue_pub.read_bytes())
    (stick / FILTER_FOLDER / "rogue.ftf").write_bytes(make_filter(tmp_path, rogue_key, "rogue").read_bytes())
    kiosk_filters, kiosk_trust = tmp_path / "kiosk" / "filters", tmp_path / "kiosk" / "trust"
    result = import_filters_from_stick(stick, kiosk_filters, kiosk_trust, home.signing_public_key())
    assert [p.name for p in result.filters_added] == ["good.ftf"]
    assert len(result.trust_added) == 1
    assert len(result.refused) == 2
    assert any("rogue.pub.sig" in r for r in result.refused)
    assert any("rogue.ftf" in r and "not in the trust store" in r for r in result.refused)
    again = import_filters_from_stick(stick, kiosk_filters, kiosk_trust, home.signing_public_key())
    assert again.filters_added == [] and again.trust_added == []


def test_a_segment_cut_short_at_creation_never_stops_an_export(tmp_path: Path) -> None:
    """A power cut while a segment's header was written leaves a file of zeros; the journal sets it
    aside and goes on, and the export must carry every record all the same."""
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    (tmp_path / "journal" / "segment-00000001.ftj").write_bytes(bytes(40))
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 3, start=2)
    stick = tmp_path / "stick"
    copied = export_segments(tmp_path / "journal", stick)
    assert [p.name for p in copied] == [
        "segment-00000000.ftj",
        "segment-00000001.ftj",
        "segment-00000002.ftj",
    ]
    assert len({p.parent for p in copied}) == 1
    summary = import_sources(home, [stick])
    assert summary.records_new == 5
