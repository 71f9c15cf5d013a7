"""Only enrolled kiosks: enrollment from the kiosk's own file, journals of unknown keys refused and
kept aside until their kiosk is enrolled, retirement from a date, kiosk names wherever a kiosk is
named."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.daemon.provision import ENROLLMENT_NAME, provision_kiosk
from agent.journal.records import scan_finished_record, scan_started_record
from agent.journal.sync import export_segments
from station import cli as station_cli
from station.home import StationHome
from station.importer import import_sources, kept_aside_segments
from station.kiosks import kiosk_label, read_enrollment
from station.store import Store, body_from_json
from tests.agent.journal.helpers import SetClock, make_station, open_journal, run_cli, write_records
from tests.station.test_station_cli import synthetic_report

NAME = "Phnom Penh CPU bay 2"
DAY = 86_400 * 10**9
JUNE_1 = 1_748_736_000 * 10**9  # 2025-06-01T00:00:00Z


def station(*argv: str) -> tuple[int, str, str]:
    return run_cli(station_cli.register, ["station", *argv])


def provisioned(root: Path) -> Path:
    """A kiosk's first boot: its key and enrollment.json (what the engineer takes to the station)."""
    provision_kiosk(root / "device.key")
    return root / ENROLLMENT_NAME


def add(home: StationHome, enrollment: Path, name: str = NAME, *more: str) -> tuple[int, str, str]:
    return station("kiosks", "add", str(enrollment), "--name", name, "--home", str(home.folder), *more)


def scans_journal(root: Path, home: StationHome, clock: SetClock | None = None) -> Path:
    with open_journal(root, home, enrolled=False, clock=clock or SetClock()) as journal:
        journal.append(
            scan_started_record("scan-1", {"vendor": "Synthetic", "serial": "S-1"}, ["f1"], "auto")
        )
        journal.append(scan_finished_record("scan-1", synthetic_report("/DCIM/a.jpg"), ["red"]))
    return root / "journal"


def records(home: StationHome) -> list[dict[str, object]]:
    store = Store.open(home.database_path)
    try:
        return [body_from_json(b) for (b,) in store.query("SELECT body FROM records ORDER BY segment, idx")]
    finally:
        store.close()


def test_a_journal_from_an_unknown_key_is_refused_kept_aside_then_imported_once_enrolled(
    tmp_path: Path,
) -> None:
    """The adversary's journal of the issue: a key nobody enrolled, sealed to the station's public
    key, made-up no-match scans. It used to import with exit 0 ("new kiosk, registered at its first
    import")."""
    home = make_station(tmp_path / "station")
    journal = scans_journal(tmp_path / "kiosk", home)
    kiosk_id = str(json.loads(provisioned(tmp_path / "kiosk").read_text())["kiosk_id"])
    status, out, _ = station("import", "--home", str(home.folder), str(journal))
    assert status == 1, out
    assert f"signed by kiosk key {kiosk_id}, which is not enrolled at this station" in out
    assert "registered at its first import" not in out and "0 records imported" in out
    [copy] = kept_aside_segments(home)[kiosk_id]
    assert copy.is_relative_to(home.folder) and copy.read_bytes() == (journal / copy.name).read_bytes()
    status, out, _ = station("report", "--home", str(home.folder), "--format", "json")
    document = json.loads(out)
    assert document["scans"] == [] and any(kiosk_id in f["message"] for f in document["findings"])
    status, out, _ = station("kiosks", "--home", str(home.folder))
    assert status == 0 and f"not enrolled: kiosk {kiosk_id}, 1 segments kept aside" in out
    # importing again keeps no second copy and reports nothing new
    status, out, _ = station("import", "--home", str(home.folder), str(journal))
    assert status == 1 and "(1 reported before)" in out and len(kept_aside_segments(home)[kiosk_id]) == 1

    status, out, _ = add(
        home, tmp_path / "kiosk" / ENROLLMENT_NAME, NAME, "--location", "CPU office, floor 2"
    )
    assert status == 0 and f"enrolled kiosk {kiosk_id} as {NAME}" in out and "1 of its segments" in out
    status, out, _ = station("import", "--home", str(home.folder), "--kept-aside")
    assert status == 0, out
    assert "2 records imported" in out and "1 kept-aside segments imported" in out
    assert kept_aside_segments(home) == {}
    assert (home.folder / "kept-aside" / "imported" / copy.relative_to(home.folder / "kept-aside")).exists()
    status, out, _ = station("report", "--home", str(home.folder), "--format", "json")
    document = json.loads(out)
    assert len(document["scans"]) == 1 and document["findings"] == [], "the refusal is withdrawn"
    status, out, _ = station("kiosks", "--home", str(home.folder))
    assert NAME in out and "CPU office, floor 2" in out and "not enrolled" not in out


