"""``station review``: each hit of an imported scan reviewed (confirmed, false positive, needs review)
with a note, who and when; every change kept (an audit trail the database itself refuses to
rewrite); the imported records never touched; false positives marked for exclusion become the
exclusion list of the next sync stick."""

from __future__ import annotations

import getpass
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from agent.journal.stick_filters import EXCLUSIONS_FOLDER, import_filters_from_stick
from agent.scan.exclusions import EXCLUSIONS_NAME, exclusion_id_of, load_exclusions
from filters.digests import digest_path
from filters.errors import StationError, UsageError
from station.review import (
    STATE_LABELS,
    current_exclusions,
    find_hit,
    issue_exclusion_list,
    latest_reviews,
    record_review,
    review_history,
)
from tests.station.review_helpers import Unit, make_unit, station

KINDS = ("md5", "sha1", "sha256", "blake3", "sample")


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    made = make_unit(tmp_path)
    first = made.device("S-0001", *made.known, made.benign, made.collision)
    made.journal_scans(("S-0001", made.scan(first)))
    made.import_journal()
    return made


def records_digest(unit: Unit) -> str:
    store = unit.store()
    try:
        rows = store.query("SELECT * FROM records ORDER BY kiosk_id, segment, idx")
    finally:
        store.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def names_by_index(unit: Unit) -> dict[str, int]:
    (scan,) = unit.scans()
    return {Path(h["path"]).name: i for i, h in enumerate(scan.hits)}


def home(unit: Unit) -> list[str]:
    return ["--home", str(unit.home.folder)]


def test_reviews_from_the_command_line_kept_whole_and_the_records_untouched(unit: Unit) -> None:
    before = records_digest(unit)
    (scan,) = unit.scans()
    index = names_by_index(unit)
    assert sorted(index) == ["holiday.jpg", "known-0.jpg", "known-1.jpg", "meme.jpg"]
    status, out, _ = station("review", "list", *home(unit))
    assert status == 0 and out.count("not reviewed") == 4 and "4 of 4 hits shown" in out
    assert "/DCIM/holiday.jpg" in out and "sample only" in out and "sha256 " in out

    status, out, err = station(
        "review", "set", scan.scan_id, str(index["known-0.jpg"]), "--state", "confirmed",
        "--note", "the known series", "--analyst", "A. Analyst", *home(unit),
    )  # fmt: skip
    assert status == 0, err
    assert "not reviewed -> confirmed by A. Analyst" in out
    meme = digest_path(unit.benign, ["sha256"])["sha256"].hex()
    status, out, err = station(
        "review", "set", "--path", "/DCIM/meme.jpg", "--digest", f"sha256:{meme}", "--state",
        "false_positive", "--exclude", "--note", "a meme, in the hash set by mistake", *home(unit),
    )  # fmt: skip
    assert status == 0, err
    assert f"by {getpass.getuser()}" in out and "exclusion" in out  # the login name by default
    for state in ("needs_review", "false_positive"):
        status, _, err = station(
            "review", "set", f"{scan.kiosk}:{scan.scan_id}", str(index["holiday.jpg"]), "--state", state,
            *(["--exclude"] if state == "false_positive" else []), "--note", f"looked: {state}", *home(unit),
        )  # fmt: skip
        assert status == 0, err
    status, _, _ = station(
        "review", "set", scan.scan_id, str(index["known-1.jpg"]), "--state", "needs_review", *home(unit)
    )
    assert status == 0

    status, out, _ = station("review", "list", *home(unit))
    assert "1 of 4 hits shown" in out and "known-1.jpg" in out and "needs review" in out
    status, out, _ = station("review", "history", *home(unit))
    assert status == 0 and "5 reviews" in out
    assert (
        "not reviewed -> needs review" in out and "needs review -> false positive (excluded at kiosks)" in out
    )
    status, out, _ = station(
        "review", "history", scan.scan_id, str(index["holiday.jpg"]), "--json", *home(unit)
    )
    trail = json.loads(out)
    assert [(r["before"], r["state"]) for r in trail] == [
        (None, "needs_review"),
        ("needs_review", "false_positive"),
    ]
    assert (
        trail[1]["exclude"] is True and trail[1]["note"] == "looked: false_positive" and trail[1]["reviewed"]
    )
    assert records_digest(unit) == before  # a review never changes the imported records

    store = unit.store()
    try:
        latest = latest_reviews(store)
        assert {r.hit_index: r.state for r in latest.values()} == {
            index["known-0.jpg"]: "confirmed",
            index["meme.jpg"]: "false_positive",
            index["holiday.jpg"]: "false_positive",
            index["known-1.jpg"]: "needs_review",
        }
        assert latest[(scan.kiosk, scan.scan_id, index["known-0.jpg"])].label == STATE_LABELS["confirmed"]
        for sql in ("UPDATE reviews SET state = 'confirmed'", "DELETE FROM reviews"):
            with pytest.raises(sqlite3.DatabaseError, match="audit trail"):
                store.connection.execute(sql)
        assert len(review_history(store)) == 5
    finally:
        store.close()


