"""Exclusions at the kiosk: a file reviewed as a false positive at the station is not a hit again,
visibly (a ``skipped`` entry naming the exclusion), only on a strong whole-file digest, only from a
list the station signed; the sync stick brings it, the filter store loads it, a phone scan and the
daemon's worker use it and journal which list they carry."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon.bay import Bay
from agent.daemon.filterstore import FilterStore
from agent.daemon.phone import PhoneWorker
from agent.journal.stick_filters import EXCLUSIONS_FOLDER, import_filters_from_stick
from agent.lights.bay import BayLights, RecordingLights
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from agent.scan import Scanner
from agent.scan.exclusions import (
    EXCLUDED_CODE,
    EXCLUSIONS_NAME,
    SIGNATURE_CONTEXT,
    ExclusionList,
    encode_exclusions,
    exclusion_id_of,
    load_exclusions,
    make_exclusion_list,
    write_exclusions,
)
from agent.scan.plan import ScanPlan
from agent.scan.reader_processes import close_idle
from filters.digests import digest_path
from filters.errors import FilterBuildError, FilterRefused
from station.home import StationHome
from tests.agent.daemon.fake_kiosk import ListJournal
from tests.agent.scan.conftest import FilterFactory, scan, write_random

KINDS = ("md5", "sha1", "sha256", "blake3", "sample")
SIZE = 40_000  # sampled blocks: [0, 4096), [16384, 20480), [32768, 36864)
OUTSIDE_SAMPLES = 8_000  # a byte no sampled block holds


@pytest.fixture
def station(tmp_path: Path) -> StationHome:
    home = StationHome(tmp_path / "station")
    home.init()
    return home


def digests_of(path: Path) -> dict[str, bytes]:
    return digest_path(path, KINDS)


def signed_list(station: StationHome, folder: Path, *files: Path, issued_ns: int = 10) -> Path:
    excluded = make_exclusion_list(
        [(exclusion_id_of(digests_of(f)), digests_of(f)) for f in files], issued_ns=issued_ns
    )
    return write_exclusions(folder / EXCLUSIONS_NAME, excluded, station.signing_private_key())


def excluded_entries(report: Any) -> list[Any]:
    return [p for p in report.skipped if p.code == EXCLUDED_CODE]


def test_a_sample_collision_reviewed_false_positive_is_excluded_and_the_known_item_still_hits(
    tmp_path: Path, filters: FilterFactory, station: StationHome
) -> None:
    device = tmp_path / "device"
    known = write_random(device / "DCIM" / "known.jpg", SIZE, 1)
    data = bytearray(known.read_bytes())
    data[OUTSIDE_SAMPLES] ^= 0xFF  # the same size and sampled blocks: the known item's sample digest
    benign = device / "DCIM" / "benign.jpg"
    benign.write_bytes(bytes(data))
    write_random(device / "other.bin", 70_000, 2)
    contraband = filters.make([known])  # sample + blake3, one item group: auto mode reads samples
    before = Scanner([contraband], workers=1).scan([device])
    assert sorted(h.path.rsplit(b"/", 1)[-1] for h in before.hits) == [b"benign.jpg", b"known.jpg"]
    assert next(h for h in before.hits if h.path.endswith(b"benign.jpg")).confirmed is False

    listed = load_exclusions(signed_list(station, tmp_path, benign), station.signing_public_key())
    after = Scanner([contraband], workers=1, exclusions=listed).scan([device])
    assert [h.path for h in after.hits] == [known.as_posix().encode()]  # the known item: still red
    assert after.verdict == "priority_match"
    (entry,) = excluded_entries(after)
    assert entry.path == benign.as_posix().encode()
    assert exclusion_id_of(digests_of(benign)) in entry.reason and listed.list_id in entry.reason
    assert after.counts.skipped == {EXCLUDED_CODE: 1}
    assert after.to_json()["skipped"][0]["code"] == EXCLUDED_CODE  # in the report the journal carries


def test_a_benign_file_in_a_filter_reviewed_false_positive_lights_green_every_mode_that_reads_it(
    tmp_path: Path, filters: FilterFactory, station: StationHome
) -> None:
    device = tmp_path / "device"
    benign = write_random(device / "Download" / "meme.jpg", 25_000, 3)
    write_random(device / "clean.jpg", 30_000, 4)
    listed = load_exclusions(signed_list(station, tmp_path, benign), station.signing_public_key())
    for kinds, mode in (
        (("sample", "blake3"), "auto"),
        (("sample", "sha256"), "full"),
        (("blake3",), "auto"),
    ):
        contraband = filters.make([benign], kinds)
        assert Scanner([contraband], workers=1, mode=mode).scan([device]).verdict == "priority_match"  # type: ignore[arg-type]
        report = Scanner([contraband], workers=1, mode=mode, exclusions=listed).scan([device])  # type: ignore[arg-type]
        assert report.verdict == "no_match" and not report.hits, (kinds, mode)
        assert [p.path for p in excluded_entries(report)] == [benign.as_posix().encode()]
    try:  # reader processes (the kiosk's scan.workers >= 2): the hits are still looked up here
        report = scan(contraband, device, 3, exclusions=listed)
    finally:
        close_idle()
    assert report.verdict == "no_match" and [p.code for p in report.skipped] == [EXCLUDED_CODE]


def test_weak_or_unread_digests_never_exclude(
    tmp_path: Path, filters: FilterFactory, station: StationHome
) -> None:
    device = tmp_path / "device"
    benign = write_random(device / "meme.jpg", 25_000, 5)
    digests = digests_of(benign)
    with pytest.raises(FilterBuildError, match="SHA-256 or BLAKE3"):
        make_exclusion_list([("x", {"md5": digests["md5"], "sample": digests["sample"]})], issued_ns=1)
    listed = make_exclusion_list([("x", digests)], issued_ns=1)
    assert listed.match({"md5": digests["md5"], "sha1": digests["sha1"], "sample": digests["sample"]}) is None
    other = dict(digests, md5=bytes(16))  # every kind both hold must agree
    assert listed.match(other) is None and listed.match(digests) is not None
    # quick mode reads only samples: the file is never read whole, so it stays a hit
    contraband = filters.make([benign], ("sample", "blake3"))
    report = Scanner([contraband], workers=1, mode="quick", exclusions=listed).scan([device])
    assert len(report.hits) == 1 and not excluded_entries(report)


def test_the_list_is_refused_whole_unless_the_station_signed_it(tmp_path: Path, station: StationHome) -> None:
    benign = write_random(tmp_path / "meme.jpg", 25_000, 6)
    path = signed_list(station, tmp_path, benign)
    key = station.signing_public_key()
    assert len(load_exclusions(path, key).exclusions) == 1
    other = StationHome(tmp_path / "other-station")
    other.init()
    forged = signed_list(other, tmp_path / "forged", benign)
    with pytest.raises(FilterRefused, match="not by this kiosk's station"):
        load_exclusions(forged, key)
    envelope = cbor2.loads(path.read_bytes())
    payload = bytearray(envelope["payload"])
    payload[-1] ^= 1
    altered = tmp_path / "altered.ftx"
    altered.write_bytes(cbor2.dumps(envelope | {"payload": bytes(payload)}, canonical=True))
    with pytest.raises(FilterRefused, match="signature does not verify"):
        load_exclusions(altered, key)
    for garbage in (b"", b"\xff" * 10, cbor2.dumps({"format": "fieldtriage-filter"})):
        altered.write_bytes(garbage)
        with pytest.raises(FilterRefused):
            load_exclusions(altered, key)
    # well signed, but an entry with only a weak digest: refused whole
    signing = station.signing_private_key()
    envelope = cbor2.loads(encode_exclusions(make_exclusion_list([], issued_ns=1), signing))
    weak = cbor2.loads(envelope["payload"]) | {"exclusions": [{"id": "x", "digests": {"md5": bytes(32)}}]}
    raw = cbor2.dumps(weak, canonical=True)
    envelope |= {"payload": raw, "signature": signing.sign(SIGNATURE_CONTEXT + raw)}
    altered.write_bytes(cbor2.dumps(envelope, canonical=True))
    with pytest.raises(FilterRefused, match="no sha256 or blake3"):
        load_exclusions(altered, key)


def stick_with(station: StationHome, stick: Path, *files: Path, issued_ns: int) -> ExclusionList:
    path = signed_list(station, stick / EXCLUSIONS_FOLDER, *files, issued_ns=issued_ns)
    return load_exclusions(path, station.signing_public_key())


def test_a_sync_stick_brings_a_newer_list_only_and_the_filter_store_loads_it(
    tmp_path: Path, filters: FilterFactory, station: StationHome
) -> None:
    kiosk_filters, kiosk_trust = tmp_path / "kiosk" / "filters", tmp_path / "kiosk" / "trust"
    benign = write_random(tmp_path / "meme.jpg", 25_000, 7)
    filters.path([benign])
    key = station.signing_public_key()
    first = stick_with(station, tmp_path / "stick1", benign, issued_ns=100)
    taken = import_filters_from_stick(tmp_path / "stick1", kiosk_filters, kiosk_trust, key)
    assert taken.exclusions_taken is not None and taken.exclusions_taken["list_id"] == first.list_id
    assert taken.exclusions_taken["count"] == 1 and taken.refused == []
    again = import_filters_from_stick(tmp_path / "stick1", kiosk_filters, kiosk_trust, key)
    assert again.exclusions_taken is None and again.refused == []  # the same list: nothing to do
    stick_with(station, tmp_path / "stick0", issued_ns=50)  # an older stick: an empty list
    older = import_filters_from_stick(tmp_path / "stick0", kiosk_filters, kiosk_trust, key)
    assert older.exclusions_taken is None and "issued before" in older.refused[0]
    forged_station = StationHome(tmp_path / "forger")
    forged_station.init()
    stick_with(forged_station, tmp_path / "forged", issued_ns=999)
    forged = import_filters_from_stick(tmp_path / "forged", kiosk_filters, kiosk_trust, key)
    assert forged.exclusions_taken is None and "not by this kiosk's station" in forged.refused[0]

    (kiosk_trust / "lab.pub").write_bytes(filters.pub_path.read_bytes())
    for path in filters.folder.glob("*.ftf"):
        (kiosk_filters / path.name).write_bytes(path.read_bytes())
    store = FilterStore(kiosk_filters, kiosk_trust, station_key=key)
    store.refresh()
    assert store.exclusions is not None and store.exclusions.list_id == first.list_id
    assert store.describe_exclusions() == first.describe() | {"signer": store.exclusions.signer}
    assert store.filters and not store.problems
    newer = stick_with(station, tmp_path / "stick2", issued_ns=200)  # the analyst took it back
    assert import_filters_from_stick(tmp_path / "stick2", kiosk_filters, kiosk_trust, key).exclusions_taken
    assert store.refresh() and store.exclusions is not None and store.exclusions.list_id == newer.list_id
    assert store.exclusions.exclusions == ()
    unkeyed = FilterStore(kiosk_filters, kiosk_trust)  # no station signing key configured
    unkeyed.refresh()
    assert unkeyed.exclusions is None and "no station signing key" in unkeyed.problems[0]
    (kiosk_filters / EXCLUSIONS_NAME).write_bytes(b"broken")
    store.refresh(force=True)
    assert store.exclusions is None and "no exclusion used" in store.problems[-1] and store.filters


ANDROID = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
           "ID_SERIAL_SHORT": "P7SERIAL", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007",
           "DEVNAME": "/dev/bus/usb/001/007"}  # fmt: skip


def phone_scan(
    files: Mapping[str, bytes], filters: list[Any], exclusions: ExclusionList | None
) -> tuple[Bay, dict[str, Any]]:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    journal = ListJournal()
    identity = phone_identity(ANDROID, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
    backend = FakePhoneBackend({"usb:001,007": FakePhone({"Internal shared storage": dict(files)})})
    worker = PhoneWorker(
        bay, identity, backend, filters, ScanConfig(), journal, poll_seconds=0.05, exclusions=exclusions
    )
    bay.worker = worker
    worker.start()
    worker.join(20)
    assert not worker.is_alive()
    return bay, journal.records[-1]


def test_a_phone_in_a_bay_does_not_light_red_for_an_excluded_file_and_journals_the_list(
    tmp_path: Path, filters: FilterFactory, station: StationHome
) -> None:
    benign = write_random(tmp_path / "meme.jpg", 60_000, 8)
    contraband = filters.make([benign])
    files = {f"DCIM/Camera/IMG_{i}.jpg": random.Random(i).randbytes(20_000) for i in range(5)}
    files["WhatsApp/Media/meme.jpg"] = benign.read_bytes()
    bay, record = phone_scan(files, [contraband], None)
    assert bay.verdict == "priority_match" and record["exclusions"] is None
    listed = load_exclusions(signed_list(station, tmp_path, benign), station.signing_public_key())
    bay, record = phone_scan(files, [contraband], listed)
    assert bay.verdict == "no_match" and bay.lights.signal.value == "no_match"
    assert "priority_match" not in bay.lights.shown and "scanning_priority" not in bay.lights.shown
    assert record["exclusions"] == listed.list_id and record["scan"]["hits"] == []
    (entry,) = [s for s in record["scan"]["skipped"] if s["code"] == EXCLUDED_CODE]
    assert entry["path"] == "Internal shared storage/WhatsApp/Media/meme.jpg"
    assert exclusion_id_of(digests_of(benign)) in entry["reason"]


def test_the_plan_hook_costs_nothing_without_exclusions(filters: FilterFactory, tmp_path: Path) -> None:
    benign = write_random(tmp_path / "meme.jpg", 25_000, 9)
    plan = ScanPlan.build([filters.make([benign])], "auto")
    assert plan.exclusions is None and plan.excluded(b"/x", digests_of(benign)) is None
    started = time.perf_counter()
    listed = make_exclusion_list(
        [(f"x{i}", {"sha256": random.Random(i).randbytes(32)}) for i in range(5000)], issued_ns=1
    )
    assert time.perf_counter() - started < 5 and listed.match(digests_of(benign)) is None
    assert dt.datetime.fromisoformat(listed.describe()["issued"].replace("Z", "+00:00")).year == 1970