def test_reimporting_the_stick_after_enrollment_imports_it_too(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = scans_journal(tmp_path / "kiosk", home)
    stick = tmp_path / "stick"
    export_segments(journal, stick)
    summary = import_sources(home, [stick])
    assert summary.records_new == 0 and len(summary.segments_kept_aside) == 1
    assert add(home, provisioned(tmp_path / "kiosk"))[0] == 0
    summary = import_sources(home, [stick])
    assert summary.records_new == 2 and len(summary.kept_aside_imported) == 1
    assert [f.line() for f in summary.findings if f.severity != "notice"] == []


def test_kiosks_lists_name_location_dates_and_last_import(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    enrollment = provisioned(tmp_path / "kiosk")
    status, out, err = station("kiosks", "--home", str(home.folder))
    assert status == 2 and "no database yet" in err
    status, out, _ = add(home, enrollment, NAME, "--location", "Phnom Penh, CPU office")
    assert status == 0
    status, out, _ = station("kiosks", "--home", str(home.folder), "--json")
    [kiosk] = json.loads(out)["kiosks"]
    assert kiosk["name"] == NAME and kiosk["location"] == "Phnom Penh, CPU office"
    assert kiosk["hostname"] and kiosk["enrolled"] and kiosk["last_import"] is None
    assert kiosk["retired_from"] is None and kiosk["label"] == NAME
    scans_journal(tmp_path / "kiosk", home)
    status, out, _ = station("import", "--home", str(home.folder), str(tmp_path / "kiosk" / "journal"))
    assert status == 0, out
    status, out, _ = station("kiosks", "--home", str(home.folder))
    assert out.startswith(f"{NAME}  at Phnom Penh, CPU office  (kiosk {kiosk['kiosk_id']})")
    assert "last import 20" in out and "2 records" in out and "enrolled 20" in out
    store = Store.open(home.database_path)
    assert kiosk_label(store, kiosk["kiosk_id"]) == NAME


def test_import_lines_name_the_kiosk(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home, max_segment_records=2) as journal:
        write_records(journal, 6)
    (tmp_path / "journal" / "segment-00000001.ftj").unlink()
    store = Store.open(home.database_path)
    store.connection.execute("UPDATE kiosks SET name = ?", (NAME,))
    store.close()
    status, out, _ = station("import", "--home", str(home.folder), str(tmp_path / "journal"))
    assert status == 1 and f"warning: kiosk {NAME} segment 1: segment missing" in out


def write_enrollment(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document, encoding="utf-8")
    return path


def pem(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: "{not json", None, "not JSON"),
        (lambda d: [d], None, "not a JSON object"),
        (lambda d: {**d, "format": "fieldtriage-kiosk-enrollment-9"}, "format", "expected"),
        (lambda d: {k: v for k, v in d.items() if k != "kiosk_id"}, "kiosk_id", "missing"),
        (lambda d: {**d, "extra": 1}, "extra", "not part of"),
        (lambda d: {**d, "kiosk_id": "AB" * 16}, "kiosk_id", "32 lower-case hex digits"),
        (lambda d: {**d, "kiosk_id": "ab" * 16}, "kiosk_id", "is not the key id of public_key"),
        (lambda d: {**d, "kiosk_id": 7}, "kiosk_id", "is not text"),
        (lambda d: {**d, "public_key": "not a key"}, "public_key", "not one PEM public key"),
        (lambda d: {**d, "public_key": pem(X25519PrivateKey.generate())}, "public_key", "not an Ed25519"),
        (
            lambda d: {**d, "public_key": d["public_key"].replace("MCow", "MCo=")},
            "public_key",
            "that can be read",
        ),
        (lambda d: {**d, "hostname": "kiosk\x1b[31m"}, "hostname", "is not a host name"),
        (lambda d: {**d, "hostname": ""}, "hostname", "is not a host name"),
        (lambda d: {**d, "created": "yesterday"}, "created", "is not an ISO 8601 time"),
        (lambda d: {**d, "created": "0000-01-01T00:00:00Z"}, "created", "is not an ISO 8601 time"),
        (lambda d: {**d, "agent": "x" * 200}, "agent", "is not a version line"),
        (
            lambda d: json.dumps(d)[:-1] + ', "hostname": "other"}',
            "hostname",
            "appears twice",
        ),
    ],
)
def test_an_enrollment_file_is_checked_field_by_field(
    tmp_path: Path, change: object, field: str | None, words: str
) -> None:
    home = make_station(tmp_path / "station")
    document = json.loads(provisioned(tmp_path / "kiosk").read_text())
    bad = write_enrollment(tmp_path / "bad.json", change(document))  # type: ignore[operator]
    status, _, err = add(home, bad)
    assert status == 2 and err.count("\n") == 1, err
    assert str(bad) in err and words in err, err
    if field is not None:
        assert f"field '{field}'" in err, err
    assert not home.database_path.exists() or Store.open(home.database_path).kiosk_ids() == []