def test_wrong_hits_states_and_exclusions_are_one_line_refusals(unit: Unit) -> None:
    (scan,) = unit.scans()
    index = names_by_index(unit)
    cases = [
        (["review", "set", "nope", "0", "--state", "confirmed"], "no such scan"),
        (["review", "set", scan.scan_id, "9", "--state", "confirmed"], "no such hit"),
        (["review", "set", scan.scan_id, "--state", "confirmed"], "give SCAN HIT"),
        (
            ["review", "set", "--path", "/DCIM/meme.jpg", "--digest", "zz", "--state", "confirmed"],
            "not a hex",
        ),
        (
            ["review", "set", "--path", "/DCIM/meme.jpg", "--digest", "ab" * 32, "--state", "confirmed"],
            "no hit",
        ),
        (
            ["review", "set", scan.scan_id, str(index["known-0.jpg"]), "--state", "confirmed", "--exclude"],
            "only a false positive",
        ),
        (["review", "set", scan.scan_id, "0", "--state", "confirmed", "--analyst", "  "], "printable"),
    ]
    for argv, reason in cases:
        status, _, err = station(*argv, *home(unit))
        assert status == 2 and err.count("\n") == 1 and reason in err, (argv, err)
    with pytest.raises(SystemExit):  # argparse: the states are its choices
        station("review", "set", scan.scan_id, "0", "--state", "wrong", *home(unit))
    store = unit.store()
    try:
        assert review_history(store) == []
    finally:
        store.close()


def test_a_hit_read_only_as_a_sample_cannot_be_excluded(unit: Unit) -> None:
    quick = unit.device("S-0002", unit.benign)
    unit.journal_scans(("S-0002", unit.scan(quick, mode="quick")))
    unit.import_journal()
    store = unit.store()
    try:
        from station.scans import load_scans

        scans = load_scans(store)
        (scan,) = [s for s in scans if s.device.get("serial") == "S-0002"]
        assert set(scan.hits[0]["digests"]) == {"sample"}
        ref = find_hit(scans, scan.key, 0)
        with pytest.raises(StationError, match="cannot be excluded safely"):
            record_review(store, ref, "false_positive", exclude=True, analyst="x")
        record_review(store, ref, "false_positive", analyst="x")  # without --exclude: kept
        with pytest.raises(UsageError):
            record_review(store, ref, "maybe", analyst="x")
    finally:
        store.close()


def test_false_positives_become_the_next_sticks_exclusion_list_and_a_kiosk_takes_it(unit: Unit) -> None:
    second = unit.device("S-0003", unit.benign, clean=1)  # the same meme on another device
    unit.journal_scans(("S-0003", unit.scan(second)))
    unit.import_journal()
    store = unit.store()
    try:
        from station.scans import load_scans

        scans = load_scans(store)
        by_serial = {s.device["serial"]: s for s in scans}
        first = by_serial["S-0001"]
        index = {Path(h["path"]).name: i for i, h in enumerate(first.hits)}
        record_review(
            store, find_hit(scans, first.key, index["meme.jpg"]), "false_positive", exclude=True, analyst="a"
        )
        record_review(
            store, find_hit(scans, by_serial["S-0003"].key, 0), "false_positive", exclude=True, analyst="b"
        )
        record_review(
            store,
            find_hit(scans, first.key, index["holiday.jpg"]),
            "false_positive",
            exclude=True,
            analyst="a",
        )
        candidates, notes = current_exclusions(store)
        meme = digest_path(unit.benign, KINDS)
        assert {c.exclusion_id for c in candidates} == {
            exclusion_id_of(meme),
            exclusion_id_of(digest_path(unit.collision, KINDS)),
        }
        assert (
            len(next(c for c in candidates if c.exclusion_id == exclusion_id_of(meme)).reviews) == 2
        )  # one file
        assert notes == []
        # the meme confirmed somewhere else: detection wins, it leaves the list
        record_review(store, find_hit(scans, by_serial["S-0003"].key, 0), "confirmed", analyst="b")
        candidates, notes = current_exclusions(store)
        assert [c.exclusion_id for c in candidates] == [exclusion_id_of(digest_path(unit.collision, KINDS))]
        assert "confirmed in another hit's review" in notes[0]
        record_review(
            store, find_hit(scans, by_serial["S-0003"].key, 0), "false_positive", exclude=True, analyst="b"
        )
        first_list, _ = issue_exclusion_list(store, now_ns=5)
        second_list, _ = issue_exclusion_list(store, now_ns=5)
        assert second_list.issued_ns > first_list.issued_ns  # always after the one before
    finally:
        store.close()

    stick = unit.root / "stick"
    stick.mkdir()
    status, out, err = station("prepare-stick", str(stick), "--uuid", "AAAA-0001", *home(unit))
    assert status == 0, err
    assert "2 reviewed false positives" in out
    key = unit.home.signing_public_key()
    carried = load_exclusions(stick / EXCLUSIONS_FOLDER / EXCLUSIONS_NAME, key)
    assert {e.exclusion_id for e in carried.exclusions} == {c.exclusion_id for c in candidates} | {
        exclusion_id_of(meme)
    }
    raw = (stick / EXCLUSIONS_FOLDER / EXCLUSIONS_NAME).read_bytes()
    assert meme["sha256"] not in raw and meme["md5"] not in raw and b"meme" not in raw  # keyed: no digest
    kiosk = unit.root / "kiosk-data"
    taken = import_filters_from_stick(stick, kiosk / "filters", kiosk / "trust", key)
    assert taken.exclusions_taken is not None and taken.exclusions_taken["count"] == 2
    status, out, _ = station("review", "exclusions", *home(unit))
    assert status == 0 and "2 exclusions for the next sync stick" in out and exclusion_id_of(meme) in out
    (unit.root / "plain").mkdir()
    status, _, _ = station(
        "prepare-stick", str(unit.root / "plain"), "--uuid", "AAAA-0002", "--no-exclusions", *home(unit)
    )
    assert status == 0 and not (unit.root / "plain" / EXCLUSIONS_FOLDER).exists()
