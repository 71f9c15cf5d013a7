"""``station share``: a filter of the confirmed finds, signed with the station's provider key, that
holds nothing linking back to the material or the case; the next sync stick carries it with the
exclusions to a kiosk, which then finds the confirmed files with it and never lights red again for
the reviewed false positives. Real keys, the real builder, scanner, journal, import and stick."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agent.daemon.filterstore import FilterStore
from agent.journal.stick_filters import import_filters_from_stick
from agent.scan import Scanner
from agent.scan.exclusions import EXCLUDED_CODE
from filters.container import load_filter
from filters.digests import digest_path
from filters.keys import TrustStore, key_id, load_public_key
from station.review import find_hit, record_review
from station.scans import load_scans
from station.share import provider_key, share_confirmed, shared_path
from tests.station.review_helpers import Unit, make_unit, station

KINDS = ("md5", "sha1", "sha256", "blake3", "sample")


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    made = make_unit(tmp_path)
    first = made.device("S-0001", *made.known, made.benign, made.collision)
    made.journal_scans(("S-0001", made.scan(first)))
    made.import_journal()
    return made


def review_all(unit: Unit) -> None:
    """known-0 confirmed; the meme and the holiday picture false positives, excluded; known-1 left."""
    store = unit.store()
    try:
        scans = load_scans(store)
        (scan,) = scans
        for index, hit in enumerate(scan.hits):
            name = Path(hit["path"]).name
            ref = find_hit(scans, scan.key, index)
            if name == "known-0.jpg":
                record_review(store, ref, "confirmed", note="the series", analyst="Dara Analyst")
            elif name in ("meme.jpg", "holiday.jpg"):
                record_review(store, ref, "false_positive", exclude=True, analyst="Dara Analyst")
            else:
                record_review(store, ref, "needs_review", analyst="Dara Analyst")
    finally:
        store.close()


def test_the_shared_filter_holds_only_keyed_digests_of_confirmed_finds(unit: Unit, tmp_path: Path) -> None:
    review_all(unit)
    copy = tmp_path / "for-partners.ftf"
    status, out, err = station(
        "share", "--home", str(unit.home.folder), "--provider", "Unit 7", "--name", "unit 7 finds",
        "--output", str(copy),
    )  # fmt: skip
    assert status == 0, err
    assert "1 confirmed finds" in out and "kinds md5, sha1, sha256, blake3, sample" in out
    private, public = provider_key(unit.home)
    assert private.stat().st_mode & 0o777 == 0o600
    assert key_id(load_public_key(public)) != key_id(unit.home.signing_public_key())  # its own key
    trust = TrustStore.from_paths([public])
    shared = load_filter(copy, trust)
    assert shared.metadata.name == "unit 7 finds" and shared.metadata.provider == "Unit 7"
    assert shared.fully_covered_by_samples()  # kiosks read samples, confirm with whole-file sets
    assert {(s.kind, s.category, s.priority, s.count) for s in shared.sets} == {
        (k, "confirmed", "priority", 1) for k in KINDS
    }
    expires = shared.metadata.expires
    assert expires is not None and expires > dt.datetime.now(dt.UTC).timestamp() + 360 * 86400
    known, other = digest_path(unit.known[0], KINDS), digest_path(unit.known[1], KINDS)
    meme = digest_path(unit.benign, KINDS)
    for kind in KINDS:
        assert shared.lookup_digest(kind, known[kind])
        assert not shared.lookup_digest(kind, other[kind])  # not confirmed (needs review)
        assert not shared.lookup_digest(kind, meme[kind])  # a false positive
    # one way: no digest, path, file name, scan, kiosk, analyst or note in the file
    data = copy.read_bytes()
    assert copy.read_bytes() == shared_path(unit.home).read_bytes()
    (scan,) = unit.scans()
    for secret in (
        *[known[k] for k in KINDS], *[known[k].hex().encode() for k in KINDS], b"known-0", b"DCIM",
        scan.kiosk.encode(), scan.scan_id.encode() + b"\x00", b"Dara", b"the series", b"S-0001", b"Synthetic",
    ):  # fmt: skip
        assert secret not in data, secret
    again = share_confirmed(unit.home, unit.store(), provider="Unit 7")
    assert again.provider_key_id == key_id(load_public_key(public))  # the key is kept
    assert again.filter_id != shared.metadata.filter_id  # a new random id and salt every time


def test_metadata_that_names_the_case_and_nothing_confirmed_are_refused(unit: Unit) -> None:
    status, _, err = station("share", "--home", str(unit.home.folder))
    assert status == 2 and "no confirmed find" in err and err.count("\n") == 1
    review_all(unit)
    (scan,) = unit.scans()
    for option, value in (
        ("--name", "finds of Dara Analyst"),
        ("--description", f"from scan {scan.kiosk}"),
        ("--provider", "case /DCIM/known-0.jpg"),
        ("--description", "about meme.jpg"),
    ):
        status, _, err = station("share", "--home", str(unit.home.folder), option, value)
        assert status == 2 and "must not link back" in err and option in err, (option, err)
    assert not shared_path(unit.home).exists()


def test_a_kiosk_takes_the_shared_filter_and_the_exclusions_from_the_next_stick(unit: Unit) -> None:
    review_all(unit)
    status, _, err = station("share", "--home", str(unit.home.folder), "--provider", "Unit 7")
    assert status == 0, err
    stick = unit.root / "stick"
    stick.mkdir()
    status, out, err = station(
        "prepare-stick", str(stick), "--uuid", "AAAA-0001", "--home", str(unit.home.folder)
    )
    assert status == 0, err
    assert "2 reviewed false positives" in out and "confirmed-finds.ftf" in out

    # a kiosk of the unit that trusts only the lab, and the station's signing key for its sticks
    kiosk = unit.root / "kiosk-data"
    (kiosk / "trust").mkdir(parents=True)
    (kiosk / "trust" / "lab.pub").write_bytes(unit.factory.pub_path.read_bytes())
    (kiosk / "filters").mkdir()
    lab_filter = next(unit.factory.folder.glob("*.ftf"))
    (kiosk / "filters" / lab_filter.name).write_bytes(lab_filter.read_bytes())
    station_key = unit.home.signing_public_key()
    taken = import_filters_from_stick(stick, kiosk / "filters", kiosk / "trust", station_key)
    assert [p.name for p in taken.filters_added] == ["confirmed-finds.ftf"] and taken.refused == []
    assert len(taken.trust_added) == 1 and taken.exclusions_taken is not None
    store = FilterStore(kiosk / "filters", kiosk / "trust", station_key=station_key)
    store.refresh()
    assert not store.problems and len(store.filters) == 2 and store.exclusions is not None
    assert len(store.exclusions.exclusions) == 2

    # the next devices: the false positives never light red again, the confirmed find does
    scanner = Scanner(store.filters, workers=1, exclusions=store.exclusions)
    benign_only = unit.device("S-0005", unit.benign, unit.collision)
    report = scanner.scan([benign_only])
    assert report.verdict == "no_match" and not report.hits
    assert sorted(Path(p.path.decode()).name for p in report.skipped if p.code == EXCLUDED_CODE) == [
        "holiday.jpg",
        "meme.jpg",
    ]
    mixed = unit.device("S-0006", unit.known[0], unit.benign)
    report = scanner.scan([mixed])
    (hit,) = report.hits
    assert report.verdict == "priority_match" and hit.path.endswith(b"known-0.jpg")
    assert {m.filter_name for m in hit.matches} == {"lab", "confirmed finds"}  # both filters know it
    # and back at the station: the kiosk's journal says which list it carries
    listed = store.describe_exclusions()
    assert listed is not None
    from agent.journal.records import filters_record
    from tests.agent.journal.helpers import open_journal

    with open_journal(unit.journal_folder, unit.home) as journal:
        journal.append(filters_record(store.describe()) | {"exclusions": listed})
    unit.import_journal()
    status, out, _ = station("review", "exclusions", "--json", "--home", str(unit.home.folder))
    kiosks = json.loads(out)["kiosks"]
    (carried,) = kiosks.values()
    assert carried["list_id"] == listed["list_id"] and len(carried["exclusion_ids"]) == 2