def test_an_enrollment_file_that_is_not_a_file_or_too_large(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    os.mkfifo(tmp_path / "fifo.json")
    status, _, err = add(home, tmp_path / "fifo.json")
    assert status == 2 and err.count("\n") == 1 and "fifo.json" in err
    big = write_enrollment(tmp_path / "big.json", " " * (1 << 20))
    status, _, err = add(home, big)
    assert status == 2 and err.count("\n") == 1 and "big.json" in err


def test_enrolling_twice_a_taken_name_or_a_retired_key_is_refused(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    first, second = provisioned(tmp_path / "one"), provisioned(tmp_path / "two")
    assert add(home, first)[0] == 0
    status, _, err = add(home, first, "another name")
    assert status == 2 and "already enrolled as" in err
    status, _, err = add(home, second, NAME)
    assert status == 2 and "kiosk names are unique" in err
    for bad in ("  ", "two\nlines", "bell\x07"):
        status, _, err = add(home, second, bad)
        assert status == 2 and "--name" in err and err.count("\n") == 1
    assert add(home, second, "Siem Reap bay 1")[0] == 0
    status, out, _ = station("kiosks", "retire", "Siem Reap bay 1", "--home", str(home.folder))
    assert status == 0 and "retired from" in out
    status, _, err = add(home, second, "Siem Reap bay 1 again")
    assert status == 2 and "a retired key is not enrolled again" in err
    status, _, err = add(StationHome(tmp_path / "nowhere"), first)
    assert status == 2 and "station init" in err


def test_retiring_refuses_records_from_the_date_and_keeps_earlier_ones(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    root = tmp_path / "kiosk"
    assert add(home, provisioned(root))[0] == 0
    clock = SetClock(wall_ns=JUNE_1 - 10 * DAY)
    journal = open_journal(root, home, clock=clock, max_segment_records=3)
    write_records(journal, 2)  # before the date
    clock.fields["wall_ns"] = JUNE_1 + DAY
    write_records(journal, 1, start=2)  # after: imported now, taken out at retirement
    export_segments(root / "journal", tmp_path / "stick-1")
    assert import_sources(home, [tmp_path / "stick-1"]).records_new == 3
    status, out, _ = station("kiosks", "retire", NAME, "--from", "2025-06-01", "--home", str(home.folder))
    assert status == 0 and "retired from 2025-06-01T00:00:00Z" in out and "1 imported ones taken out" in out
    assert [r["n"] for r in records(home)] == [0, 1]
    write_records(journal, 2, start=3)  # after the date: refused
    clock.fields["wall_ns"] = JUNE_1 - DAY  # a record dated before it still imports
    write_records(journal, 1, start=5)
    journal.close()
    export_segments(root / "journal", tmp_path / "stick-2")
    summary = import_sources(home, [tmp_path / "stick-2"])
    alarms = [f for f in summary.findings if f.severity == "alarm"]
    assert [(f.segment, f.message) for f in alarms] == [
        (
            1,
            "records 0-1 are dated after this kiosk was retired (from 2025-06-01T00:00:00Z): "
            "refused and kept aside",
        )
    ], [f.line() for f in summary.findings]
    assert summary.records_kept_aside == 2 and [r["n"] for r in records(home)] == [0, 1, 5]
    store = Store.open(home.database_path)
    kept = store.kept_records()
    assert [(k.segment, k.index, k.body["n"]) for k in kept] == [(0, 2, 2), (1, 0, 3), (1, 1, 4)]
    assert all("retired" in k.reason for k in kept)
    status, out, _ = station("kiosks", "--home", str(home.folder))
    assert "RETIRED from 2025-06-01T00:00:00Z" in out and "3 kept aside" in out
    status, _, err = station("kiosks", "retire", NAME, "--from", "2025-07-01", "--home", str(home.folder))
    assert status == 2 and "can only be moved earlier" in err
    status, _, err = station("kiosks", "retire", "nobody", "--home", str(home.folder))
    assert status == 2 and "no enrolled kiosk" in err


def test_a_station_database_of_schema_1_keeps_its_kiosks_and_names_them_at_enrollment(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    enrollment = provisioned(tmp_path / "kiosk")
    document = json.loads(enrollment.read_text())
    db = sqlite3.connect(home.database_path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        CREATE TABLE kiosks (kiosk_id TEXT PRIMARY KEY, public_key BLOB NOT NULL,
            first_import_ns INTEGER NOT NULL, last_import_ns INTEGER NOT NULL, last_record_wall_ns INTEGER);
        CREATE TABLE records (kiosk_id TEXT NOT NULL, segment INTEGER NOT NULL, idx INTEGER NOT NULL,
            chain BLOB NOT NULL, wall_ns INTEGER, monotonic_ns INTEGER, boot_id TEXT,
            clock_synchronised INTEGER, type TEXT, scan_id TEXT, body TEXT NOT NULL,
            PRIMARY KEY (kiosk_id, segment, idx));
        """
    )
    raw = read_enrollment(enrollment).public_key
    db.execute("INSERT INTO kiosks VALUES (?, ?, 5, 6, NULL)", (document["kiosk_id"], raw))
    body = '{"$x": 1, "b": {"$b64": "AAE="}, "type": "test"}'
    db.execute(
        "INSERT INTO records VALUES (?, 0, 0, x'00', 1, 1, 'b', 1, 'test', NULL, ?)",
        (document["kiosk_id"], body),
    )
    db.commit()
    db.close()
    store = Store.open(home.database_path)
    assert store.kiosk_ids() == [document["kiosk_id"]]
    assert records(home) == [{"$x": 1, "b": b"\x00\x01", "type": "test"}]
    store.close()
    assert add(home, enrollment)[0] == 0, "a kiosk of schema 1 gets its name"
    assert kiosk_label(Store.open(home.database_path), document["kiosk_id"]) == NAME


def test_open_journal_helper_enrolls_once(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    open_journal(tmp_path, home).close()
    open_journal(tmp_path, home).close()
    shutil.rmtree(tmp_path / "journal")
    assert len(Store.open(home.database_path).kiosk_ids()) == 1
